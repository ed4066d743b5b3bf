"""Relay.send_many: streaming, per-destination scheduling, retries off the workers, rate limits."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import smtprelay._batch
from smtprelay import Message, PoolLimits, Relay, RetryPolicy, Status, Timeouts, events
from smtprelay.testing import DNSZone, LocalMX
from support.relaying import Hosts


def message(to: str, subject: str = "Hi") -> Message:
    return Message(sender="alice@example.com", to=[to], subject=subject, text="Hello")


@pytest.fixture
def two_destinations(zone: DNSZone, hosts: Hosts) -> tuple[LocalMX, LocalMX]:
    fast, slow = hosts.mx("mx.fast.test"), hosts.mx("mx.slow.test")
    zone.mx("fast.test", [(10, "mx.fast.test")])
    zone.mx("slow.test", [(10, "mx.slow.test")])
    return fast, slow


def test_one_report_per_message_in_completion_order(
    two_destinations: tuple[LocalMX, LocalMX], make_relay: Callable[..., Relay]
) -> None:
    fast, slow = two_destinations
    messages = [
        message(f"u{i}@fast.test" if i % 2 else f"u{i}@slow.test", subject=f"m{i}") for i in range(40)
    ]
    reports = list(make_relay().send_many(messages, concurrency=4))
    assert len(reports) == 40
    assert {id(r.message) for r in reports} == {id(m) for m in messages}, "each report names its message"
    assert all(r.ok for r in reports)
    assert len(fast.messages) == 20 and len(slow.messages) == 20


def test_the_iterable_is_read_lazily(
    two_destinations: tuple[LocalMX, LocalMX],
    make_relay: Callable[..., Relay],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(smtprelay._batch, "MAX_PARKED", 8)
    pulled = itertools.count()
    last = [0]

    def endless() -> Iterator[Message]:
        for i in itertools.count():
            last[0] = next(pulled)
            yield message(f"user{i}@fast.test")

    seen = 0
    for report in make_relay().send_many(endless(), concurrency=4):
        assert report.ok
        seen += 1
        assert last[0] <= seen + 4 + 8 + 5, "never read far ahead of delivery: memory stays constant"
        if seen == 100:
            break
    assert seen == 100


def test_a_slow_destination_never_holds_up_the_others(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    _fast, slow = hosts.mx("mx.fast.test"), hosts.mx("mx.slow.test")
    zone.mx("fast.test", [(10, "mx.fast.test")])
    zone.mx("slow.test", [(10, "mx.slow.test")])
    slow.script_data(LocalMX.HANG)  # every message there waits for its end-of-data timeout
    relay = make_relay(
        pool=PoolLimits(max_connections_per_host=2),
        timeout=Timeouts.uniform(2.0, end_of_data=0.4),
        retry=RetryPolicy.none(),
    )
    messages = [message(f"s{i}@slow.test") for i in range(6)] + [
        message(f"f{i}@fast.test") for i in range(30)
    ]
    order = [r.results[0].recipient.split("@")[1] for r in relay.send_many(messages, concurrency=6)]
    assert order.count("fast.test") == 30 and order.count("slow.test") == 6
    last_fast = max(i for i, d in enumerate(order) if d == "fast.test")
    third_slow = [i for i, d in enumerate(order) if d == "slow.test"][2]
    assert last_fast < third_slow, f"fast mail waited behind the slow destination: {order}"


def test_a_recipient_waiting_for_its_retry_occupies_no_worker(
    two_destinations: tuple[LocalMX, LocalMX], make_relay: Callable[..., Relay]
) -> None:
    fast, _ = two_destinations
    fast.script_rcpt("grey@fast.test", [(451, "4.7.1 Greylisted")])
    relay = make_relay(retry=RetryPolicy(attempts=2, initial_delay=0.5, jitter=0.0))
    messages = [message("grey@fast.test", "grey")] + [message(f"u{i}@fast.test", f"m{i}") for i in range(10)]
    reports = list(relay.send_many(messages, concurrency=1))
    assert [r.message.subject for r in reports][-1] == "grey", "ten messages passed the one waiting to retry"
    grey = reports[-1].results[0]
    assert (grey.status, grey.attempts) == (Status.DELIVERED, 2)
    assert fast.deliveries_to("grey@fast.test") == 1


def test_rate_limit_spaces_messages_across_all_connections(
    two_destinations: tuple[LocalMX, LocalMX], make_relay: Callable[..., Relay]
) -> None:
    fast, _ = two_destinations
    rate = 25.0
    relay = make_relay(rate_limits={"fast.test": rate})
    started = time.monotonic()
    reports = list(relay.send_many([message(f"u{i}@fast.test") for i in range(11)], concurrency=8))
    elapsed = time.monotonic() - started
    assert all(r.ok for r in reports) and len(fast.messages) == 11
    assert elapsed >= 10 / rate * 0.95, "11 messages at 25/s cannot all go out in less than 0.4 s"
    assert fast.connections <= 5


def test_rate_limit_also_applies_to_send(
    two_destinations: tuple[LocalMX, LocalMX], make_relay: Callable[..., Relay]
) -> None:
    relay = make_relay(rate_limit=20.0)
    started = time.monotonic()
    for i in range(5):
        assert relay.send(message(f"u{i}@fast.test")).ok
    assert time.monotonic() - started >= 4 / 20.0 * 0.95


def test_bad_item_is_raised_after_the_good_ones_are_reported(
    two_destinations: tuple[LocalMX, LocalMX], make_relay: Callable[..., Relay]
) -> None:
    items: list[object] = [message("a@fast.test"), message("b@fast.test"), b"not a message"]
    received = []
    with pytest.raises(TypeError, match="expected a Message"):
        for report in make_relay().send_many(items):  # type: ignore[arg-type]
            received.append(report)
    assert len(received) == 2 and all(r.ok for r in received)


def test_an_iterable_that_fails_still_gets_its_messages_delivered(
    two_destinations: tuple[LocalMX, LocalMX], make_relay: Callable[..., Relay]
) -> None:
    def broken() -> Iterator[Message]:
        yield message("a@fast.test")
        raise OSError("the CSV file went away")

    received = []
    with pytest.raises(OSError, match="went away"):
        for report in make_relay().send_many(broken()):
            received.append(report)
    assert len(received) == 1 and received[0].ok


def test_events_and_outcomes(
    two_destinations: tuple[LocalMX, LocalMX], make_relay: Callable[..., Relay]
) -> None:
    seen: list[events.Event] = []
    lock = threading.Lock()

    def record(event: events.Event) -> None:
        with lock:
            seen.append(event)

    reports = list(make_relay(on_event=record).send_many([message(f"u{i}@fast.test") for i in range(5)]))
    outcomes = [e for e in seen if isinstance(e, events.Outcome)]
    assert len(outcomes) == 5
    assert {e.message_id for e in outcomes} == {r.message_id for r in reports}


def test_close_during_send_many_ends_it(
    two_destinations: tuple[LocalMX, LocalMX], make_relay: Callable[..., Relay]
) -> None:
    relay = make_relay()
    pulled = [0]

    def endless() -> Iterator[Message]:
        for i in itertools.count():
            pulled[0] += 1
            yield message(f"u{i}@fast.test")

    count = 0
    pulled_at_close = None
    for report in relay.send_many(endless(), concurrency=4):
        count += 1
        assert report.results
        if count == 20:
            relay.close()
            pulled_at_close = pulled[0]
    assert pulled_at_close is not None
    assert pulled[0] <= pulled_at_close + 1, "after close() no new message is taken"
    assert count == pulled[0], "every message taken from the iterable got its report"
    with pytest.raises(RuntimeError, match="closed"):
        relay.send_many([message("x@fast.test")])


def test_concurrency_must_be_positive(make_relay: Callable[..., Relay]) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        make_relay().send_many([], concurrency=0)


def test_empty_input(make_relay: Callable[..., Relay]) -> None:
    assert list(make_relay().send_many([])) == []
