"""Scheduling decisions for ``Relay.send_many``: which job runs next, and when. Pure: no threads, no I/O.

Strategy (Postfix's queue manager is the model): work is kept in one queue per destination, and a
destination gets at most ``per_destination`` jobs running at once and, optionally, at most ``rate``
messages per second (spaced evenly: a burst is exactly what trips a receiver's limits). Jobs are
taken round-robin over the destinations that may run now, so a slow, rate-limited or deferring
destination only ever delays its own mail. Routing jobs (DNS) have their own FIFO queue, since
their destination is not known yet. A job waiting for its retry time sits in a timer heap and
occupies no worker.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field

__all__ = ["Job", "Scheduler", "RateLimiter"]


class RateLimiter:
    """Evenly spaced slots per destination: at most ``rate`` per second, no bursts.

    Thread-safe; the clock is passed in. ``reserve()`` books the next slot and says how long to wait
    for it (what ``Relay.send`` does); ``ready()``/``take()`` let a scheduler skip a destination whose
    next slot is in the future (what ``send_many`` does, so no worker sleeps).
    """

    def __init__(self) -> None:
        self._next: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def wait_time(self, key: Hashable, now: float) -> float:
        with self._lock:
            return max(0.0, self._next.get(key, now) - now)

    def take(self, key: Hashable, rate: float, now: float) -> None:
        with self._lock:
            self._next[key] = max(now, self._next.get(key, now)) + 1.0 / rate

    def reserve(self, key: Hashable, rate: float, now: float) -> float:
        with self._lock:
            start = max(now, self._next.get(key, now))
            self._next[key] = start + 1.0 / rate
            return start - now


@dataclass(eq=False)
class Job:
    """A unit of work. ``destination`` is None for a routing job (its destination is unknown)."""

    payload: object
    destination: Hashable | None = None
    rate: float | None = None
    ready_at: float = 0.0
    seq: int = field(default=0, compare=False)


class Scheduler:
    """Decides which job to run next (see the module docstring)."""

    def __init__(self, *, per_destination: int, limiter: RateLimiter | None = None) -> None:
        if per_destination < 1:
            raise ValueError("per_destination must be >= 1")
        self.per_destination = per_destination
        self.limiter = limiter or RateLimiter()
        self._routing: collections.deque[Job] = collections.deque()
        self._queues: dict[Hashable, collections.deque[Job]] = {}
        self._order: collections.deque[Hashable] = collections.deque()  # round-robin over destinations
        self._active: collections.Counter[Hashable] = collections.Counter()
        self._timers: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self.running = 0

    # -- bookkeeping -----------------------------------------------------------------------------
    def add(self, job: Job, now: float) -> None:
        """Queue ``job``; it waits in the timer heap until ``job.ready_at`` if that is later than now."""
        job.seq = next(self._seq)
        if job.ready_at > now:
            heapq.heappush(self._timers, (job.ready_at, job.seq, job))
            return
        self._enqueue(job)

    def _enqueue(self, job: Job) -> None:
        if job.destination is None:
            self._routing.append(job)
            return
        queue = self._queues.get(job.destination)
        if queue is None:
            queue = self._queues[job.destination] = collections.deque()
            self._order.append(job.destination)
        queue.append(job)

    def _release_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            self._enqueue(heapq.heappop(self._timers)[2])

    def _may_run(self, destination: Hashable, job: Job, now: float) -> bool:
        if self._active[destination] >= self.per_destination:
            return False
        return job.rate is None or self.limiter.wait_time(destination, now) <= 0

    def next_job(self, now: float) -> Job | None:
        """Take the next job that may run now, or None."""
        self._release_timers(now)
        if self._routing:
            self.running += 1
            return self._routing.popleft()
        for _ in range(len(self._order)):
            destination = self._order[0]
            self._order.rotate(-1)
            queue = self._queues[destination]
            if queue and self._may_run(destination, queue[0], now):
                job = queue.popleft()
                self._active[destination] += 1
                if job.rate is not None:
                    self.limiter.take(destination, job.rate, now)
                self.running += 1
                return job
        return None

    def finished(self, job: Job) -> None:
        """A job taken with :meth:`next_job` is done."""
        self.running -= 1
        destination = job.destination
        if destination is None:
            return
        self._active[destination] -= 1
        if not self._active[destination]:
            del self._active[destination]
            if not self._queues.get(destination):
                self._forget(destination)

    def _forget(self, destination: Hashable) -> None:
        queue = self._queues.get(destination)
        if queue is not None and not queue and not self._active.get(destination):
            del self._queues[destination]
            self._order.remove(destination)

    # -- questions ----------------------------------------------------------------------------------
    def next_wakeup(self, now: float) -> float | None:
        """The earliest time a job may become runnable without anything finishing, or None."""
        times = [self._timers[0][0]] if self._timers else []
        for destination, queue in self._queues.items():
            if queue and queue[0].rate is not None and self._active[destination] < self.per_destination:
                times.append(now + self.limiter.wait_time(destination, now))
        return min(times) if times else None

    @property
    def queued(self) -> int:
        """Jobs waiting to run now or later (not running)."""
        return len(self._routing) + sum(len(q) for q in self._queues.values()) + len(self._timers)

    def runnable_backlog(self, now: float) -> int:
        """Jobs that could start as soon as a worker is free (routing, and unsaturated destinations)."""
        backlog = len(self._routing)
        for destination, queue in self._queues.items():
            if queue and self._active[destination] < self.per_destination:
                backlog += min(len(queue), self.per_destination - self._active[destination])
        return backlog

    def parked(self, now: float) -> int:
        """Jobs queued behind destinations that cannot take more now (limit or rate), timers excluded."""
        queued = len(self._routing) + sum(len(q) for q in self._queues.values())
        return queued - self.runnable_backlog(now)

    @property
    def idle(self) -> bool:
        return self.running == 0 and self.queued == 0

    def __repr__(self) -> str:
        busy = ", ".join(f"{d}: {self._active[d]} running {len(q)} queued" for d, q in self._queues.items())
        return f"<Scheduler routing={len(self._routing)} timers={len(self._timers)} [{busy}]>"
