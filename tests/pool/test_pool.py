"""Connection pool: reuse, limits, health, suspension, and sharing across threads (RELIABILITY 3, 49, 50)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from smtprelay import ConnectionFailed, Message, Phase, PoolLimits, Relay, RetryPolicy, Smarthost, Status
from smtprelay._pool import SUSPEND_AFTER, ConnectionPool, PoolKey, PoolState
from smtprelay.testing import DNSZone, LocalMX
from support.network import loopback_address
from support.relaying import Hosts


def message(*to: str, subject: str = "Hi") -> Message:
    return Message(sender="alice@example.com", to=list(to), subject=subject, text="Hello")


@pytest.fixture
def mx(zone: DNSZone, hosts: Hosts) -> LocalMX:
    server = hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")])
    return server


def test_connections_are_reused(mx: LocalMX, make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    for i in range(5):
        assert relay.send(message(f"u{i}@example.test")).ok
    assert mx.connections == 1
    assert len(mx.messages) == 5
    assert "active=0 idle=1 connecting=0" in repr(relay.pool)


def test_max_messages_per_connection(mx: LocalMX, make_relay: Callable[..., Relay]) -> None:
    relay = make_relay(pool=PoolLimits(max_messages_per_connection=2))
    for i in range(5):
        assert relay.send(message(f"u{i}@example.test")).ok
    assert mx.connections == 3
    assert [s.transactions for s in mx.sessions] == [2, 2, 1]


def test_idle_connections_are_closed(mx: LocalMX, make_relay: Callable[..., Relay]) -> None:
    relay = make_relay(pool=PoolLimits(idle_timeout=0.2))
    assert relay.send(message("a@example.test")).ok
    time.sleep(0.3)
    assert relay.pool.sweep() == 1
    assert "idle=" not in repr(relay.pool)
    assert relay.send(message("b@example.test")).ok
    assert mx.connections == 2
    assert mx.sessions[0].closed and "QUIT" in mx.sessions[0].commands


def test_connection_age_limit(mx: LocalMX, make_relay: Callable[..., Relay]) -> None:
    relay = make_relay(pool=PoolLimits(max_connection_age=0.2))
    assert relay.send(message("a@example.test")).ok
    time.sleep(0.3)
    assert relay.send(message("b@example.test")).ok
    assert mx.connections == 2


def test_server_closing_an_idle_connection_is_invisible(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test", timeout=0.3)  # aiosmtpd drops clients idle for 0.3 s
    zone.mx("example.test", [(10, "mx.example.test")])
    relay = make_relay()
    assert relay.send(message("a@example.test")).ok
    time.sleep(0.6)
    report = relay.send(message("b@example.test"))
    assert report.ok and report.results[0].attempts == 1
    assert server.connections == 2
    assert server.deliveries_to("b@example.test") == 1


def test_421_to_mail_on_a_reused_connection_reconnects(mx: LocalMX, make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    assert relay.send(message("a@example.test")).ok
    mx.script_mail([(421, "4.4.2 idle too long, closing")])
    report = relay.send(message("b@example.test"))
    assert report.ok and report.results[0].attempts == 1
    assert mx.deliveries_to("b@example.test") == 1
    assert mx.connections == 2


def test_eof_on_a_reused_connection_reconnects(mx: LocalMX, make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    assert relay.send(message("a@example.test")).ok
    mx.script_mail([LocalMX.DISCONNECT])
    report = relay.send(message("b@example.test"))
    assert report.ok and report.results[0].attempts == 1
    assert mx.deliveries_to("b@example.test") == 1


def test_broken_connections_are_never_pooled(mx: LocalMX, make_relay: Callable[..., Relay]) -> None:
    relay = make_relay()
    mx.script_data([LocalMX.DISCONNECT])
    report = relay.send(message("a@example.test"))
    assert (report.results[0].status, report.results[0].attempts) == (Status.DELIVERED, 2)
    assert mx.connections == 2, "the connection that failed after DATA was replaced, not reused"
    assert "active=0 idle=1" in repr(relay.pool)


def test_many_threads_share_the_pool_and_deliver_exactly_once(
    mx: LocalMX, make_relay: Callable[..., Relay]
) -> None:
    relay = make_relay(pool=PoolLimits(max_connections_per_host=3))
    errors: list[BaseException] = []
    reports = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            for i in range(15):
                report = relay.send(message(f"t{n}-{i}@example.test"))
                with lock:
                    reports.append(report)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(reports) == 120 and all(r.ok for r in reports)
    for n in range(8):
        for i in range(15):
            assert mx.deliveries_to(f"t{n}-{i}@example.test") == 1
    assert mx.connections <= 3, "never more connections than the per-destination limit"


def test_pool_key_separates_credentials_and_tls(make_relay: Callable[..., Relay]) -> None:
    with LocalMX(loopback_address(), auth=lambda mech, user, secret: True, auth_require_tls=False) as server:
        a = Smarthost(
            server.host, server.port, username="a", password="x", tls="none", allow_plaintext_auth=True
        )
        b = Smarthost(
            server.host, server.port, username="b", password="x", tls="none", allow_plaintext_auth=True
        )
        relay = make_relay(routes={"one.test": a, "two.test": b})
        for _ in range(2):
            assert relay.send(message("x@one.test")).ok
            assert relay.send(message("y@two.test")).ok
        assert server.connections == 2
        assert sorted(s.authenticated_as or "" for s in server.sessions) == ["a", "b"]


def test_close_quits_every_connection(zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]) -> None:
    servers = [hosts.mx(f"mx{i}.example.test") for i in range(3)]
    for i in range(3):
        zone.mx(f"d{i}.test", [(10, f"mx{i}.example.test")])
    relay = make_relay()
    assert relay.send(message("a@d0.test", "b@d1.test", "c@d2.test")).ok
    started = time.monotonic()
    relay.close()
    assert time.monotonic() - started < 3
    for server in servers:
        server.wait_until_idle()
        assert server.sessions[0].closed and server.sessions[0].commands[-1] == "QUIT"
    with pytest.raises(RuntimeError):
        relay.send(message("a@d0.test"))


def test_a_dead_destination_is_suspended(zone: DNSZone, make_relay: Callable[..., Relay]) -> None:
    zone.a("mx.dead.test", loopback_address())
    zone.mx("dead.test", [(10, "mx.dead.test")])
    relay = make_relay(retry=RetryPolicy.none())
    texts = []
    for _ in range(SUSPEND_AFTER + 2):
        result = relay.send(message("x@dead.test")).results[0]
        assert result.status is Status.DEFERRED
        texts.append(result.text)
    assert all("suspended" not in t for t in texts[:SUSPEND_AFTER])
    assert all("suspended" in t for t in texts[SUSPEND_AFTER:])


# -- PoolState and ConnectionPool with a fake clock (unit tier) ------------------------------------


@dataclass
class FakeTransport:
    messages_sent: int = 0
    usable: bool = True
    closed: bool = False
    alive: bool = True

    def is_alive(self) -> bool:
        return self.alive and not self.closed

    def close(self, *, timeout: float | None = None) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def noop(self) -> None:
        pass


KEY = PoolKey("mx.example.test", "192.0.2.1", 25, "opportunistic")


def make_pool(**limits: float) -> tuple[ConnectionPool, list[float]]:
    now = [0.0]
    return ConnectionPool(PoolLimits(**limits), clock=lambda: now[0]), now  # type: ignore[arg-type]


def test_pool_state_limits_per_destination() -> None:
    state = PoolState(PoolLimits(max_connections_per_host=2, max_connections=3))
    assert state.checkout(KEY, 0).decision == "connect"
    assert state.checkout(KEY, 0).decision == "connect"
    assert state.checkout(KEY, 0).decision == "wait"
    other = PoolKey("mx2.example.test", "192.0.2.2", 25, "opportunistic")
    assert state.checkout(other, 0).decision == "connect"
    assert state.checkout(PoolKey("x", "192.0.2.3", 25, "none"), 0).decision == "wait", "max_connections"


def test_pool_reuses_then_retires_by_message_count() -> None:
    pool, now = make_pool(max_messages_per_connection=2)
    made: list[FakeTransport] = []

    def connect() -> FakeTransport:
        made.append(FakeTransport())
        return made[-1]

    for _ in range(3):
        lease = pool.acquire(KEY, connect)  # type: ignore[arg-type]
        lease.transport.messages_sent += 1  # type: ignore[attr-defined]
        pool.release(lease)
        now[0] += 1
    assert len(made) == 2 and made[0].closed and not made[1].closed


def test_pool_drops_a_connection_that_spoke_while_idle() -> None:
    pool, _ = make_pool()
    first = FakeTransport()
    lease = pool.acquire(KEY, lambda: first)  # type: ignore[arg-type,return-value]
    pool.release(lease)
    first.alive = False
    second = FakeTransport()
    lease = pool.acquire(KEY, lambda: second)  # type: ignore[arg-type,return-value]
    assert lease.transport is second and not lease.reused


def test_pool_waits_for_a_free_slot_and_times_out() -> None:
    pool = ConnectionPool(PoolLimits(max_connections_per_host=1))
    lease = pool.acquire(KEY, FakeTransport)  # type: ignore[arg-type]
    with pytest.raises(ConnectionFailed, match="became free"):
        pool.acquire(KEY, FakeTransport, timeout=0.1)  # type: ignore[arg-type]
    threading.Timer(0.1, pool.release, args=(lease,)).start()
    again = pool.acquire(KEY, FakeTransport, timeout=2)  # type: ignore[arg-type]
    assert again.reused


def test_suspension_expires_and_a_probe_goes_through() -> None:
    pool, now = make_pool()

    def refuse() -> FakeTransport:
        raise ConnectionFailed("refused", phase=Phase.CONNECT)

    for _ in range(SUSPEND_AFTER):
        with pytest.raises(ConnectionFailed, match="refused"):
            pool.acquire(KEY, refuse)  # type: ignore[arg-type]
    with pytest.raises(ConnectionFailed, match="suspended"):
        pool.acquire(KEY, FakeTransport)  # type: ignore[arg-type]
    now[0] += 61
    assert not pool.acquire(KEY, FakeTransport).reused  # type: ignore[arg-type]


def test_pool_repr_and_close() -> None:
    pool, _ = make_pool()
    lease = pool.acquire(KEY, FakeTransport)  # type: ignore[arg-type]
    assert repr(pool) == "<ConnectionPool [mx.example.test[192.0.2.1]:25 active=1 idle=0 connecting=0]>"
    pool.release(lease)
    assert repr(pool) == "<ConnectionPool [mx.example.test[192.0.2.1]:25 active=0 idle=1 connecting=0]>"
    pool.close()
    assert lease.transport.closed  # type: ignore[attr-defined]
    with pytest.raises(ConnectionFailed, match="closed"):
        pool.acquire(KEY, FakeTransport)  # type: ignore[arg-type]


def test_close_while_a_delivery_is_in_flight(mx: LocalMX, make_relay: Callable[..., Relay]) -> None:
    relay = make_relay(retry=RetryPolicy(attempts=5, initial_delay=30, jitter=0))
    mx.script_data(LocalMX.HANG)  # the end-of-data reply never comes (600 s would be the default wait)
    reports = []
    worker = threading.Thread(target=lambda: reports.append(relay.send(message("bob@example.test"))))
    worker.start()
    deadline = time.monotonic() + 5
    while not any("DATA" in s.commands for s in mx.sessions) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # the message data is on its way; the reply will never come
    started = time.monotonic()
    relay.close()
    worker.join(timeout=5)
    assert not worker.is_alive(), "close() ends deliveries in flight"
    assert time.monotonic() - started < 3
    result = reports[0].results[0]
    assert result.status is Status.DEFERRED and result.possibly_delivered
    assert result.attempts == 1, "no retry starts after close()"
    assert threading.active_count() < 10
