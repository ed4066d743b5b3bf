"""Policies as immutable values: TLS, timeouts.

Defaults follow Postfix unless a reason is named (DESIGN.md: Postfix is the reference MTA).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields, replace

from ._protocol._phase import Phase

__all__ = ["TLSPolicy", "Timeouts"]


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
