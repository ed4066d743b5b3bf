"""End to end with peers nobody here wrote: NSD serves the zone, Postfix receives the mail.

The Relay resolves the recipient domain's MX through NSD (real DNS on loopback), connects to the
Postfix smtpd it points at, verifies its certificate against the MX host name, and delivers.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from smtprelay import Message, Relay, RetryPolicy, Status, Timeouts
from support.certs import CertAuthority
from support.fixtures import REJECTED_RECIPIENT
from support.nsd import NsdServer, zone_text
from support.postfix import PostfixInstance, stored_to_sent

pytestmark = [pytest.mark.postfix, pytest.mark.nsd]


def test_relay_through_nsd_to_postfix(
    postfix: PostfixInstance, nsd_factory: Callable[..., NsdServer], tls_ca: CertAuthority
) -> None:
    nsd = nsd_factory(
        {
            "mx.test": zone_text("mx.test", ["@ MX 10 mx.test.", f"@ A {postfix.host}"]),
            "broken.test": zone_text("broken.test", ["@ MX 10 mx.broken.test."], soa=False),  # SERVFAIL
        }
    )
    relay = Relay(
        resolver=nsd.resolver(lifetime=2.0),
        port=postfix.port,
        tls="verify",
        ssl_context=tls_ca.client_context(),
        allow_private_mx=True,
        local_hostname="client.test",
        timeout=Timeouts.uniform(10.0),
        retry=RetryPolicy(attempts=2, initial_delay=0.0, jitter=0.0),
    )
    with relay:
        msg = Message(
            sender="alice@example.com",
            to=["e2e-nsd@mx.test", REJECTED_RECIPIENT],
            cc=["x@broken.test"],
            subject="Through real DNS",
            text="Resolved by NSD, received by Postfix.",
        )
        report = relay.send(msg)
    results = {r.recipient: r for r in report.results}
    delivered = results["e2e-nsd@mx.test"]
    assert (delivered.status, delivered.code, delivered.host, delivered.attempts) == (
        Status.DELIVERED,
        250,
        "mx.test",
        1,
    )
    assert delivered.tls in ("TLSv1.2", "TLSv1.3")
    assert (results[REJECTED_RECIPIENT].status, results[REJECTED_RECIPIENT].code) == (Status.BOUNCED, 550)
    broken = results["x@broken.test"]
    assert (broken.status, broken.code, broken.attempts) == (Status.DEFERRED, None, 2)
    stored = postfix.wait_for_messages("e2e-nsd@mx.test", 1)[0]
    assert stored_to_sent(stored) == msg.as_bytes()
