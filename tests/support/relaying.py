"""Helpers and fixtures for Relay scenarios: several local MX hosts on one port behind a DNS zone.

Fixtures (loaded for the whole suite through ``pytest_plugins``): ``zone`` (a DNSZone), ``hosts``
(:class:`Hosts`), ``make_relay`` (a Relay factory pointed at both, closed after the test).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from smtprelay import Relay, RetryPolicy, Timeouts
from smtprelay.testing import DNSZone, LocalMX

from .network import loopback_address

#: Retries without waiting, so scenarios stay fast.
NO_WAIT = RetryPolicy(attempts=3, initial_delay=0.0, max_delay=0.0, jitter=0.0)
FAST = Timeouts.uniform(3.0, end_of_data=3.0)


class Hosts:
    """Local MX servers sharing one port on different loopback addresses, registered in a zone."""

    def __init__(self, zone: DNSZone, stack: ExitStack) -> None:
        self.zone = zone
        self._stack = stack
        self.port = 0
        self.servers: list[LocalMX] = []

    def mx(self, name: str, **options: Any) -> LocalMX:
        """Start a LocalMX on a new loopback address and publish ``name`` A -> that address."""
        server = LocalMX(loopback_address(), self.port, hostname=name, **options)
        self._stack.enter_context(server)
        self.port = server.port
        self.servers.append(server)
        self.zone.a(name, server.host)
        return server

    def dead(self, name: str) -> str:
        """Publish ``name`` at a loopback address where nothing listens (connections are refused)."""
        address = loopback_address()
        self.zone.a(name, address)
        return address


@pytest.fixture
def zone() -> Iterator[DNSZone]:
    with DNSZone() as z:
        yield z


@pytest.fixture
def hosts(zone: DNSZone) -> Iterator[Hosts]:
    with ExitStack() as stack:
        yield Hosts(zone, stack)


@pytest.fixture
def make_relay(zone: DNSZone, hosts: Hosts) -> Iterator[Callable[..., Relay]]:
    relays: list[Relay] = []

    def make(**options: Any) -> Relay:
        settings: dict[str, Any] = {
            "resolver": zone.resolver(lifetime=1.0),
            "port": hosts.port or 25,
            "allow_private_mx": True,
            "local_hostname": "client.test",
            "retry": NO_WAIT,
            "timeout": FAST,
            "rng": random.Random(7),
        }
        settings.update(options)
        relay = Relay(**settings)
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        relay.close()
