"""The suite's own guards: nothing leaves loopback, and nobody uses the system's DNS resolver."""

from __future__ import annotations

import socket

import dns.resolver
import pytest

from support.network import NonLoopbackConnection


def test_tcp_connection_outside_loopback_is_refused_before_any_packet() -> None:
    with socket.socket() as sock, pytest.raises(NonLoopbackConnection, match=r"192\.0\.2\.1"):
        sock.connect(("192.0.2.1", 25))


def test_udp_datagram_outside_loopback_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(NonLoopbackConnection):
        sock.sendto(b"x", ("198.51.100.53", 53))


def test_ipv6_outside_loopback_is_refused() -> None:
    with socket.socket(socket.AF_INET6) as sock, pytest.raises(NonLoopbackConnection):
        sock.connect_ex(("2001:db8::1", 25, 0, 0))


def test_host_names_are_refused_too() -> None:
    with socket.socket() as sock, pytest.raises(NonLoopbackConnection, match="host name"):
        sock.connect(("mx.example.org", 25))


def test_the_system_resolver_is_poisoned() -> None:
    with pytest.raises(AssertionError, match="default DNS resolver"):
        dns.resolver.resolve("example.org", "MX")


def test_loopback_is_allowed() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname(), timeout=2):
            pass
