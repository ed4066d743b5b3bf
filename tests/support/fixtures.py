"""pytest fixtures for the real peers integration tests run against (loaded by tests/conftest.py).

Fixtures (all peers listen on a fresh 127.0.0.N address and a free port):

``tls_ca`` (session) -> :class:`support.certs.CertAuthority`
    The session's private CA. ``tls_ca.client_context()`` is a strict client context that trusts
    it; ``tls_ca.server_context("mx.test")`` / ``tls_ca.server_files(...)`` serve certificates.
``postfix`` (session) -> :class:`support.postfix.PostfixInstance`
    One private Postfix for the whole session: STARTTLS with a certificate for ``mx.test``,
    ``localhost`` and its IP address; mail for ``mx.test`` goes to its Maildir, everything else is
    discarded; ``rejected@mx.test`` gets a 550 at RCPT and ``deferred@mx.test`` a 450.
``postfix_mailbox`` (function) -> :class:`Mailbox`
    A recipient address on the session's Postfix that no other test uses, so tests sharing the
    instance never see each other's mail: ``postfix_mailbox.address``, ``.wait(count)``,
    ``.messages()``.
``postfix_factory`` (function) -> ``(**options) -> PostfixInstance``
    Starts extra instances (``main_cf={"smtpd_forbid_bare_newline": "reject"}``, other domains,
    several listen addresses, ...) and stops them after the test; ~0.3 s each. Options are those
    of :class:`~support.postfix.PostfixInstance`; ``tls=False`` turns STARTTLS off.
``smtp_sink`` (function) -> :class:`support.sink.SmtpSink`
    A running ``smtp-sink -c``; ``smtp_sink_factory(**options)`` starts others (``dump=True``,
    ``extra_args=["-f", "rcpt"]``, ...). Both stop after the test.
``nsd_factory`` (function) -> ``(zones, **options) -> NsdServer``
    Starts NSD serving ``{origin: zone file text}`` (see :func:`support.nsd.zone_text`) and stops
    it after the test; ``server.resolver()`` is the ``dns.resolver.Resolver`` to hand to code
    under test.

Ports come from ``free_port()``; if another process grabs one between the check and the
peer's bind, the factories start the peer again on a fresh port (up to 3 attempts).

When a peer is not installed (or Postfix cannot run because the tests do not run as root), the
fixture skips the test with the command that installs it -- unless ``CI=true``, where it fails
the test instead: CI (.ci/run) installs the peers, so a missing one there is a broken setup, not
a reason to skip.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from support.certs import CertAuthority
from support.network import free_port, loopback_address
from support.nsd import NsdError, NsdServer, find_nsd
from support.postfix import PostfixError, PostfixInstance, find_postfix
from support.sink import SinkError, SmtpSink, find_smtp_sink

__all__ = [
    "DEFERRED_RECIPIENT",
    "POSTFIX_DOMAIN",
    "REJECTED_RECIPIENT",
    "Mailbox",
    "nsd_factory",
    "postfix",
    "postfix_factory",
    "postfix_mailbox",
    "require_peer",
    "smtp_sink",
    "smtp_sink_factory",
    "tls_ca",
]

#: The mail domain of the session's Postfix (``postfix`` fixture).
POSTFIX_DOMAIN = "mx.test"
#: Refused by the session's Postfix at RCPT with a permanent error.
REJECTED_RECIPIENT = f"rejected@{POSTFIX_DOMAIN}"
REJECTED_REPLY = f"550 5.1.1 <{REJECTED_RECIPIENT}>: Recipient address rejected: no such user (test)"
#: Refused by the session's Postfix at RCPT with a temporary error.
DEFERRED_RECIPIENT = f"deferred@{POSTFIX_DOMAIN}"
DEFERRED_REPLY = f"450 4.2.0 <{DEFERRED_RECIPIENT}>: Recipient address rejected: try again later (test)"

INSTALL_HINT = "install it with `apt-get install postfix nsd` (as .ci/run does)"


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def require_peer(name: str, problem: str | None) -> None:
    """Skip (or, with CI=true, fail) the current test when ``problem`` says a peer cannot run."""
    if problem is None:
        return
    if _on_ci():
        pytest.fail(f"{name} is required on CI but {problem}", pytrace=False)
    pytest.skip(f"{name} is not available ({problem}); {INSTALL_HINT}")


def _postfix_problem() -> str | None:
    if find_postfix() is None:
        return "the postfix command is missing"
    if os.geteuid() != 0:
        return "a private Postfix instance must be started as root"
    return None


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_ca() -> Iterator[CertAuthority]:
    """The session's private CA; its files live in a world-readable temp dir (servers read them)."""
    directory = tempfile.mkdtemp(prefix="smtprelay-certs-")
    try:
        yield CertAuthority(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- Postfix -------------------------------------------------------------------------------------


_T = TypeVar("_T")


def _start_retrying(start: Callable[[], _T], *, fixed_port: bool) -> _T:
    """``start()``, again with a fresh port (up to 3 times) if the free port was taken meanwhile."""
    for attempt in itertools.count(1):
        try:
            return start()
        except (PostfixError, NsdError, SinkError) as error:
            if fixed_port or attempt >= 3 or "in use" not in str(error):
                raise
    raise AssertionError("unreachable")


def _start_postfix(tls_ca: CertAuthority | None, **options: Any) -> PostfixInstance:
    domains: Sequence[str] = options.pop("domains", (POSTFIX_DOMAIN,))
    given: Sequence[tuple[str, int]] | None = options.pop("listen", None)

    def start() -> PostfixInstance:
        listen = given
        if listen is None:
            host = loopback_address()
            listen = [(host, free_port(host))]
        certificate = None
        if tls_ca is not None:
            names = [options.get("myhostname") or domains[0], *domains, "localhost", *(h for h, _ in listen)]
            certificate = tls_ca.server_files(*dict.fromkeys(n.lower().rstrip(".") for n in names))
        return PostfixInstance(domains=domains, listen=listen, certificate=certificate, **options).start()

    return _start_retrying(start, fixed_port=given is not None)


@pytest.fixture(scope="session")
def postfix(tls_ca: CertAuthority) -> Iterator[PostfixInstance]:
    """The session's private Postfix for ``mx.test`` (see the module docstring)."""
    require_peer("Postfix", _postfix_problem())
    instance = _start_postfix(
        tls_ca, reject={REJECTED_RECIPIENT: REJECTED_REPLY, DEFERRED_RECIPIENT: DEFERRED_REPLY}
    )
    try:
        yield instance
    finally:
        instance.stop()


@dataclass(frozen=True)
class Mailbox:
    """A recipient address of its own on a Postfix instance."""

    postfix: PostfixInstance
    address: str

    def messages(self) -> list[bytes]:
        """Messages delivered to this address so far, as stored, oldest first."""
        return self.postfix.messages(self.address)

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[bytes]:
        """Wait until ``count`` messages have arrived; return all of them, oldest first."""
        return self.postfix.wait_for_messages(self.address, count, timeout)


_mailbox_numbers = itertools.count(1)


@pytest.fixture
def postfix_mailbox(postfix: PostfixInstance, request: pytest.FixtureRequest) -> Mailbox:
    """A fresh recipient address (``<test-name>-<n>@mx.test``) on the session's Postfix."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40] or "test"
    return Mailbox(postfix, f"{slug}-{next(_mailbox_numbers)}@{POSTFIX_DOMAIN}")


@pytest.fixture
def postfix_factory(tls_ca: CertAuthority) -> Iterator[Callable[..., PostfixInstance]]:
    """Start extra Postfix instances: ``postfix_factory(main_cf={...}, reject={...}, tls=True)``."""
    require_peer("Postfix", _postfix_problem())
    started: list[PostfixInstance] = []

    def start(*, tls: bool = True, **options: Any) -> PostfixInstance:
        instance = _start_postfix(tls_ca if tls else None, **options)
        started.append(instance)
        return instance

    try:
        yield start
    finally:
        for instance in reversed(started):
            instance.stop()


# -- smtp-sink -----------------------------------------------------------------------------------


@pytest.fixture
def smtp_sink_factory() -> Iterator[Callable[..., SmtpSink]]:
    """Start ``smtp-sink`` instances: ``smtp_sink_factory(dump=True, extra_args=["-f", "rcpt"])``."""
    missing = None if find_smtp_sink() else "the smtp-sink command (package postfix) is missing"
    require_peer("smtp-sink", missing)
    started: list[SmtpSink] = []

    def start(**options: Any) -> SmtpSink:
        sink = _start_retrying(lambda: SmtpSink(**options).start(), fixed_port="port" in options)
        started.append(sink)
        return sink

    try:
        yield start
    finally:
        for sink in reversed(started):
            sink.stop()


@pytest.fixture
def smtp_sink(smtp_sink_factory: Callable[..., SmtpSink]) -> SmtpSink:
    """A running ``smtp-sink -c`` with default options."""
    return smtp_sink_factory()


# -- NSD -----------------------------------------------------------------------------------------


@pytest.fixture
def nsd_factory() -> Iterator[Callable[..., NsdServer]]:
    """Start NSD for some zones: ``nsd_factory({"example.test": zone_text(...)})``."""
    require_peer("NSD", None if find_nsd() else "the nsd binary is missing")
    started: list[NsdServer] = []

    def start(zones: Mapping[str, str], **options: Any) -> NsdServer:
        server = _start_retrying(lambda: NsdServer(zones, **options).start(), fixed_port="port" in options)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()
