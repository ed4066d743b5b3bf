"""Exceptions raised by smtprelay.

One base, :class:`SMTPRelayError`, and families that also inherit the built-in exception a caller
would naturally catch (``ValueError`` for bad input, ``TimeoutError``, ``ConnectionError``).
Every exception knows whether retrying later could help (:attr:`SMTPRelayError.transient`);
that is a fact the raiser states, never a guess made by the catcher.

Errors raised while talking to a server carry where it happened: ``phase`` (a
:class:`~smtprelay.Phase`), ``host`` and ``data_sent`` (True once the end of the message data was
written, so the outcome is unknown and the message may already have been delivered).

Messages never contain credentials: AUTH payloads are never formatted into an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ._protocol._phase import Phase
    from ._report import DeliveryReport
    from ._results import RecipientResult

__all__ = [
    "SMTPRelayError",
    "AddressError",
    "MessageError",
    "ProtocolError",
    "LocalProtocolError",
    "SMTPTimeout",
    "ConnectionFailed",
    "TLSError",
    "AuthenticationError",
    "ReplyError",
    "DeliveryError",
]


class SMTPRelayError(Exception):
    """Base class of every exception smtprelay raises on purpose."""

    _transient: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        phase: Phase | None = None,
        host: str | None = None,
        data_sent: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.phase = phase
        self.host = host
        self.data_sent = data_sent
        #: Recipients whose outcome was settled before the failure (set by ``Transport.send``).
        self.results: tuple[RecipientResult, ...] = ()

    @property
    def transient(self) -> bool:
        """Whether the same operation may succeed later (a 4xx, a timeout, a dropped connection)."""
        return self._transient

    def __str__(self) -> str:
        where = []
        if self.host:
            where.append(f"host {self.host}")
        if self.phase is not None:
            where.append(f"during {self.phase.value}")
        if self.data_sent:
            where.append("after the end of data was sent")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class AddressError(SMTPRelayError, ValueError):
    """An email address is malformed or unsafe. Raised before any I/O.

    ``field`` names where the address came from (``"to"``, ``"sender"``, ``"envelope_from"``, ...),
    ``address`` is the offending input (with control characters escaped by ``repr`` when shown).
    """

    def __init__(self, message: str, *, field: str | None = None, address: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.address = address


class MessageError(SMTPRelayError, ValueError):
    """A message cannot be built or sent as given (bad header, no recipients, ...). Raised before any I/O."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProtocolError(SMTPRelayError):
    """The server broke the SMTP protocol (malformed, oversized or unexpected reply).

    The connection it happened on is unusable and is closed. Transient: another server, or the
    same one later, may behave (RFC 5321 gives a client no reason to bounce mail over a garbled reply).
    """

    _transient = True


class LocalProtocolError(SMTPRelayError, RuntimeError):
    """The caller drove the protocol core in a way SMTP does not allow (a bug in the caller).

    Raised by the sans-I/O session when a command is illegal in its current state; the session
    then refuses every further command.
    """


class SMTPTimeout(SMTPRelayError, TimeoutError):
    """A phase of the session did not complete within its deadline. The connection is closed."""

    _transient = True


class ConnectionFailed(SMTPRelayError, ConnectionError):
    """The connection could not be opened, or was closed or reset by the peer."""

    _transient = True


class TLSError(SMTPRelayError):
    """TLS could not be established as the policy demands (STARTTLS missing or refused, handshake or
    certificate verification failure). No mail transaction is attempted on that connection."""

    _transient = True


class AuthenticationError(SMTPRelayError):
    """AUTH failed or could not be attempted. ``code`` is the server's reply code when there was one.

    A 454 (temporary authentication failure) is transient; 535 and friends are not.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        enhanced_status: str | None = None,
        phase: Phase | None = None,
        host: str | None = None,
    ) -> None:
        super().__init__(message, phase=phase, host=host)
        self.code = code
        self.enhanced_status = enhanced_status

    @property
    def transient(self) -> bool:
        return self.code is not None and 400 <= self.code < 500


class ReplyError(SMTPRelayError):
    """The server answered with a negative reply where the caller needed a positive one."""

    def __init__(
        self,
        message: str,
        *,
        code: int,
        enhanced_status: str | None = None,
        text: str = "",
        host: str | None = None,
        phase: Phase | None = None,
        data_sent: bool = False,
    ) -> None:
        super().__init__(message, phase=phase, host=host, data_sent=data_sent)
        self.code = code
        self.enhanced_status = enhanced_status
        self.text = text

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500


class DeliveryError(SMTPRelayError):
    """Raised by ``DeliveryReport.raise_for_status()`` when not every recipient was delivered.

    ``report`` is the :class:`~smtprelay.DeliveryReport`; transient when nothing bounced.
    """

    def __init__(self, report: DeliveryReport, message: str) -> None:
        super().__init__(message)
        self.report = report

    @property
    def transient(self) -> bool:
        """True when nothing bounced: every failure was a deferral that may succeed later."""
        return not self.report.bounced
