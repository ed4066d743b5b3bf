"""Policies as immutable values: TLS, timeouts.

Defaults follow Postfix unless a reason is named (DESIGN.md: Postfix is the reference MTA).
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, fields, replace

from ._protocol._phase import Phase

__all__ = ["TLSPolicy", "Timeouts", "RetryPolicy", "PoolLimits"]


class TLSPolicy(enum.StrEnum):
    """How a session uses TLS (Postfix's smtp_tls_security_level, by other names).

    =============== ================================ ============================= =====================
    policy          STARTTLS                         certificate                   if TLS is impossible
    =============== ================================ ============================= =====================
    ``none``        never                            -                             plaintext
    ``opportunistic`` when offered                   not verified                  plaintext (one retry)
    ``required``    must succeed                     not verified                  fail, nothing sent
    ``verify``      must succeed                     verified against the host name fail, nothing sent
    =============== ================================ ============================= =====================
    """

    NONE = "none"
    OPPORTUNISTIC = "opportunistic"
    REQUIRED = "required"
    VERIFY = "verify"

    @property
    def enforced(self) -> bool:
        """True when the session must not continue without TLS."""
        return self in (TLSPolicy.REQUIRED, TLSPolicy.VERIFY)

    @classmethod
    def parse(cls, value: TLSPolicy | str) -> TLSPolicy:
        """Accept a TLSPolicy or its value; anything else raises ValueError naming the choices."""
        if isinstance(value, TLSPolicy):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise ValueError(f"tls must be one of {choices}, not {value!r}") from None


#: RFC 5321 §4.5.3.2.6: at least 10 minutes for the reply to the end of data. A short wait there
#: turns into duplicate deliveries (the server accepted the message, the client retries it).
END_OF_DATA_TIMEOUT = 600.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each phase of a session.

    Each value is a deadline for the whole phase (the whole reply, however slowly it trickles in),
    not an idle timer. ``data_block`` applies to each write of message data. Build one from a single
    number with :meth:`uniform`, which keeps ``end_of_data`` at 600 s unless told otherwise.
    """

    connect: float = 30.0
    greeting: float = 30.0
    ehlo: float = 30.0
    starttls: float = 30.0  # the STARTTLS reply and the TLS handshake
    auth: float = 30.0
    mail: float = 30.0
    rcpt: float = 30.0
    data: float = 30.0  # the DATA command up to its 354
    data_block: float = 30.0  # each write of message data
    end_of_data: float = END_OF_DATA_TIMEOUT
    rset: float = 30.0
    noop: float = 30.0
    quit: float = 5.0  # nothing is lost by not waiting for a 221

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"timeout {f.name} must be a positive number of seconds, not {value!r}")

    @classmethod
    def uniform(cls, seconds: float, *, end_of_data: float = END_OF_DATA_TIMEOUT) -> Timeouts:
        """Every phase ``seconds``, except the end of data (600 s unless given) and QUIT (at most 5 s)."""
        names = [f.name for f in fields(cls) if f.name not in ("end_of_data", "quit")]
        return cls(**dict.fromkeys(names, seconds), end_of_data=end_of_data, quit=min(seconds, 5.0))

    @classmethod
    def coerce(cls, value: float | Timeouts | None) -> Timeouts:
        """A Timeouts from a number (see :meth:`uniform`), a Timeouts, or None (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, Timeouts):
            return value
        return cls.uniform(value)

    def for_phase(self, phase: Phase) -> float:
        """The timeout that covers ``phase``."""
        if phase is Phase.TLS_HANDSHAKE:
            return self.starttls
        return float(getattr(self, phase.value))

    def replace(self, **changes: float) -> Timeouts:
        return replace(self, **changes)


def _check_number(name: str, value: object, *, minimum: float = 0.0, allow_zero: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    if value < minimum or (not allow_zero and value == 0):
        raise ValueError(f"{name} must be {'>' if not allow_zero else '>='} {minimum}, not {value!r}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How ``Relay.send`` retries recipients deferred for a transient reason, within one call.

    Only DEFERRED recipients are tried again: a delivered recipient is never sent the message twice,
    and a bounced one is final. The long schedule (minutes to days) belongs to the Outbox.

    Attributes:
        attempts: every try counts, the first included (1 = no retry).
        initial_delay: seconds before the second attempt.
        max_delay: the longest wait between attempts.
        multiplier: growth of the wait per attempt (exponential backoff).
        jitter: up to this many seconds added at random to each wait (within ``max_delay``), so
            many senders deferred by the same server do not come back at the same instant.
        deadline: seconds after which no new attempt starts (None: no limit but ``attempts``).
    """

    attempts: int = 3
    initial_delay: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 1.0
    deadline: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, not {self.attempts!r}")
        _check_number("initial_delay", self.initial_delay)
        _check_number("max_delay", self.max_delay)
        _check_number("multiplier", self.multiplier, minimum=1.0)
        _check_number("jitter", self.jitter)
        if self.deadline is not None:
            _check_number("deadline", self.deadline, allow_zero=False)
        if self.max_delay < self.initial_delay:
            raise ValueError("max_delay must not be smaller than initial_delay")

    @classmethod
    def none(cls) -> RetryPolicy:
        """One attempt, no retry."""
        return cls(attempts=1)

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the wait before the second attempt).

        ``min(max_delay, initial_delay * multiplier ** (retry - 1) + uniform(0, jitter))``, the
        jitter drawn from ``rng`` so tests are deterministic; ``max_delay`` is never exceeded.
        """
        if retry < 1:
            raise ValueError("retry counts from 1")
        base = self.initial_delay * self.multiplier ** min(retry - 1, 64)
        return min(self.max_delay, base + (rng.uniform(0.0, self.jitter) if self.jitter else 0.0))


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """Connection reuse limits (defaults from Postfix).

    Attributes:
        max_connections_per_host: concurrent connections to one destination (Postfix's initial
            destination concurrency is 5).
        max_connections: concurrent connections in all.
        max_messages_per_connection: transactions before a connection is retired (100).
        max_connection_age: seconds a connection may be reused for (Postfix's reuse time limit, 300).
        idle_timeout: seconds an idle connection is kept (30).
    """

    max_connections_per_host: int = 5
    max_connections: int = 100
    max_messages_per_connection: int = 100
    max_connection_age: float = 300.0
    idle_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_connections_per_host", "max_connections", "max_messages_per_connection"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, not {value!r}")
        _check_number("max_connection_age", self.max_connection_age, allow_zero=False)
        _check_number("idle_timeout", self.idle_timeout)
