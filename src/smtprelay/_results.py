"""Per-recipient outcomes, shared by Transport, Relay and Outbox."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Status", "RecipientResult"]


class Status(enum.StrEnum):
    """What finally happened to one recipient."""

    #: The receiving server accepted responsibility for the message (2xx to the end of data).
    DELIVERED = "delivered"
    #: Permanent failure: a 5xx reply, a null MX, a non-existent domain. Retrying will not help.
    BOUNCED = "bounced"
    #: Transient failure and no retry left (4xx, timeout, connection or DNS trouble).
    DEFERRED = "deferred"


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """The outcome for one envelope recipient.

    Attributes:
        recipient: the bare address, e.g. ``"bob@example.org"``.
        status: DELIVERED, BOUNCED or DEFERRED.
        code: the SMTP reply code that settled it, or None when no reply did (DNS, I/O failure).
        enhanced_status: the RFC 3463 status (``"5.1.1"``) when known.
        text: the server's reply text, or a description of the error.
        host: the MX or smarthost host used (its IP when there was no name), or None.
        tls: the TLS version of the session (``"TLSv1.3"``) or None for plaintext / no session.
        attempts: how many attempts were made for this recipient.
        possibly_delivered: True when the outcome is unknown because the connection failed after
            the end of data was sent (the recipient may receive a duplicate on retry).
    """

    recipient: str
    status: Status
    code: int | None = None
    enhanced_status: str | None = None
    text: str = ""
    host: str | None = None
    tls: str | None = None
    attempts: int = 1
    possibly_delivered: bool = False

    @property
    def ok(self) -> bool:
        """True when the recipient was delivered."""
        return self.status is Status.DELIVERED

    def __str__(self) -> str:
        detail = " ".join(str(part) for part in (self.code, self.enhanced_status, self.text) if part)
        via = f" via {self.host}" if self.host else ""
        maybe = " (possibly delivered)" if self.possibly_delivered else ""
        return f"{self.recipient}: {self.status.value}{via}{maybe}" + (f" - {detail}" if detail else "")
