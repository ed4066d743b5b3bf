"""One mail transaction (MAIL, RCPT..., DATA or BDAT) as a pure decision object.

The driver loop around it is the same for every I/O style::

    tx = MailTransaction(session, envelope, content)
    out = tx.start()
    while True:
        if out:
            write(out)
        if tx.done:
            break
        event = session.next_event()
        if event is NEED_DATA:
            session.receive_data(read())
        elif event is CLOSED:
            ... tx.settled tells whether the outcome is known; tx.data_sent whether it may be delivered
        else:
            out = tx.receive(event)

Strategy (RFC 5321 §3.3, RFC 2920, RFC 3030):
- Before any byte: the needs of the message are checked against the server's extensions. A message
  over the announced SIZE, or one needing SMTPUTF8 or 8BITMIME the server lacks, is settled at once
  with a permanent result and nothing is sent (Postfix: 5.3.4, 5.6.7, 5.6.3).
- With PIPELINING the envelope goes out as one group: [RSET] MAIL, every RCPT, then DATA (which ends
  the group) or, with CHUNKING and a small message, BDAT LAST carrying the whole message: one round
  trip. Without PIPELINING commands go one at a time, and the transaction stops as soon as the
  outcome is settled (no RCPT after a refused MAIL, no DATA when every RCPT was refused).
- A refused MAIL settles every recipient with its reply; a refused RCPT settles only its recipient.
  If every RCPT was refused no content is sent: a pipelined DATA that nevertheless got 354 is ended
  with the empty body terminator (RFC 2920 §3.1). The reply to the end of data settles every
  accepted recipient. 421 settles everything still open with that 421.
- "Too many recipients" (452 4.5.3, or LIMITS RCPTMAX) is not a failure: those recipients go to
  ``overflow`` for a new transaction right after this one (RFC 5321 §4.5.3.1.10).
- The transaction is done only when every reply it asked for has been paired, so the session is in
  step for the next one; if the server's transaction is left open (all RCPT refused, DATA
  refused), the next transaction starts with a pipelined RSET.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .._errors import LocalProtocolError
from .._results import RecipientResult, Status
from ._commands import Bdat, Command, Data, DSNRequest, Mail, MessageData, Rcpt, Rset
from ._data import bdat_chunks, encode_data, normalize_line_endings
from ._reply import Reply
from ._state import ClientSession, Response, State

__all__ = ["Envelope", "MailTransaction", "result_for"]

#: Messages up to this size are sent with BDAT LAST in the same pipelined group as the envelope
#: (one round trip). If every recipient is then refused the server discards the chunk (RFC 3030 §2),
#: so at most this many bytes are sent for nothing. Larger messages wait for the RCPT replies.
BDAT_PIPELINE_LIMIT = 64 * 1024
#: BDAT chunk size for large messages.
BDAT_CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who a message is from and for, and what the content needs from the server.

    Attributes:
        sender: bare reverse-path ("" for the null sender).
        recipients: bare forward-paths, in order, without duplicates.
        smtputf8: the envelope or the headers contain UTF-8 (RFC 6531).
        eight_bit: the content contains octets over 127 (needs 8BITMIME, RFC 6152).
        dsn: DSN parameters, sent only if the server advertises DSN.
    """

    sender: str
    recipients: tuple[str, ...]
    smtputf8: bool = False
    eight_bit: bool = False
    dsn: DSNRequest | None = None

    def __post_init__(self) -> None:
        if not self.recipients:
            raise ValueError("an envelope needs at least one recipient")
        if len(set(self.recipients)) != len(self.recipients):
            raise ValueError("envelope recipients must not repeat")


def result_for(recipient: str, reply: Reply) -> RecipientResult:
    """The outcome a reply gives a recipient: 2xx delivered, 5xx bounced, anything else deferred."""
    if reply.is_positive:
        status = Status.DELIVERED
    elif reply.is_permanent:
        status = Status.BOUNCED
    else:
        status = Status.DEFERRED
    return RecipientResult(recipient, status, reply.code, reply.enhanced_status, reply.text)


def _local_failure(recipient: str, enhanced: str, text: str) -> RecipientResult:
    status = Status.BOUNCED if enhanced.startswith("5") else Status.DEFERRED
    return RecipientResult(recipient, status, None, enhanced, text)


def _too_many_recipients(reply: Reply) -> bool:
    """452 4.5.3 / 552 5.5.3, or the same codes without enhanced status saying so in words."""
    if reply.code not in (452, 552):
        return False
    if reply.enhanced_status is not None:
        return reply.enhanced_status in ("4.5.3", "5.5.3")
    return "too many recipients" in reply.text.lower()


class MailTransaction:
    """Drives one transaction on a :class:`ClientSession` that has completed EHLO (or HELO).

    Args:
        session: the session; must be READY, or MAIL/BDAT left over from a failed transaction.
        envelope: sender, recipients and content needs.
        content: the message, as ``Message.as_bytes()`` gives it (line endings are normalised anyway).
        bdat_pipeline_limit: largest message sent with BDAT in the envelope's pipelined group.
        bdat_chunk_size: chunk size for larger messages over BDAT.
    """

    __slots__ = (
        "_accepted",
        "_chunking",
        "_content",
        "_data_command_queued",
        "_data_ignored",
        "_envelope",
        "_queue",
        "_results",
        "_session",
        "_unanswered",
        "bdat_chunk_size",
        "bdat_pipeline_limit",
        "data_sent",
        "mail_refusal",
        "overflow",
    )

    def __init__(
        self,
        session: ClientSession,
        envelope: Envelope,
        content: bytes,
        *,
        bdat_pipeline_limit: int = BDAT_PIPELINE_LIMIT,
        bdat_chunk_size: int = BDAT_CHUNK_SIZE,
    ) -> None:
        if session.state not in (State.READY, State.MAIL, State.BDAT) or session.pending:
            raise LocalProtocolError(f"a mail transaction cannot start in state {session.state.name}")
        self._session = session
        self._envelope = envelope
        self._content = content
        self.bdat_pipeline_limit = bdat_pipeline_limit
        self.bdat_chunk_size = bdat_chunk_size
        self._chunking = session.capabilities.chunking
        self._queue: deque[Command] = deque()
        self._results: dict[str, RecipientResult] = {}
        self._accepted: list[str] = []
        self._unanswered = 0  # commands of this transaction sent and not yet answered
        self._data_command_queued = False
        self._data_ignored = False  # content sent only to close a DATA nobody is accepted for
        #: Recipients refused for "too many recipients": send them in a new transaction now.
        self.overflow: tuple[str, ...] = ()
        #: True once the end of the content (".CRLF" or BDAT LAST) has been handed to the driver.
        self.data_sent = False
        #: The reply that refused MAIL (or a 421 before any RCPT was answered), if that happened:
        #: a relay may try another server, since no recipient was judged.
        self.mail_refusal: Reply | None = None

    # -- results -------------------------------------------------------------------------------
    @property
    def settled(self) -> bool:
        """Every recipient has an outcome or is in ``overflow``."""
        return len(self._results) + len(self.overflow) == len(self._envelope.recipients)

    @property
    def done(self) -> bool:
        """Settled and every reply this transaction asked for has been received."""
        return self.settled and (self._unanswered == 0 or not self._session.usable)

    @property
    def results(self) -> tuple[RecipientResult, ...]:
        """Outcomes so far, in envelope order (overflow recipients are not included)."""
        return tuple(self._results[r] for r in self._envelope.recipients if r in self._results)

    @property
    def accepted(self) -> tuple[str, ...]:
        """Recipients whose RCPT was accepted and whose outcome awaits the end of data."""
        return tuple(r for r in self._accepted if r not in self._results)

    @property
    def in_flight(self) -> tuple[str, ...]:
        """Recipients this transaction may still deliver to: accepted, or not yet answered."""
        return tuple(
            r for r in self._envelope.recipients if r not in self._results and r not in self.overflow
        )

    # -- driving -------------------------------------------------------------------------------
    def start(self) -> bytes:
        """Check the message against the server's extensions and return the first bytes to send."""
        caps = self._session.capabilities
        envelope = self._envelope
        problem = None
        if envelope.smtputf8 and not caps.smtputf8:
            problem = ("5.6.7", "SMTPUTF8 is required, but was not offered by the server")
        elif envelope.eight_bit and not caps.eight_bit_mime:
            problem = ("5.6.3", "the message has 8-bit content and the server does not offer 8BITMIME")
        elif caps.max_size is not None and len(self._content) > caps.max_size:
            problem = (
                "5.3.4",
                f"message size {len(self._content)} exceeds the size limit {caps.max_size} of the server",
            )
        if problem is not None:
            for recipient in envelope.recipients:
                self._results[recipient] = _local_failure(recipient, *problem)
            return b""

        recipients = envelope.recipients
        if caps.rcpt_max is not None and len(recipients) > caps.rcpt_max:
            self.overflow = recipients[caps.rcpt_max :]
            recipients = recipients[: caps.rcpt_max]
        if self._session.state is not State.READY:
            self._queue.append(Rset())
        self._queue.append(
            Mail.for_server(
                envelope.sender,
                caps,
                size=len(self._content),
                eight_bit=envelope.eight_bit,
                smtputf8=envelope.smtputf8,
                dsn=envelope.dsn,
            )
        )
        for recipient in recipients:
            self._queue.append(Rcpt.for_server(recipient, caps, smtputf8=envelope.smtputf8, dsn=envelope.dsn))
        # With PIPELINING the data command joins the envelope's group (BDAT only for small messages).
        if self._session.pipelining and (
            not self._chunking or len(self._content) <= self.bdat_pipeline_limit
        ):
            self._queue_data_command()
        return self._flush()

    def receive(self, response: Response) -> bytes:
        """Take the next reply of the session and return the bytes to send next (possibly none)."""
        command, reply = response.command, response.reply
        self._unanswered -= 1
        if reply.is_closing:
            if isinstance(command, Mail | Rset):
                self.mail_refusal = reply
            self._settle_open(reply)
            self._queue.clear()
            return b""
        match command:
            case Rset():
                pass  # its outcome shows in the MAIL reply that follows
            case Mail():
                if not reply.is_positive:
                    self.mail_refusal = reply
                    self._settle_open(reply)
                    self._queue.clear()
            case Rcpt(recipient=recipient):
                self._on_rcpt(recipient, reply)
            case Data():
                if reply.code == 354:
                    if self._accepted:
                        self._queue.append(MessageData(encode_data(self._content)))
                    else:
                        self._data_ignored = True
                        self._queue.append(MessageData(encode_data(b"")))
                elif self._accepted:
                    self._settle_accepted(reply)
            case MessageData():
                if not self._data_ignored:
                    self._settle_accepted(reply)
            case Bdat(last=last):
                if not self._accepted:
                    pass  # every recipient was refused; the server discarded the chunk
                elif not reply.is_positive:
                    self._settle_accepted(reply)
                    self._queue.clear()
                elif last:
                    self._settle_accepted(reply)
            case _:
                raise LocalProtocolError(f"reply to a command the transaction did not send: {command!r}")
        return self._flush()

    # -- internals -----------------------------------------------------------------------------
    def _on_rcpt(self, recipient: str, reply: Reply) -> None:
        if reply.is_positive:
            self._accepted.append(recipient)
        elif self._results.get(recipient) is None and _too_many_recipients(reply):
            self.overflow = (*self.overflow, recipient)
        else:
            self._results.setdefault(recipient, result_for(recipient, reply))
        if self._rcpts_answered() and not self._data_command_queued:
            if self._accepted:
                self._queue_data_command()
            else:
                self._queue.clear()

    def _rcpts_answered(self) -> bool:
        return len(self._accepted) + len(self._results) + len(self.overflow) >= len(self._envelope.recipients)

    def _queue_data_command(self) -> None:
        self._data_command_queued = True
        if not self._chunking:
            self._queue.append(Data())
            return
        content = normalize_line_endings(self._content)
        for chunk, last in bdat_chunks(content, self.bdat_chunk_size):
            self._queue.append(Bdat(chunk, last))

    def _settle_accepted(self, reply: Reply) -> None:
        for recipient in self._accepted:
            self._results.setdefault(recipient, result_for(recipient, reply))

    def _settle_open(self, reply: Reply) -> None:
        """Settle every recipient without an outcome, overflow included (a refused MAIL or a 421
        would meet the next transaction too)."""
        for recipient in self._envelope.recipients:
            self._results.setdefault(recipient, result_for(recipient, reply))
        self.overflow = ()

    def _flush(self) -> bytes:
        """Hand the session every queued command it accepts now (one, or a pipelined group)."""
        out = []
        session = self._session
        while self._queue and session.can_send(self._queue[0]):
            command = self._queue.popleft()
            out.append(session.send(command))
            self._unanswered += 1
            if isinstance(command, MessageData) or (isinstance(command, Bdat) and command.last):
                self.data_sent = self.data_sent or not self._data_ignored
        return b"".join(out)

    def __repr__(self) -> str:
        return (
            f"<MailTransaction recipients={len(self._envelope.recipients)} settled={len(self._results)}"
            f" accepted={len(self._accepted)} overflow={len(self.overflow)} data_sent={self.data_sent}>"
        )
