"""The session state machine: legal steps, pipelining groups, pairing (RELIABILITY 3, 14, 38, 39)."""

from __future__ import annotations

import pytest

from smtprelay import LocalProtocolError, ProtocolError
from smtprelay._protocol import (
    CLOSED,
    NEED_DATA,
    Auth,
    AuthResponse,
    Bdat,
    ClientSession,
    Data,
    Ehlo,
    Helo,
    Mail,
    MessageData,
    Noop,
    Quit,
    Rcpt,
    Response,
    Rset,
    StartTLS,
    State,
)

EHLO_PIPELINING = (
    b"250-mx.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN\r\n"
)
EHLO_PLAIN = b"250-mx.test\r\n250 8BITMIME\r\n"


def reply(session: ClientSession, data: bytes = b"") -> Response:
    if data:
        session.receive_data(data)
    event = session.next_event()
    assert isinstance(event, Response), event
    return event


def ready(ehlo: bytes = EHLO_PIPELINING) -> ClientSession:
    session = ClientSession()
    assert session.state is State.CONNECTED
    reply(session, b"220 mx.test ESMTP\r\n")
    assert session.state is State.GREETED
    session.send(Ehlo("client.test"))
    reply(session, ehlo)
    assert session.state is State.READY
    return session


def test_nothing_before_the_greeting() -> None:
    session = ClientSession()
    with pytest.raises(LocalProtocolError, match="GREETING awaits"):
        session.send(Ehlo("client.test"))
    assert session.state is State.ERROR
    with pytest.raises(LocalProtocolError):
        session.send(Quit())


def test_greeting_then_ehlo_parses_capabilities() -> None:
    session = ready()
    assert session.capabilities.pipelining
    assert session.capabilities.auth_mechanisms == {"PLAIN"}


def test_ehlo_refused_then_helo() -> None:
    session = ClientSession()
    reply(session, b"220 old.test SMTP\r\n")
    session.send(Ehlo("client.test"))
    assert reply(session, b"502 command not implemented\r\n").reply.code == 502
    assert session.state is State.GREETED
    session.send(Helo("client.test"))
    reply(session, b"250 old.test\r\n")
    assert session.state is State.READY
    assert len(session.capabilities) == 0


def test_5xx_greeting_allows_only_quit() -> None:
    session = ClientSession()
    response = reply(session, b"554 5.7.1 go away\r\n")
    assert response.reply.code == 554
    assert not session.can_send(Ehlo("client.test"))
    assert session.can_send(Quit())


def test_421_greeting_closes() -> None:
    session = ClientSession()
    assert reply(session, b"421 4.3.2 busy\r\n").reply.is_closing
    assert session.state is State.CLOSED and not session.usable
    with pytest.raises(LocalProtocolError, match="CLOSED"):
        session.send(Quit())


def test_replies_pair_with_commands_in_order() -> None:
    session = ready()
    session.send(Mail("a@example.com"))
    session.send(Rcpt("b@example.org"))
    session.send(Rcpt("c@example.org"))
    session.send(Data())
    session.receive_data(b"250 2.1.0 ok\r\n550 5.1.1 no\r\n250 2.1.5 ok\r\n354 go\r\n")
    pairs = []
    while isinstance(event := session.next_event(), Response):
        pairs.append((type(event.command).__name__, event.reply.code, event.reply.enhanced_status))
    assert event is NEED_DATA
    assert pairs == [
        ("Mail", 250, "2.1.0"),
        ("Rcpt", 550, "5.1.1"),
        ("Rcpt", 250, "2.1.5"),
        ("Data", 354, None),
    ]
    assert session.state is State.DATA
    session.send(MessageData(b"hi\r\n.\r\n"))
    reply(session, b"250 2.0.0 queued\r\n")
    assert session.state is State.READY


def test_group_enders_must_be_answered_first() -> None:
    session = ready()
    session.send(Mail("a@example.com"))
    session.send(Rcpt("b@example.org"))
    session.send(Data())
    with pytest.raises(LocalProtocolError, match="DATA awaits its reply"):
        session.send(Rset())


@pytest.mark.parametrize("ender", [Noop(), StartTLS(), Ehlo("client.test"), Auth("PLAIN", "AA==")])
def test_every_group_ender(ender: object) -> None:
    session = ready()
    session.send(ender)  # type: ignore[arg-type]
    assert not session.can_send(Rset())


def test_no_pipelining_without_the_extension() -> None:
    session = ready(EHLO_PLAIN)
    session.send(Mail("a@example.com"))
    with pytest.raises(LocalProtocolError, match="no PIPELINING"):
        session.send(Rcpt("b@example.org"))


def test_data_needs_a_recipient_and_mail() -> None:
    session = ready()
    assert not session.can_send(Data())
    assert not session.can_send(Rcpt("b@example.org"))
    session.send(Mail("a@example.com"))
    assert not session.can_send(Data()), "DATA before any RCPT"
    session.send(Rcpt("b@example.org"))
    assert session.can_send(Data())


def test_failed_pipelined_mail_resynchronises_to_ready() -> None:
    session = ready()
    session.send(Mail("a@example.com"))
    session.send(Rcpt("b@example.org"))
    session.send(Data())
    session.receive_data(b"550 5.7.1 sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n")
    for _ in range(3):
        reply(session)
    assert session.state is State.READY
    assert session.can_send(Mail("a@example.com"))
    assert not session.can_send(Rcpt("b@example.org"))


def test_all_recipients_refused_leaves_transaction_open() -> None:
    session = ready()
    session.send(Mail("a@example.com"))
    session.send(Rcpt("b@example.org"))
    session.receive_data(b"250 ok\r\n550 no\r\n")
    reply(session)
    reply(session)
    assert session.state is State.MAIL, "the server's transaction is still open: RSET needed"
    assert not session.can_send(Mail("a@example.com"))
    session.send(Rset())
    reply(session, b"250 ok\r\n")
    assert session.state is State.READY


def test_refused_data_needs_rset() -> None:
    session = ready()
    session.send(Mail("a@example.com"))
    session.send(Rcpt("b@example.org"))
    session.send(Data())
    session.receive_data(b"250 ok\r\n250 ok\r\n554 5.5.1 no valid recipients\r\n")
    for _ in range(3):
        reply(session)
    assert session.state is State.MAIL


def test_content_may_start_a_group() -> None:
    session = ready()
    session.send(Mail("a@example.com"))
    session.send(Rcpt("b@example.org"))
    session.send(Data())
    reply(session, b"250 ok\r\n")
    reply(session, b"250 ok\r\n")
    reply(session, b"354 go\r\n")
    session.send(MessageData(b"x\r\n.\r\n"))
    session.send(Mail("a@example.com"))  # RFC 2920 §3.1: content may be followed by commands
    session.send(Rcpt("c@example.org"))
    assert [type(c).__name__ for c in session.pending] == ["MessageData", "Mail", "Rcpt"]


def test_bdat_sequence() -> None:
    session = ready()
    session.send(Mail("a@example.com"))
    session.send(Rcpt("b@example.org"))
    session.send(Bdat(b"part1", last=False))
    session.send(Bdat(b"part2", last=True))
    session.receive_data(b"250 ok\r\n250 ok\r\n250 5 bytes\r\n250 queued\r\n")
    states = []
    for _ in range(4):
        reply(session)
        states.append(session.state)
    assert states == [State.MAIL, State.MAIL, State.BDAT, State.READY]


def test_unsolicited_bytes_are_never_paired() -> None:
    session = ready()
    session.receive_data(b"250 I was not asked\r\n")
    assert session.next_event() is NEED_DATA
    session.send(Noop())
    assert session.discarded_bytes == len(b"250 I was not asked\r\n")
    assert session.next_event() is NEED_DATA, "the stale line must not answer NOOP"
    assert reply(session, b"250 2.0.0 Ok\r\n").reply.enhanced_status == "2.0.0"


def test_extra_reply_after_the_last_pending_one_is_discarded() -> None:
    session = ready()
    session.send(Noop())
    session.receive_data(b"250 ok\r\n550 extra junk\r\n")
    assert reply(session).reply.code == 250
    assert session.next_event() is NEED_DATA
    session.send(Rset())
    assert reply(session, b"250 reset\r\n").reply.text == "reset"


def test_starttls_discards_injected_plaintext_and_capabilities() -> None:
    session = ready()
    session.send(StartTLS())
    # CVE-2011-0411 class: the server (or a MITM) appends replies after 220 in the same packet.
    session.receive_data(b"220 2.0.0 Ready to start TLS\r\n250-injected\r\n250 AUTH PLAIN\r\n")
    assert reply(session).reply.code == 220
    assert session.state is State.STARTTLS
    assert not session.can_send(Ehlo("client.test")), "nothing may be sent until the handshake is done"
    assert session.start_tls() == len(b"250-injected\r\n250 AUTH PLAIN\r\n")
    assert session.tls_active and len(session.capabilities) == 0
    assert session.state is State.GREETED
    assert not session.can_send(Mail("a@example.com")), "EHLO again first"
    session.send(Ehlo("client.test"))
    assert session.next_event() is NEED_DATA, "injected bytes must not answer the new EHLO"
    reply(session, b"250-mx.test\r\n250 AUTH LOGIN\r\n")
    assert session.capabilities.auth_mechanisms == {"LOGIN"}
    assert not session.can_send(StartTLS()), "STARTTLS only once"


def test_start_tls_only_after_220() -> None:
    session = ready()
    with pytest.raises(LocalProtocolError, match="start_tls"):
        session.start_tls()
    session.send(StartTLS())
    reply(session, b"454 4.7.0 TLS not available\r\n")
    assert session.state is State.READY
    with pytest.raises(LocalProtocolError):
        session.start_tls()


def test_auth_exchange_states() -> None:
    session = ready()
    session.send(Auth("LOGIN"))
    reply(session, b"334 VXNlcm5hbWU6\r\n")
    assert session.state is State.AUTH
    assert not session.can_send(Mail("a@example.com"))
    session.send(AuthResponse("dXNlcg=="))
    reply(session, b"334 UGFzc3dvcmQ6\r\n")
    session.send(AuthResponse("cGFzcw=="))
    reply(session, b"235 2.7.0 Authentication successful\r\n")
    assert session.state is State.READY


def test_unexpected_reply_to_auth_is_a_protocol_error() -> None:
    session = ready()
    session.send(Auth("PLAIN", "AA=="))
    session.receive_data(b"250 what\r\n")
    with pytest.raises(ProtocolError, match="AUTH"):
        session.next_event()
    assert session.state is State.ERROR


@pytest.mark.parametrize("step", ["mail", "rcpt", "data", "content", "rset"])
def test_421_at_any_point_closes_and_drops_the_pipeline(step: str) -> None:
    session = ready()
    session.send(Mail("a@example.com"))
    session.send(Rcpt("b@example.org"))
    session.send(Data())
    answers = {"mail": [], "rcpt": [b"250 ok\r\n"], "data": [b"250 ok\r\n", b"250 ok\r\n"]}
    if step in ("content", "rset"):
        for line in (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
            reply(session, line)
        if step == "content":
            session.send(MessageData(b".\r\n"))
        else:
            session.send(MessageData(b".\r\n"))
            session.send(Rset())
            reply(session, b"250 queued\r\n")
    else:
        for line in answers[step]:
            reply(session, line)
    closing = reply(session, b"421 4.4.2 closing\r\n")
    assert closing.reply.is_closing
    assert session.state is State.CLOSED and not session.usable
    assert session.pending == ()


def test_malformed_reply_moves_to_error_for_good() -> None:
    session = ready()
    session.send(Noop())
    session.receive_data(b"2500 bogus\r\n")
    with pytest.raises(ProtocolError) as info:
        session.next_event()
    assert info.value.phase is not None and info.value.phase.value == "noop"
    assert session.state is State.ERROR and not session.usable
    with pytest.raises(LocalProtocolError):
        session.next_event()
    with pytest.raises(LocalProtocolError):
        session.send(Quit())


def test_eof_with_a_pending_command_is_closed() -> None:
    session = ready()
    session.send(Noop())
    session.receive_data(b"250 parti")
    session.receive_data(b"")
    assert session.next_event() is CLOSED
    assert session.state is State.CLOSED


def test_eof_when_idle_is_closed() -> None:
    session = ready()
    session.receive_data(b"")
    assert session.next_event() is CLOSED


def test_quit_closes() -> None:
    session = ready()
    session.send(Quit())
    reply(session, b"221 2.0.0 Bye\r\n")
    assert session.state is State.CLOSED


def test_repr_names_state_and_pending() -> None:
    session = ready()
    session.send(Mail("a@example.com"))
    assert repr(session) == "<ClientSession READY pending=[MAIL] tls=False>"
