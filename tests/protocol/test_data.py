"""DATA encoder: CRLF normalisation, dot-stuffing, smuggling-proof end of data (RELIABILITY 27, 28)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtprelay._protocol import DataEncoder, bdat_chunks, encode_data, normalize_line_endings

# Every end-of-data variant of the SMTP smuggling research (smtpsmug), embedded in a body.
SMUGGLING = [
    b"\n.\n",
    b"\r.\r",
    b"\r.\n",
    b"\n.\r",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\r\n\x00.\r\n",
    b"\r\n.\r\n",
]


def unstuff(wire: bytes) -> bytes:
    """What a receiving server reconstructs from DATA bytes (RFC 5321 §4.5.2)."""
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    if not body:
        return b""
    assert body.endswith(b"\r\n")
    lines = body[:-2].split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines) + b"\r\n"


def crlf(data: bytes) -> bytes:
    """The reference normalisation: every CRLF, CR or LF becomes CRLF; content ends with CRLF."""
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i : i + 2] == b"\r\n":
            out += b"\r\n"
            i += 2
        elif data[i : i + 1] in (b"\r", b"\n"):
            out += b"\r\n"
            i += 1
        else:
            out.append(data[i])
            i += 1
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return bytes(out)


def only_crlf(wire: bytes) -> bool:
    return wire.count(b"\r") == wire.count(b"\r\n") == wire.count(b"\n")


@pytest.mark.parametrize(
    ("body", "wire"),
    [
        (b"", b".\r\n"),
        (b"hello", b"hello\r\n.\r\n"),
        (b"hello\r\n", b"hello\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b".hidden\r\nline\r\n.\r\n..two", b"..hidden\r\nline\r\n..\r\n...two\r\n.\r\n"),
        (b"a\nb\rc\r\nd", b"a\r\nb\r\nc\r\nd\r\n.\r\n"),
        (b"a\r\r\nb", b"a\r\n\r\nb\r\n.\r\n"),
        (b"\n", b"\r\n.\r\n"),
        (b"\r", b"\r\n.\r\n"),
        (b"a\n\n\nb", b"a\r\n\r\n\r\nb\r\n.\r\n"),
    ],
)
def test_encode_data_cases(body: bytes, wire: bytes) -> None:
    assert encode_data(body) == wire
    encoder = DataEncoder()
    assert encoder.feed(body) + encoder.finish() == wire


@pytest.mark.parametrize("variant", SMUGGLING)
def test_no_smuggled_end_of_data_reaches_the_wire(variant: bytes) -> None:
    body = (
        b"From: a@example.com\r\n\r\nhello"
        + variant
        + b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<v@example.org>\r\n"
    )
    wire = encode_data(body)
    assert only_crlf(wire)
    assert wire.count(b"\r\n.\r\n") == 1 and wire.endswith(b"\r\n.\r\n"), (
        "exactly one end of data, at the end"
    )
    assert unstuff(wire) == crlf(body)


def test_dot_stuffing_across_chunk_boundaries() -> None:
    encoder = DataEncoder()
    out = encoder.feed(b"line\r")
    out += encoder.feed(b"\n")
    out += encoder.feed(b".")
    out += encoder.feed(b"dot\r\n")
    out += encoder.feed(b".")
    out += encoder.finish()
    assert out == b"line\r\n..dot\r\n..\r\n.\r\n"


def test_first_line_dot_in_first_chunk_only() -> None:
    encoder = DataEncoder()
    assert encoder.feed(b".a") == b"..a"
    assert encoder.feed(b".b") == b".b", "not at a line start: no stuffing"


def test_encoder_refuses_use_after_finish() -> None:
    encoder = DataEncoder()
    encoder.finish()
    with pytest.raises(RuntimeError):
        encoder.feed(b"x")
    with pytest.raises(RuntimeError):
        encoder.finish()


bodies = st.lists(
    st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\x00", b"..", b" ", b"\xff"]), max_size=60
).map(b"".join) | st.binary(max_size=200)


@given(bodies)
def test_property_whole_body(body: bytes) -> None:
    wire = encode_data(body)
    assert only_crlf(wire), "only CRLF line ends on the wire"
    assert wire.endswith(b".\r\n")
    terminators = wire.count(b"\r\n.\r\n") + (1 if wire.startswith(b".\r\n") else 0)
    assert terminators == 1, "the end-of-data sequence appears exactly once, at the end"
    assert unstuff(wire) == crlf(body), "un-stuffing gives back the CRLF-normalised input"


@given(bodies, st.lists(st.integers(0, 200), max_size=8))
def test_property_any_chunking_gives_the_same_bytes(body: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(body)) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(body)]:
        pieces.append(body[last:p])
        last = p
    encoder = DataEncoder()
    wire = b"".join(encoder.feed(piece) for piece in pieces) + encoder.finish()
    assert wire == encode_data(body)


def test_normalize_line_endings() -> None:
    assert normalize_line_endings(b"") == b""
    assert normalize_line_endings(b"a\nb\rc") == b"a\r\nb\r\nc\r\n"
    assert normalize_line_endings(b".x\r\n") == b".x\r\n", "BDAT content is never dot-stuffed"


@given(bodies)
def test_property_normalize(body: bytes) -> None:
    assert normalize_line_endings(body) == crlf(body)


def test_bdat_chunks() -> None:
    assert list(bdat_chunks(b"", 10)) == [(b"", True)]
    assert list(bdat_chunks(b"abcdefghij", 4)) == [(b"abcd", False), (b"efgh", False), (b"ij", True)]
    assert list(bdat_chunks(b"abcd", 4)) == [(b"abcd", True)]
    with pytest.raises(ValueError, match="positive"):
        list(bdat_chunks(b"x", 0))
