"""Helpers for Relay scenarios: several local MX hosts on one port behind a DNS zone."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from smtprelay import RetryPolicy, Timeouts
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
