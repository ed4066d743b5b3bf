"""DeliveryReport: what happened to every recipient of one message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import DeliveryError
from ._results import RecipientResult, Status

if TYPE_CHECKING:
    from ._message import Message

__all__ = ["DeliveryReport"]


@dataclass(frozen=True, slots=True, eq=False)
class DeliveryReport:
    """The outcome of ``Relay.send`` for one message: one :class:`RecipientResult` per recipient.

    ``ok`` is True when every recipient was delivered. ``raise_for_status()`` turns anything else
    into a :class:`DeliveryError`. ``str(report)`` is a summary line followed by one line per
    recipient, for people; the attributes are for programs.
    """

    message: Message
    results: tuple[RecipientResult, ...]

    @property
    def message_id(self) -> str:
        return self.message.message_id

    @property
    def ok(self) -> bool:
        """Every recipient was delivered."""
        return all(r.status is Status.DELIVERED for r in self.results)

    def _with(self, status: Status) -> tuple[RecipientResult, ...]:
        return tuple(r for r in self.results if r.status is status)

    @property
    def delivered(self) -> tuple[RecipientResult, ...]:
        return self._with(Status.DELIVERED)

    @property
    def bounced(self) -> tuple[RecipientResult, ...]:
        return self._with(Status.BOUNCED)

    @property
    def deferred(self) -> tuple[RecipientResult, ...]:
        return self._with(Status.DEFERRED)

    @property
    def possibly_delivered(self) -> tuple[RecipientResult, ...]:
        """Recipients whose outcome is unknown: the connection failed after the end of data was sent."""
        return tuple(r for r in self.results if r.possibly_delivered)

    def result_for(self, recipient: str) -> RecipientResult:
        """The result for one recipient (bare address, compared case-insensitively on the domain)."""
        local, _, domain = recipient.rpartition("@")
        for result in self.results:
            r_local, _, r_domain = result.recipient.rpartition("@")
            if r_local == local and r_domain.lower() == domain.lower():
                return result
        raise KeyError(recipient)

    def raise_for_status(self) -> None:
        """Raise :class:`DeliveryError` unless every recipient was delivered."""
        if not self.ok:
            raise DeliveryError(self, self.summary())

    def summary(self) -> str:
        counts = ", ".join(f"{len(self._with(s))} {s.value}" for s in Status)
        return f"message {self.message_id}: {counts}"

    def __str__(self) -> str:
        return "\n".join([self.summary(), *(f"  {r}" for r in self.results)])

    def __repr__(self) -> str:
        counts = " ".join(f"{s.value}={len(self._with(s))}" for s in Status)
        return f"<DeliveryReport {self.message_id} {counts}>"
