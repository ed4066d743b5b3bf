"""Suite-wide guards and fixtures.

- Every test runs with the loopback guard: no connection leaves 127.0.0.0/8 or ::1.
- dnspython's default resolver is poisoned: library code must use the resolver it was given.
- Hypothesis gets a fast, deterministic profile under CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import dns.resolver
import pytest
from hypothesis import HealthCheck, settings

from support.network import loopback_guard

pytest_plugins = ["support.fixtures", "support.relaying"]

settings.register_profile(
    "ci", max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=150, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

#: Every timeout in the suite is short: a hostile-server test must fail in seconds, not minutes.
SHORT_TIMEOUT = 2.0


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    with loopback_guard():
        yield


class SystemResolverUsed(AssertionError):
    """Library code reached for dnspython's process-wide default resolver."""


@pytest.fixture(autouse=True)
def _no_default_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> dns.resolver.Resolver:
        raise SystemResolverUsed("the system's default DNS resolver must not be used in tests")

    monkeypatch.setattr(dns.resolver, "get_default_resolver", refuse)
    monkeypatch.setattr(dns.resolver, "default_resolver", None)


@pytest.fixture
def short_timeout() -> float:
    """The per-phase timeout tests give to anything that talks to a server."""
    return SHORT_TIMEOUT
