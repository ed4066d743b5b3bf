"""Transport against aiosmtpd (through smtprelay.testing.LocalMX) with trustme certificates.

TLS policies, implicit TLS, AUTH, SIZE and SMTPUTF8 (RELIABILITY 30, 32, 39-43).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator

import pytest

from smtprelay import AuthenticationError, Message, Status, TLSError
from smtprelay._policies import Timeouts
from smtprelay._transport import TRACE, Transport
from smtprelay.testing import LocalMX
from support.certs import CertAuthority
from support.network import loopback_address

FAST = Timeouts.uniform(3.0, end_of_data=3.0)


def message(**kwargs: object) -> Message:
    options: dict[str, object] = {
        "sender": "alice@example.com",
        "to": ["bob@example.test"],
        "subject": "Hi",
        "text": "Hello Bob",
    }
    options.update(kwargs)
    return Message(**options)  # type: ignore[arg-type]


@pytest.fixture
def tls_mx(tls_ca: CertAuthority) -> Iterator[LocalMX]:
    host = loopback_address()
    with LocalMX(host, tls_context=tls_ca.server_context("mx.example.test", host)) as mx:
        yield mx


def connect(mx: LocalMX, **kwargs: object) -> Transport:
    options: dict[str, object] = {"local_hostname": "client.test", "timeout": FAST}
    options.update(kwargs)
    return Transport.connect(mx.host, mx.port, **options)  # type: ignore[arg-type]


def commands(mx: LocalMX) -> list[str]:
    return [c.split()[0].upper() for s in mx.sessions for c in s.commands]


def test_starttls_verified_against_the_name_asked_for(tls_mx: LocalMX, tls_ca: CertAuthority) -> None:
    msg = message()
    with connect(
        tls_mx, tls="verify", tls_hostname="mx.example.test", ssl_context=tls_ca.client_context()
    ) as t:
        assert t.tls_version in ("TLSv1.2", "TLSv1.3")
        assert t.cipher
        assert "STARTTLS" not in t.capabilities, "capabilities are the ones advertised after STARTTLS"
        results = t.send(msg)
        version = t.tls_version
    assert [(r.recipient, r.status, r.code, r.host, r.tls) for r in results] == [
        ("bob@example.test", Status.DELIVERED, 250, "mx.example.test", version)
    ]
    received = tls_mx.wait_for(1)[0]
    assert received.tls
    assert received.data == msg.as_bytes()
    assert (received.mail_from, received.rcpt_tos) == ("alice@example.com", ("bob@example.test",))
    assert received.ehlo_name == "client.test"


def test_verify_against_an_ip_literal_uses_the_certificate_ip(tls_mx: LocalMX, tls_ca: CertAuthority) -> None:
    with connect(tls_mx, tls="verify", ssl_context=tls_ca.client_context()) as t:
        assert t.tls_version is not None
        assert t.server_name == tls_mx.host


def test_verify_fails_on_a_wrong_host_name(tls_mx: LocalMX, tls_ca: CertAuthority) -> None:
    with pytest.raises(TLSError, match="certificate verification failed") as info:
        connect(tls_mx, tls="verify", tls_hostname="other.example.test", ssl_context=tls_ca.client_context())
    assert info.value.transient
    tls_mx.wait_until_idle()
    assert "MAIL" not in commands(tls_mx)


def test_verify_never_checks_the_ip_when_a_name_was_asked_for(tls_ca: CertAuthority) -> None:
    host = loopback_address()
    with LocalMX(host, tls_context=tls_ca.server_context(host)) as mx, pytest.raises(TLSError):
        # The certificate is valid for the IP we connect to, but we asked for a name it lacks.
        connect(mx, tls="verify", tls_hostname="mx.example.test", ssl_context=tls_ca.client_context())


def test_verify_fails_on_an_untrusted_ca(tls_mx: LocalMX) -> None:
    with pytest.raises(TLSError, match="certificate verification failed"):
        connect(tls_mx, tls="verify", tls_hostname="mx.example.test")  # system CAs do not know trustme
    tls_mx.wait_until_idle()
    assert "MAIL" not in commands(tls_mx)


@pytest.mark.parametrize("policy", ["opportunistic", "required"])
def test_unverified_policies_encrypt_without_checking(tls_mx: LocalMX, policy: str) -> None:
    with connect(tls_mx, tls=policy, tls_hostname="wrong.example.test") as t:
        assert t.tls_version is not None
        assert t.send(message())[0].status is Status.DELIVERED
    assert tls_mx.wait_for(1)[0].tls


def test_required_fails_without_starttls_and_sends_no_mail() -> None:
    with LocalMX(loopback_address()) as mx:
        with pytest.raises(TLSError, match="does not offer STARTTLS"):
            connect(mx, tls="required")
        mx.wait_until_idle()
        assert commands(mx) == ["EHLO", "QUIT"]


def test_opportunistic_without_starttls_is_plaintext() -> None:
    with LocalMX(loopback_address()) as mx, connect(mx, tls="opportunistic") as t:
        results = t.send(message())
    assert (results[0].status, results[0].tls) == (Status.DELIVERED, None)


def test_tls_none_never_starts_tls(tls_mx: LocalMX) -> None:
    with connect(tls_mx, tls="none") as t:
        assert t.tls_version is None
        assert "STARTTLS" in t.capabilities


def test_implicit_tls(tls_ca: CertAuthority) -> None:
    host = loopback_address()
    with LocalMX(host, tls_context=tls_ca.server_context("smtp.example.test"), implicit_tls=True) as mx:
        with connect(
            mx,
            tls="verify",
            implicit_tls=True,
            tls_hostname="smtp.example.test",
            ssl_context=tls_ca.client_context(),
        ) as t:
            assert t.tls_version is not None
            assert t.send(message())[0].status is Status.DELIVERED
        assert mx.wait_for(1)[0].tls


def test_implicit_tls_against_a_plaintext_server_fails(tls_ca: CertAuthority) -> None:
    with LocalMX(loopback_address()) as mx, pytest.raises(TLSError):
        connect(
            mx,
            tls="verify",
            implicit_tls=True,
            ssl_context=tls_ca.client_context(),
            timeout=Timeouts.uniform(1.0),
        )


@pytest.mark.parametrize("mechanisms", ["PLAIN", "LOGIN"])
def test_auth_mechanisms(tls_ca: CertAuthority, mechanisms: str) -> None:
    seen: list[str] = []

    def check(mechanism: str, user: str, secret: str) -> bool:
        seen.append(mechanism)
        return (user, secret) == ("user@example.com", "s3cret \u00e9")

    host = loopback_address()
    with LocalMX(host, tls_context=tls_ca.server_context(host), auth=check, auth_required=True) as mx:
        # Pretend the server only offers one mechanism by preferring through the choice function.
        with connect(
            mx,
            tls="verify",
            ssl_context=tls_ca.client_context(),
            username="user@example.com",
            password="s3cret \u00e9",
        ) as t:
            assert t.send(message())[0].status is Status.DELIVERED
        assert mx.wait_for(1)[0].authenticated_as == "user@example.com"
    assert seen == ["PLAIN"], "PLAIN is preferred over TLS"


def test_auth_xoauth2_token_provider_is_called_per_connection(tls_ca: CertAuthority) -> None:
    tokens = iter(["token-1", "token-2"])
    host = loopback_address()
    accepted: list[str] = []

    def check(mechanism: str, user: str, secret: str) -> bool:
        accepted.append(f"{mechanism}:{secret}")
        return True

    with LocalMX(host, tls_context=tls_ca.server_context(host), auth=check) as mx:
        for _ in range(2):
            with connect(
                mx,
                tls="verify",
                ssl_context=tls_ca.client_context(),
                username="me@example.com",
                password=lambda: next(tokens),
            ):
                pass
    assert accepted == ["XOAUTH2:token-1", "XOAUTH2:token-2"]


def test_auth_wrong_password(tls_ca: CertAuthority, caplog: pytest.LogCaptureFixture) -> None:
    host = loopback_address()
    caplog.set_level(TRACE, logger="smtprelay")
    with LocalMX(host, tls_context=tls_ca.server_context(host), auth=("user", "right")) as mx:
        with pytest.raises(AuthenticationError) as info:
            connect(
                mx, tls="verify", ssl_context=tls_ca.client_context(), username="user", password="wrong-pw"
            )
    error = info.value
    assert error.code == 535 and not error.transient
    for text in (str(error), repr(error), caplog.text):
        assert "wrong-pw" not in text
        assert "d3JvbmctcHc" not in text  # base64 of the password


def test_auth_refused_on_a_plaintext_connection() -> None:
    with LocalMX(loopback_address(), auth=("user", "pw"), auth_require_tls=False) as mx:
        with pytest.raises(AuthenticationError, match="not encrypted"):
            connect(mx, tls="opportunistic", username="user", password="pw")
        mx.wait_until_idle()
        assert "AUTH" not in commands(mx)
        with connect(mx, tls="opportunistic", username="user", password="pw", allow_plaintext_auth=True) as t:
            assert t.send(message())[0].status is Status.DELIVERED


def test_size_refusal_before_any_data() -> None:
    with LocalMX(loopback_address(), data_size_limit=2000) as mx, connect(mx, tls="none") as t:
        assert t.capabilities.max_size == 2000
        results = t.send(message(text="x" * 5000))
        assert [(r.status, r.code, r.enhanced_status) for r in results] == [(Status.BOUNCED, None, "5.3.4")]
        assert "MAIL" not in commands(mx)
        assert t.usable, "the connection stays usable: nothing was sent"
        assert t.send(message())[0].status is Status.DELIVERED


def test_smtputf8_present() -> None:
    msg = message(to=["j\u00f6rg@example.test"], subject="Gr\u00fc\u00dfe")
    assert msg.requires_smtputf8
    with LocalMX(loopback_address(), smtputf8=True) as mx, connect(mx, tls="none") as t:
        assert t.send(msg)[0].status is Status.DELIVERED
        received = mx.wait_for(1)[0]
    assert "SMTPUTF8" in received.mail_options
    assert received.rcpt_tos == ("j\u00f6rg@example.test",)
    assert received.data == msg.as_bytes()


def test_smtputf8_absent_bounces_without_mail() -> None:
    msg = message(to=["j\u00f6rg@example.test"])
    with LocalMX(loopback_address(), smtputf8=False) as mx, connect(mx, tls="none") as t:
        results = t.send(msg)
        assert [(r.status, r.enhanced_status) for r in results] == [(Status.BOUNCED, "5.6.7")]
        assert "MAIL" not in commands(mx)


def test_send_to_a_subset_and_mixed_results() -> None:
    msg = message(to=["a@example.test", "b@example.test"], cc=["c@example.test"])
    with LocalMX(loopback_address()) as mx, connect(mx, tls="none") as t:
        mx.script_rcpt("b@example.test", 550, "5.1.1 No such user")
        results = t.send(msg, recipients=["b@example.test", "c@example.test"])
        received = mx.wait_for(1)[0]
    assert [(r.recipient, r.status) for r in results] == [
        ("b@example.test", Status.BOUNCED),
        ("c@example.test", Status.DELIVERED),
    ]
    assert received.rcpt_tos == ("c@example.test",)


def test_protocol_trace_on_demand_with_auth_redacted(
    tls_ca: CertAuthority, caplog: pytest.LogCaptureFixture
) -> None:
    host = loopback_address()
    with LocalMX(host, tls_context=tls_ca.server_context(host), auth=("user", "pw-123")) as mx:
        caplog.set_level(logging.DEBUG, logger="smtprelay")
        with connect(
            mx, tls="verify", ssl_context=tls_ca.client_context(), username="user", password="pw-123"
        ) as t:
            t.send(message())
        assert "C: MAIL FROM" not in caplog.text, "the trace is off at DEBUG"
        assert f"connected to {host}" in caplog.text
        caplog.clear()
        caplog.set_level(TRACE, logger="smtprelay")
        with connect(
            mx, tls="verify", ssl_context=tls_ca.client_context(), username="user", password="pw-123"
        ) as t:
            t.send(message())
    trace = caplog.text
    assert "C: MAIL FROM:<alice@example.com>" in trace
    assert "C: AUTH <redacted>" in trace
    assert "bytes of message data" in trace
    assert "Hello Bob" not in trace
    assert "pw-123" not in trace


def test_source_address() -> None:
    source = loopback_address()
    with LocalMX(loopback_address()) as mx, connect(mx, tls="none", source_address=source):
        pass
    assert mx.sessions[0].peer[0] == source


def test_repr_has_no_secrets(tls_ca: CertAuthority) -> None:
    host = loopback_address()
    with LocalMX(host, tls_context=tls_ca.server_context(host), auth=("user", "pw-xyz")) as mx:
        with connect(
            mx, tls="verify", ssl_context=tls_ca.client_context(), username="user", password="pw-xyz"
        ) as t:
            text = repr(t)
    assert "pw-xyz" not in text and host in text


def test_bad_arguments_fail_before_connecting() -> None:
    with pytest.raises(ValueError, match="tls must be one of"):
        Transport.connect("127.0.0.1", 25, tls="sometimes")
    with pytest.raises(ValueError, match="port"):
        Transport.connect("127.0.0.1", 0)
    with pytest.raises(ValueError, match="host"):
        Transport.connect("mx.example.test\r\nRCPT", 25)
    with pytest.raises(ValueError, match="implicit_tls"):
        Transport.connect("127.0.0.1", 465, tls="none")
    with pytest.raises(ValueError, match="together"):
        Transport.connect("127.0.0.1", 25, username="u")
    with pytest.raises(ValueError, match="positive"):
        Transport.connect("127.0.0.1", 25, timeout=-1)


def test_ssl_context_minimum_version_is_tls12(tls_mx: LocalMX) -> None:
    with connect(tls_mx, tls="required") as t:
        assert t.tls_version in ("TLSv1.2", "TLSv1.3")
    assert ssl.TLSVersion.TLSv1_2 <= ssl.TLSVersion.TLSv1_3
