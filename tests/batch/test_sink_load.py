"""Load against Postfix's smtp-sink: a concurrency sweep where the sink counts every message
(RELIABILITY 51, 52). No timing is asserted: the sink's counters prove nothing was lost or doubled."""

from __future__ import annotations

import pytest

from smtprelay import Message, PoolLimits, Relay, Smarthost
from support.sink import SmtpSink

pytestmark = pytest.mark.postfix


@pytest.mark.parametrize(("concurrency", "per_host"), [(1, 1), (4, 4), (16, 8)])
def test_concurrency_sweep_delivers_every_message_once(
    smtp_sink: SmtpSink, concurrency: int, per_host: int
) -> None:
    host, port = smtp_sink.address
    relay = Relay(
        smarthost=Smarthost(host, port, tls="none"),
        pool=PoolLimits(max_connections_per_host=per_host),
        local_hostname="client.test",
    )
    before = smtp_sink.message_count
    count = 300
    messages = (
        Message(
            sender="load@example.com",
            to=[f"r{i}-{j}@example.org" for j in range(1 + i % 3)],
            subject=str(i),
            text="x" * 2000,
        )
        for i in range(count)
    )
    with relay:
        reports = list(relay.send_many(messages, concurrency=concurrency))
        assert len(reports) == count and all(r.ok for r in reports)
        described = relay.pool.describe()
        assert all(active == 0 and idle <= per_host for active, idle, _ in described.values())
    assert smtp_sink.wait_for_messages(before + count) == before + count
