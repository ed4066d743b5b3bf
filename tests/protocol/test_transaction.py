"""Full transactions between the client core and an in-memory server (RELIABILITY 15-18, 32, 48, 51)."""

from __future__ import annotations

import pytest

from smtprelay import LocalProtocolError, Status
from smtprelay._protocol import ClientSession, DSNRequest, Envelope, MailTransaction, State
from support.memserver import MemoryClient, MemoryServer, ReplySpec

MESSAGE = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nHello\r\n.dot line\r\n"
PIPE = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN", "SIZE 100000")
NO_PIPE = ("8BITMIME", "ENHANCEDSTATUSCODES")
CHUNKING = (*PIPE, "CHUNKING")


def envelope(*recipients: str, **kwargs: object) -> Envelope:
    return Envelope("a@example.com", recipients or ("b@example.org",), **kwargs)  # type: ignore[arg-type]


def rcpts(n: int) -> tuple[str, ...]:
    return tuple(f"r{i}@example.org" for i in range(n))


def statuses(results: object) -> list[tuple[str, Status, int | None]]:
    return [(r.recipient, r.status, r.code) for r in results]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extensions", "n", "round_trips"),
    [
        (PIPE, 1, 2),
        (PIPE, 10, 2),
        (NO_PIPE, 1, 4),
        (NO_PIPE, 10, 13),
        (CHUNKING, 1, 1),
        (CHUNKING, 10, 1),
    ],
)
def test_round_trips_per_message(extensions: tuple[str, ...], n: int, round_trips: int) -> None:
    server = MemoryServer(extensions=extensions)
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(n)), MESSAGE)
    assert exchange.round_trips == round_trips
    assert [r.status for r in exchange.results] == [Status.DELIVERED] * n
    assert exchange.data_sent
    assert server.received[0].content == MESSAGE
    assert server.received[0].recipients == list(rcpts(n))
    assert client.session.state is State.READY


def test_large_message_over_chunking_waits_for_rcpt_replies() -> None:
    server = MemoryServer(extensions=(*CHUNKING[:-2], "SIZE 0", "CHUNKING"))
    client = MemoryClient(server)
    content = MESSAGE + b"x" * 200_000 + b"\r\n"
    exchange = client.transact(envelope(), content, bdat_pipeline_limit=1000, bdat_chunk_size=64 * 1024)
    assert exchange.round_trips == 2
    assert server.received[0].content == content
    assert sum(line.startswith("BDAT") for line in server.log) == 4
    assert server.log[-1].endswith("LAST")


def test_mixed_recipient_replies_are_per_recipient() -> None:
    replies: dict[str, ReplySpec] = {
        "ok@example.org": (250, "2.1.5 Ok"),
        "grey@example.org": (451, "4.7.1 Greylisted"),
        "gone@example.org": (550, "5.1.1 User unknown"),
        "full@example.org": (452, "4.2.2 Mailbox full"),
        "ok2@example.org": (251, "2.1.5 Will forward"),
    }
    server = MemoryServer(rcpt_reply=lambda address: replies[address])
    client = MemoryClient(server)
    exchange = client.transact(envelope(*replies), MESSAGE)
    assert statuses(exchange.results) == [
        ("ok@example.org", Status.DELIVERED, 250),
        ("grey@example.org", Status.DEFERRED, 451),
        ("gone@example.org", Status.BOUNCED, 550),
        ("full@example.org", Status.DEFERRED, 452),
        ("ok2@example.org", Status.DELIVERED, 250),
    ], "the end-of-data reply settles the accepted ones; refusals keep their own reply"
    gone = exchange.results[2]
    assert (gone.enhanced_status, gone.text) == ("5.1.1", "User unknown")
    assert exchange.overflow == ()
    assert server.received[0].recipients == ["ok@example.org", "ok2@example.org"]
    assert exchange.round_trips == 2


def test_end_of_data_reply_applies_to_every_accepted_recipient() -> None:
    server = MemoryServer(eod_reply=(554, "5.7.1 Message rejected as spam"))
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(3)), MESSAGE)
    assert {(r.status, r.code, r.enhanced_status) for r in exchange.results} == {
        (Status.BOUNCED, 554, "5.7.1")
    }
    assert exchange.data_sent
    assert client.session.state is State.READY


def test_too_many_recipients_goes_to_overflow() -> None:
    accepted: list[str] = []

    def rcpt(address: str) -> ReplySpec:
        if len(accepted) >= 2:
            return (452, "4.5.3 Error: too many recipients")
        accepted.append(address)
        return (250, "2.1.5 Ok")

    server = MemoryServer(rcpt_reply=rcpt)
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(5)), MESSAGE)
    assert [r.recipient for r in exchange.results] == ["r0@example.org", "r1@example.org"]
    assert exchange.overflow == ("r2@example.org", "r3@example.org", "r4@example.org")
    accepted.clear()
    second = client.transact(envelope(*exchange.overflow), MESSAGE)
    assert [r.recipient for r in second.results] == ["r2@example.org", "r3@example.org"]
    assert second.overflow == ("r4@example.org",)
    assert [m.recipients for m in server.received] == [list(rcpts(5)[:2]), list(rcpts(5)[2:4])]


@pytest.mark.parametrize("wording", [(452, "Too many recipients"), (552, "too many recipients received")])
def test_too_many_recipients_without_enhanced_codes(wording: ReplySpec) -> None:
    server = MemoryServer(
        extensions=("PIPELINING",), rcpt_reply=lambda a: wording if a.startswith("r1") else (250, "ok")
    )
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(2)), MESSAGE)
    assert exchange.overflow == ("r1@example.org",)


def test_limits_rcptmax_splits_before_sending() -> None:
    server = MemoryServer(extensions=(*PIPE, "LIMITS RCPTMAX=3"))
    client = MemoryClient(server)
    remaining = rcpts(7)
    batches = []
    while remaining:
        exchange = client.transact(envelope(*remaining), MESSAGE)
        batches.append([r.recipient for r in exchange.results])
        remaining = exchange.overflow
    assert batches == [list(rcpts(7)[:3]), list(rcpts(7)[3:6]), list(rcpts(7)[6:])]
    assert sum(line.startswith("RCPT") for line in server.log) == 7


@pytest.mark.parametrize(("code", "status"), [(550, Status.BOUNCED), (451, Status.DEFERRED)])
def test_refused_mail_settles_everyone_and_sends_no_content(code: int, status: Status) -> None:
    server = MemoryServer(mail_reply=(code, f"{code // 100}.7.1 sender refused"))
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(3)), MESSAGE)
    assert {(r.status, r.code) for r in exchange.results} == {(status, code)}
    assert not exchange.data_sent
    assert server.received == []
    assert client.session.state is State.READY
    assert client.session.pending == ()
    server.mail_reply = (250, "ok")
    assert client.transact(envelope(), MESSAGE).results[0].status is Status.DELIVERED


def test_refused_mail_without_pipelining_sends_no_rcpt() -> None:
    server = MemoryServer(extensions=NO_PIPE, mail_reply=(550, "5.7.1 no"))
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(3)), MESSAGE)
    assert [r.status for r in exchange.results] == [Status.BOUNCED] * 3
    assert not any(line.startswith("RCPT") for line in server.log)


def test_all_recipients_refused_sends_no_content_then_rset() -> None:
    server = MemoryServer(rcpt_reply=(550, "5.1.1 unknown"), data_reply=(554, "5.5.1 no valid recipients"))
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(2)), MESSAGE)
    assert [r.status for r in exchange.results] == [Status.BOUNCED] * 2
    assert not exchange.data_sent
    assert client.session.state is State.MAIL
    server.rcpt_reply = (250, "ok")
    server.data_reply = (354, "go ahead")
    second = client.transact(envelope(), MESSAGE)
    assert second.results[0].status is Status.DELIVERED
    assert server.log[-4:-1] == ["RSET", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.org>"]
    assert second.round_trips == 2, "RSET is pipelined with the next MAIL"


def test_all_recipients_refused_but_data_354_ends_with_empty_body() -> None:
    server = MemoryServer(rcpt_reply=(550, "5.1.1 unknown"))
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(2)), MESSAGE)
    assert [r.code for r in exchange.results] == [550, 550]
    assert server.received == [], "only the empty body terminator was sent"
    assert not exchange.data_sent
    assert client.session.state is State.READY


def test_all_recipients_refused_without_pipelining_sends_no_data() -> None:
    server = MemoryServer(extensions=NO_PIPE, rcpt_reply=(550, "5.1.1 unknown"))
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(2)), MESSAGE)
    assert [r.status for r in exchange.results] == [Status.BOUNCED] * 2
    assert "DATA" not in server.log


def test_all_recipients_refused_with_pipelined_bdat() -> None:
    server = MemoryServer(extensions=CHUNKING, rcpt_reply=(550, "5.1.1 unknown"))
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(2)), MESSAGE)
    assert [r.code for r in exchange.results] == [550, 550]
    assert server.received == []
    assert client.session.state is State.READY


@pytest.mark.parametrize(("code", "status"), [(451, Status.DEFERRED), (554, Status.BOUNCED)])
def test_refused_data_settles_accepted_recipients(code: int, status: Status) -> None:
    server = MemoryServer(data_reply=(code, f"{code // 100}.3.0 no"))
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(2)), MESSAGE)
    assert [(r.status, r.code) for r in exchange.results] == [(status, code)] * 2
    assert not exchange.data_sent


@pytest.mark.parametrize("where", ["mail", "rcpt", "data", "eod"])
def test_421_defers_everything_open_and_closes(where: str) -> None:
    closing: ReplySpec = (421, "4.4.2 mx.test closing")
    server = MemoryServer(**{f"{where}_reply": closing})  # type: ignore[arg-type]
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(3)), MESSAGE)
    assert [(r.status, r.code) for r in exchange.results] == [(Status.DEFERRED, 421)] * 3
    assert not client.session.usable
    assert exchange.transaction.done


def test_421_after_one_refused_rcpt_keeps_that_refusal() -> None:
    server = MemoryServer(
        rcpt_reply=lambda a: (550, "5.1.1 no") if a.startswith("r0") else (421, "4.4.2 bye")
    )
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(3)), MESSAGE)
    assert [(r.status, r.code) for r in exchange.results] == [
        (Status.BOUNCED, 550),
        (Status.DEFERRED, 421),
        (Status.DEFERRED, 421),
    ]


def test_server_closing_after_550_mail_still_reports_it() -> None:
    server = MemoryServer(mail_reply=(550, "5.7.1 you are blocked"), close_after={"MAIL"})
    client = MemoryClient(server)
    exchange = client.transact(envelope(*rcpts(2)), MESSAGE)
    assert exchange.closed
    assert exchange.transaction.settled, "the 550 settled everyone before the connection closed"
    assert [(r.status, r.code) for r in exchange.results] == [(Status.BOUNCED, 550)] * 2


def test_connection_lost_before_end_of_data_reply_is_unsettled() -> None:
    server = MemoryServer(close_after={"DATA"}, data_reply=(354, "go"))
    client = MemoryClient(server)
    exchange = client.transact(envelope(), MESSAGE)
    assert exchange.closed
    assert not exchange.transaction.settled
    assert exchange.transaction.accepted == ("b@example.org",)


def test_size_over_limit_sends_nothing() -> None:
    server = MemoryServer(extensions=(*PIPE[:-1], "SIZE 50"))
    client = MemoryClient(server)
    before = list(server.log)
    exchange = client.transact(envelope(*rcpts(2)), MESSAGE)
    assert server.log == before, "not a byte was sent"
    assert [(r.status, r.code, r.enhanced_status) for r in exchange.results] == [
        (Status.BOUNCED, None, "5.3.4")
    ] * 2
    assert "exceeds the size limit 50" in exchange.results[0].text
    assert exchange.transaction.done


def test_size_zero_means_no_limit_and_size_parameter_is_sent() -> None:
    server = MemoryServer(extensions=("PIPELINING", "SIZE 0"))
    client = MemoryClient(server)
    exchange = client.transact(envelope(), MESSAGE * 100)
    assert exchange.results[0].status is Status.DELIVERED
    assert f"MAIL FROM:<a@example.com> SIZE={len(MESSAGE * 100)}" in server.log


def test_smtputf8_required_but_missing() -> None:
    server = MemoryServer(extensions=("PIPELINING", "8BITMIME"))
    client = MemoryClient(server)
    exchange = client.transact(Envelope("a@example.com", ("j\u00f6rg@example.org",), smtputf8=True), MESSAGE)
    result = exchange.results[0]
    assert (result.status, result.code, result.enhanced_status) == (Status.BOUNCED, None, "5.6.7")
    assert "SMTPUTF8" in result.text
    assert not any(line.startswith("MAIL") for line in server.log)


def test_smtputf8_declared_when_offered() -> None:
    server = MemoryServer()
    client = MemoryClient(server)
    exchange = client.transact(
        Envelope("\u00e4@example.com", ("j\u00f6rg@example.org",), smtputf8=True), MESSAGE
    )
    assert exchange.results[0].status is Status.DELIVERED
    assert "MAIL FROM:<\u00e4@example.com> SMTPUTF8" in server.log


def test_eight_bit_needs_8bitmime() -> None:
    server = MemoryServer(extensions=("PIPELINING",))
    client = MemoryClient(server)
    exchange = client.transact(envelope(eight_bit=True), MESSAGE)
    assert exchange.results[0].enhanced_status == "5.6.3"
    server.extensions = ("PIPELINING", "8BITMIME")
    client2 = MemoryClient(server)
    assert client2.transact(envelope(eight_bit=True), MESSAGE).results[0].status is Status.DELIVERED
    assert any(line.endswith("BODY=8BITMIME") for line in server.log)


def test_dsn_parameters_reach_the_server() -> None:
    server = MemoryServer()
    client = MemoryClient(server)
    dsn = DSNRequest(notify=frozenset({"FAILURE"}), ret="HDRS", envid="batch-7", orcpt=True)
    client.transact(envelope(dsn=dsn), MESSAGE)
    assert "MAIL FROM:<a@example.com> RET=HDRS ENVID=batch-7" in server.log
    assert "RCPT TO:<b@example.org> NOTIFY=FAILURE ORCPT=rfc822;b@example.org" in server.log


def test_several_transactions_on_one_connection() -> None:
    server = MemoryServer(rcpt_reply=lambda a: (550, "5.1.1 no") if a.startswith("bad") else (250, "ok"))
    client = MemoryClient(server)
    outcomes = []
    for recipients in [("r1@example.org",), ("bad@example.org",), ("r2@example.org", "bad2@example.org")]:
        outcomes.append([r.status for r in client.transact(envelope(*recipients), MESSAGE).results])
    assert outcomes == [[Status.DELIVERED], [Status.BOUNCED], [Status.DELIVERED, Status.BOUNCED]]
    assert [m.recipients for m in server.received] == [["r1@example.org"], ["r2@example.org"]]


def test_lone_dots_and_bare_line_ends_arrive_intact() -> None:
    content = b"Subject: x\r\n\r\n.\r\n..\nbare lf\rbare cr\r\n.end"
    server = MemoryServer()
    MemoryClient(server).transact(envelope(), content)
    assert server.received[0].content == b"Subject: x\r\n\r\n.\r\n..\r\nbare lf\r\nbare cr\r\n.end\r\n"


def test_transaction_needs_a_ready_session() -> None:
    session = ClientSession()
    with pytest.raises(LocalProtocolError, match="CONNECTED"):
        MailTransaction(session, envelope(), MESSAGE)


def test_envelope_validation() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Envelope("a@example.com", ())
    with pytest.raises(ValueError, match="repeat"):
        Envelope("a@example.com", ("b@example.org", "b@example.org"))
