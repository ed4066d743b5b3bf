"""Relay's pure parts: MX ordering, address guard, DNS classification, policies, reports, input checks."""

from __future__ import annotations

import random

import dns.exception
import dns.resolver
import pytest

from smtprelay import (
    DeliveryError,
    DeliveryReport,
    Message,
    MessageError,
    PoolLimits,
    RecipientResult,
    Relay,
    RetryPolicy,
    Status,
)
from smtprelay._routing import (
    MXHost,
    MXResolver,
    _TTLCache,
    ascii_domain,
    classify_dns_error,
    order_mx,
    refusal_reason,
)
from smtprelay.testing import DNSZone


def test_order_mx_by_preference_with_equal_preferences_shuffled() -> None:
    records = [(20, "c.example."), (10, "b.example"), (10, "a.example"), (30, "d.example"), (10, "B.example")]
    seen = set()
    for seed in range(30):
        hosts = order_mx(records, random.Random(seed))
        assert [h.preference for h in hosts] == [10, 10, 20, 30]
        assert {h.name for h in hosts[:2]} == {"a.example", "b.example"}
        assert hosts[2:] == (MXHost("c.example", 20), MXHost("d.example", 30))
        seen.add(hosts[0].name)
    assert seen == {"a.example", "b.example"}, "both equal-preference orders occur"
    assert order_mx(records, random.Random(5)) == order_mx(records, random.Random(5))


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.0.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fc00::1", "private"),
        ("100.64.0.1", "not a globally routable"),
        ("240.0.0.1", "reserved"),
        ("not-an-ip", "not an IP"),
    ],
)
def test_refusal_reasons(address: str, reason: str) -> None:
    refusal = refusal_reason(address)
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "93.184.216.34"])
def test_public_addresses_are_fine(address: str) -> None:
    assert refusal_reason(address) is None


def test_dns_error_classification() -> None:
    assert classify_dns_error(dns.resolver.NXDOMAIN(), "x").status is Status.BOUNCED
    for error in (
        dns.resolver.NoNameservers(),
        dns.resolver.LifetimeTimeout(timeout=1.0, errors=[]),
        dns.exception.Timeout(),
        dns.resolver.YXDOMAIN(),
    ):
        failure = classify_dns_error(error, "x")
        assert (failure.status, failure.enhanced_status) == (Status.DEFERRED, "4.4.3")


def test_ascii_domain() -> None:
    assert ascii_domain("B\u00fccher.Example.") == "xn--bcher-kva.example"
    assert ascii_domain("EXAMPLE.org") == "example.org"
    with pytest.raises(ValueError, match="not a valid domain"):
        ascii_domain("a" * 70 + ".example")


def test_ttl_cache_expires_and_is_bounded() -> None:
    now = [0.0]
    cache = _TTLCache(2, lambda: now[0])
    cache.put("a", 1, 10)
    cache.put("b", 2, 10)
    cache.put("zero", 3, 0)
    assert cache.get("zero") is None, "TTL 0 is never cached"
    assert cache.get("a") == 1
    cache.put("c", 3, 10)
    assert cache.get("b") is None, "least recently used is evicted"
    now[0] = 10.0
    assert cache.get("a") is None and cache.get("c") is None


def test_mx_cache_honours_the_ttl() -> None:
    now = [100.0]
    with DNSZone() as zone:
        zone.mx("example.test", [(10, "mx.example.test")], ttl=60)
        resolver = MXResolver(zone.resolver(), rng=random.Random(1), clock=lambda: now[0])
        for _ in range(3):
            assert resolver.route("example.test").hosts == (MXHost("mx.example.test", 10),)
        assert len(zone.queries_for("example.test", "MX")) == 1
        now[0] += 61
        resolver.route("example.test")
        assert len(zone.queries_for("example.test", "MX")) == 2


def test_cname_loop_does_not_deliver() -> None:
    with DNSZone() as zone:
        zone.cname("loop1.test", "loop2.test")
        zone.cname("loop2.test", "loop1.test")
        route = MXResolver(zone.resolver(), rng=random.Random(1)).route("loop1.test")
    assert route.failure is not None and route.hosts == ()
    assert (route.failure.status, route.failure.enhanced_status) == (Status.BOUNCED, "5.4.4")
    assert "CNAME loop" in route.failure.text


def test_retry_policy_backoff() -> None:
    policy = RetryPolicy(attempts=5, initial_delay=1.0, max_delay=5.0, multiplier=2.0, jitter=0.0)
    assert [policy.delay(n, random.Random(0)) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    jittery = RetryPolicy(initial_delay=1.0, jitter=0.5)
    delays = [jittery.delay(1, random.Random(seed)) for seed in range(20)]
    assert all(1.0 <= d <= 1.5 for d in delays) and len(set(delays)) > 1
    capped = RetryPolicy(initial_delay=1.0, max_delay=1.2, jitter=5.0)
    assert all(capped.delay(n, random.Random(n)) <= 1.2 for n in range(1, 100))
    assert jittery.delay(1, random.Random(3)) == jittery.delay(1, random.Random(3))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": 1.5},
        {"initial_delay": -1},
        {"multiplier": 0.5},
        {"jitter": float("nan")},
        {"deadline": 0},
        {"initial_delay": 10, "max_delay": 1},
    ],
)
def test_retry_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_pool_limits_defaults_and_validation() -> None:
    limits = PoolLimits()
    assert (
        limits.max_connections_per_host,
        limits.max_messages_per_connection,
        limits.idle_timeout,
        limits.max_connection_age,
    ) == (5, 100, 30.0, 300.0)
    with pytest.raises(ValueError):
        PoolLimits(max_connections_per_host=0)
    with pytest.raises(ValueError):
        PoolLimits(max_connection_age=0)


def test_backoff_sleeps_come_from_the_policy() -> None:
    with DNSZone() as zone:
        zone.servfail("broken.test")
        policy = RetryPolicy(attempts=4, initial_delay=0.5, max_delay=1.5, multiplier=2.0, jitter=0.25)
        relay = Relay(
            resolver=zone.resolver(lifetime=1),
            retry=policy,
            rng=random.Random(42),
            local_hostname="client.test",
        )
        slept: list[float] = []
        relay._sleep = slept.append  # type: ignore[method-assign]
        result = relay.send(Message(sender="a@example.com", to=["b@broken.test"], text="x")).results[0]
    assert result.attempts == 4
    same_rng = random.Random(42)
    assert slept == [policy.delay(retry, same_rng) for retry in (1, 2, 3)], "deterministic with a seeded rng"
    for retry, delay in enumerate(slept, start=1):
        base = 0.5 * 2 ** (retry - 1)
        assert min(base, 1.5) <= delay <= min(base + 0.25, 1.5), "jitter never pushes a wait past max_delay"


def test_deadline_stops_retries() -> None:
    with DNSZone() as zone:
        zone.servfail("broken.test")
        relay = Relay(
            resolver=zone.resolver(lifetime=1),
            local_hostname="client.test",
            retry=RetryPolicy(attempts=10, initial_delay=5.0, max_delay=5.0, jitter=0, deadline=1.0),
        )
        slept: list[float] = []
        relay._sleep = slept.append  # type: ignore[method-assign]
        result = relay.send(Message(sender="a@example.com", to=["b@broken.test"], text="x")).results[0]
    assert result.attempts == 1 and slept == [], "the next attempt would start after the deadline"


def _report() -> DeliveryReport:
    msg = Message(sender="a@example.com", to=["b@example.org", "c@example.org", "d@example.org"], text="x")
    return DeliveryReport(
        msg,
        (
            RecipientResult(
                "b@example.org", Status.DELIVERED, 250, "2.0.0", "queued", "mx.example.org", "TLSv1.3"
            ),
            RecipientResult("c@example.org", Status.BOUNCED, 550, "5.1.1", "no such user", "mx.example.org"),
            RecipientResult(
                "d@example.org", Status.DEFERRED, None, "4.4.2", "lost", "mx.example.org", None, 3, True
            ),
        ),
    )


def test_report_reads_well() -> None:
    report = _report()
    assert not report.ok
    assert [r.recipient for r in report.delivered] == ["b@example.org"]
    assert [r.recipient for r in report.bounced] == ["c@example.org"]
    assert [r.recipient for r in report.deferred] == ["d@example.org"]
    assert [r.recipient for r in report.possibly_delivered] == ["d@example.org"]
    assert report.result_for("C@EXAMPLE.ORG".lower()).code == 550
    text = str(report)
    assert text.splitlines()[0] == f"message {report.message_id}: 1 delivered, 1 bounced, 1 deferred"
    assert "c@example.org: bounced via mx.example.org - 550 5.1.1 no such user" in text
    assert "d@example.org: deferred via mx.example.org (possibly delivered) - 4.4.2 lost" in text
    assert repr(report) == f"<DeliveryReport {report.message_id} delivered=1 bounced=1 deferred=1>"
    with pytest.raises(DeliveryError) as info:
        report.raise_for_status()
    assert info.value.report is report and not info.value.transient


def test_bad_input_before_any_io() -> None:
    relay = Relay(local_hostname="client.test")
    msg = Message(sender="a@example.com", to=["b@example.org"], text="x")
    with pytest.raises(TypeError, match="Message"):
        relay.send(b"From: a@example.com\r\n\r\nx")  # type: ignore[arg-type]
    with pytest.raises(MessageError, match="not a recipient"):
        relay.send(msg, recipients=["z@example.org"])
    with pytest.raises(MessageError, match="one string"):
        relay.send(msg, recipients="b@example.org")
    with pytest.raises(MessageError, match="no recipients"):
        relay.send(msg, recipients=[])
    relay.close()
    with pytest.raises(RuntimeError, match="closed"):
        relay.send(msg)
    with pytest.raises(ValueError, match="tls"):
        Relay(tls="sometimes")
    with pytest.raises(ValueError, match="port"):
        Relay(port=70000)
    with pytest.raises(TypeError, match="RetryPolicy"):
        Relay(retry=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="resolver"):
        Relay(resolver="8.8.8.8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        Relay(smarthost=[])
