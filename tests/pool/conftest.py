"""Fixtures for Relay scenarios: a real-wire DNS zone and several local MX hosts on one port."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from smtprelay import Relay
from smtprelay.testing import DNSZone
from support.relaying import FAST, NO_WAIT, Hosts


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
