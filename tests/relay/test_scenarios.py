"""Relay scenarios: several MX hosts on loopback addresses behind a real-wire DNS zone.

RELIABILITY 4, 15-18, 21-23, 51, and the in-call part of 55.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from smtprelay import Message, Relay, RetryPolicy, Status, events
from smtprelay.testing import DNSZone, LocalMX
from support.certs import CertAuthority
from support.network import loopback_address
from support.relaying import NO_WAIT, Hosts


def message(*to: str, **kwargs: object) -> Message:
    return Message(sender="alice@example.com", to=list(to), subject="Hi", text="Hello", **kwargs)  # type: ignore[arg-type]


def outcomes(report: object) -> dict[str, tuple[Status, int | None, int]]:
    return {r.recipient: (r.status, r.code, r.attempts) for r in report.results}  # type: ignore[attr-defined]


def test_preference_order(zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]) -> None:
    primary, backup = hosts.mx("mx1.example.test"), hosts.mx("mx2.example.test")
    zone.mx("example.test", [(20, "mx2.example.test"), (10, "mx1.example.test")])
    report = make_relay().send(message("bob@example.test"))
    assert report.ok
    assert report.results[0].host == "mx1.example.test"
    assert primary.deliveries_to("bob@example.test") == 1 and backup.connections == 0


def test_failover_when_the_first_mx_refuses_connections(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    hosts.dead("mx1.example.test")
    backup = hosts.mx("mx2.example.test")
    zone.mx("example.test", [(10, "mx1.example.test"), (20, "mx2.example.test")])
    seen: list[events.Event] = []
    report = make_relay(on_event=seen.append).send(message("bob@example.test"))
    assert outcomes(report) == {"bob@example.test": (Status.DELIVERED, 250, 1)}
    assert report.results[0].host == "mx2.example.test"
    assert backup.deliveries_to("bob@example.test") == 1
    kinds = [e.kind for e in seen]
    assert kinds[:3] == ["attempt", "connect_failed", "connected"]
    failed = next(e for e in seen if isinstance(e, events.ConnectFailed))
    assert failed.host == "mx1.example.test"


def test_every_address_of_a_host_is_tried(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test")
    dead = loopback_address()
    zone.a("mx.example.test", [dead, server.host])
    zone.mx("example.test", [(10, "mx.example.test")])
    report = make_relay().send(message("bob@example.test"))
    assert report.ok
    assert server.deliveries_to("bob@example.test") == 1


def test_equal_preferences_share_the_load(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    a, b = hosts.mx("a.example.test"), hosts.mx("b.example.test")
    zone.mx("example.test", [(10, "a.example.test"), (10, "b.example.test")], ttl=0)
    relay = make_relay(rng=random.Random(3))
    for i in range(16):
        assert relay.send(message(f"user{i}@example.test")).ok
    counts = (len(a.messages), len(b.messages))
    assert sum(counts) == 16
    assert min(counts) >= 3, f"both equal-preference hosts take a share: {counts}"


def test_equal_preference_order_is_deterministic_with_a_seeded_rng(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    a, b = hosts.mx("a.example.test"), hosts.mx("b.example.test")
    zone.mx("example.test", [(10, "a.example.test"), (10, "b.example.test")], ttl=0)
    first = [
        make_relay(rng=random.Random(11)).send(message("u@example.test")).results[0].host for _ in range(4)
    ]
    second = [
        make_relay(rng=random.Random(11)).send(message("u@example.test")).results[0].host for _ in range(4)
    ]
    assert first == second
    assert len(a.messages) + len(b.messages) == 8


def test_implicit_mx(zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]) -> None:
    server = hosts.mx("plain.test")  # an A record, no MX
    report = make_relay().send(message("bob@plain.test"))
    assert report.ok and report.results[0].host == "plain.test"
    assert server.deliveries_to("bob@plain.test") == 1


def test_no_mx_and_no_address_bounces(zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]) -> None:
    zone.txt("nothing.test", ["v=spf1 -all"])
    report = make_relay().send(message("bob@nothing.test"))
    assert [(r.status, r.code, r.enhanced_status) for r in report.results] == [
        (Status.BOUNCED, None, "5.1.2")
    ]


def test_null_mx_bounces_without_connecting(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.nomail.test")
    zone.null_mx("nomail.test")
    report = make_relay().send(message("bob@nomail.test"))
    result = report.results[0]
    assert (result.status, result.code, result.enhanced_status, result.attempts) == (
        Status.BOUNCED,
        None,
        "5.1.10",
        1,
    )
    assert "null MX" in result.text
    assert server.connections == 0
    assert zone.queries_for("nomail.test", "A") == ()


def test_nxdomain_bounces(zone: DNSZone, make_relay: Callable[..., Relay]) -> None:
    zone.nxdomain("gone.test")
    result = make_relay().send(message("bob@gone.test")).results[0]
    assert (result.status, result.code, result.enhanced_status, result.attempts) == (
        Status.BOUNCED,
        None,
        "5.1.2",
        1,
    )
    assert "NXDOMAIN" in result.text


def test_servfail_defers_and_is_retried(zone: DNSZone, make_relay: Callable[..., Relay]) -> None:
    zone.mx("broken.test", [(10, "mx.broken.test")])
    zone.servfail("broken.test", "MX")
    result = make_relay().send(message("bob@broken.test")).results[0]
    assert (result.status, result.code, result.enhanced_status) == (Status.DEFERRED, None, "4.4.3")
    assert result.attempts == NO_WAIT.attempts
    assert len(zone.queries_for("broken.test", "MX")) >= NO_WAIT.attempts, "failures are not cached"


def test_dns_timeout_defers(zone: DNSZone, make_relay: Callable[..., Relay]) -> None:
    zone.timeout("slow.test")
    relay = make_relay(resolver=zone.resolver(lifetime=0.3), retry=RetryPolicy.none())
    result = relay.send(message("bob@slow.test")).results[0]
    assert (result.status, result.enhanced_status) == (Status.DEFERRED, "4.4.3")
    assert "timed out" in result.text


def test_mx_host_without_address_is_skipped(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    backup = hosts.mx("mx2.example.test")
    zone.mx("example.test", [(10, "noaddress.example.test"), (20, "mx2.example.test")])
    zone.txt("noaddress.example.test", ["nothing here"])
    report = make_relay().send(message("bob@example.test"))
    assert report.ok and backup.deliveries_to("bob@example.test") == 1


def test_idn_domain(zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]) -> None:
    server = hosts.mx("mx.xn--bcher-kva.test")
    zone.mx("b\u00fccher.test", [(10, "mx.xn--bcher-kva.test")])
    report = make_relay().send(message("info@b\u00fccher.test"))
    assert report.ok
    assert zone.queries_for("xn--bcher-kva.test", "MX")
    assert server.messages[0].rcpt_tos == ("info@xn--bcher-kva.test",)


def test_greylisting_is_delivered_on_the_second_attempt(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")])
    server.script_rcpt("bob@example.test", [(451, "4.7.1 Greylisted, come back later")])
    report = make_relay().send(message("bob@example.test", "carol@example.test"))
    assert outcomes(report) == {
        "bob@example.test": (Status.DELIVERED, 250, 2),
        "carol@example.test": (Status.DELIVERED, 250, 1),
    }
    assert server.deliveries_to("bob@example.test") == 1
    assert server.deliveries_to("carol@example.test") == 1, "a delivered recipient is never sent twice"


def test_delivered_recipients_are_never_sent_again_across_retries(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")])
    server.script_rcpt("slow@example.test", 451, "4.2.0 try again")
    report = make_relay().send(message("slow@example.test", "fast@example.test"))
    assert outcomes(report) == {
        "slow@example.test": (Status.DEFERRED, 451, 3),
        "fast@example.test": (Status.DELIVERED, 250, 1),
    }
    assert server.deliveries_to("fast@example.test") == 1
    assert server.rcpt_attempts("slow@example.test") == 3


def test_rcpt_4xx_defers_to_the_next_attempt_not_the_backup_mx(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    primary, backup = hosts.mx("mx1.example.test"), hosts.mx("mx2.example.test")
    zone.mx("example.test", [(10, "mx1.example.test"), (20, "mx2.example.test")])
    primary.script_rcpt("bob@example.test", 450, "4.2.1 mailbox busy")
    report = make_relay(retry=RetryPolicy.none()).send(message("bob@example.test"))
    assert outcomes(report) == {"bob@example.test": (Status.DEFERRED, 450, 1)}
    assert backup.connections == 0


def test_permanent_550_on_one_recipient_with_others_delivered(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")])
    server.script_rcpt("gone@example.test", 550, "5.1.1 No such user")
    report = make_relay().send(message("a@example.test", "gone@example.test", "b@example.test"))
    assert outcomes(report) == {
        "a@example.test": (Status.DELIVERED, 250, 1),
        "gone@example.test": (Status.BOUNCED, 550, 1),
        "b@example.test": (Status.DELIVERED, 250, 1),
    }
    assert len(server.messages) == 1, "one transaction for the destination"
    assert server.messages[0].rcpt_tos == ("a@example.test", "b@example.test")
    assert "No such user" in report.result_for("gone@example.test").text


def test_452_too_many_recipients_splits_transactions(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test", extensions=["ENHANCEDSTATUSCODES"])
    zone.mx("example.test", [(10, "mx.example.test")])
    for address in ("r3@example.test", "r4@example.test"):
        server.script_rcpt(address, [(452, "4.5.3 Error: too many recipients")])
    recipients = [f"r{i}@example.test" for i in range(5)]
    report = make_relay().send(message(*recipients))
    assert all(r.status is Status.DELIVERED and r.attempts == 1 for r in report.results)
    assert [m.rcpt_tos for m in server.messages] == [tuple(recipients[:3]), tuple(recipients[3:])]


def test_rcptmax_limit_splits_transactions(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test", max_recipients=2)
    zone.mx("example.test", [(10, "mx.example.test")])
    recipients = [f"r{i}@example.test" for i in range(5)]
    report = make_relay().send(message(*recipients))
    assert report.ok
    assert [len(m.rcpt_tos) for m in server.messages] == [2, 2, 1]


def test_452_mailbox_full_defers_that_recipient_only(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test", extensions=["ENHANCEDSTATUSCODES"])
    zone.mx("example.test", [(10, "mx.example.test")])
    server.script_rcpt("full@example.test", 452, "4.2.2 Mailbox full")
    report = make_relay(retry=RetryPolicy.none()).send(message("full@example.test", "ok@example.test"))
    assert outcomes(report) == {
        "full@example.test": (Status.DEFERRED, 452, 1),
        "ok@example.test": (Status.DELIVERED, 250, 1),
    }
    assert report.result_for("full@example.test").enhanced_status == "4.2.2"


def test_private_addresses_are_refused_by_default(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")])
    result = make_relay(allow_private_mx=False).send(message("bob@example.test")).results[0]
    assert (result.status, result.code, result.enhanced_status) == (Status.BOUNCED, None, "5.4.4")
    assert server.host in result.text and "loopback" in result.text
    assert server.connections == 0


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"),
        ("169.254.1.1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("192.168.0.1", "private"),
    ],
)
def test_private_address_reasons(
    zone: DNSZone, make_relay: Callable[..., Relay], address: str, reason: str
) -> None:
    zone.mx("evil.test", [(10, "mx.evil.test")])
    if ":" in address:
        zone.aaaa("mx.evil.test", address)
    else:
        zone.a("mx.evil.test", address)
    result = make_relay(allow_private_mx=False).send(message("x@evil.test")).results[0]
    assert result.status is Status.BOUNCED
    assert address in result.text and reason in result.text


def test_mail_4xx_fails_over_within_the_attempt(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    primary, backup = hosts.mx("mx1.example.test"), hosts.mx("mx2.example.test")
    zone.mx("example.test", [(10, "mx1.example.test"), (20, "mx2.example.test")])
    primary.script_mail(451, "4.3.0 queue full")
    report = make_relay(retry=RetryPolicy.none()).send(message("bob@example.test"))
    assert outcomes(report) == {"bob@example.test": (Status.DELIVERED, 250, 1)}
    assert backup.deliveries_to("bob@example.test") == 1


def test_mail_5xx_bounces_and_is_never_cached(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")])
    server.script_mail([(550, "5.7.1 sender blocked")])
    relay = make_relay()
    first = relay.send(message("bob@example.test"))
    assert outcomes(first) == {"bob@example.test": (Status.BOUNCED, 550, 1)}
    second = relay.send(message("bob@example.test"))
    assert second.ok, "the next send asks the server again"


def test_5xx_greeting_moves_to_the_next_mx(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    primary, backup = hosts.mx("mx1.example.test"), hosts.mx("mx2.example.test")
    zone.mx("example.test", [(10, "mx1.example.test"), (20, "mx2.example.test")])
    primary.script_greeting(554, "5.7.1 no service")
    report = make_relay(retry=RetryPolicy.none()).send(message("bob@example.test"))
    assert report.ok and backup.deliveries_to("bob@example.test") == 1


def test_smtputf8_missing_on_one_mx_uses_another(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    hosts.mx("mx1.example.test", smtputf8=False)
    backup = hosts.mx("mx2.example.test", smtputf8=True)
    zone.mx("example.test", [(10, "mx1.example.test"), (20, "mx2.example.test")])
    report = make_relay().send(message("j\u00f6rg@example.test"))
    assert report.ok and backup.deliveries_to("j\u00f6rg@example.test") == 1


def test_smtputf8_missing_everywhere_bounces(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    hosts.mx("mx1.example.test", smtputf8=False)
    zone.mx("example.test", [(10, "mx1.example.test")])
    result = make_relay().send(message("j\u00f6rg@example.test")).results[0]
    assert (result.status, result.enhanced_status, result.attempts) == (Status.BOUNCED, "5.6.7", 1)


def test_connection_lost_after_end_of_data_is_possibly_delivered(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")])
    server.script_data(LocalMX.DISCONNECT)
    seen: list[events.Event] = []
    report = make_relay(on_event=seen.append).send(message("bob@example.test"))
    result = report.results[0]
    assert (result.status, result.possibly_delivered, result.attempts) == (Status.DEFERRED, True, 3)
    assert "may already have been delivered" in result.text
    assert report.possibly_delivered == (result,)
    data_sent = [e for e in seen if isinstance(e, events.DataSent)]
    assert len(data_sent) == 3 and data_sent[0].recipients == ("bob@example.test",)


def test_session_and_address_limits_per_attempt(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    servers = [hosts.mx(f"mx{i}.example.test") for i in range(3)]
    for server in servers:
        server.script_greeting(421, "4.3.2 busy")
    zone.mx("example.test", [(10 * (i + 1), f"mx{i}.example.test") for i in range(3)])
    result = make_relay(retry=RetryPolicy.none()).send(message("bob@example.test")).results[0]
    assert result.status is Status.DEFERRED
    assert [s.connections for s in servers] == [1, 1, 0], "at most 2 SMTP sessions per attempt (Postfix)"

    many = [loopback_address() for _ in range(7)]
    zone.a("many.example.test", many)
    zone.mx("many.test", [(10, "many.example.test")])
    seen: list[events.Event] = []
    make_relay(retry=RetryPolicy.none(), on_event=seen.append).send(message("bob@many.test"))
    assert sum(isinstance(e, events.ConnectFailed) for e in seen) == 5, "at most 5 addresses per attempt"


def test_recipients_of_domains_sharing_mx_hosts_share_one_transaction(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.shared.test")
    for domain in ("one.test", "two.test"):
        zone.mx(domain, [(10, "mx.shared.test")])
    report = make_relay().send(message("a@one.test", "b@two.test", "c@one.test"))
    assert report.ok
    assert [m.rcpt_tos for m in server.messages] == [("a@one.test", "c@one.test", "b@two.test")]


def test_a_raising_event_hook_changes_nothing(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")])

    def broken(event: events.Event) -> None:
        raise RuntimeError("hook bug")

    assert make_relay(on_event=broken).send(message("bob@example.test")).ok


def test_outcome_events_match_the_report(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")])
    zone.null_mx("nomail.test")
    seen: list[events.Event] = []
    report = make_relay(on_event=seen.append).send(message("bob@example.test", "x@nomail.test"))
    assert tuple(e.result for e in seen if isinstance(e, events.Outcome)) == report.results
    assert all(e.message_id == report.message_id for e in seen)


def test_mx_answers_are_cached(zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]) -> None:
    hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")], ttl=300)
    relay = make_relay()
    for _ in range(3):
        assert relay.send(message("bob@example.test")).ok
    assert len(zone.queries_for("example.test", "MX")) == 1
    assert len(zone.queries_for("mx.example.test", "A")) == 1


def test_subset_of_recipients(zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]) -> None:
    server = hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")])
    msg = message("a@example.test", "b@example.test", "c@example.test")
    report = make_relay().send(msg, recipients=["c@example.test", "A@example.test"])
    assert [r.recipient for r in report.results] == ["c@example.test", "a@example.test"]
    assert server.messages[0].rcpt_tos == ("c@example.test", "a@example.test")


def test_required_tls_unmet_defers_without_mail(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    plain = hosts.mx("mx1.example.test")
    zone.mx("example.test", [(10, "mx1.example.test")])
    result = make_relay(tls="required", retry=RetryPolicy.none()).send(message("bob@example.test")).results[0]
    assert (result.status, result.code, result.enhanced_status) == (Status.DEFERRED, None, "4.7.5")
    assert "does not offer STARTTLS" in result.text
    plain.wait_until_idle()
    assert all(not c.upper().startswith("MAIL") for s in plain.sessions for c in s.commands)


def test_required_tls_moves_to_an_mx_that_offers_it(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay], tls_ca: CertAuthority
) -> None:
    hosts.mx("mx1.example.test")
    secure = hosts.mx("mx2.example.test", tls_context=tls_ca.server_context("mx2.example.test"))
    zone.mx("example.test", [(10, "mx1.example.test"), (20, "mx2.example.test")])
    report = make_relay(tls="verify", ssl_context=tls_ca.client_context()).send(message("bob@example.test"))
    assert report.ok
    assert report.results[0].host == "mx2.example.test" and report.results[0].tls is not None
    assert secure.messages[0].tls


def test_possibly_delivered_survives_a_later_failed_attempt(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")], ttl=0)
    server.script_data([LocalMX.DISCONNECT])
    calls = []

    def fail_dns_after_first(event: events.Event) -> None:
        if isinstance(event, events.Attempt):
            calls.append(event.attempt)
            if event.attempt == 2:
                zone.servfail("example.test")

    result = make_relay(on_event=fail_dns_after_first).send(message("bob@example.test")).results[0]
    assert calls == [1, 2, 3]
    assert (result.status, result.enhanced_status, result.possibly_delivered) == (
        Status.DEFERRED,
        "4.4.3",
        True,
    )
    assert "earlier attempt may already have delivered" in result.text


def test_data_sent_names_only_recipients_that_may_receive_it(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    server = hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")])
    server.script_rcpt("gone@example.test", 550, "5.1.1 no")
    seen: list[events.Event] = []
    make_relay(on_event=seen.append).send(message("a@example.test", "gone@example.test", "b@example.test"))
    sent = [e for e in seen if isinstance(e, events.DataSent)]
    assert [e.recipients for e in sent] == [("a@example.test", "b@example.test")]


def test_grouping_respects_mx_preferences(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    a, b = hosts.mx("a.example.test"), hosts.mx("b.example.test")
    zone.mx("one.test", [(10, "a.example.test"), (20, "b.example.test")])
    zone.mx("two.test", [(10, "b.example.test"), (20, "a.example.test")])
    assert make_relay().send(message("x@one.test", "y@two.test")).ok
    assert [m.rcpt_tos for m in a.messages] == [("x@one.test",)]
    assert [m.rcpt_tos for m in b.messages] == [("y@two.test",)]


def test_equal_preferences_share_the_load_with_cached_answers_and_pooling(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    a, b = hosts.mx("a.example.test"), hosts.mx("b.example.test")
    zone.mx("example.test", [(10, "a.example.test"), (10, "b.example.test")], ttl=300)
    relay = make_relay(rng=random.Random(5))
    for i in range(20):
        assert relay.send(message(f"user{i}@example.test")).ok
    assert min(len(a.messages), len(b.messages)) >= 5
    assert len(zone.queries_for("example.test", "MX")) == 1


def test_all_mx_hosts_without_addresses_bounces(zone: DNSZone, make_relay: Callable[..., Relay]) -> None:
    zone.mx("example.test", [(10, "nx1.example.test"), (20, "nx2.example.test")])
    zone.nxdomain("nx1.example.test")
    zone.nxdomain("nx2.example.test")
    result = make_relay().send(message("bob@example.test")).results[0]
    assert (result.status, result.enhanced_status, result.attempts) == (Status.BOUNCED, "5.4.4", 1)
    assert "nx1.example.test" in result.text and "nx2.example.test" in result.text
