"""Smoke tests of the real-peer fixtures (tests/support/fixtures.py), using smtplib and dnspython.

They prove each peer starts, answers the way later integration tests rely on, and stops.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable

import dns.flags
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from support.certs import CertAuthority
from support.fixtures import (
    DEFERRED_RECIPIENT,
    POSTFIX_DOMAIN,
    REJECTED_RECIPIENT,
    Mailbox,
    require_peer,
)
from support.nsd import NsdServer, zone_text
from support.postfix import PostfixInstance, split_stored_message, stored_to_sent
from support.sink import SmtpSink

SENDER = "sender@example.org"

MESSAGE = (
    b"From: Sender <sender@example.org>\r\n"
    b"To: someone@mx.test\r\n"
    b"Subject: peer smoke test\r\n"
    b"Message-ID: <smoke.1@example.org>\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Hello over STARTTLS.\r\n"
    b".a line that starts with a dot (dot-stuffed on the wire)\r\n"
    b"\xc3\xa9t\xc3\xa9 -- 8bit UTF-8 body\r\n"
    b"trailing spaces   \r\n"
)


def smtp_client(host: str, port: int, server_name: str) -> smtplib.SMTP:
    """An smtplib client connected to ``host``:``port`` that verifies STARTTLS against ``server_name``.

    smtplib checks the certificate against the host it connected to; connecting to an IP while
    verifying a host name needs its private ``_host`` set (a name would need real DNS).
    """
    client = smtplib.SMTP(host, port, local_hostname="client.test", timeout=5)
    client._host = server_name  # type: ignore[attr-defined]
    return client


# -- Postfix -------------------------------------------------------------------------------------


@pytest.mark.postfix
def test_postfix_stores_message_over_verified_starttls(
    postfix: PostfixInstance, postfix_mailbox: Mailbox, tls_ca: CertAuthority
) -> None:
    with smtp_client(postfix.host, postfix.port, POSTFIX_DOMAIN) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        client.starttls(context=tls_ca.client_context())
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.version() in {"TLSv1.2", "TLSv1.3"}
        client.ehlo()
        for extension in ("smtputf8", "pipelining", "8bitmime", "size", "chunking"):
            assert client.has_extn(extension), extension
        refused = client.sendmail(SENDER, [postfix_mailbox.address], MESSAGE)
        assert refused == {}

    [stored] = postfix_mailbox.wait()
    added, rest = split_stored_message(stored)
    address = postfix_mailbox.address.encode()
    assert added[0] == f"Return-Path: <{SENDER}>\n".encode()
    assert added[1] == b"X-Original-To: " + address + b"\n"
    assert added[2] == b"Delivered-To: " + address + b"\n"
    received = added[3]
    assert received.startswith(b"Received: from client.test (unknown [127.0.0.1])\n\tby mx.test (Postfix) ")
    assert b" with ESMTPS id " in received
    assert b"\tfor <" + address + b">; " in received
    assert received.count(b"\n") == 3
    # Everything after Postfix's own headers is what the client sent, with LF line endings.
    assert rest == MESSAGE.replace(b"\r\n", b"\n")
    assert stored_to_sent(stored) == MESSAGE


@pytest.mark.postfix
def test_postfix_accepts_smtputf8_addresses(postfix: PostfixInstance, postfix_mailbox: Mailbox) -> None:
    recipient = "Δοκιμή." + postfix_mailbox.address
    message = "Subject: ünïcödé\r\n\r\nbody ü\r\n".encode()
    with smtplib.SMTP(postfix.host, postfix.port, local_hostname="client.test", timeout=5) as client:
        refused = client.sendmail("sénder@example.org", [recipient], message, mail_options=["SMTPUTF8"])
        assert refused == {}
    [stored] = postfix.wait_for_messages(recipient.lower())  # selection is case-insensitive
    added, rest = split_stored_message(stored)
    assert added[2] == f"Delivered-To: {recipient}\n".encode()
    assert b" with UTF8SMTP id " in added[3]
    assert rest == message.replace(b"\r\n", b"\n")


@pytest.mark.postfix
def test_postfix_certificate_is_checked_against_the_host_name(
    postfix: PostfixInstance, tls_ca: CertAuthority
) -> None:
    with smtp_client(postfix.host, postfix.port, "not-the-mx.test") as client:
        client.ehlo()
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=tls_ca.client_context())


@pytest.mark.postfix
def test_postfix_rejects_configured_recipients(postfix: PostfixInstance, postfix_mailbox: Mailbox) -> None:
    with smtplib.SMTP(postfix.host, postfix.port, local_hostname="client.test", timeout=5) as client:
        client.ehlo()
        assert client.mail(SENDER)[0] == 250
        code, text = client.rcpt(REJECTED_RECIPIENT)
        assert (code, text.split(b" ", 1)[0]) == (550, b"5.1.1")
        code, text = client.rcpt(DEFERRED_RECIPIENT)
        assert (code, text.split(b" ", 1)[0]) == (450, b"4.2.0")
        assert client.rcpt(postfix_mailbox.address)[0] == 250
        assert client.data(MESSAGE)[0] == 250
    assert len(postfix_mailbox.wait()) == 1
    assert postfix.messages(REJECTED_RECIPIENT) == []


@pytest.mark.postfix
def test_postfix_discards_mail_for_other_domains(postfix: PostfixInstance) -> None:
    recipient = "nobody-here@elsewhere.test"
    with smtplib.SMTP(postfix.host, postfix.port, local_hostname="client.test", timeout=5) as client:
        assert client.sendmail(SENDER, [recipient], MESSAGE) == {}
    [line] = postfix.wait_for_log(rf"postfix/discard\[\d+\]: \w+: to=<{recipient}>")
    assert "status=sent" in line
    assert postfix.messages(recipient) == []


@pytest.mark.postfix
def test_postfix_factory_applies_extra_settings(
    postfix_factory: Callable[..., PostfixInstance], postfix: PostfixInstance
) -> None:
    strict = postfix_factory(
        domains=["strict.test"],
        tls=False,
        main_cf={"smtpd_forbid_bare_newline": "reject", "message_size_limit": "20000"},
    )
    assert strict.address != postfix.address
    with smtplib.SMTP(strict.host, strict.port, local_hostname="client.test", timeout=5) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.esmtp_features["size"] == "20000"
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt("someone@strict.test")[0] == 250
        assert client.docmd("DATA")[0] == 354
        client.send(b"Subject: bare LF\r\n\r\nthis line ends in a bare LF\nnext line\r\n.\r\n")
        code, _ = client.getreply()
    assert code >= 500, "smtpd_forbid_bare_newline = reject must refuse a bare LF"
    assert strict.messages() == []


# -- smtp-sink -----------------------------------------------------------------------------------


@pytest.mark.postfix
def test_smtp_sink_accepts_and_counts(smtp_sink: SmtpSink) -> None:
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, local_hostname="client.test", timeout=5) as client:
        client.ehlo()
        assert client.has_extn("pipelining")
        assert not client.has_extn("starttls")
        assert client.sendmail(SENDER, ["a@sink.test", "b@sink.test"], MESSAGE) == {}
        assert client.sendmail(SENDER, ["c@sink.test"], MESSAGE) == {}
    assert smtp_sink.wait_for_messages(2) == 2


@pytest.mark.postfix
def test_smtp_sink_dumps_and_rejects(smtp_sink_factory: Callable[..., SmtpSink]) -> None:
    sink = smtp_sink_factory(dump=True)
    with smtplib.SMTP(sink.host, sink.port, local_hostname="client.test", timeout=5) as client:
        assert client.sendmail(SENDER, ["a@sink.test"], MESSAGE) == {}
    sink.wait_for_messages(1)
    [dump] = sink.dumps()
    assert b"X-Rcpt-Args: <a@sink.test>\n" in dump
    assert MESSAGE.replace(b"\r\n", b"\n") in dump

    refusing = smtp_sink_factory(extra_args=["-f", "rcpt"])
    with smtplib.SMTP(refusing.host, refusing.port, local_hostname="client.test", timeout=5) as client:
        client.ehlo()
        client.mail(SENDER)
        assert client.rcpt("a@sink.test")[0] // 100 == 5


# -- NSD -----------------------------------------------------------------------------------------


@pytest.mark.nsd
def test_nsd_answers_from_the_test_zone(nsd_factory: Callable[..., NsdServer]) -> None:
    server = nsd_factory(
        {
            "example.test": zone_text(
                "example.test",
                [
                    "@ MX 10 mx1",
                    "@ MX 20 mx2.example.test.",
                    "mx1 A 127.0.0.5",
                    "mx1 AAAA ::1",
                    "mx2 A 127.0.0.6",
                ],
            ),
            "broken.test": zone_text("broken.test", ["@ MX 10 mx1"], soa=False),
        }
    )
    resolver = server.resolver()

    mx = resolver.resolve("example.test", "MX")
    assert sorted((r.preference, r.exchange.to_text()) for r in mx) == [
        (10, "mx1.example.test."),
        (20, "mx2.example.test."),
    ]
    assert [r.to_text() for r in resolver.resolve("mx1.example.test", "A")] == ["127.0.0.5"]
    assert [r.to_text() for r in resolver.resolve("mx1.example.test", "AAAA")] == ["::1"]
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("missing.example.test", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("mx2.example.test", "AAAA")

    answer = server.query("example.test", "MX", tcp=True)
    assert answer.rcode() == dns.rcode.NOERROR
    assert answer.flags & dns.flags.AA

    # A zone without SOA: NSD does not load it and answers SERVFAIL at once.
    assert server.query("broken.test", "MX").rcode() == dns.rcode.SERVFAIL
    with pytest.raises(dns.resolver.NoNameservers):
        resolver.resolve("broken.test", "MX")


@pytest.mark.nsd
def test_nsd_servers_are_independent(nsd_factory: Callable[..., NsdServer]) -> None:
    one = nsd_factory({"one.test": zone_text("one.test", ["@ A 127.0.0.7"])})
    two = nsd_factory({"two.test": zone_text("two.test", ["@ A 127.0.0.8"])})
    assert one.address != two.address
    assert [r.to_text() for r in two.resolver().resolve("two.test", dns.rdatatype.A)] == ["127.0.0.8"]
    assert one.query("two.test", "A").rcode() == dns.rcode.REFUSED
    one.stop()
    with pytest.raises(dns.resolver.LifetimeTimeout):
        one.resolver(lifetime=0.3).resolve("one.test", "A")


# -- missing peers -------------------------------------------------------------------------------


def test_missing_peer_skips_locally_and_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    require_peer("Something", None)  # available: no effect
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postfix nsd"):
        require_peer("Something", "it is not installed")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required on CI"):
        require_peer("Something", "it is not installed")
