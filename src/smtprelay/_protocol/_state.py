"""The SMTP client session: states, legal transitions, pipelining groups and reply pairing.

This module owns the state machine. A :class:`ClientSession` does no I/O: the driver calls
:meth:`~ClientSession.send` to turn a command into bytes (after checking it is legal now),
:meth:`~ClientSession.receive_data` with whatever the socket produced (``b""`` for EOF), and
:meth:`~ClientSession.next_event` to get each reply paired with the command it answers.

Strategy:
- ``state`` is the *confirmed* state: it moves only when a reply arrives (table ``_TRANSITIONS``).
- Commands sent but not yet answered wait in a FIFO. While it is non-empty, legality is judged
  against a *projected* state (what the state will be if everything pending succeeds); when the
  FIFO empties, the projection snaps back to the confirmed state. So a pipelined MAIL that fails
  leaves the session READY once its RCPT and DATA replies have been paired, whatever was assumed.
- RFC 2920 §3.1: a group-ending command (EHLO, DATA, STARTTLS, AUTH, NOOP, QUIT) must be answered
  before anything else is sent; without PIPELINING every command must be answered first.
- Bytes that arrive while no command is waiting cannot be a reply to anything; they are discarded
  when the next command is sent, so they are never paired with it (RELIABILITY 14). After the 220
  to STARTTLS, whatever was received in plaintext is discarded at :meth:`~ClientSession.start_tls`
  (STARTTLS response injection, RELIABILITY 38).
- 421 to any command, a reply to QUIT, or EOF closes the session; a protocol error moves it to
  ERROR. Neither can be left: the connection must be closed and never reused.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Final

from .._errors import LocalProtocolError, ProtocolError
from ._capabilities import Capabilities
from ._commands import (
    Auth,
    AuthResponse,
    Bdat,
    Command,
    Data,
    Ehlo,
    Greeting,
    Helo,
    Mail,
    MessageData,
    Noop,
    Quit,
    Rcpt,
    Rset,
    StartTLS,
)
from ._reply import Reply, ReplyReader

__all__ = ["State", "ClientSession", "Response", "NEED_DATA", "CLOSED", "NeedData", "Closed"]


class State(enum.Enum):
    """Where the client stands in the session."""

    CONNECTED = "connected"  # waiting for the greeting
    GREETED = "greeted"  # greeting received (or TLS just started): EHLO/HELO next
    READY = "ready"  # EHLO/HELO answered, no transaction open
    STARTTLS = "starttls"  # 220 to STARTTLS: the driver must do the TLS handshake now
    AUTH = "auth"  # 334 challenge: a SASL response is expected
    MAIL = "mail"  # MAIL accepted: RCPT, DATA/BDAT, RSET
    DATA = "data"  # 354 received: the message content is expected
    BDAT = "bdat"  # inside a BDAT sequence (a non-LAST chunk was accepted)
    CLOSED = "closed"  # QUIT answered, 421 received, or the peer closed
    ERROR = "error"  # protocol violation by either side: unusable


class NeedData(enum.Enum):
    NEED_DATA = "need_data"


class Closed(enum.Enum):
    CLOSED = "closed"


#: Returned by :meth:`ClientSession.next_event` when more bytes must be received.
NEED_DATA: Final = NeedData.NEED_DATA
#: Returned by :meth:`ClientSession.next_event` when the peer closed the connection.
CLOSED: Final = Closed.CLOSED


@dataclass(frozen=True, slots=True)
class Response:
    """A reply paired with the command it answers."""

    command: Command
    reply: Reply


# Which commands may be sent in each (projected) state.
_ALLOWED: dict[State, tuple[type[Command], ...]] = {
    State.CONNECTED: (Quit,),
    State.GREETED: (Ehlo, Helo, Noop, Rset, Quit),
    State.READY: (Ehlo, Helo, StartTLS, Auth, Mail, Rset, Noop, Quit),
    State.AUTH: (AuthResponse,),
    State.MAIL: (Rcpt, Data, Bdat, Rset, Noop, Quit),
    State.DATA: (MessageData,),
    State.BDAT: (Bdat, Rset, Quit),
    State.STARTTLS: (),
    State.CLOSED: (),
    State.ERROR: (),
}


def _transition(state: State, command: Command, reply: Reply) -> State:
    """The confirmed state after ``reply`` answers ``command`` (421 is handled by the caller)."""
    positive = reply.is_positive
    match command:
        case Greeting():
            return State.GREETED if positive else state
        case Ehlo() | Helo():
            return State.READY if positive else state
        case StartTLS():
            return State.STARTTLS if reply.code == 220 else state
        case Auth() | AuthResponse():
            if reply.code == 334:
                return State.AUTH
            return State.READY
        case Mail():
            return State.MAIL if positive else State.READY
        case Rcpt():
            return state  # a refused recipient never ends the transaction
        case Data():
            # A refused DATA leaves the transaction open on the server: RSET before the next MAIL.
            return State.DATA if reply.code == 354 else state
        case MessageData():
            return State.READY  # the reply to the end of data ends the transaction either way
        case Bdat(last=last):
            if last:
                return State.READY
            # RFC 3030 §2: after a refused chunk the transaction has failed; RSET before the next MAIL.
            if positive:
                return State.BDAT
            return State.MAIL if state in (State.MAIL, State.BDAT) else state
        case Rset():
            return State.READY if positive and state is not State.GREETED else state
        case Noop():
            return state
        case Quit():
            return State.CLOSED
    raise AssertionError(f"unknown command {command!r}")  # pragma: no cover


def _project(state: State, command: Command) -> State:
    """The state assumed after sending ``command`` while it awaits its reply (for pipelining)."""
    match command:
        case Mail():
            return State.MAIL
        case Rset():
            return State.READY if state is not State.GREETED else state
        case MessageData():
            return State.READY
        case Bdat(last=last):
            return State.READY if last else State.BDAT
        case _:
            return state


class ClientSession:
    """Sans-I/O SMTP client session (see the module docstring for the rules it enforces)."""

    __slots__ = (
        "_pending",
        "_projected",
        "_rcpt_since_mail",
        "_reader",
        "_state",
        "capabilities",
        "discarded_bytes",
        "error",
        "tls_active",
    )

    def __init__(self, *, reader: ReplyReader | None = None) -> None:
        self._reader = reader or ReplyReader()
        self._state = State.CONNECTED
        self._projected = State.CONNECTED
        self._pending: deque[Command] = deque([Greeting()])
        self._rcpt_since_mail = 0
        #: Extensions from the last successful EHLO (empty before it, after HELO and after STARTTLS).
        self.capabilities = Capabilities()
        #: True once :meth:`start_tls` has been called.
        self.tls_active = False
        #: Bytes received that answered no command (unsolicited) or arrived before a TLS handshake.
        self.discarded_bytes = 0
        #: The error that moved the session to ERROR, if any.
        self.error: Exception | None = None

    # -- introspection -------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def pending(self) -> tuple[Command, ...]:
        """Commands sent and not yet answered, oldest first."""
        return tuple(self._pending)

    @property
    def pipelining(self) -> bool:
        return self.capabilities.pipelining

    @property
    def usable(self) -> bool:
        """False once the session is closed or broken: its connection must not be reused."""
        return self._state not in (State.CLOSED, State.ERROR)

    def can_send(self, command: Command) -> bool:
        """Whether :meth:`send` would accept ``command`` now."""
        return self._refusal(command) is None

    # -- sending -------------------------------------------------------------------------------
    def send(self, command: Command) -> bytes:
        """Check that ``command`` is legal now, record it as awaiting a reply, and return its bytes.

        Raises:
            LocalProtocolError: the command is not allowed in this state or pipelining position.
        """
        refusal = self._refusal(command)
        if refusal is not None:
            error = LocalProtocolError(f"cannot send {type(command).__name__.upper()} {refusal}")
            self._fail(error)
            raise error
        if not self._pending and self._reader.buffered:
            # Nothing was outstanding, so these bytes answer nothing: never pair them with this command.
            self.discarded_bytes += self._reader.discard()
        data = command.encode()
        self._pending.append(command)
        self._projected = _project(self._projected, command)
        if isinstance(command, Mail):
            self._rcpt_since_mail = 0
        elif isinstance(command, Rcpt):
            self._rcpt_since_mail += 1
        return data

    def _refusal(self, command: Command) -> str | None:
        if self._state in (State.CLOSED, State.ERROR):
            return f"in state {self._state.name}"
        if self._pending:
            last = self._pending[-1]
            if last.ends_group:
                return f"while {type(last).__name__.upper()} awaits its reply (it ends a pipelined group)"
            if not self.pipelining:
                return f"while {type(last).__name__.upper()} awaits its reply (no PIPELINING)"
        state = self._projected
        if not isinstance(command, _ALLOWED[state]):
            return f"in state {state.name}"
        if isinstance(command, Data | Bdat) and state is State.MAIL and self._rcpt_since_mail == 0:
            return "before any RCPT"
        if isinstance(command, StartTLS) and self.tls_active:
            return "twice on one connection"
        return None

    # -- receiving -----------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the connection; ``b""`` means the peer closed it."""
        self._reader.feed(data)

    def next_event(self) -> Response | NeedData | Closed:
        """The next reply paired with its command, NEED_DATA, or CLOSED (peer gone, nothing to pair).

        Raises:
            ProtocolError: the server's bytes are not valid SMTP replies (the session moves to ERROR).
        """
        if self._state is State.ERROR:
            raise LocalProtocolError("the session is in ERROR and cannot be used")
        if not self._pending:
            if self._reader.at_eof:
                self._state = self._projected = State.CLOSED
                return CLOSED
            return NEED_DATA
        command = self._pending[0]
        try:
            reply = self._reader.next_reply(enhanced=self.capabilities.enhanced_status_codes)
        except ProtocolError as parse_error:
            parse_error.phase = command.phase
            self._fail(parse_error)
            raise
        if reply is None:
            if self._reader.at_eof:
                self._state = self._projected = State.CLOSED
                return CLOSED
            return NEED_DATA
        self._pending.popleft()
        if isinstance(command, AuthResponse | Auth) and not self._auth_reply_ok(reply):
            error = ProtocolError(f"unexpected reply {reply.code} to AUTH", phase=command.phase)
            self._fail(error)
            raise error
        if reply.is_closing or isinstance(command, Quit):
            self._state = self._projected = State.CLOSED
            self._pending.clear()
        else:
            self._state = _transition(self._state, command, reply)
            if isinstance(command, Ehlo) and reply.is_positive:
                self.capabilities = Capabilities.from_ehlo(reply)
            elif isinstance(command, Helo) and reply.is_positive:
                self.capabilities = Capabilities()
            if not self._pending:
                self._projected = self._state
        return Response(command, reply)

    @staticmethod
    def _auth_reply_ok(reply: Reply) -> bool:
        return reply.code in (235, 334) or reply.kind in (4, 5)

    # -- TLS -----------------------------------------------------------------------------------
    def start_tls(self) -> int:
        """Call after the TLS handshake that followed a 220 to STARTTLS.

        Discards every byte received before the handshake (they came in plaintext and could have
        been injected), forgets the pre-TLS capabilities and requires a new EHLO (RFC 3207 §4.2).
        Returns the number of bytes discarded.
        """
        if self._state is not State.STARTTLS:
            raise LocalProtocolError(f"start_tls() in state {self._state.name}, not after a 220 to STARTTLS")
        discarded = self._reader.discard()
        self.discarded_bytes += discarded
        self.capabilities = Capabilities()
        self.tls_active = True
        self._state = self._projected = State.GREETED
        return discarded

    # -- failure -------------------------------------------------------------------------------
    def _fail(self, error: Exception) -> None:
        self.error = error
        self._state = self._projected = State.ERROR
        self._pending.clear()

    def close(self) -> None:
        """Mark the session closed (the driver closed the socket)."""
        if self._state is not State.ERROR:
            self._state = self._projected = State.CLOSED
        self._pending.clear()

    def __repr__(self) -> str:
        pending = ", ".join(type(c).__name__.upper() for c in self._pending)
        return f"<ClientSession {self._state.name} pending=[{pending}] tls={self.tls_active}>"
