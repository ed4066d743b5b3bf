"""smtprelay.testing.LocalMX driven by the standard library's smtplib (and raw sockets), on loopback."""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import trustme

from smtprelay.testing import Action, LocalMX
from support.network import free_port, loopback_address

CLIENT = "client.test"


@pytest.fixture
def mx() -> Iterator[LocalMX]:
    with LocalMX(timeout=5.0) as server:
        yield server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localmx.test", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def connect(mx: LocalMX, timeout: float = 2.0) -> smtplib.SMTP:
    # local_hostname: smtplib would otherwise call socket.getfqdn(), a system DNS lookup.
    return smtplib.SMTP(mx.host, mx.port, local_hostname=CLIENT, timeout=timeout)


def raw_session(mx: LocalMX) -> tuple[socket.socket, socket.SocketIO]:
    sock = socket.create_connection(mx.address, timeout=2.0)
    return sock, socket.SocketIO(sock, "rb")


def localmx_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("LocalMX")]


# -- recording -------------------------------------------------------------------------------


def test_records_envelope_and_exact_data(mx: LocalMX) -> None:
    data = b"Subject: hi\r\nX-Test: 1\r\n\r\n.leading dot\r\n..two dots\r\nlast line\r\n"
    with connect(mx) as client:
        assert client.sendmail("alice@sender.test", ["bob@example.test", "carol@example.test"], data) == {}
    [message] = mx.wait_for(1)
    assert message.mail_from == "alice@sender.test"
    assert message.rcpt_tos == ("bob@example.test", "carol@example.test")
    assert message.data == data  # dot-stuffing undone, CRLF kept, nothing added
    assert message.ehlo_name == CLIENT
    assert message.server == mx.address
    assert message.peer[0] == "127.0.0.1"
    assert (message.session_id, message.transaction) == (1, 1)
    assert message.reply == (250, "OK")
    assert message.accepted
    assert not message.tls
    assert message.message()["Subject"] == "hi"


def test_records_sessions_and_transactions(mx: LocalMX) -> None:
    with connect(mx) as client:
        client.sendmail("a@sender.test", ["b@example.test"], b"one\r\n")
        client.sendmail("", ["b@example.test"], b"two\r\n")  # the null reverse-path
    with connect(mx) as client:
        client.noop()
    mx.wait_until_idle()
    first, second = mx.sessions
    assert (first.id, first.transactions, first.ehlo_name, first.closed) == (1, 2, CLIENT, True)
    assert first.commands[0] == f"EHLO {CLIENT}"
    assert first.commands[1].startswith("MAIL FROM:<a@sender.test>")
    assert first.commands[-1] == "QUIT"
    assert first.replies[0].startswith("220 localmx.test")
    assert second.commands == ("NOOP", "QUIT")
    assert mx.connections == 2
    one, two = mx.messages
    assert (one.transaction, two.transaction) == (1, 2)
    assert two.mail_from == ""
    assert [m.data for m in mx.messages] == [b"one\r\n", b"two\r\n"]


def test_ehlo_advertises_pipelining_and_extensions() -> None:
    mx = LocalMX(extensions=["ENHANCEDSTATUSCODES", "X-EXPERIMENT"], data_size_limit=1000, smtputf8=False)
    with mx, connect(mx) as client:
        client.ehlo()
        features = set(client.esmtp_features)
        assert features == {"pipelining", "size", "8bitmime", "enhancedstatuscodes", "x-experiment", "help"}
        assert client.esmtp_features["size"] == "1000"
        assert not client.has_extn("auth")  # no auth= given: no AUTH offered
        assert not client.has_extn("starttls")


def test_helo_is_recorded(mx: LocalMX) -> None:
    with connect(mx) as client:
        client.helo("old.client.test")
        client.sendmail("a@sender.test", ["b@example.test"], b"x\r\n")
    assert mx.wait_for(1)[0].ehlo_name == "old.client.test"


# -- scripting -------------------------------------------------------------------------------


def test_script_rcpt_permanent_failure(mx: LocalMX) -> None:
    mx.script_rcpt("bob@example.test", 550, "5.1.1 No such user")
    with connect(mx) as client:
        refused = client.sendmail("a@sender.test", ["Bob@Example.test", "carol@example.test"], b"x\r\n")
        assert refused == {"Bob@Example.test": (550, b"5.1.1 No such user")}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("a@sender.test", ["bob@example.test"], b"x\r\n")  # every time
    assert mx.wait_for(1)[0].rcpt_tos == ("carol@example.test",)
    assert mx.deliveries_to("bob@example.test") == 0
    assert mx.rcpt_attempts("bob@example.test") == 2


def test_greylisting_451_once_then_accepted(mx: LocalMX) -> None:
    mx.script_rcpt("bob@example.test", [(451, "4.7.1 Greylisted, try later"), (250, "2.1.5 OK")])
    with connect(mx) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.sendmail("a@sender.test", ["bob@example.test"], b"x\r\n")
    assert refused.value.recipients == {"bob@example.test": (451, b"4.7.1 Greylisted, try later")}
    for _ in range(2):  # the second reply, then the normal behaviour
        with connect(mx) as client:
            assert client.sendmail("a@sender.test", ["bob@example.test"], b"x\r\n") == {}
    assert mx.rcpt_attempts("bob@example.test") == 3
    assert mx.deliveries_to("bob@example.test") == 2


def test_script_for_any_other_recipient(mx: LocalMX) -> None:
    mx.script_rcpt("*", 452, "4.2.2 Mailbox full")
    mx.script_rcpt("bob@example.test", (250, "OK"))
    with connect(mx) as client:
        refused = client.sendmail("a@sender.test", ["bob@example.test", "carol@example.test"], b"x\r\n")
    assert refused == {"carol@example.test": (452, b"4.2.2 Mailbox full")}


def test_script_mail(mx: LocalMX) -> None:
    mx.script_mail(553, "5.7.1 Sender refused", sender="spammer@bad.test")
    mx.script_mail([(451, "4.3.0 Try again")])
    with connect(mx) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@sender.test", ["b@example.test"], b"x\r\n")
        assert refused.value.smtp_code == 451
        assert client.sendmail("a@sender.test", ["b@example.test"], b"x\r\n") == {}
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("SPAMMER@bad.test", ["b@example.test"], b"x\r\n")
        assert refused.value.smtp_code == 553
    assert len(mx.messages) == 1


def test_script_data(mx: LocalMX) -> None:
    mx.script_data([(554, "5.6.0 Content rejected"), (250, "2.0.0 Queued as X1")])
    with connect(mx) as client:
        with pytest.raises(smtplib.SMTPDataError) as error:
            client.sendmail("a@sender.test", ["b@example.test"], b"first\r\n")
        assert error.value.smtp_code == 554
        client.sendmail("a@sender.test", ["b@example.test"], b"second\r\n")
    rejected, accepted = mx.transactions
    assert (rejected.reply, rejected.accepted) == ((554, "5.6.0 Content rejected"), False)
    assert (accepted.reply, accepted.data) == ((250, "2.0.0 Queued as X1"), b"second\r\n")
    assert mx.messages == (accepted,)
    assert mx.deliveries_to("b@example.test") == 1


def test_multiline_replies(mx: LocalMX) -> None:
    mx.script_rcpt("b@example.test", 550, "5.1.1 No such user\nSee https://example.test/why")
    with connect(mx) as client:
        client.ehlo()
        client.mail("a@sender.test")
        assert client.rcpt("b@example.test") == (550, b"5.1.1 No such user\nSee https://example.test/why")
    mx.wait_until_idle()
    assert "550-5.1.1 No such user\r\n550 See https://example.test/why" in mx.sessions[0].replies


def test_421_reply_closes_the_connection(mx: LocalMX) -> None:
    mx.script_rcpt("b@example.test", 421, "4.3.2 Shutting down")
    with connect(mx) as client:
        client.ehlo()
        client.mail("a@sender.test")
        assert client.rcpt("b@example.test")[0] == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    mx.wait_until_idle()


def test_greeting_421_closes(mx: LocalMX) -> None:
    mx.script_greeting(421, "4.3.2 Too busy")
    with pytest.raises(smtplib.SMTPConnectError) as error:
        connect(mx)
    assert (error.value.smtp_code, error.value.smtp_error) == (421, b"4.3.2 Too busy")
    sock, reader = raw_session(mx)
    with sock:
        assert reader.readline() == b"421 4.3.2 Too busy\r\n"
        assert reader.readline() == b""  # closed by the server


def test_greeting_554_answers_503_until_quit(mx: LocalMX) -> None:
    mx.script_greeting((554, "5.7.1 No service for you"))
    sock, reader = raw_session(mx)
    with sock:
        assert reader.readline() == b"554 5.7.1 No service for you\r\n"
        sock.sendall(b"EHLO client.test\r\n")
        assert reader.readline() == b"503 5.5.1 No service\r\n"
        sock.sendall(b"QUIT\r\n")
        assert reader.readline().startswith(b"221")
        assert reader.readline() == b""


def test_greeting_script_is_used_up_then_normal(mx: LocalMX) -> None:
    mx.script_greeting([(421, "4.3.2 Busy")])
    with pytest.raises(smtplib.SMTPConnectError):
        connect(mx)
    with connect(mx) as client:
        assert client.noop()[0] == 250


def test_script_ehlo(mx: LocalMX) -> None:
    mx.script_ehlo([(421, "4.7.0 Not now")])
    sock, reader = raw_session(mx)
    with sock:
        reader.readline()
        sock.sendall(b"EHLO client.test\r\n")
        assert reader.readline() == b"421 4.7.0 Not now\r\n"
        assert reader.readline() == b""


def test_disconnect_at_end_of_data_records_an_unanswered_transaction(mx: LocalMX) -> None:
    mx.script_data(Action.DISCONNECT)
    client = connect(mx)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.sendmail("a@sender.test", ["b@example.test"], b"maybe\r\n")
    client.close()
    [transaction] = mx.transactions
    assert (transaction.reply, transaction.accepted, transaction.data) == (None, False, b"maybe\r\n")
    assert mx.messages == ()


def test_hang_makes_the_client_time_out(mx: LocalMX) -> None:
    mx.script_rcpt("b@example.test", LocalMX.HANG)
    client = connect(mx, timeout=0.3)
    client.ehlo()
    client.mail("a@sender.test")
    started = time.monotonic()
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        client.rcpt("b@example.test")
    assert time.monotonic() - started < 1.0
    client.close()
    mx.wait_until_idle()


def test_max_recipients(mx: LocalMX) -> None:
    with LocalMX(max_recipients=2) as limited, connect(limited) as client:
        client.ehlo()
        assert client.esmtp_features["limits"] == "RCPTMAX=2"
        refused = client.sendmail(
            "a@sender.test", ["r1@example.test", "r2@example.test", "r3@example.test"], b"x\r\n"
        )
        assert refused == {"r3@example.test": (452, b"4.5.3 Too many recipients")}


def test_a_tuple_of_replies_is_a_list_of_steps(mx: LocalMX) -> None:
    mx.script_rcpt("b@example.test", ((451, "4.7.1 Later"), (452, "4.2.2 Full")))
    codes = []
    for _ in range(3):
        with connect(mx) as client:
            client.ehlo()
            client.mail("a@sender.test")
            codes.append(client.rcpt("b@example.test")[0])
    assert codes == [451, 452, 250]


def test_invalid_scripts_are_refused(mx: LocalMX) -> None:
    with pytest.raises(ValueError, match="out of range"):
        mx.script_rcpt("b@example.test", 99, "bad")
    with pytest.raises(ValueError, match="printable"):
        mx.script_data(550, "evil\r\n250 OK")
    with pytest.raises(TypeError):
        mx.script_mail("550 text")  # type: ignore[arg-type]


def test_clear_scripts_and_reset(mx: LocalMX) -> None:
    mx.script_rcpt("*", 550, "no")
    mx.clear_scripts()
    with connect(mx) as client:
        client.sendmail("a@sender.test", ["b@example.test"], b"x\r\n")
    assert len(mx.wait_for(1)) == 1
    mx.reset()
    assert (mx.messages, mx.sessions, mx.rcpt_attempts("b@example.test")) == ((), (), 0)


# -- TLS and AUTH ----------------------------------------------------------------------------


def test_starttls(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    with LocalMX(tls_context=server_tls) as mx, connect(mx) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        client.starttls(context=client_tls)  # verifies the trustme certificate for 127.0.0.1
        client.sendmail("a@sender.test", ["b@example.test"], b"secret\r\n")
        [message] = mx.wait_for(1)
        assert message.tls
        assert message.tls_version in {"TLSv1.2", "TLSv1.3"}
        assert mx.sessions[0].tls_version == message.tls_version
        assert mx.sessions[0].commands[:3] == (f"EHLO {CLIENT}", "STARTTLS", f"EHLO {CLIENT}")


def test_require_starttls(server_tls: ssl.SSLContext) -> None:
    with LocalMX(tls_context=server_tls, require_starttls=True) as mx, connect(mx) as client:
        client.ehlo()
        assert client.mail("a@sender.test")[0] == 530


def test_implicit_tls(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    with LocalMX(tls_context=server_tls, implicit_tls=True) as mx:
        with smtplib.SMTP_SSL(
            mx.host, mx.port, local_hostname=CLIENT, context=client_tls, timeout=2
        ) as client:
            client.ehlo()
            assert not client.has_extn("starttls")
            client.sendmail("a@sender.test", ["b@example.test"], b"x\r\n")
        assert mx.wait_for(1)[0].tls


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, mechanism: str) -> None:
    with (
        LocalMX(tls_context=server_tls, auth=("user", "s3cret"), auth_required=True) as mx,
        connect(mx) as client,
    ):
        client.ehlo()
        assert not client.has_extn("auth")  # offered only over TLS when a TLS context is given
        assert client.mail("a@sender.test")[0] == 530  # auth_required
        client.rset()
        client.starttls(context=client_tls)
        client.ehlo()
        assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN", "XOAUTH2"}
        client.user, client.password = "user", "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
        assert error.value.smtp_code == 535
    with (
        LocalMX(tls_context=server_tls, auth=("user", "s3cret"), auth_required=True) as mx,
        connect(mx) as client,
    ):
        client.starttls(context=client_tls)
        client.ehlo()
        client.user, client.password = "user", "s3cret"
        assert client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))[0] == 235
        client.sendmail("a@sender.test", ["b@example.test"], b"x\r\n")
        assert mx.wait_for(1)[0].authenticated_as == "user"
        assert mx.sessions[0].authenticated_as == "user"
        assert f"AUTH {mechanism} ********" in mx.sessions[0].commands  # credentials never recorded
        assert not any("s3cret" in c or "czNjcmV0" in c for c in mx.sessions[0].commands)


def test_auth_over_plaintext_without_a_tls_context() -> None:
    # aiosmtpd warns (UserWarning) about AUTH required without TLS; pytest runs with warnings as
    # errors, so this also proves LocalMX does not trigger that warning.
    with LocalMX(auth=("user", "pw"), auth_required=True) as mx, connect(mx) as client:
        client.login("user", "pw")
        client.sendmail("a@sender.test", ["b@example.test"], b"x\r\n")
        assert mx.wait_for(1)[0].authenticated_as == "user"


def test_auth_xoauth2_and_a_custom_check() -> None:
    tokens = {"token-1"}

    def check(mechanism: str, user: str, secret: str) -> bool:
        return mechanism == "XOAUTH2" and user == "me@example.test" and secret in tokens

    with LocalMX(auth=check) as mx, connect(mx) as client:
        client.ehlo()
        bad = base64.b64encode(b"user=me@example.test\x01auth=Bearer nope\x01\x01").decode()
        assert client.docmd("AUTH", f"XOAUTH2 {bad}")[0] == 535
        good = base64.b64encode(b"user=me@example.test\x01auth=Bearer token-1\x01\x01").decode()
        assert client.docmd("AUTH", f"XOAUTH2 {good}")[0] == 235
    assert mx.sessions[0].authenticated_as == "me@example.test"


# -- counting and waiting --------------------------------------------------------------------


def test_auth_xoauth2_with_a_challenge() -> None:
    with LocalMX(auth=("me@example.test", "token-2")) as mx, connect(mx) as client:
        client.ehlo()
        assert client.docmd("AUTH", "XOAUTH2") == (334, b"")
        blob = base64.b64encode(b"user=me@example.test\x01auth=Bearer token-2\x01\x01").decode()
        assert client.docmd(blob)[0] == 235


def test_deliveries_are_counted_per_recipient(mx: LocalMX) -> None:
    for _ in range(2):
        with connect(mx) as client:
            client.sendmail("a@sender.test", ["bob@example.test", "carol@example.test"], b"x\r\n")
    with connect(mx) as client:
        client.sendmail("a@sender.test", ["carol@example.test"], b"x\r\n")
    assert mx.deliveries_to("BOB@example.test") == 2
    assert mx.deliveries_to("carol@example.test") == 3
    assert mx.deliveries_to("dave@example.test") == 0


def test_wait_for_messages_sent_from_another_thread(mx: LocalMX) -> None:
    def send() -> None:
        with connect(mx) as client:
            for n in range(3):
                time.sleep(0.02)
                client.sendmail("a@sender.test", ["b@example.test"], f"{n}\r\n".encode())

    sender = threading.Thread(target=send)
    sender.start()
    messages = mx.wait_for(3, timeout=5.0)
    sender.join()
    assert [m.data for m in messages] == [b"0\r\n", b"1\r\n", b"2\r\n"]


def test_wait_for_times_out(mx: LocalMX) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="0 of 1 messages"):
        mx.wait_for(1, timeout=0.1)
    assert time.monotonic() - started < 0.5


# -- lifecycle -------------------------------------------------------------------------------


def test_stop_mid_session_is_quick_and_leaves_no_thread() -> None:
    mx = LocalMX().start()
    client = connect(mx, timeout=5.0)
    client.ehlo()
    client.mail("a@sender.test")
    client.rcpt("b@example.test")
    client.putcmd("data")
    assert client.getreply()[0] == 354
    client.send(b"half a message\r\n")  # mid-DATA
    started = time.monotonic()
    mx.stop()
    assert time.monotonic() - started < 1.0
    assert localmx_threads() == []
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()
    client.close()
    mx.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(mx.address, timeout=1.0)


def test_stop_while_a_reply_hangs(mx: LocalMX) -> None:
    server = LocalMX().start()
    server.script_data(Action.HANG)
    client = connect(server, timeout=5.0)
    client.ehlo()
    client.mail("a@sender.test")
    client.rcpt("b@example.test")
    client.putcmd("data")
    client.getreply()
    client.send(b"x\r\n.\r\n")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    client.close()
    assert [t for t in localmx_threads() if t.name.endswith(str(server.port))] == []


def test_refuse_and_accept_connections(mx: LocalMX) -> None:
    open_client = connect(mx)
    mx.refuse_connections()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(mx.address, timeout=1.0)
    assert open_client.noop()[0] == 250  # sessions already open go on
    open_client.quit()
    mx.accept_connections()
    mx.accept_connections()  # already listening: nothing to do
    with connect(mx) as client:
        assert client.noop()[0] == 250


def test_several_hosts_on_one_port() -> None:
    first, second = loopback_address(), loopback_address()
    port = free_port(first)
    with LocalMX(first, port) as mx1, LocalMX(second, port) as mx2:
        for server in (mx1, mx2):
            with connect(server) as client:
                client.sendmail("a@sender.test", [f"b@{server.host}.test"], b"x\r\n")
        assert mx1.wait_for(1)[0].server == (first, port)
        assert mx2.wait_for(1)[0].rcpt_tos == (f"b@{second}.test",)


def test_ipv6_loopback() -> None:
    with LocalMX("::1") as mx, smtplib.SMTP("::1", mx.port, local_hostname=CLIENT, timeout=2) as client:
        client.sendmail("a@sender.test", ["b@example.test"], b"x\r\n")
        assert mx.wait_for(1)[0].peer[0] == "::1"


def test_bad_arguments(server_tls: ssl.SSLContext) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LocalMX("192.0.2.1")
    with pytest.raises(ValueError, match="tls_context"):
        LocalMX(implicit_tls=True)
    with pytest.raises(ValueError, match="auth"):
        LocalMX(auth_required=True)
    with LocalMX() as mx, pytest.raises(RuntimeError, match="already running"):
        mx.start()
    with pytest.raises(RuntimeError, match="not running"):
        LocalMX().refuse_connections()


def test_port_in_use_raises_at_start(mx: LocalMX) -> None:
    with pytest.raises(OSError):
        LocalMX(mx.host, mx.port).start()


def test_clear_import_error_without_aiosmtpd(monkeypatch: pytest.MonkeyPatch) -> None:
    from smtprelay.testing import _mx

    monkeypatch.setitem(sys.modules, "aiosmtpd.smtp", None)
    _mx._protocol_class.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pip install 'smtprelay\[testing\]'"):
            LocalMX()
    finally:
        _mx._protocol_class.cache_clear()
