"""The send_many scheduler as a pure object, with a fake clock."""

from __future__ import annotations

import pytest

from smtprelay._scheduler import Job, RateLimiter, Scheduler


def drain(scheduler: Scheduler, now: float) -> list[Job]:
    jobs = []
    while (job := scheduler.next_job(now)) is not None:
        jobs.append(job)
    return jobs


def test_routing_jobs_first_then_round_robin_over_destinations() -> None:
    scheduler = Scheduler(per_destination=10)
    for i in range(3):
        scheduler.add(Job(f"a{i}", destination="A"), 0)
    for i in range(3):
        scheduler.add(Job(f"b{i}", destination="B"), 0)
    scheduler.add(Job("route"), 0)
    assert [j.payload for j in drain(scheduler, 0)] == ["route", "a0", "b0", "a1", "b1", "a2", "b2"]


def test_per_destination_limit() -> None:
    scheduler = Scheduler(per_destination=2)
    for i in range(4):
        scheduler.add(Job(f"a{i}", destination="A"), 0)
    scheduler.add(Job("b0", destination="B"), 0)
    taken = drain(scheduler, 0)
    assert [j.payload for j in taken] == ["a0", "b0", "a1"]
    assert scheduler.next_job(0) is None
    scheduler.finished(taken[0])
    assert scheduler.next_job(0).payload == "a2"  # type: ignore[union-attr]
    assert scheduler.runnable_backlog(0) == 0 and scheduler.queued == 1


def test_timers_hold_jobs_until_they_are_due() -> None:
    scheduler = Scheduler(per_destination=1)
    scheduler.add(Job("later", destination="A", ready_at=5.0), 0)
    assert scheduler.next_job(1.0) is None
    assert scheduler.next_wakeup(1.0) == 5.0
    assert scheduler.next_job(5.0).payload == "later"  # type: ignore[union-attr]


def test_rate_limited_destination_is_skipped_not_waited_for() -> None:
    scheduler = Scheduler(per_destination=5)
    for i in range(3):
        scheduler.add(Job(f"a{i}", destination="A", rate=2.0), 0)
    scheduler.add(Job("b0", destination="B"), 0)
    assert [j.payload for j in drain(scheduler, 0.0)] == ["a0", "b0"]
    assert scheduler.next_wakeup(0.0) == pytest.approx(0.5)
    assert scheduler.next_job(0.4) is None
    assert scheduler.next_job(0.5).payload == "a1"  # type: ignore[union-attr]
    assert scheduler.next_job(0.9) is None
    assert scheduler.next_job(1.0).payload == "a2"  # type: ignore[union-attr]


def test_idle_and_repr() -> None:
    scheduler = Scheduler(per_destination=1)
    assert scheduler.idle
    scheduler.add(Job("a", destination="A"), 0)
    job = scheduler.next_job(0)
    assert job is not None and not scheduler.idle
    assert "A: 1 running 0 queued" in repr(scheduler)
    scheduler.finished(job)
    assert scheduler.idle and "A:" not in repr(scheduler)


def test_rate_limiter_reserve_spaces_slots() -> None:
    limiter = RateLimiter()
    assert [limiter.reserve("d", 4.0, 0.0) for _ in range(3)] == [0.0, 0.25, 0.5]
    assert limiter.reserve("d", 4.0, 10.0) == 0.0, "idle time does not bank a burst"
    assert limiter.reserve("other", 4.0, 10.0) == 0.0


def test_per_destination_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Scheduler(per_destination=0)
