"""Connection pool: reuse SMTP sessions per destination, within limits, safely across threads.

Strategy (httpcore's connection_pool.py and urllib3's _get_conn are the models):
- :class:`PoolState` is the bookkeeping, pure and small: which connections are idle per key, how many
  are active or being opened, and the decisions (reuse this one, open a new one, wait, close
  these). It does no I/O and never blocks, so it runs entirely under the pool's lock.
- :class:`ConnectionPool` is the thin driver: it takes the lock only to consult PoolState, and does
  every connect, health check and close outside it.
- A key names everything that makes two sessions interchangeable — host, address, port, TLS policy,
  credentials, EHLO name, source address — so connections are never shared across any of them.
- Before reuse, a connection is checked without a round trip (readable means the server closed it
  or complained while idle); after a long idle, NOOP confirms it.
- A destination whose connections keep failing is suspended for a while (Postfix's dead-host
  behaviour) instead of being hammered, then probed again.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from ._errors import ConnectionFailed, SMTPRelayError
from ._policies import PoolLimits
from ._protocol import Phase
from ._transport import Transport

__all__ = ["PoolKey", "PoolState", "ConnectionPool", "Lease"]

#: A connection idle longer than this is confirmed with NOOP before reuse.
NOOP_AFTER_IDLE = 10.0
#: Consecutive connection failures that suspend a destination, and for how long (seconds).
SUSPEND_AFTER = 2
SUSPEND_FOR = 60.0


@dataclass(frozen=True, slots=True)
class PoolKey:
    """What makes two sessions interchangeable. The secret is compared, never shown."""

    host: str
    address: str
    port: int
    tls: str
    implicit_tls: bool | None = None
    tls_hostname: str | None = None
    username: str | None = None
    secret: object = field(default=None, repr=False)
    local_hostname: str = ""
    source_address: tuple[str, int] | None = None

    @property
    def endpoint(self) -> tuple[str, int]:
        """Where connections go: failures are counted (and suspensions kept) per endpoint."""
        return (self.address.lower(), self.port)

    def __str__(self) -> str:
        where = self.host if self.host == self.address else f"{self.host}[{self.address}]"
        return f"{where}:{self.port}"


@dataclass(eq=False, slots=True)
class _Entry:
    transport: Transport
    key: PoolKey
    created: float
    last_used: float


class Decision:
    """What :meth:`PoolState.checkout` decided."""

    REUSE: Final = "reuse"
    CONNECT: Final = "connect"
    WAIT: Final = "wait"


@dataclass(slots=True)
class Checkout:
    decision: str
    entry: _Entry | None = None
    retire: list[_Entry] = field(default_factory=list)


class PoolState:
    """Pure bookkeeping of the pool (no I/O, no locking, no clock: ``now`` is passed in)."""

    def __init__(self, limits: PoolLimits) -> None:
        self.limits = limits
        self.idle: dict[PoolKey, list[_Entry]] = collections.defaultdict(list)
        self.active: collections.Counter[PoolKey] = collections.Counter()
        self.connecting: collections.Counter[PoolKey] = collections.Counter()
        self.in_use: set[_Entry] = set()
        self.failures: collections.Counter[tuple[str, int]] = collections.Counter()
        self.suspended_until: dict[tuple[str, int], float] = {}

    @property
    def total(self) -> int:
        return (
            sum(self.active.values())
            + sum(self.connecting.values())
            + sum(len(v) for v in self.idle.values())
        )

    def expired(self, entry: _Entry, now: float) -> bool:
        limits = self.limits
        return (
            now - entry.created >= limits.max_connection_age
            or now - entry.last_used >= limits.idle_timeout
            or entry.transport.messages_sent >= limits.max_messages_per_connection
            or not entry.transport.usable
        )

    def suspended(self, key: PoolKey, now: float) -> float | None:
        """Seconds left of the endpoint's suspension, or None."""
        until = self.suspended_until.get(key.endpoint)
        if until is None:
            return None
        if until <= now:
            return None  # a probe may go; another failure suspends it again
        return until - now

    def checkout(self, key: PoolKey, now: float, *, fresh: bool = False) -> Checkout:
        """Reuse an idle connection for ``key``, or allow a new one, or say wait."""
        result = Checkout(Decision.WAIT)
        idle = self.idle.get(key, [])
        while idle and not fresh:
            entry = idle.pop()  # most recently used first: warmest connection, oldest ones age out
            if self.expired(entry, now):
                result.retire.append(entry)
                continue
            self.active[key] += 1
            self.in_use.add(entry)
            result.decision, result.entry = Decision.REUSE, entry
            return result
        in_use = self.active[key] + self.connecting[key] + len(idle)
        if in_use >= self.limits.max_connections_per_host:
            if fresh and idle:
                result.retire.append(idle.pop(0))  # make room for the fresh connection asked for
            else:
                return result
        if self.total >= self.limits.max_connections:
            victim = self._oldest_idle()
            if victim is None:
                return result
            self.idle[victim.key].remove(victim)
            result.retire.append(victim)
        self.connecting[key] += 1
        result.decision = Decision.CONNECT
        return result

    def _oldest_idle(self) -> _Entry | None:
        entries = [e for group in self.idle.values() for e in group]
        return min(entries, key=lambda e: e.last_used) if entries else None

    def connected(self, entry: _Entry) -> None:
        key = entry.key
        self.connecting[key] -= 1
        self.active[key] += 1
        self.in_use.add(entry)
        self.failures.pop(key.endpoint, None)
        self.suspended_until.pop(key.endpoint, None)

    def connect_failed(self, key: PoolKey, now: float, *, count: bool) -> None:
        self.connecting[key] -= 1
        if count:
            self.failures[key.endpoint] += 1
            if self.failures[key.endpoint] >= SUSPEND_AFTER:
                self.suspended_until[key.endpoint] = now + SUSPEND_FOR

    def checkin(self, entry: _Entry, now: float, *, reusable: bool) -> bool:
        """Return a connection; True when it is kept idle, False when the caller must close it."""
        self.active[entry.key] -= 1
        self.in_use.discard(entry)
        entry.last_used = now
        if reusable and not self.expired(entry, now):
            self.idle[entry.key].append(entry)
            return True
        return False

    def sweep(self, now: float) -> list[_Entry]:
        """Take every idle connection past its limits out of the pool (the caller closes them)."""
        retired: list[_Entry] = []
        for entries in self.idle.values():
            keep = [e for e in entries if not self.expired(e, now)]
            retired.extend(e for e in entries if e not in keep)
            entries[:] = keep
        return retired

    def take_all_idle(self) -> list[_Entry]:
        entries = [e for group in self.idle.values() for e in group]
        self.idle.clear()
        return entries

    def describe(self) -> dict[str, tuple[int, int, int]]:
        """Per destination: (active, idle, connecting)."""
        keys = set(self.active) | set(self.connecting) | {k for k, v in self.idle.items() if v}
        table = {str(k): (self.active[k], len(self.idle.get(k, ())), self.connecting[k]) for k in keys}
        return {name: counts for name, counts in sorted(table.items()) if any(counts)}


@dataclass(slots=True)
class Lease:
    """A connection checked out of the pool; give it back with :meth:`ConnectionPool.release`."""

    transport: Transport
    reused: bool
    _entry: _Entry = field(repr=False)


class ConnectionPool:
    """Thread-safe pool of :class:`Transport` sessions keyed by :class:`PoolKey`."""

    def __init__(self, limits: PoolLimits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._state = PoolState(limits)
        self._lock = threading.Condition()
        self._clock = clock
        self._closed = False

    @property
    def limits(self) -> PoolLimits:
        return self._state.limits

    def acquire(
        self,
        key: PoolKey,
        connect: Callable[[], Transport],
        *,
        timeout: float | None = None,
        fresh: bool = False,
    ) -> Lease:
        """A connection for ``key``: a healthy idle one, or a new one from ``connect()``.

        Waits (up to ``timeout`` seconds) while the destination is at its connection limit.

        Raises:
            ConnectionFailed: the pool is closed, the destination is suspended, or no slot freed up.
            Whatever ``connect()`` raises.
        """
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            with self._lock:
                if self._closed:
                    raise ConnectionFailed(
                        "the connection pool is closed", host=key.host, phase=Phase.CONNECT
                    )
                now = self._clock()
                left = self._state.suspended(key, now)
                if left is not None and not fresh:
                    raise ConnectionFailed(
                        f"{key} is suspended for {left:.0f} s after repeated connection failures",
                        host=key.host,
                        phase=Phase.CONNECT,
                    )
                checkout = self._state.checkout(key, now, fresh=fresh)
                if checkout.decision == Decision.WAIT:
                    remaining = None if deadline is None else deadline - now
                    if remaining is not None and remaining <= 0:
                        raise ConnectionFailed(
                            f"no connection to {key} became free within {timeout:g} s",
                            host=key.host,
                            phase=Phase.CONNECT,
                        )
                    self._lock.wait(remaining)
                    continue
            self._retire(checkout.retire)
            entry = checkout.entry
            if entry is not None:
                if self._healthy(entry, now):
                    return Lease(entry.transport, True, entry)
                with self._lock:
                    self._state.active[key] -= 1
                    self._state.in_use.discard(entry)
                    self._lock.notify_all()
                continue
            return self._open(key, connect)

    def _healthy(self, entry: _Entry, now: float) -> bool:
        transport = entry.transport
        if not transport.is_alive():
            return False
        if now - entry.last_used >= NOOP_AFTER_IDLE:
            try:
                transport.noop()
            except SMTPRelayError:
                transport.close(timeout=0.5)
                return False
        return True

    def _open(self, key: PoolKey, connect: Callable[[], Transport]) -> Lease:
        try:
            transport = connect()
        except BaseException as error:
            # Only a failure to connect at all counts toward suspension; a server that answers
            # (even "421 busy") is alive.
            counted = isinstance(error, SMTPRelayError) and error.phase is Phase.CONNECT
            with self._lock:
                self._state.connect_failed(key, self._clock(), count=counted)
                self._lock.notify_all()
            raise
        now = self._clock()
        entry = _Entry(transport, key, now, now)
        with self._lock:
            self._state.connected(entry)
            if self._closed:
                self._state.active[key] -= 1
                self._state.in_use.discard(entry)
                closed = True
            else:
                closed = False
        if closed:
            transport.close(timeout=0.5)
            raise ConnectionFailed("the connection pool is closed", host=key.host, phase=Phase.CONNECT)
        return Lease(transport, False, entry)

    def release(self, lease: Lease, *, reusable: bool = True) -> None:
        """Give a connection back; it is kept for reuse only if it is healthy and within its limits."""
        with self._lock:
            keep = not self._closed and self._state.checkin(
                lease._entry, self._clock(), reusable=reusable and lease.transport.usable
            )
            self._lock.notify_all()
        if not keep:
            lease.transport.close(timeout=1.0)

    def sweep(self) -> int:
        """Close idle connections past their idle time, age or message limit. Returns how many."""
        with self._lock:
            retired = self._state.sweep(self._clock())
        self._retire(retired)
        return len(retired)

    def close(self, *, timeout: float = 2.0) -> None:
        """Close every idle connection with QUIT (within ``timeout`` in all), abort the ones in use
        (their deliveries fail promptly and are deferred), and refuse further use."""
        with self._lock:
            self._closed = True
            entries = self._state.take_all_idle()
            busy = list(self._state.in_use)
            self._lock.notify_all()
        for entry in busy:
            # Deliveries in flight on other threads fail promptly (their recipients are deferred).
            entry.transport.abort()
        deadline = self._clock() + timeout
        for entry in entries:
            remaining = deadline - self._clock()
            entry.transport.close(timeout=max(0.05, min(remaining, 1.0)) if remaining > 0 else 0.05)

    def _retire(self, entries: list[_Entry]) -> None:
        for entry in entries:
            entry.transport.close(timeout=1.0)

    @contextlib.contextmanager
    def connection(self, key: PoolKey, connect: Callable[[], Transport]) -> Iterator[Lease]:
        """``with pool.connection(key, connect) as lease:`` — released (reusable if still usable) after."""
        lease = self.acquire(key, connect)
        try:
            yield lease
        finally:
            self.release(lease)

    def describe(self) -> dict[str, tuple[int, int, int]]:
        with self._lock:
            return self._state.describe()

    def __repr__(self) -> str:
        parts = [f"{name} active={a} idle={i} connecting={c}" for name, (a, i, c) in self.describe().items()]
        state = " closed" if self._closed else ""
        return f"<ConnectionPool{state} [{'; '.join(parts)}]>"
