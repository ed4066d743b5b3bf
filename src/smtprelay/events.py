"""Events the Relay reports to an ``on_event`` callable while it delivers.

Each event is a small frozen value naming the message (``message_id``) and what happened. They are
meant for logging, metrics and durable queues: a queue that records :class:`DataSent` knows which
recipients may already have the message if the process dies before the reply arrives.

``kind`` is a short string for switch-like handling: ``"attempt"``, ``"connected"``, ``"tls"``,
``"data_sent"``, ``"reply"``, ``"outcome"``. A callback that raises is logged and ignored: it can
never change the outcome of a delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._results import RecipientResult

__all__ = [
    "Event",
    "Attempt",
    "Connected",
    "ConnectFailed",
    "TLSStarted",
    "DataSent",
    "ReplyReceived",
    "Outcome",
]


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event."""

    kind: ClassVar[str] = "event"
    message_id: str


@dataclass(frozen=True, slots=True)
class Attempt(Event):
    """An attempt starts for these recipients (``attempt`` counts from 1)."""

    kind: ClassVar[str] = "attempt"
    attempt: int
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """A session is open to ``host`` at ``address``:``port``."""

    kind: ClassVar[str] = "connected"
    host: str
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class ConnectFailed(Event):
    """Opening a session to ``host`` at ``address`` failed; the next address or host is tried."""

    kind: ClassVar[str] = "connect_failed"
    host: str
    address: str
    port: int
    error: str


@dataclass(frozen=True, slots=True)
class TLSStarted(Event):
    """The session to ``host`` is encrypted with ``version``/``cipher``."""

    kind: ClassVar[str] = "tls"
    host: str
    version: str
    cipher: str | None


@dataclass(frozen=True, slots=True)
class DataSent(Event):
    """The end of the message data was written to ``host`` for these recipients; the reply is pending."""

    kind: ClassVar[str] = "data_sent"
    host: str
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReplyReceived(Event):
    """``host`` answered for these recipients (the reply that settled them in this attempt)."""

    kind: ClassVar[str] = "reply"
    host: str
    code: int
    enhanced_status: str | None
    text: str
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Outcome(Event):
    """The final result for one recipient of this ``send``."""

    kind: ClassVar[str] = "outcome"
    result: RecipientResult
