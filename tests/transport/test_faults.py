"""Transport against scripted raw-socket servers: the faults no real server commits on purpose.

Each test states the error type the client raises and checks the connection is closed
(RELIABILITY 1-3, 5-9, 13, 14, 16, 19, 20, 35-38, 40, 48, 53, 54).
"""

from __future__ import annotations

import logging
import socket
import time

import pytest

from smtprelay import (
    AuthenticationError,
    ConnectionFailed,
    Phase,
    ProtocolError,
    ReplyError,
    SMTPTimeout,
    Status,
    TLSError,
)
from smtprelay._policies import Timeouts
from smtprelay._transport import Transport
from support.certs import CertAuthority
from support.scripted import Conn, ScriptedServer

FAST = Timeouts.uniform(1.0, end_of_data=1.0)
MESSAGE = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: test\r\n\r\nHello\r\n"


def connect(server: ScriptedServer, **kwargs: object) -> Transport:
    options: dict[str, object] = {"tls": "none", "local_hostname": "client.test", "timeout": FAST}
    options.update(kwargs)
    return Transport.connect(server.host, server.port, **options)  # type: ignore[arg-type]


def closed_by_client(conn: Conn) -> bool:
    return conn.wait_closed(timeout=2.0)


# -- greeting ------------------------------------------------------------------------------------


def test_no_greeting_times_out() -> None:
    def script(conn: Conn) -> None:
        assert closed_by_client(conn), "the client must hang up after the greeting timeout"

    with ScriptedServer(script) as server:
        started = time.monotonic()
        with pytest.raises(SMTPTimeout) as info:
            connect(server, timeout=Timeouts.uniform(0.3))
        assert time.monotonic() - started < 3
        server.wait_for_scripts()
    assert info.value.phase is Phase.GREETING
    assert info.value.transient
    assert isinstance(info.value, TimeoutError)


def test_trickling_greeting_hits_the_phase_deadline() -> None:
    def script(conn: Conn) -> None:
        conn.trickle(b"220 " + b"x" * 200 + b"\r\n", delay=0.02)  # 4 s in all, a byte every 20 ms

    with ScriptedServer(script) as server:
        started = time.monotonic()
        with pytest.raises(SMTPTimeout) as info:
            connect(server, timeout=Timeouts.uniform(0.5))
        elapsed = time.monotonic() - started
    assert info.value.phase is Phase.GREETING
    assert elapsed < 2.5, "the deadline covers the whole reply, not each byte"


@pytest.mark.parametrize("greeting", ["554 5.7.1 go away", "421 4.3.2 too busy"])
def test_refused_greeting(greeting: str) -> None:
    def script(conn: Conn) -> None:
        conn.reply(greeting)
        if greeting.startswith("554"):
            conn.quit()
        assert closed_by_client(conn)

    with ScriptedServer(script) as server:
        with pytest.raises(ReplyError) as info:
            connect(server)
        server.wait_for_scripts()
    error = info.value
    assert error.code == int(greeting[:3])
    assert error.phase is Phase.GREETING
    assert error.transient is greeting.startswith("421")
    assert "greeting" in str(error)
    assert server.conns[0].lines == ([b"QUIT"] if greeting.startswith("554") else [])


def test_ehlo_refused_falls_back_to_helo() -> None:
    def script(conn: Conn) -> None:
        conn.reply("220 old.test SMTP")
        conn.expect("EHLO")
        conn.reply("502 5.5.2 what?")
        conn.expect("HELO client.test")
        conn.reply("250 old.test")
        conn.expect("MAIL")
        conn.reply("250 ok")
        conn.expect("RCPT")
        conn.reply("250 ok")
        conn.expect("DATA")
        conn.reply("354 go")
        conn.read_data()
        conn.reply("250 queued")
        conn.quit()

    with ScriptedServer(script) as server, connect(server) as transport:
        assert len(transport.capabilities) == 0
        results = transport.send_raw("a@example.com", ["b@example.org"], MESSAGE)
        assert results[0].status is Status.DELIVERED


def test_ehlo_421() -> None:
    def script(conn: Conn) -> None:
        conn.reply("220 mx.test")
        conn.expect("EHLO")
        conn.reply("421 4.3.2 shutting down")

    with ScriptedServer(script) as server, pytest.raises(ReplyError) as info:
        connect(server)
    assert (info.value.code, info.value.phase, info.value.transient) == (421, Phase.EHLO, True)


# -- disconnects ----------------------------------------------------------------------------------


def _hangup_after(stage: str):  # type: ignore[no-untyped-def]
    def script(conn: Conn) -> None:
        if stage == "connect":
            return
        if stage == "ehlo":
            conn.reply("220 mx.test")
            conn.expect("EHLO")
            return
        conn.ehlo()
        conn.expect("MAIL")
        if stage == "mail":
            return
        conn.expect("RCPT")
        if stage == "rcpt":
            return
        conn.expect("DATA")
        if stage == "data":
            return
        conn.reply("250 ok", "250 ok", "354 go")
        if stage == "mid-data":
            conn.read_exactly(10)
            return
        conn.read_data()
        assert stage == "final-dot"

    return script


@pytest.mark.parametrize(
    ("stage", "phase", "data_sent"),
    [
        ("mail", Phase.MAIL, False),
        ("rcpt", Phase.MAIL, False),
        ("data", Phase.MAIL, False),
        ("mid-data", Phase.END_OF_DATA, True),
        ("final-dot", Phase.END_OF_DATA, True),
    ],
)
def test_disconnect_during_a_transaction(stage: str, phase: Phase, data_sent: bool) -> None:
    with ScriptedServer(_hangup_after(stage)) as server:
        transport = connect(server)
        with pytest.raises(ConnectionFailed) as info:
            transport.send_raw("a@example.com", ["b@example.org"], MESSAGE)
    error = info.value
    assert error.phase is phase
    assert error.data_sent is data_sent, "only a completed end of data can mean 'possibly delivered'"
    assert error.transient and isinstance(error, ConnectionError)
    assert error.results == ()
    assert not transport.usable
    with pytest.raises(ConnectionFailed, match="closed"):
        transport.send_raw("a@example.com", ["b@example.org"], MESSAGE)


@pytest.mark.parametrize(("stage", "phase"), [("connect", Phase.GREETING), ("ehlo", Phase.EHLO)])
def test_disconnect_while_opening(stage: str, phase: Phase) -> None:
    with ScriptedServer(_hangup_after(stage)) as server, pytest.raises(ConnectionFailed) as info:
        connect(server)
    assert info.value.phase is phase


def test_disconnect_mid_data_of_a_large_message_is_not_data_sent() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo()
        conn.expect("MAIL")
        conn.expect("RCPT")
        conn.expect("DATA")
        conn.reply("250 ok", "250 ok", "354 go")
        conn.read_exactly(1000)
        conn.sock.close()

    big = MESSAGE + (b"y" * 998 + b"\r\n") * 30_000  # ~30 MB: more than any socket buffer holds
    with ScriptedServer(script) as server:
        transport = connect(server)
        with pytest.raises(ConnectionFailed) as info:
            transport.send_raw("a@example.com", ["b@example.org"], big)
    assert info.value.data_sent is False


def test_disconnect_after_quit_is_not_an_error() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo()
        conn.expect("QUIT")  # and hang up without 221

    with ScriptedServer(script) as server:
        transport = connect(server)
        transport.close()
        transport.close()  # idempotent
    assert not transport.usable


def test_partial_reply_then_eof() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo()
        conn.expect("MAIL")
        conn.send(b"250 2.1.0 O")

    with ScriptedServer(script) as server, connect(server) as transport:
        with pytest.raises(ConnectionFailed) as info:
            transport.send_raw("a@example.com", ["b@example.org"], MESSAGE)
        assert info.value.phase is Phase.MAIL


# -- 421 and negative replies ---------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA", "EOD"])
def test_421_in_a_transaction_defers_and_closes(stage: str) -> None:
    def script(conn: Conn) -> None:
        conn.ehlo()
        conn.expect("MAIL")
        conn.expect("RCPT")
        conn.expect("DATA")
        if stage == "MAIL":
            conn.reply("421 4.3.2 bye")
        elif stage == "RCPT":
            conn.reply("250 ok", "421 4.3.2 bye")
        elif stage == "DATA":
            conn.reply("250 ok", "250 ok", "421 4.3.2 bye")
        else:
            conn.reply("250 ok", "250 ok", "354 go")
            conn.read_data()
            conn.reply("421 4.3.2 bye")
        assert closed_by_client(conn)
        assert b"QUIT" not in conn.lines, "no QUIT (nor RSET) after 421"

    with ScriptedServer(script) as server:
        transport = connect(server)
        results = transport.send_raw("a@example.com", ["b@example.org"], MESSAGE)
        server.wait_for_scripts()
    assert [(r.status, r.code) for r in results] == [(Status.DEFERRED, 421)]
    assert not transport.usable


def test_550_to_mail_then_hangup_still_reports() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo()
        conn.expect("MAIL")
        conn.reply("550 5.7.1 you are blocked")
        conn.sock.close()

    with ScriptedServer(script) as server:
        transport = connect(server)
        results = transport.send_raw("a@example.com", ["b@example.org", "c@example.org"], MESSAGE)
    assert [(r.status, r.code, r.enhanced_status) for r in results] == [(Status.BOUNCED, 550, "5.7.1")] * 2
    assert not transport.usable


# -- hostile replies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"250-" + b"x" * 9000, "longer than 8192"),
        (b"250-more\r\n" * 2000, "more than 1000 lines"),
        (b"2500 bogus\r\n", "malformed"),
        (b"250-ok\r\n550 mixed\r\n", "changed its code"),
    ],
)
def test_hostile_ehlo_replies(payload: bytes, match: str) -> None:
    def script(conn: Conn) -> None:
        conn.reply("220 mx.test")
        conn.expect("EHLO")
        conn.send(payload)
        conn.wait_closed()

    with ScriptedServer(script) as server, pytest.raises(ProtocolError, match=match) as info:
        connect(server)
    assert info.value.phase is Phase.EHLO
    assert info.value.transient


def test_endless_continuation_without_newline_is_bounded() -> None:
    def script(conn: Conn) -> None:
        conn.reply("220 mx.test")
        conn.expect("EHLO")
        try:
            for _ in range(100):
                conn.send(b"x" * 1000)
        finally:
            conn.wait_closed()

    with ScriptedServer(script) as server, pytest.raises(ProtocolError, match="longer than"):
        connect(server)


def test_stall_after_mail_times_out_and_the_connection_is_dead() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo()
        conn.expect("MAIL")
        conn.expect("RCPT")
        conn.expect("DATA")
        assert closed_by_client(conn)
        # a late reply to a dead connection
        conn.send(b"250 late\r\n")

    with ScriptedServer(script) as server:
        transport = connect(server, timeout=Timeouts.uniform(0.3))
        with pytest.raises(SMTPTimeout) as info:
            transport.send_raw("a@example.com", ["b@example.org"], MESSAGE)
    assert info.value.phase is Phase.MAIL
    assert not transport.usable, "a timed-out connection is never reused"


def test_unsolicited_lines_between_transactions_are_discarded() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo()
        conn.accept_mail()
        conn.reply("250 2.0.0 unsolicited extra line")
        time.sleep(0.1)
        conn.expect("MAIL")
        conn.expect("RCPT")
        conn.expect("DATA")
        conn.reply("550 5.7.1 second refused", "503 5.5.1 no", "503 5.5.1 no")
        conn.quit()

    with ScriptedServer(script) as server, connect(server) as transport:
        first = transport.send_raw("a@example.com", ["b@example.org"], MESSAGE)
        time.sleep(0.2)
        second = transport.send_raw("a@example.com", ["b@example.org"], MESSAGE)
    assert first[0].status is Status.DELIVERED
    assert (second[0].status, second[0].code) == (Status.BOUNCED, 550), (
        "the stale 250 was not paired with MAIL"
    )


def test_several_transactions_and_rset_after_failure() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo()
        conn.accept_mail()
        conn.expect("MAIL")
        conn.expect("RCPT")
        conn.expect("DATA")
        conn.reply("250 ok", "550 5.1.1 no such user", "554 5.5.1 no valid recipients")
        conn.expect("RSET")
        conn.expect("MAIL")
        conn.expect("RCPT")
        conn.expect("DATA")
        conn.reply("250 ok", "250 ok", "250 ok", "354 go")
        conn.read_data()
        conn.reply("250 queued")
        conn.quit()

    with ScriptedServer(script) as server, connect(server) as transport:
        outcomes = [
            transport.send_raw("a@example.com", [to], MESSAGE)[0].status
            for to in ("b@example.org", "gone@example.org", "c@example.org")
        ]
        assert transport.messages_sent == 3
    assert outcomes == [Status.DELIVERED, Status.BOUNCED, Status.DELIVERED]


# -- STARTTLS --------------------------------------------------------------------------------------


def test_injected_bytes_after_starttls_220_are_discarded(
    tls_ca: CertAuthority, caplog: pytest.LogCaptureFixture
) -> None:
    def script(conn: Conn) -> None:
        conn.ehlo(("STARTTLS", "PIPELINING"))
        conn.expect("STARTTLS")
        conn.send(b"220 2.0.0 Ready to start TLS\r\n250-injected\r\n250 AUTH PLAIN\r\n")
        conn.starttls(tls_ca.server_context("mx.test"))
        conn.ehlo(("PIPELINING", "8BITMIME"), greeting="")
        conn.quit()

    with caplog.at_level(logging.WARNING, logger="smtprelay"), ScriptedServer(script) as server:
        transport = connect(server, tls="verify", tls_hostname="mx.test", ssl_context=tls_ca.client_context())
        assert transport.tls_version in ("TLSv1.2", "TLSv1.3")
        assert "AUTH" not in transport.capabilities
        assert "8BITMIME" in transport.capabilities, "capabilities come from the EHLO after TLS"
        transport.close()
    assert "possible response injection" in caplog.text


@pytest.mark.parametrize("policy", ["required", "verify"])
def test_enforced_tls_without_starttls_sends_no_mail(policy: str) -> None:
    def script(conn: Conn) -> None:
        conn.ehlo(("PIPELINING", "AUTH PLAIN"))
        conn.quit()

    with ScriptedServer(script) as server:
        with pytest.raises(TLSError, match="does not offer STARTTLS") as info:
            connect(server, tls=policy, username="u", password="secret")
        server.wait_for_scripts()
    assert info.value.transient
    assert [line.split()[0] for line in server.conns[0].lines] == [b"EHLO", b"QUIT"], "no AUTH, no MAIL"


@pytest.mark.parametrize("policy", ["required", "verify"])
def test_enforced_tls_with_starttls_refused(policy: str) -> None:
    def script(conn: Conn) -> None:
        conn.ehlo(("STARTTLS",))
        conn.expect("STARTTLS")
        conn.reply("454 4.7.0 TLS not available due to local problem")
        conn.quit()

    with ScriptedServer(script) as server:
        with pytest.raises(TLSError, match="refused STARTTLS"):
            connect(server, tls=policy)
        server.wait_for_scripts()
    assert [line.split()[0] for line in server.conns[0].lines] == [b"EHLO", b"STARTTLS", b"QUIT"]


def test_opportunistic_continues_in_plaintext_when_starttls_refused() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo(("STARTTLS", "PIPELINING"))
        conn.expect("STARTTLS")
        conn.reply("454 4.7.0 TLS not available")
        conn.accept_mail()
        conn.quit()

    with ScriptedServer(script) as server, connect(server, tls="opportunistic") as transport:
        assert transport.tls_version is None
        results = transport.send_raw("a@example.com", ["b@example.org"], MESSAGE)
        assert (results[0].status, results[0].tls) == (Status.DELIVERED, None)


def test_handshake_timeout_required_fails() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo(("STARTTLS",))
        conn.expect("STARTTLS")
        conn.reply("220 go ahead")
        conn.wait_closed()  # never speaks TLS

    with ScriptedServer(script) as server, pytest.raises(TLSError, match="timed out"):
        connect(server, tls="required", timeout=Timeouts.uniform(0.3))


def test_opportunistic_handshake_failure_retries_once_in_plaintext() -> None:
    def broken_tls(conn: Conn) -> None:
        conn.ehlo(("STARTTLS", "PIPELINING"))
        conn.expect("STARTTLS")
        conn.reply("220 go ahead")
        conn.send(b"this is not a TLS server hello\r\n" * 10)
        conn.wait_closed()

    def plaintext(conn: Conn) -> None:
        conn.ehlo(("STARTTLS", "PIPELINING"))
        conn.accept_mail()
        conn.quit()

    with ScriptedServer([broken_tls, plaintext]) as server:
        with connect(server, tls="opportunistic") as transport:
            assert transport.tls_version is None
            results = transport.send_raw("a@example.com", ["b@example.org"], MESSAGE)
        server.wait_for_scripts()
    assert results[0].status is Status.DELIVERED
    assert len(server.conns) == 2
    assert b"STARTTLS" not in server.conns[1].lines, "the fallback connection does not try TLS again"


# -- AUTH ------------------------------------------------------------------------------------------


def test_endless_auth_challenges_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    def script(conn: Conn) -> None:
        conn.ehlo(("AUTH LOGIN",))
        conn.expect("AUTH LOGIN")
        for _ in range(50):
            conn.reply("334 VXNlcm5hbWU6")
            conn.line()

    with ScriptedServer(script) as server, pytest.raises(AuthenticationError, match="more than"):
        connect(server, username="user", password="hunter2", allow_plaintext_auth=True)
    assert len(server.conns[0].lines) < 10


def test_auth_refused_on_plaintext_without_permission() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo(("AUTH PLAIN LOGIN", "STARTTLS"))
        conn.expect("STARTTLS")
        conn.reply("454 4.7.0 not now")
        conn.quit()

    with ScriptedServer(script) as server:
        with pytest.raises(AuthenticationError, match="not encrypted") as info:
            connect(server, tls="opportunistic", username="user", password="hunter2")
        server.wait_for_scripts()
    assert b"AUTH" not in b" ".join(server.conns[0].lines)
    assert "hunter2" not in str(info.value)


def test_auth_with_tls_none_is_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="plaintext"):
        Transport.connect(
            "127.0.0.1", 1, tls="none", username="u", password="p", local_hostname="client.test"
        )


def test_auth_failure_535(caplog: pytest.LogCaptureFixture) -> None:
    def script(conn: Conn) -> None:
        conn.ehlo(("AUTH PLAIN",))
        conn.expect("AUTH PLAIN")
        conn.reply("535 5.7.8 Error: authentication failed")
        conn.quit()

    with (
        caplog.at_level(5, logger="smtprelay"),
        ScriptedServer(script) as server,
        pytest.raises(AuthenticationError) as info,
    ):
        connect(server, username="user", password="hunter2", allow_plaintext_auth=True)
    assert (info.value.code, info.value.transient) == (535, False)
    assert "hunter2" not in caplog.text and "aHVudGVyMg" not in caplog.text
    assert "AUTH <redacted>" in caplog.text


# -- load and flow ---------------------------------------------------------------------------------


def test_server_that_stops_reading_gets_a_write_timeout() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo()
        conn.expect("MAIL")
        conn.expect("RCPT")
        conn.expect("DATA")
        conn.reply("250 ok", "250 ok", "354 go")
        time.sleep(1.5)  # reads nothing more

    big = MESSAGE + (b"z" * 998 + b"\r\n") * 60_000
    with ScriptedServer(script) as server:
        transport = connect(server, timeout=Timeouts.uniform(0.3))
        with pytest.raises(SMTPTimeout) as info:
            transport.send_raw("a@example.com", ["b@example.org"], big)
    assert info.value.phase is Phase.DATA_BLOCK
    assert info.value.data_sent is False


def test_pipelined_group_never_deadlocks_on_verbose_replies() -> None:
    count = 3000
    verbose = "2.1.5 " + "v" * 4000

    def script(conn: Conn) -> None:
        conn.ehlo()
        conn.expect("MAIL")
        conn.reply("250 2.1.0 ok")
        for _ in range(count):
            conn.expect("RCPT")
            conn.reply(f"250 {verbose}")  # blocks when the client does not read
        conn.expect("DATA")
        conn.reply("354 go")
        conn.read_data()
        conn.reply("250 queued")
        conn.quit()

    recipients = [f"user{i:05d}@example.org" for i in range(count)]
    with (
        ScriptedServer(script, timeout=10) as server,
        connect(server, timeout=Timeouts.uniform(5)) as transport,
    ):
        results = transport.send_raw("a@example.com", recipients, MESSAGE)
    assert len(results) == count
    assert all(r.status is Status.DELIVERED for r in results)


def test_cram_md5_end_to_end() -> None:
    import base64
    import hashlib
    import hmac

    challenge = b"<4711.1700000000@mx.test>"

    def script(conn: Conn) -> None:
        conn.ehlo(("AUTH CRAM-MD5", "PIPELINING"))
        conn.expect("AUTH CRAM-MD5")
        conn.reply("334 " + base64.b64encode(challenge).decode())
        answer = base64.b64decode(conn.line())
        user, digest = answer.split(b" ")
        expected = hmac.new(b"s3cret", challenge, hashlib.md5).hexdigest().encode()
        if (user, digest) == (b"tim", expected):
            conn.reply("235 2.7.0 Authentication successful")
        else:
            conn.reply("535 5.7.8 bad")
        conn.quit()

    with ScriptedServer(script) as server:
        with connect(server, username="tim", password="s3cret", allow_plaintext_auth=True) as transport:
            assert transport.usable
        server.wait_for_scripts()
    assert server.conns[0].lines[0].startswith(b"EHLO")


def test_ipv6_loopback() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo()
        conn.accept_mail()
        conn.quit()

    with ScriptedServer(script, host="::1") as server, connect(server) as transport:
        assert transport.peer[0] == "::1"
        results = transport.send_raw("a@example.com", ["b@example.org"], MESSAGE)
    assert results[0].status is Status.DELIVERED


def test_tls_session_closed_without_close_notify_after_quit(tls_ca: CertAuthority) -> None:
    def script(conn: Conn) -> None:
        conn.ehlo(("STARTTLS",))
        conn.expect("STARTTLS")
        conn.reply("220 go ahead")
        conn.starttls(tls_ca.server_context("mx.test"))
        conn.ehlo(("PIPELINING",), greeting="")
        conn.expect("QUIT")
        # hang up on the raw socket: no 221, no TLS close_notify
        raw = socket.socket(fileno=conn.sock.detach())
        raw.close()

    with ScriptedServer(script) as server:
        transport = connect(server, tls="verify", tls_hostname="mx.test", ssl_context=tls_ca.client_context())
        assert transport.tls_version is not None
        transport.close()
        server.wait_for_scripts()
    assert not transport.usable


def test_8bit_data_without_8bitmime_is_refused_before_mail() -> None:
    def script(conn: Conn) -> None:
        conn.ehlo(("PIPELINING",))
        conn.quit()

    with ScriptedServer(script) as server:
        with connect(server) as transport:
            data = "From: a@example.com\r\nSubject: x\r\n\r\nK\u00f6ln\r\n".encode()
            results = transport.send_raw("a@example.com", ["b@example.org"], data)
        server.wait_for_scripts()
    assert [(r.status, r.code, r.enhanced_status) for r in results] == [(Status.BOUNCED, None, "5.6.3")]
    assert not any(line.startswith(b"MAIL") for line in server.conns[0].lines)
