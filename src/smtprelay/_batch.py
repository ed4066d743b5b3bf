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
        # One lock, two conditions: workers wait for jobs, the caller for reports or room to feed,
        # so finishing a job wakes one worker and the caller, not every thread (the GIL makes a
        # thundering herd expensive).
        self.lock = threading.Lock()
        self.jobs_cv = threading.Condition(self.lock)
        self.caller_cv = threading.Condition(self.lock)
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
                with self.lock:
                    while not self.ready and not self._may_feed() and not self._finished():
                        self.caller_cv.wait(0.5)
                    reports = list(self.ready)
                    self.ready.clear()
                    feed = self._may_feed()
                    finished = self._finished() and not reports
                if finished:
                    break
                yield from reports
                if feed:
                    self._feed()
            if self.worker_error is not None:
                raise self.worker_error
            if self.source_error is not None:
                raise self.source_error
        finally:
            with self.lock:
                self.stopping = True
                self.jobs_cv.notify_all()
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

    def _feed(self) -> None:
        """Take messages from the iterable while there is room (at most ``concurrency`` at a time)."""
        for _ in range(self.concurrency):
            if not self._feed_one():
                return
            with self.lock:
                if not self._may_feed():
                    return

    def _feed_one(self) -> bool:
        try:
            message = next(self.source)
            state = self.relay._new_state(message, None, check_closed=False)
        except StopIteration:
            with self.lock:
                self.exhausted = True
            return False
        except BaseException as error:
            # The iterable failed, or gave something that is not a Message: stop taking more,
            # finish what is in flight, then raise it to the caller.
            with self.lock:
                self.exhausted = True
                self.source_error = error
            return False
        tracked = _Tracked(state)
        with self.lock:
            closed = self.relay._closed
            if not closed:
                self.in_flight += 1
                self._add(Job(_Route(tracked, state.targets)), tracked)
                self.jobs_cv.notify()
        if closed:
            # Taken from the iterable just as the Relay closed: report it deferred, never drop it.
            report = self.relay._closed_report(state)
            with self.lock:
                self.ready.append(report)
            return False
        return True

    # -- workers -------------------------------------------------------------------------------
    def _add(self, job: Job, tracked: _Tracked) -> None:
        """Queue a job (lock held)."""
        tracked.jobs += 1
        self.scheduler.add(job, time.monotonic())

    def _work(self) -> None:
        while True:
            with self.lock:
                while True:
                    if self.stopping:
                        return
                    now = time.monotonic()
                    job = self.scheduler.next_job(now)
                    if job is not None:
                        break
                    wake = self.scheduler.next_wakeup(now)
                    self.jobs_cv.wait(None if wake is None else max(0.0, wake - now))
            try:
                follow_ups = self._run(job)
            except BaseException as error:  # a bug: stop the batch and re-raise in the caller
                log.exception("send_many worker failed")
                follow_ups = []
                with self.lock:
                    self.worker_error = self.worker_error or error
            tracked: _Tracked = job.payload.tracked  # type: ignore[attr-defined]
            with self.lock:
                self.scheduler.finished(job)
                for follow_up in follow_ups:
                    self._add(follow_up, tracked)
                tracked.jobs -= 1
                done = tracked.jobs == 0
                # The follow-ups, and the slot this job freed, may each let a worker go on.
                self.jobs_cv.notify(len(follow_ups) + 1)
            if done:
                report = self.relay._report(tracked.state)  # outside the lock: it calls on_event
                with self.lock:
                    self.in_flight -= 1
                    self.ready.append(report)
                    self.caller_cv.notify()
            else:
                with self.lock:
                    self.caller_cv.notify()

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
