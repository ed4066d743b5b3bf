"""Transport against a real MTA: a private Postfix smtpd on loopback, delivering to a Maildir.

What Postfix stored is compared byte for byte with what ``Message.as_bytes()`` produced (Postfix
prepends Return-Path, X-Original-To, Delivered-To and Received, and stores LF line endings).
Postfix offers PIPELINING, CHUNKING, SMTPUTF8, 8BITMIME and STARTTLS, so these runs use BDAT.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator

import pytest

from smtprelay import TRACE, Attachment, Message, Status, Timeouts, Transport
from support.certs import CertAuthority
from support.fixtures import DEFERRED_RECIPIENT, REJECTED_RECIPIENT, Mailbox
from support.postfix import PostfixInstance, stored_to_sent

pytestmark = pytest.mark.postfix

TIMEOUTS = Timeouts.uniform(10.0, end_of_data=30.0)


@pytest.fixture
def transport(postfix: PostfixInstance, tls_ca: CertAuthority) -> Iterator[Transport]:
    with Transport.connect(
        postfix.host,
        postfix.port,
        tls="verify",
        tls_hostname="mx.test",
        ssl_context=tls_ca.client_context(),
        local_hostname="client.test",
        timeout=TIMEOUTS,
    ) as t:
        yield t


def _mailboxes(postfix: PostfixInstance, count: int, name: str) -> list[Mailbox]:
    return [Mailbox(postfix, f"{name}-{i}@mx.test") for i in range(count)]


def test_session_with_postfix(transport: Transport) -> None:
    caps = transport.capabilities
    assert caps.pipelining and caps.chunking and caps.smtputf8 and caps.starttls is False
    assert transport.tls_version in ("TLSv1.2", "TLSv1.3")


MESSAGES: dict[str, Callable[[str], Message]] = {
    "plain": lambda to: Message(
        sender="alice@example.com", to=[to], subject="Plain", text="Hello,\nplain text.\n"
    ),
    "html": lambda to: Message(
        sender="Alice <alice@example.com>",
        to=[to],
        subject="HTML",
        text="Hello *world*",
        html="<html><body><p>Hello <b>world</b></p>" + "<span>x</span>" * 300 + "</body></html>",
    ),
    "attachment": lambda to: Message(
        sender="alice@example.com",
        to=[to],
        subject="Report",
        text="See attached.",
        attachments=[
            Attachment(bytes(range(256)) * 40, "data.bin"),
            Attachment("r\u00e9sum\u00e9 \u2013 caf\u00e9".encode(), "r\u00e9sum\u00e9.txt"),
        ],
    ),
    "unicode": lambda to: Message(
        sender="J\u00f6rg M\u00fcller <joerg@example.com>",
        to=[f"Bj\u00f6rk <{to}>"],
        subject="Gr\u00fc\u00dfe aus K\u00f6ln \u2013 \u65e5\u672c\u8a9e",
        text="\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! " * 40 + "\n.\n..lone dots\n",
    ),
    "dots-and-long-lines": lambda to: Message(
        sender="alice@example.com", to=[to], subject="Edge", text=".\n" + "x" * 5000 + "\r.\r\n.end\n"
    ),
}


@pytest.mark.parametrize("kind", list(MESSAGES))
def test_postfix_stores_exactly_what_was_sent(
    transport: Transport, postfix_mailbox: Mailbox, kind: str
) -> None:
    msg = MESSAGES[kind](postfix_mailbox.address)
    results = transport.send(msg)
    assert [(r.recipient, r.status, r.code) for r in results] == [
        (postfix_mailbox.address, Status.DELIVERED, 250)
    ]
    assert results[0].host == "mx.test" and results[0].tls == transport.tls_version
    stored = postfix_mailbox.wait(1)[0]
    assert stored_to_sent(stored) == msg.as_bytes()
    parsed = email.message_from_bytes(stored, policy=email.policy.default)
    assert parsed["Message-ID"] == msg.message_id


def test_smtputf8_recipient(transport: Transport, postfix: PostfixInstance) -> None:
    address = "bj\u00f6rk@mx.test"
    msg = Message(sender="alice@example.com", to=[address], subject="Unicode local part", text="hej")
    assert msg.requires_smtputf8
    results = transport.send(msg)
    assert results[0].status is Status.DELIVERED
    stored = postfix.wait_for_messages(address, 1)[0]
    assert stored_to_sent(stored) == msg.as_bytes()
    assert b"UTF8SMTPS" in stored, "Postfix recorded the SMTPUTF8 session in Received"


def test_multi_recipient_one_transaction_with_mixed_outcomes(
    transport: Transport, postfix: PostfixInstance, caplog: pytest.LogCaptureFixture
) -> None:
    boxes = _mailboxes(postfix, 3, "multi")
    msg = Message(
        sender="alice@example.com",
        to=[boxes[0].address, REJECTED_RECIPIENT],
        cc=[boxes[1].address, DEFERRED_RECIPIENT],
        bcc=[boxes[2].address],
        subject="Several",
        text="one copy each",
    )
    caplog.set_level(TRACE, logger="smtprelay.trace")
    results = {r.recipient: r for r in transport.send(msg)}
    assert {a: (r.status, r.code) for a, r in results.items()} == {
        boxes[0].address: (Status.DELIVERED, 250),
        REJECTED_RECIPIENT: (Status.BOUNCED, 550),
        boxes[1].address: (Status.DELIVERED, 250),
        DEFERRED_RECIPIENT: (Status.DEFERRED, 450),
        boxes[2].address: (Status.DELIVERED, 250),
    }
    assert results[REJECTED_RECIPIENT].enhanced_status == "5.1.1"
    assert sum("C: MAIL FROM" in line for line in caplog.text.splitlines()) == 1, "one transaction"
    assert "C: BDAT" in caplog.text, "Postfix offers CHUNKING, so BDAT carries the message"
    for box in boxes:
        stored = box.wait(1)
        assert len(stored) == 1
        assert stored_to_sent(stored[0]) == msg.as_bytes()
        assert b"\nBcc:" not in stored[0] and not stored[0].startswith(b"Bcc:")


def test_several_messages_on_one_connection(transport: Transport, postfix_mailbox: Mailbox) -> None:
    messages = [
        Message(sender="alice@example.com", to=[postfix_mailbox.address], subject=f"n{i}", text=str(i))
        for i in range(5)
    ]
    for msg in messages:
        assert transport.send(msg)[0].status is Status.DELIVERED
    assert transport.messages_sent == 5
    stored = postfix_mailbox.wait(5)
    assert sorted(stored_to_sent(s) for s in stored) == sorted(m.as_bytes() for m in messages)


def test_large_message_in_bdat_chunks(transport: Transport, postfix_mailbox: Mailbox) -> None:
    blob = bytes(range(256)) * 12_000  # ~3 MB, base64 in the message: several BDAT chunks
    msg = Message(
        sender="alice@example.com",
        to=[postfix_mailbox.address],
        subject="Large",
        text="big",
        attachments=[Attachment(blob, "big.bin")],
    )
    assert len(msg.as_bytes()) > 2 * 1024 * 1024
    assert transport.send(msg)[0].status is Status.DELIVERED
    stored = postfix_mailbox.wait(1, timeout=20)[0]
    assert stored_to_sent(stored) == msg.as_bytes()
    parsed = email.message_from_bytes(stored, policy=email.policy.default)
    attachment = next(iter(parsed.iter_attachments()))
    assert attachment.get_content() == blob


SMUGGLED = b"\n.\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@mx.test>\r\nDATA\r\nsmuggled\r\n.\r\n"


@pytest.mark.parametrize("chunking", [True, False])
def test_smuggling_attempt_reaches_postfix_as_harmless_content(
    postfix_factory: Callable[..., PostfixInstance], tls_ca: CertAuthority, chunking: bool
) -> None:
    settings = {"smtpd_forbid_bare_newline": "reject"}
    if not chunking:
        settings["smtpd_discard_ehlo_keywords"] = "chunking"
    instance = postfix_factory(main_cf=settings)
    box = Mailbox(instance, "target@mx.test")
    data = b"From: a@example.com\r\nTo: target@mx.test\r\nSubject: smuggle\r\n\r\nhello" + SMUGGLED
    with Transport.connect(
        instance.host, instance.port, tls="required", local_hostname="client.test", timeout=TIMEOUTS
    ) as t:
        assert t.capabilities.chunking is chunking
        results = t.send_raw("a@example.com", ["target@mx.test"], data)
    assert results[0].status is Status.DELIVERED, "bare LF never reaches the wire, so Postfix does not object"
    stored = box.wait(1)[0]
    assert b"smuggled" in stored, "the smuggled commands are part of the one message"
    assert instance.messages("victim@mx.test") == []
    assert not instance.log_lines("bare <LF>")
