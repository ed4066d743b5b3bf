"""A scriptable, recording SMTP server on loopback (aiosmtpd in a background thread), for tests.

Strategy: aiosmtpd's ``SMTP`` protocol does the SMTP parsing; a small subclass records every session
(peer, EHLO name, TLS, AUTH, commands and replies) and lets tests script the greeting, and a handler
uses aiosmtpd's ``handle_*`` hooks to script replies to EHLO, MAIL, RCPT and the end of data. The
event loop and its thread are our own rather than aiosmtpd's ``Controller``: the controller needs a
known port (its start-up probe connects to it, and that probe would show up as a session), and its
``stop()`` waits for ``Server.wait_closed()``, which on Python 3.12+ waits for every client to leave.
Here ``stop()`` closes the listener, aborts every open connection, cancels every task, closes the
loop and joins the thread, all within a bounded time.

aiosmtpd is imported only when a :class:`LocalMX` is created, so the rest of ``smtprelay.testing``
works without it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import email.message
import email.parser
import email.policy
import enum
import functools
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, Self, TypeAlias

__all__ = ["Action", "LocalMX", "ReceivedMessage", "SessionRecord"]

_INSTALL_HINT = "LocalMX needs aiosmtpd: pip install 'smtprelay[testing]'"


class Action(enum.Enum):
    """Scripted behaviours that are not a reply."""

    #: Close the connection instead of replying.
    DISCONNECT = "disconnect"
    #: Never reply: the client waits until its own timeout (or until the server stops).
    HANG = "hang"


#: A reply: ``(code, text)``; a text with ``"\\n"`` in it becomes a multi-line reply.
Reply: TypeAlias = tuple[int, str]
#: One scripted step: a reply or an :class:`Action`.
Step: TypeAlias = Reply | Action
#: Checks AUTH credentials: ``(mechanism, username, secret) -> accepted``.
AuthCheck: TypeAlias = Callable[[str, str, str], bool]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What happened on one connection to a :class:`LocalMX` (a snapshot).

    Attributes:
        id: 1-based number of the connection on this server.
        peer: the client's ``(address, port)``.
        ehlo_name: the name the client last gave in EHLO or HELO, or None.
        tls_version: e.g. ``"TLSv1.3"`` once STARTTLS (or implicit TLS) is up, else None.
        authenticated_as: the user name of a successful AUTH, else None.
        commands: the command lines received, in order (AUTH arguments are hidden).
        replies: the replies sent, in order (a multi-line reply is one string, lines joined by CRLF).
        transactions: how many messages reached the end of data.
        closed: whether the connection has ended.
    """

    id: int
    peer: tuple[str, int]
    ehlo_name: str | None
    tls_version: str | None
    authenticated_as: str | None
    commands: tuple[str, ...]
    replies: tuple[str, ...]
    transactions: int
    closed: bool

    @property
    def tls(self) -> bool:
        """Whether the session was encrypted."""
        return self.tls_version is not None


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One transaction that reached the end of data on a :class:`LocalMX`.

    Attributes:
        mail_from: the envelope sender; ``""`` for the null reverse-path ``<>``.
        rcpt_tos: the accepted recipients, in order (a recipient given twice appears twice).
        data: the message bytes exactly as received, dot-unstuffed, CRLF line ends kept.
        mail_options: parameters of MAIL FROM (upper-cased by aiosmtpd), e.g. ``("BODY=8BITMIME",)``.
        rcpt_options: parameters of every accepted RCPT TO.
        session_id: :attr:`SessionRecord.id` of the connection it came on.
        transaction: 1-based number of the transaction within that session.
        ehlo_name, tls_version, authenticated_as, peer: as in :class:`SessionRecord`, at that time.
        server: ``(host, port)`` of the LocalMX that received it.
        reply: the reply given to the end of data, or None when a scripted :class:`Action` meant none.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...]
    rcpt_options: tuple[str, ...]
    session_id: int
    transaction: int
    ehlo_name: str | None
    tls_version: str | None
    authenticated_as: str | None
    peer: tuple[str, int]
    server: tuple[str, int]
    reply: Reply | None

    @property
    def accepted(self) -> bool:
        """Whether the server answered the end of data with a 2xx (the message was delivered)."""
        return self.reply is not None and 200 <= self.reply[0] < 300

    @property
    def tls(self) -> bool:
        """Whether the message came over an encrypted session."""
        return self.tls_version is not None

    def message(self) -> email.message.EmailMessage:
        """The data parsed by the standard library (``email.policy.default``)."""
        return email.parser.BytesParser(policy=email.policy.default).parsebytes(self.data)


# -- scripts ---------------------------------------------------------------------------------


def _check_step(step: object) -> Step:
    if isinstance(step, Action):
        return step
    if (
        isinstance(step, tuple)
        and len(step) == 2
        and isinstance(step[0], int)
        and not isinstance(step[0], bool)
        and isinstance(step[1], str)
    ):
        code, text = step
        if not 200 <= code <= 599:
            raise ValueError(f"reply code out of range: {code}")
        if not text.isascii() or any(not line.isprintable() for line in text.split("\n")):
            raise ValueError(f"reply text must be printable ASCII (lines separated by \\n): {text!r}")
        return (code, text)
    raise TypeError(f"a scripted reply is (code, text) or an Action, not {step!r}")


class _Script:
    """Replies for one command: one step used every time, or a list used once each, in order.

    When a list is used up, the server's normal behaviour comes back (so ``[(451, ...)]`` is
    "greylist the first attempt").
    """

    __slots__ = ("_queue", "_repeat")

    def __init__(self, spec: object, text: str | None) -> None:
        self._repeat: Step | None = None
        self._queue: collections.deque[Step] = collections.deque()
        if isinstance(spec, int) and not isinstance(spec, bool):
            self._repeat = _check_step((spec, "Scripted reply" if text is None else text))
        elif text is not None:
            raise TypeError("text= goes with a reply code only")
        elif isinstance(spec, Action) or (isinstance(spec, tuple) and spec and isinstance(spec[0], int)):
            self._repeat = _check_step(spec)
        elif isinstance(spec, Iterable) and not isinstance(spec, str | bytes):
            self._queue.extend(_check_step(step) for step in spec)
        else:
            raise TypeError(f"a script is a code, (code, text), an Action or a list of them, not {spec!r}")

    def next(self) -> Step | None:
        if self._repeat is not None:
            return self._repeat
        return self._queue.popleft() if self._queue else None


def _format(reply: Reply) -> str:
    code, text = reply
    lines = text.split("\n") if text else [""]
    out = [f"{code}-{line}" for line in lines[:-1]]
    out.append(f"{code} {lines[-1]}".rstrip())
    return "\r\n".join(out)


def _norm(address: str) -> str:
    """The key an address is scripted and counted under: without angle brackets, case-folded."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address.casefold()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SessionState:
    """The mutable record behind a :class:`SessionRecord`; written in the server thread only."""

    __slots__ = (
        "authenticated_as",
        "closed",
        "commands",
        "ehlo_name",
        "id",
        "peer",
        "replies",
        "tls_version",
        "transactions",
    )

    def __init__(self, session_id: int, peer: tuple[str, int], tls_version: str | None) -> None:
        self.id = session_id
        self.peer = peer
        self.tls_version = tls_version
        self.ehlo_name: str | None = None
        self.authenticated_as: str | None = None
        self.commands: list[str] = []
        self.replies: list[str] = []
        self.transactions = 0
        self.closed = False

    def snapshot(self) -> SessionRecord:
        return SessionRecord(
            id=self.id,
            peer=self.peer,
            ehlo_name=self.ehlo_name,
            tls_version=self.tls_version,
            authenticated_as=self.authenticated_as,
            commands=tuple(self.commands),
            replies=tuple(self.replies),
            transactions=self.transactions,
            closed=self.closed,
        )


# -- the server ------------------------------------------------------------------------------


class LocalMX:
    """An SMTP server on a loopback address that records what it receives and replies as scripted.

    Use it as a context manager (or :meth:`start` / :meth:`stop`). By default it accepts every
    sender, recipient and message with ``250``; script other replies with :meth:`script_greeting`,
    :meth:`script_ehlo`, :meth:`script_mail`, :meth:`script_rcpt` and :meth:`script_data`. Each takes
    a code and text (``script_rcpt(addr, 550, "5.1.1 No such user")``, used every time), a
    ``(code, text)`` tuple or an :class:`Action` (used every time), or a list of those used once
    each, in order, after which the normal behaviour returns (``[(451, "4.7.1 Greylisted")]``).
    A 421 reply closes the connection after it is sent, as RFC 5321 §3.8 says.

    Args:
        host: loopback address to listen on (several servers may share a port on 127.0.0.2, .3, ...).
        port: port to listen on; 0 picks a free one (read :attr:`port`).
        hostname: the name the server gives in its greeting and EHLO reply.
        tls_context: a server-side ``ssl.SSLContext`` (e.g. from trustme); offers STARTTLS.
        require_starttls: refuse MAIL and most commands until STARTTLS (530).
        implicit_tls: speak TLS from the first byte (port 465 style) instead of offering STARTTLS.
        auth: ``(username, password)`` to accept, or a callable ``(mechanism, username, secret) ->
            bool``; offers AUTH PLAIN, LOGIN and XOAUTH2 (whose secret is the bearer token).
        auth_required: refuse MAIL with 530 until the client has authenticated.
        auth_require_tls: offer AUTH only over TLS; defaults to True when ``tls_context`` is given.
        pipelining: advertise PIPELINING (aiosmtpd handles pipelined commands in order).
        extensions: more EHLO keywords to advertise, e.g. ``["ENHANCEDSTATUSCODES"]``.
        max_recipients: answer ``452 4.5.3`` to RCPTs beyond this many in one transaction.
        data_size_limit: advertised SIZE and enforced limit in bytes (None: no SIZE).
        smtputf8: advertise SMTPUTF8.
        timeout: seconds of client silence after which the server closes a connection.
        start_timeout: seconds :meth:`start` and :meth:`stop` may take.

    Raises:
        ImportError: aiosmtpd is not installed (``pip install 'smtprelay[testing]'``).
        ValueError: ``host`` is not a loopback address, or ``implicit_tls`` without ``tls_context``.
    """

    DISCONNECT = Action.DISCONNECT
    HANG = Action.HANG

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        hostname: str = "localmx.test",
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: bool = False,
        auth: tuple[str, str] | AuthCheck | None = None,
        auth_required: bool = False,
        auth_require_tls: bool | None = None,
        pipelining: bool = True,
        extensions: Iterable[str] = (),
        max_recipients: int | None = None,
        data_size_limit: int | None = 32 * 1024 * 1024,
        smtputf8: bool = True,
        timeout: float = 10.0,
        start_timeout: float = 5.0,
    ) -> None:
        self._protocol_class = _protocol_class()  # ImportError here, not in a thread later
        if not _is_loopback(host):
            raise ValueError(f"LocalMX listens on loopback addresses only, not {host!r}")
        if implicit_tls and tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        if auth_required and auth is None:
            raise ValueError("auth_required needs auth")
        self._host = host
        self._port = port
        self._hostname = hostname
        self._tls_context = tls_context
        self._require_starttls = require_starttls
        self._implicit_tls = implicit_tls
        if isinstance(auth, tuple):
            username, password = auth
            self._auth: AuthCheck | None = lambda _m, user, secret: (user, secret) == (username, password)
        else:
            self._auth = auth
        self._auth_required = auth_required
        self._auth_require_tls = tls_context is not None if auth_require_tls is None else auth_require_tls
        self._pipelining = pipelining
        self._extensions = tuple(extensions)
        self._max_recipients = max_recipients
        self._data_size_limit = data_size_limit
        self._smtputf8 = smtputf8
        self._timeout = timeout
        self._start_timeout = start_timeout

        self._cond = threading.Condition()
        self._sessions: list[_SessionState] = []
        self._transactions: list[ReceivedMessage] = []
        self._rcpt_attempts: collections.Counter[str] = collections.Counter()
        self._greeting: _Script | None = None
        self._ehlo: _Script | None = None
        self._mail: dict[str | None, _Script] = {}
        self._rcpt: dict[str, _Script] = {}
        self._data: _Script | None = None

        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._stop_event: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._open: set[Any] = set()  # protocol instances with a live connection (server thread only)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the server listens on (known once started)."""
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``."""
        return (self._host, self._port)

    @property
    def running(self) -> bool:
        """Whether the server thread is running."""
        return self._thread is not None

    def start(self) -> Self:
        """Bind the port and start serving in a background thread.

        Returns:
            The server itself.

        Raises:
            RuntimeError: already running.
            OSError: the address or port could not be bound.
            TimeoutError: the server did not come up within ``start_timeout``.
        """
        if self._thread is not None:
            raise RuntimeError("LocalMX is already running")
        sock = self._listening_socket(self._port)
        self._port = int(sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._startup_error = None
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(sock, ready), name=f"LocalMX {self._host}:{self._port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(self._start_timeout):
            self.stop()
            raise TimeoutError(f"LocalMX did not start within {self._start_timeout} s")
        error = self._take_startup_error()
        if error is not None:
            self.stop()
            raise error
        return self

    def stop(self) -> None:
        """Close the listener and every connection (even mid-session), then join the thread.

        Safe to call twice. After it returns no thread, socket or event loop of this server is left.

        Raises:
            RuntimeError: the server thread did not end within ``start_timeout``.
        """
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already closed itself
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(self._start_timeout)
        if thread.is_alive():
            raise RuntimeError("LocalMX server thread did not stop")
        self._loop = self._server = self._stop_event = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalMX {self._host}:{self._port} {state}, {len(self.messages)} messages>"

    def refuse_connections(self) -> None:
        """Stop listening: new connections are refused (ECONNREFUSED); open sessions go on."""
        self._in_loop(self._close_listener())

    def accept_connections(self) -> None:
        """Listen again on the same address and port after :meth:`refuse_connections`."""
        if self._server is not None:
            return  # already listening
        sock = self._listening_socket(self._port)
        self._in_loop(self._open_listener(sock))

    # -- scripting ---------------------------------------------------------------------------

    def script_greeting(self, reply: int | Step | Sequence[Step], text: str | None = None) -> None:
        """Greet new connections with a 4xx/5xx (or an Action) instead of 220.

        After a 421 (or any 4xx) the server closes the connection; after a 5xx it answers 503 to
        everything but QUIT, as RFC 5321 §3.1 describes.
        """
        script = _Script(reply, text)
        with self._cond:
            self._greeting = script

    def script_ehlo(self, reply: int | Step | Sequence[Step], text: str | None = None) -> None:
        """Reply to EHLO with this instead of the capability list (a 2xx keeps the list)."""
        script = _Script(reply, text)
        with self._cond:
            self._ehlo = script

    def script_mail(
        self, reply: int | Step | Sequence[Step], text: str | None = None, *, sender: str | None = None
    ) -> None:
        """Reply to MAIL FROM (from ``sender`` only, if given; ``""`` is the null sender)."""
        script = _Script(reply, text)
        with self._cond:
            self._mail[None if sender is None else _norm(sender)] = script

    def script_rcpt(self, address: str, reply: int | Step | Sequence[Step], text: str | None = None) -> None:
        """Reply to RCPT TO for ``address`` (compared case-insensitively; ``"*"``: any other address).

        A 2xx accepts the recipient, anything else refuses it.
        """
        script = _Script(reply, text)
        with self._cond:
            self._rcpt["*" if address == "*" else _norm(address)] = script

    def script_data(self, reply: int | Step | Sequence[Step], text: str | None = None) -> None:
        """Reply to the end of data (the final dot); a non-2xx means the message was not taken."""
        script = _Script(reply, text)
        with self._cond:
            self._data = script

    def clear_scripts(self) -> None:
        """Go back to accepting everything."""
        with self._cond:
            self._greeting = self._ehlo = self._data = None
            self._mail.clear()
            self._rcpt.clear()

    def reset(self) -> None:
        """Forget recorded sessions and messages and clear the scripts."""
        self.clear_scripts()
        with self._cond:
            self._sessions.clear()
            self._transactions.clear()
            self._rcpt_attempts.clear()

    # -- what was received -------------------------------------------------------------------

    @property
    def messages(self) -> tuple[ReceivedMessage, ...]:
        """The messages accepted (2xx at the end of data), in order of arrival."""
        with self._cond:
            return tuple(m for m in self._transactions if m.accepted)

    @property
    def transactions(self) -> tuple[ReceivedMessage, ...]:
        """Every transaction that reached the end of data, refused ones included."""
        with self._cond:
            return tuple(self._transactions)

    @property
    def sessions(self) -> tuple[SessionRecord, ...]:
        """Every connection so far, in order (snapshots)."""
        with self._cond:
            return tuple(s.snapshot() for s in self._sessions)

    @property
    def connections(self) -> int:
        """How many connections the server has accepted."""
        with self._cond:
            return len(self._sessions)

    def deliveries_to(self, address: str) -> int:
        """How many copies of accepted messages ``address`` got (case-insensitive)."""
        key = _norm(address)
        with self._cond:
            return sum(
                1 for m in self._transactions if m.accepted for rcpt in m.rcpt_tos if _norm(rcpt) == key
            )

    def rcpt_attempts(self, address: str) -> int:
        """How many times a client sent RCPT TO for ``address``, whatever the reply."""
        with self._cond:
            return self._rcpt_attempts[_norm(address)]

    def wait_for(self, count: int = 1, *, timeout: float = 5.0) -> tuple[ReceivedMessage, ...]:
        """Wait until at least ``count`` messages were accepted, and return all accepted so far.

        Raises:
            TimeoutError: fewer than ``count`` arrived within ``timeout`` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._accepted_count() >= count, timeout):
                raise TimeoutError(
                    f"{self._accepted_count()} of {count} messages arrived at {self._host}:{self._port}"
                    f" within {timeout} s"
                )
            return tuple(m for m in self._transactions if m.accepted)

    def wait_until_idle(self, *, timeout: float = 5.0) -> None:
        """Wait until no client is connected (every session closed).

        Raises:
            TimeoutError: a session is still open after ``timeout`` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: all(s.closed for s in self._sessions), timeout):
                raise TimeoutError(f"a client is still connected to {self._host}:{self._port}")

    # -- internals: running the loop ---------------------------------------------------------

    def _take_startup_error(self) -> BaseException | None:
        error, self._startup_error = self._startup_error, None
        return error

    def _accepted_count(self) -> int:
        return sum(1 for m in self._transactions if m.accepted)

    def _listening_socket(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only when it does, and
        # without it every multi-line reply (EHLO) meets Nagle + delayed ACK: 40 ms per EHLO.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, port))
            sock.listen(64)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main(sock, ready))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _main(self, sock: socket.socket, ready: threading.Event) -> None:
        self._stop_event = asyncio.Event()
        try:
            await self._open_listener(sock)
        except BaseException as err:
            self._startup_error = err
            ready.set()
            return
        ready.set()
        await self._stop_event.wait()
        await self._shutdown()

    async def _open_listener(self, sock: socket.socket) -> None:
        if self._server is not None:
            sock.close()
            return
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self._make_protocol,
                sock=sock,
                ssl=self._tls_context if self._implicit_tls else None,
                ssl_handshake_timeout=self._timeout if self._implicit_tls else None,
            )
        except BaseException:
            sock.close()
            raise

    async def _close_listener(self) -> None:
        # Server.close() stops listening at once; wait_closed() is not awaited here because on
        # Python 3.12+ it waits for every open session to end.
        server, self._server = self._server, None
        if server is not None:
            server.close()

    async def _shutdown(self) -> None:
        server = self._server
        await self._close_listener()
        for protocol in list(self._open):
            protocol.abort_connection()
        current = asyncio.current_task()
        for _ in range(3):  # let connection_lost() run for the aborted transports
            await asyncio.sleep(0)
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def _in_loop(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if self._thread is None or loop is None:
            coro.close()
            raise RuntimeError("LocalMX is not running")
        asyncio.run_coroutine_threadsafe(coro, loop).result(self._start_timeout)

    def _make_protocol(self) -> asyncio.Protocol:
        loop = self._loop
        assert loop is not None
        protocol: asyncio.Protocol = self._protocol_class(
            self,
            _Handler(self),
            hostname=self._hostname,
            tls_context=None if self._implicit_tls else self._tls_context,
            require_starttls=self._require_starttls and not self._implicit_tls,
            timeout=self._timeout,
            data_size_limit=self._data_size_limit,
            enable_SMTPUTF8=self._smtputf8,
            # AUTH is enforced by the MAIL hook, not by aiosmtpd's auth_required: that one warns
            # (UserWarning) when combined with auth_require_tls=False, which pytest turns into errors.
            auth_required=False,
            auth_require_tls=self._auth_require_tls,
            authenticator=_make_authenticator(self),
            loop=loop,
        )
        return protocol

    # -- internals: called from the server thread --------------------------------------------

    def _session_opened(self, protocol: Any, peer: tuple[str, int], tls_version: str | None) -> _SessionState:
        with self._cond:
            state = _SessionState(len(self._sessions) + 1, peer, tls_version)
            self._sessions.append(state)
            self._open.add(protocol)
            self._cond.notify_all()
            return state

    def _session_closed(self, protocol: Any, state: _SessionState | None) -> None:
        with self._cond:
            self._open.discard(protocol)
            if state is not None:
                state.closed = True
            self._cond.notify_all()

    def _next_step(self, kind: str, key: str | None = None) -> Step | None:
        """The scripted step for a command (consuming it), or None for the normal behaviour."""
        with self._cond:
            if kind == "greeting":
                script = self._greeting
            elif kind == "ehlo":
                script = self._ehlo
            elif kind == "data":
                script = self._data
            elif kind == "mail":
                script = self._mail.get(key) or self._mail.get(None)
            else:
                script = self._rcpt.get(key or "") or self._rcpt.get("*")
            return None if script is None else script.next()

    def _count_rcpt(self, key: str) -> None:
        with self._cond:
            self._rcpt_attempts[key] += 1

    def _record(self, message: ReceivedMessage) -> None:
        with self._cond:
            self._transactions.append(message)
            self._cond.notify_all()


# -- aiosmtpd glue ---------------------------------------------------------------------------


async def _forever() -> NoReturn:
    """Wait until cancelled: by connection_lost() when the connection goes, or by stop()."""
    await asyncio.get_running_loop().create_future()
    raise AssertionError("a future nobody resolves was resolved")


async def _perform(server: Any, action: Action) -> NoReturn:
    if action is Action.DISCONNECT:
        if server.transport is not None:
            server.transport.close()
    elif server._timeout_handle is not None:  # HANG: no idle timeout either, the client must give up
        server._timeout_handle.cancel()
    await _forever()


def _tls_version(transport: asyncio.BaseTransport | None) -> str | None:
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    return ssl_object.version() if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket) else None


def _check_credentials(mx: LocalMX, server: Any, mechanism: str, user: bytes, secret: bytes) -> Any:
    from aiosmtpd.smtp import AuthResult  # noqa: PLC0415 - aiosmtpd is an optional dependency

    username = user.decode("utf-8", "surrogateescape")
    if mx._auth is None or not mx._auth(mechanism, username, secret.decode("utf-8", "surrogateescape")):
        return AuthResult(success=False, handled=False)  # aiosmtpd replies 535 5.7.8
    if server.record is not None:
        server.record.authenticated_as = username
    return AuthResult(success=True, auth_data=username)


def _make_authenticator(mx: LocalMX) -> Callable[..., Any]:
    """The ``authenticator=`` aiosmtpd calls for its built-in PLAIN and LOGIN mechanisms."""
    from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: PLC0415 - optional dependency

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        return _check_credentials(mx, server, mechanism, auth_data.login, auth_data.password)

    return authenticator


class _Handler:
    """aiosmtpd hooks. No attribute may start with ``auth_`` unless it is an AUTH mechanism:
    aiosmtpd collects those from the handler by name."""

    def __init__(self, mx: LocalMX) -> None:
        self._mx = mx

    async def handle_HELO(self, server: Any, session: Any, envelope: Any, hostname: str) -> str:
        step = self._mx._next_step("ehlo")
        if isinstance(step, Action):
            await _perform(server, step)
        if step is not None and not 200 <= step[0] < 300:
            return _format(step)
        session.host_name = hostname  # with a hook, aiosmtpd leaves this to us
        server.record.ehlo_name = hostname
        return f"250 {server.hostname}"

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        mx = self._mx
        step = mx._next_step("ehlo")
        if isinstance(step, Action):
            await _perform(server, step)
        if step is not None and not 200 <= step[0] < 300:
            return [_format(step)]
        session.host_name = hostname  # with a hook, aiosmtpd leaves this to us
        server.record.ehlo_name = hostname
        lines = [line[4:] for line in responses]  # "250-SIZE 123" -> "SIZE 123"
        greeting, keywords = lines[0], lines[1:]
        if mx._auth is None:
            keywords = [k for k in keywords if not k.startswith("AUTH")]
        if mx._pipelining:
            keywords.insert(0, "PIPELINING")
        keywords.extend(mx._extensions)
        if mx._max_recipients is not None and not any(k.startswith("LIMITS") for k in keywords):
            keywords.append(f"LIMITS RCPTMAX={mx._max_recipients}")
        everything = [greeting, *keywords]
        return [f"250-{line}" for line in everything[:-1]] + [f"250 {everything[-1]}"]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        mx = self._mx
        if mx._auth_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        sender = "" if address == "<>" else address
        step = mx._next_step("mail", _norm(sender))
        if isinstance(step, Action):
            await _perform(server, step)
        if step is not None and not 200 <= step[0] < 300:
            return _format(step)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK" if step is None else _format(step)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        mx = self._mx
        key = _norm(address)
        mx._count_rcpt(key)
        if mx._max_recipients is not None and len(envelope.rcpt_tos) >= mx._max_recipients:
            return "452 4.5.3 Too many recipients"
        step = mx._next_step("rcpt", key)
        if isinstance(step, Action):
            await _perform(server, step)
        if step is not None and not 200 <= step[0] < 300:
            return _format(step)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK" if step is None else _format(step)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mx = self._mx
        step = mx._next_step("data")
        reply: Reply | None
        if step is None:
            reply = (250, "OK")
        elif isinstance(step, Action):
            reply = None  # recorded as received, with no reply: the outcome is unknown to the client
        else:
            reply = step
        record: _SessionState = server.record
        record.transactions += 1
        mx._record(
            ReceivedMessage(
                mail_from="" if envelope.mail_from == "<>" else envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=bytes(envelope.original_content),
                mail_options=tuple(envelope.mail_options),
                rcpt_options=tuple(envelope.rcpt_options),
                session_id=record.id,
                transaction=record.transactions,
                ehlo_name=record.ehlo_name,
                tls_version=record.tls_version,
                authenticated_as=record.authenticated_as,
                peer=record.peer,
                server=mx.address,
                reply=reply,
            )
        )
        if isinstance(step, Action):
            await _perform(server, step)
        assert reply is not None
        return _format(reply)

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:
        """AUTH XOAUTH2 (RFC 7628 style, as Google and Microsoft use it); the bearer token is the secret."""
        from aiosmtpd.smtp import MISSING, AuthResult  # noqa: PLC0415 - optional dependency

        if len(args) > 1:
            try:
                decoded = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            response = await server.challenge_auth("", encode_to_b64=False)
            if response is MISSING:  # challenge_auth() has replied already
                return AuthResult(success=False, handled=True)
            decoded = response
        # "user=" user ^A "auth=Bearer " token ^A ^A
        fields = dict(part.split(b"=", 1) for part in decoded.split(b"\x01") if b"=" in part)
        bearer = fields.get(b"auth", b"")
        token = bearer[len(b"Bearer ") :] if bearer.startswith(b"Bearer ") else b""
        return _check_credentials(self._mx, server, "XOAUTH2", fields.get(b"user", b""), token)


@functools.cache
def _protocol_class() -> Callable[..., asyncio.Protocol]:
    """aiosmtpd's SMTP protocol with session recording, scripted greetings and a clean abort."""
    try:
        from aiosmtpd.smtp import SMTP, Session  # noqa: PLC0415 - optional: DNSZone works without it
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err

    class _Session(Session):
        # aiosmtpd's login_data property logs a deprecation warning on every successful AUTH.
        login_data = None

    class _RecordingSMTP(SMTP):
        def __init__(self, mx: LocalMX, handler: _Handler, **kwargs: Any) -> None:
            # aiosmtpd keeps command_size_limits on the class, shared by every connection of every
            # server in the process (each EHLO raises the MAIL limit, each new connection resets
            # it); an instance dict keeps sessions independent.
            self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
            super().__init__(handler, **kwargs)
            self.mx = mx
            self.record: _SessionState | None = None
            for verb, method in list(self._smtp_methods.items()):
                self._smtp_methods[verb] = self._logged(verb, method)

        def _logged(self, verb: str, method: Callable[[str | None], Any]) -> Callable[[str | None], Any]:
            @functools.wraps(method)  # keeps aiosmtpd's __smtp_syntax__ attributes for HELP
            async def logged(arg: str | None) -> None:
                if self.record is not None:
                    shown = arg.split()[0] + " ********" if verb == "AUTH" and arg else arg
                    self.record.commands.append(verb if shown is None else f"{verb} {shown}")
                await method(arg)

            return logged

        def _create_session(self) -> Any:
            return _Session(self.loop)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            first = self._original_transport is None  # STARTTLS calls this again for the TLS layer
            super().connection_made(transport)
            if first:
                peer = transport.get_extra_info("peername") or ("", 0)
                self.record = self.mx._session_opened(self, (peer[0], peer[1]), _tls_version(transport))
            elif self.record is not None:
                self.record.tls_version = _tls_version(transport)

        def connection_lost(self, error: Exception | None) -> None:
            try:
                super().connection_lost(error)
            finally:
                self.mx._session_closed(self, self.record)

        def abort_connection(self) -> None:
            for transport in (self.transport, self._original_transport):
                if isinstance(transport, asyncio.Transport):
                    transport.abort()

        async def push(self, status: Any) -> None:
            text = status if isinstance(status, str) else bytes(status).decode("utf-8", "replace")
            if self.record is not None:
                self.record.replies.append(text)
            await super().push(status)
            if text.rsplit("\r\n", 1)[-1].startswith("421") and self.transport is not None:
                self.transport.close()  # RFC 5321 §3.8: 421 closes the channel

        async def _handle_client(self) -> None:
            step = self.mx._next_step("greeting")
            if step is None or (isinstance(step, tuple) and 200 <= step[0] < 300):
                await super()._handle_client()
                return
            if isinstance(step, Action):
                await _perform(self, step)
            await self.push(_format(step))
            if step[0] < 500:
                if self.transport is not None:
                    self.transport.close()
                return
            # RFC 5321 §3.1: after a 554 greeting, wait for QUIT and answer 503 to anything else.
            while self.transport is not None:
                try:
                    line = await self._reader.readuntil()
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    break
                command = line.strip().decode("ascii", "replace")
                if self.record is not None:
                    self.record.commands.append(command)
                if command.upper() == "QUIT":
                    await self.push("221 2.0.0 Bye")
                    break
                await self.push("503 5.5.1 No service")
            if self.transport is not None:
                self.transport.close()

    return _RecordingSMTP
