"""``Relay.send_many``: many messages, concurrently, in constant memory, reports in completion order.

Strategy: the caller's thread pulls messages from the iterable only while the scheduler has little
runnable work (so a generator of a million messages is never read ahead of need), and yields
reports as workers finish them. Worker threads take jobs from the :class:`Scheduler`: a routing job
(DNS, grouping by destination) turns into one delivery job per destination; a delivery job runs one
attempt against one destination; recipients it leaves DEFERRED come back as a routing job after the
retry delay, waiting in the scheduler's timer heap rather than in a worker. A message's report is
ready when none of its jobs is left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._message import Message
from ._report import DeliveryReport
from ._results import Status
from ._scheduler import Job, Scheduler

if TYPE_CHECKING:
    from ._relay import Relay, _Group, _SendState

__all__ = ["run_batch", "DEFAULT_CONCURRENCY"]

log = logging.getLogger("smtprelay")

#: Worker threads when ``concurrency`` is not given.
DEFAULT_CONCURRENCY = 16
#: Messages in flight at most, waiting for a retry included: the hard bound on memory.
MAX_IN_FLIGHT = 10_000
#: Jobs queued behind destinations already at their connection limit before reading stops.
#: Reading ahead only helps if the next messages go elsewhere; this bounds how far it looks for
#: them. A slow destination can hold up the others only when more than this many messages in a
#: row go to it (Postfix bounds its active queue the same way, at 20000 messages on disk).
MAX_PARKED = 1000


@dataclass(eq=False)
class _Tracked:
    state: _SendState
    jobs: int = 0  # jobs of this message queued, waiting or running


@dataclass(eq=False)
class _Route:
    tracked: _Tracked
    recipients: tuple[str, ...]


@dataclass(eq=False)
class _Deliver:
    tracked: _Tracked
    group: _Group


class _Batch:
    def __init__(self, relay: Relay, messages: Iterable[Message], concurrency: int) -> None:
        self.relay = relay
        self.source = iter(messages)
        self.concurrency = concurrency
        self.scheduler = Scheduler(
            per_destination=relay._pool_limits.max_connections_per_host, limiter=relay._limiter
        )
        self.cond = threading.Condition()
        self.ready: deque[DeliveryReport] = deque()
        self.in_flight = 0
        self.exhausted = False
        self.stopping = False
        self.source_error: BaseException | None = None
        self.worker_error: BaseException | None = None
        self.threads = [
            threading.Thread(target=self._work, name=f"smtprelay-send-many-{i}", daemon=True)
            for i in range(concurrency)
        ]

    # -- the caller's side ---------------------------------------------------------------------
    def run(self) -> Iterator[DeliveryReport]:
        for thread in self.threads:
            thread.start()
        try:
            while True:
                with self.cond:
                    while not self.ready and not self._may_feed() and not self._finished():
                        self.cond.wait()
                    reports = list(self.ready)
                    self.ready.clear()
                    feed = self._may_feed()
                    finished = self._finished() and not reports
                if finished:
                    break
                yield from reports
                if feed:
                    self._feed_one()
            if self.worker_error is not None:
                raise self.worker_error
            if self.source_error is not None:
                raise self.source_error
        finally:
            with self.cond:
                self.stopping = True
                self.cond.notify_all()
            for thread in self.threads:
                thread.join(timeout=10)

    def _may_feed(self) -> bool:
        if self.exhausted or self.relay._closed or self.worker_error is not None:
            return False
        if self.in_flight >= MAX_IN_FLIGHT:
            return False
        now = time.monotonic()
        if self.scheduler.runnable_backlog(now) >= self.concurrency:
            return False  # enough work ready for every worker
        return self.scheduler.parked(now) < MAX_PARKED

    def _finished(self) -> bool:
        done_feeding = self.exhausted or self.relay._closed or self.worker_error is not None
        return done_feeding and self.in_flight == 0

    def _feed_one(self) -> None:
        try:
            message = next(self.source)
        except StopIteration:
            with self.cond:
                self.exhausted = True
                self.cond.notify_all()
            return
        except BaseException as error:  # the caller's iterable failed: finish what is in flight, then raise
            with self.cond:
                self.exhausted = True
                self.source_error = error
                self.cond.notify_all()
            return
        try:
            state = self.relay._new_state(message, None, check_closed=False)
        except (TypeError, ValueError) as error:  # bad input: stop taking more, report it at the end
            with self.cond:
                self.exhausted = True
                self.source_error = error
                self.cond.notify_all()
            return
        tracked = _Tracked(state)
        with self.cond:
            if self.relay._closed:
                # Taken from the iterable just as the Relay closed: report it deferred, never drop it.
                self.ready.append(self.relay._closed_report(state))
                self.cond.notify_all()
                return
            self.in_flight += 1
            self._add(Job(_Route(tracked, state.targets)), tracked)
            self.cond.notify_all()

    # -- workers -------------------------------------------------------------------------------
    def _add(self, job: Job, tracked: _Tracked) -> None:
        """Queue a job (lock held)."""
        tracked.jobs += 1
        self.scheduler.add(job, time.monotonic())

    def _work(self) -> None:
        while True:
            with self.cond:
                while True:
                    if self.stopping:
                        return
                    now = time.monotonic()
                    job = self.scheduler.next_job(now)
                    if job is not None:
                        break
                    wake = self.scheduler.next_wakeup(now)
                    self.cond.wait(None if wake is None else max(0.0, wake - now))
            try:
                follow_ups = self._run(job)
            except BaseException as error:  # a bug: stop the batch and re-raise in the caller
                log.exception("send_many worker failed")
                follow_ups = []
                with self.cond:
                    self.worker_error = self.worker_error or error
            with self.cond:
                self.scheduler.finished(job)
                tracked = job.payload.tracked  # type: ignore[attr-defined]
                for follow_up in follow_ups:
                    self._add(follow_up, tracked)
                tracked.jobs -= 1
                if tracked.jobs == 0:
                    self.in_flight -= 1
                    self.ready.append(self.relay._report(tracked.state))
                self.cond.notify_all()

    def _run(self, job: Job) -> list[Job]:
        payload = job.payload
        relay = self.relay
        if isinstance(payload, _Route):
            state = payload.tracked.state
            relay._start_attempt(state, payload.recipients)
            return [
                Job(_Deliver(payload.tracked, group), destination=group.key, rate=group.rate)
                for group in relay._plan(payload.recipients, state)
            ]
        assert isinstance(payload, _Deliver)
        state, group = payload.tracked.state, payload.group
        relay._record(state, relay._deliver(state, group.recipients, group.target))
        deferred = tuple(r for r in group.recipients if state.results[r].status is Status.DEFERRED)
        retry = relay._retry
        if not deferred or relay._closed:
            return []
        attempts = max(state.attempts[r] for r in deferred)
        if attempts >= retry.attempts:
            return []
        delay = relay._next_delay(attempts)
        if state.deadline is not None and time.monotonic() + delay >= state.deadline:
            return []
        return [Job(_Route(payload.tracked, deferred), ready_at=time.monotonic() + delay)]


def run_batch(relay: Relay, messages: Iterable[Message], concurrency: int | None) -> Iterator[DeliveryReport]:
    """The generator behind ``Relay.send_many``."""
    if concurrency is None:
        concurrency = DEFAULT_CONCURRENCY
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an int >= 1, not {concurrency!r}")
    return _Batch(relay, messages, concurrency).run()
