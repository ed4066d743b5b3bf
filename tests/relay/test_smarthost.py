"""Smarthost relay and per-domain routes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from smtprelay import Message, Relay, RetryPolicy, Smarthost, Status
from smtprelay.testing import DNSZone, LocalMX
from support.certs import CertAuthority
from support.network import free_port, loopback_address
from support.relaying import Hosts


def message(*to: str) -> Message:
    return Message(sender="alice@example.com", to=list(to), subject="Hi", text="Hello")


def test_smarthost_with_auth_and_verified_tls(
    tls_ca: CertAuthority, zone: DNSZone, make_relay: Callable[..., Relay]
) -> None:
    host = loopback_address()
    with LocalMX(
        host,
        tls_context=tls_ca.server_context("smtp.provider.test", host),
        auth=("user@example.com", "app-password"),
        auth_required=True,
    ) as server:
        smarthost = Smarthost(
            host,
            server.port,
            username="user@example.com",
            password="app-password",
            tls_hostname="smtp.provider.test",
            ssl_context=tls_ca.client_context(),
        )
        relay = make_relay(smarthost=smarthost, allow_private_mx=False)
        report = relay.send(message("bob@example.org", "carol@example.net"))
        assert report.ok
        received = server.wait_for(1)[0]
    assert received.rcpt_tos == ("bob@example.org", "carol@example.net"), "one transaction for the smarthost"
    assert received.authenticated_as == "user@example.com" and received.tls
    assert {r.host for r in report.results} == {"smtp.provider.test"}
    assert {r.tls for r in report.results} <= {"TLSv1.2", "TLSv1.3"}
    assert zone.queries == (), "a smarthost given as an IP needs no DNS query"
    assert "app-password" not in repr(smarthost)


def test_smarthost_verification_failure_defers(
    tls_ca: CertAuthority, make_relay: Callable[..., Relay]
) -> None:
    host = loopback_address()
    with LocalMX(host, tls_context=tls_ca.server_context("smtp.provider.test")) as server:
        relay = make_relay(
            smarthost=Smarthost(host, server.port), retry=RetryPolicy.none()
        )  # system CAs only
        result = relay.send(message("bob@example.org")).results[0]
        server.wait_until_idle()
        assert all("MAIL" not in c for s in server.sessions for c in s.commands)
    assert (result.status, result.enhanced_status) == (Status.DEFERRED, "4.7.5")
    assert "certificate verification failed" in result.text


def test_smarthost_string_and_localhost_resolve_through_the_system(make_relay: Callable[..., Relay]) -> None:
    with LocalMX("127.0.0.1") as server:
        relay = make_relay(smarthost=f"localhost:{server.port}")
        assert relay.send(message("bob@example.org")).results[0].status is not Status.DELIVERED, (
            "the default smarthost TLS policy is verify: a plaintext local relay needs tls='none'"
        )
        relay = make_relay(smarthost=Smarthost("localhost", server.port, tls="none"))
        report = relay.send(message("bob@example.org"))
    assert report.ok and report.results[0].host == "localhost"


def test_smarthost_list_is_tried_in_order(make_relay: Callable[..., Relay]) -> None:
    dead = Smarthost(loopback_address(), free_port(), tls="none")
    with LocalMX(loopback_address()) as server:
        relay = make_relay(
            smarthost=[dead, Smarthost(server.host, server.port, tls="none")], retry=RetryPolicy.none()
        )
        report = relay.send(message("bob@example.org"))
    assert report.ok and server.deliveries_to("bob@example.org") == 1


def test_routes_send_some_domains_through_a_smarthost(
    zone: DNSZone, hosts: Hosts, make_relay: Callable[..., Relay]
) -> None:
    direct = hosts.mx("mx.example.test")
    zone.mx("example.test", [(10, "mx.example.test")])
    with LocalMX(loopback_address()) as corp:
        relay = make_relay(
            routes={
                "corp.test": Smarthost(corp.host, corp.port, tls="none"),
                ".sub.test": Smarthost(corp.host, corp.port, tls="none"),
            }
        )
        report = relay.send(message("a@corp.test", "b@example.test", "c@deep.sub.test"))
        assert report.ok
        assert sorted(corp.messages[0].rcpt_tos) == ["a@corp.test", "c@deep.sub.test"]
    assert direct.messages[0].rcpt_tos == ("b@example.test",)
    assert not zone.queries_for("corp.test"), "routed domains are not looked up in DNS"


def test_smarthost_auth_failure_is_deferred_with_the_reason(
    tls_ca: CertAuthority, make_relay: Callable[..., Relay]
) -> None:
    host = loopback_address()
    with LocalMX(host, tls_context=tls_ca.server_context(host), auth=("user", "right")) as server:
        relay = make_relay(
            smarthost=Smarthost(
                host,
                server.port,
                username="user",
                password="wrong-secret",
                ssl_context=tls_ca.client_context(),
            ),
            retry=RetryPolicy.none(),
        )
        result = relay.send(message("bob@example.org")).results[0]
    assert result.status is Status.DEFERRED
    assert "535" in result.text and "wrong-secret" not in result.text


def test_smarthost_parsing() -> None:
    assert Smarthost.parse("smtp.example.com") == Smarthost("smtp.example.com", 587)
    assert Smarthost.parse("smtp.example.com:465").port == 465
    assert Smarthost.parse("[::1]:2525") == Smarthost("::1", 2525)
    assert Smarthost("[2001:db8::1]").host == "2001:db8::1"
    with pytest.raises(ValueError, match="host:port"):
        Smarthost.parse("smtp.example.com:port")
    with pytest.raises(ValueError, match="1-65535"):
        Smarthost("smtp.example.com", 0)
    with pytest.raises(ValueError, match="together"):
        Smarthost("smtp.example.com", username="u")
    with pytest.raises(ValueError, match="plaintext"):
        Smarthost("smtp.example.com", username="u", password="p", tls="none")
    with pytest.raises(ValueError, match="tls must be one of"):
        Smarthost("smtp.example.com", tls="maybe")
    with pytest.raises(ValueError, match="control"):
        Smarthost("smtp.example.com\r\n")
    assert Smarthost("h", username="u", password="p").key != Smarthost("h", username="v", password="p").key


def test_implicit_tls_smarthost_on_465_style(tls_ca: CertAuthority, make_relay: Callable[..., Relay]) -> None:
    host = loopback_address()
    with LocalMX(host, tls_context=tls_ca.server_context(host), implicit_tls=True) as server:
        smarthost = Smarthost(host, server.port, implicit_tls=True, ssl_context=tls_ca.client_context())
        report = make_relay(smarthost=smarthost).send(message("bob@example.org"))
        assert report.ok and server.wait_for(1)[0].tls


def test_plaintext_smarthost_auth_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="plaintext"):
        Relay(smarthost=Smarthost("relay.local", 25, username="u", password="p", tls="none"))
    relay = Relay(
        smarthost=Smarthost(
            "relay.local", 25, username="u", password="p", tls="none", allow_plaintext_auth=True
        ),
        local_hostname="client.test",
    )
    relay.close()
