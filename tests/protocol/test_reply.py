"""Reply parser: table-driven cases (RELIABILITY 9-12, 35, 36, 47)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtprelay import ProtocolError
from smtprelay._protocol import Reply, ReplyReader

GOOD = [
    # (wire bytes, enhanced?, code, lines, enhanced_status)
    (b"250 OK\r\n", False, 250, ("OK",), None),
    (b"250\r\n", False, 250, ("",), None),  # code without text (RFC 5321 allows it)
    (b"250 \r\n", False, 250, ("",), None),
    (b"220 mx.test ESMTP\n", False, 220, ("mx.test ESMTP",), None),  # bare LF tolerated
    (
        b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
        False,
        250,
        ("mx.test", "PIPELINING", "SIZE 1000"),
        None,
    ),
    (
        b"250-234 Text beginning with numbers\r\n250 The last line\r\n",
        False,
        250,
        ("234 Text beginning with numbers", "The last line"),
        None,
    ),
    (b"250-\r\n250 done\r\n", False, 250, ("", "done"), None),
    (b"250-first\r\n250\r\n", False, 250, ("first", ""), None),  # last line with no text
    (
        b"550 5.1.1 <bob@example.org>: Recipient address rejected\r\n",
        True,
        550,
        ("<bob@example.org>: Recipient address rejected",),
        "5.1.1",
    ),
    (b"550 5.1.1 no such user\r\n", False, 550, ("5.1.1 no such user",), None),  # not advertised: plain text
    (b"550 2.1.1 mismatched class\r\n", True, 550, ("2.1.1 mismatched class",), None),  # class != first digit
    (b"451-4.7.1 greylisted\r\n451 4.7.1 try later\r\n", True, 451, ("greylisted", "try later"), "4.7.1"),
    (b"250 2.0.0\r\n", True, 250, ("",), "2.0.0"),
    (
        b"552 5.3.4 Message size exceeds fixed limit\r\n",
        True,
        552,
        ("Message size exceeds fixed limit",),
        "5.3.4",
    ),
    (b"250 2.1.0Ok\r\n", True, 250, ("2.1.0Ok",), None),  # no space after the code: not an enhanced status
    (
        b"421 4.4.2 mx.test Error: timeout exceeded\r\n",
        True,
        421,
        ("mx.test Error: timeout exceeded",),
        "4.4.2",
    ),
    (b"299 unknown but positive\r\n", False, 299, ("unknown but positive",), None),  # first digit rules
    (b"250 caf\xc3\xa9\r\n", False, 250, ("caf\u00e9",), None),
    (b"250 bad \xff\xfe bytes\r\n", False, 250, ("bad \ufffd\ufffd bytes",), None),  # never crashes
]


@pytest.mark.parametrize(("wire", "enhanced", "code", "lines", "status"), GOOD)
def test_parses_reply(
    wire: bytes, enhanced: bool, code: int, lines: tuple[str, ...], status: str | None
) -> None:
    reader = ReplyReader()
    reader.feed(wire)
    reply = reader.next_reply(enhanced=enhanced)
    assert reply == Reply(code, lines, status)
    assert reader.buffered == 0
    assert reader.next_reply() is None


BAD = [
    (b"bogus\r\n", "malformed"),
    (b"2200 host\r\n", "malformed"),
    (b"25\r\n", "malformed"),
    (b"250-first\r\n251 second\r\n", "changed its code"),
    (b"250-first\r\n550 second\r\n", "changed its code"),
    (b"150 preliminary\r\n", "not 2xx-5xx"),
    (b"650 out of range\r\n", "not 2xx-5xx"),
    (b"050 out of range\r\n", "not 2xx-5xx"),
    (b"250_underscore\r\n", "malformed"),
    (b"\r\n", "malformed"),
    (b" 250 leading space\r\n", "malformed"),
]


@pytest.mark.parametrize(("wire", "message"), BAD)
def test_malformed_replies_are_protocol_errors(wire: bytes, message: str) -> None:
    reader = ReplyReader()
    reader.feed(wire)
    with pytest.raises(ProtocolError, match=message) as info:
        reader.next_reply()
    assert info.value.transient, "a garbled reply is never a reason to bounce mail"


def test_reply_split_across_every_byte_boundary() -> None:
    wire = b"250-mx.test\r\n250-PIPELINING\r\n250 2.0.0 SIZE 1000\r\n"
    for split in range(1, len(wire)):
        reader = ReplyReader()
        reader.feed(wire[:split])
        assert reader.next_reply(enhanced=True) is None
        reader.feed(wire[split:])
        reply = reader.next_reply(enhanced=True)
        assert reply is not None
        assert reply.lines == ("mx.test", "PIPELINING", "2.0.0 SIZE 1000")


def test_pipelined_replies_come_out_one_at_a_time() -> None:
    reader = ReplyReader()
    reader.feed(b"250 2.1.0 Ok\r\n550 5.1.1 Unknown\r\n451 4.3.0 Try again\r\n354 Go ahead\r\n")
    codes = []
    while (reply := reader.next_reply(enhanced=True)) is not None:
        codes.append((reply.code, reply.enhanced_status))
    assert codes == [(250, "2.1.0"), (550, "5.1.1"), (451, "4.3.0"), (354, None)]


def test_overlong_line_refused_before_line_end_arrives() -> None:
    reader = ReplyReader(max_line=8192)
    reader.feed(b"250-" + b"x" * 8192)
    with pytest.raises(ProtocolError, match="longer than 8192"):
        reader.next_reply()


def test_overlong_line_with_line_end() -> None:
    reader = ReplyReader(max_line=100)
    reader.feed(b"250 " + b"x" * 100 + b"\r\n")
    with pytest.raises(ProtocolError, match="longer than 100"):
        reader.next_reply()


def test_line_at_the_limit_is_accepted() -> None:
    reader = ReplyReader(max_line=100)
    reader.feed(b"250 " + b"x" * 94 + b"\r\n")  # exactly 100 bytes with CRLF
    reply = reader.next_reply()
    assert reply is not None
    assert reply.text == "x" * 94


def test_endless_continuation_lines_hit_the_line_count_cap() -> None:
    reader = ReplyReader(max_lines=50)
    reader.feed(b"250-more\r\n" * 49)
    assert reader.next_reply() is None
    reader.feed(b"250-more\r\n")
    with pytest.raises(ProtocolError, match="more than 50 lines"):
        reader.next_reply()


def test_endless_continuation_lines_hit_the_size_cap() -> None:
    reader = ReplyReader(max_reply=64 * 1024, max_lines=10**6)
    chunk = b"250-" + b"y" * 1000 + b"\r\n"
    for _ in range(65):
        reader.feed(chunk)
        assert reader.next_reply() is None
    reader.feed(chunk)
    with pytest.raises(ProtocolError, match="reply longer than 65536"):
        reader.next_reply()


def test_default_limits() -> None:
    reader = ReplyReader()
    assert (reader.max_line, reader.max_reply, reader.max_lines) == (8192, 65536, 1000)


def test_eof_is_recorded_not_a_reply() -> None:
    reader = ReplyReader()
    reader.feed(b"250 partial")
    reader.feed(b"")
    assert reader.at_eof
    assert reader.next_reply() is None


def test_reply_properties() -> None:
    assert Reply(250).is_positive and Reply(250).kind == 2
    assert Reply(354).is_intermediate
    assert Reply(451).is_transient and not Reply(451).is_permanent
    assert Reply(550).is_permanent
    assert Reply(421).is_closing and Reply(421).is_transient
    assert str(Reply(550, ("no such", "user"), "5.1.1")) == "550 5.1.1 no such user"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    reader = ReplyReader(max_line=64, max_reply=256, max_lines=8)
    reader.feed(data)
    try:
        while reader.next_reply(enhanced=True) is not None:
            pass
    except ProtocolError:
        pass
    assert reader.buffered <= len(data)


@given(
    st.integers(200, 599),
    st.lists(st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40), min_size=1, max_size=6),
)
def test_well_formed_replies_round_trip(code: int, lines: list[str]) -> None:
    wire = b"".join(
        f"{code}{' ' if i == len(lines) - 1 else '-'}{line}\r\n".encode() for i, line in enumerate(lines)
    )
    reader = ReplyReader()
    reader.feed(wire)
    reply = reader.next_reply()
    assert reply is not None
    assert reply.code == code
    assert reply.lines == tuple(lines)
