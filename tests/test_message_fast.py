"""The fast MIME writer against the standard library's: same meaning, same wire guarantees.

``Message(...)`` writes headers and bodies with ``smtprelay._mime_fast``; ``Message._reference``
builds the same message with the standard library's ``email`` package only. Both outputs are
parsed back with ``email.policy.default`` and compared: every header's decoded value, the MIME
tree (types, parameters but the boundary, dispositions, filenames, Content-IDs, transfer
encodings) and every part's decoded content. The fast output must also keep every promise of
``as_bytes()`` and read back as exactly what was asked for.
"""

from __future__ import annotations

import binascii
import email
import email.message
import email.policy
import email.utils
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.header import decode_header, make_header
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from smtprelay import (
    Address,
    AddressError,
    Attachment,
    Message,
    MessageError,
    _message,
    _mime_fast,
)
from test_message import assert_wire, crlf, header_names, mailboxes

WHEN = datetime(2025, 7, 1, 10, 0, 5, tzinfo=timezone(timedelta(hours=2)))
SENDER = "Alice <alice@example.com>"
ADDRESS_HEADERS = ("from", "to", "cc", "reply-to", "sender")


def build_both(**kwargs: Any) -> tuple[Message, Message]:
    """The same message from both writers (same Date and Message-ID), or the same error from both."""
    kwargs.setdefault("sender", SENDER)
    kwargs.setdefault("to", ["bob@example.org"])
    headers = list(kwargs.get("headers") or [])
    if not any(name.lower() == "date" for name, _ in headers):
        kwargs.setdefault("date", WHEN)
    fast: Message | Exception
    try:
        fast = Message(**kwargs)
    except (AddressError, MessageError) as err:
        fast = err
    if not isinstance(fast, Exception) and not any(name.lower() == "message-id" for name, _ in headers):
        kwargs["headers"] = [*headers, ("Message-ID", fast.message_id)]
    reference: Message | Exception
    try:
        reference = Message._reference(**kwargs)
    except (AddressError, MessageError) as err:
        reference = err
    if isinstance(fast, Exception) or isinstance(reference, Exception):
        outcomes = [_outcome(x) for x in (fast, reference)]
        assert outcomes[0] == outcomes[1], f"the writers disagree: {outcomes}"
        assert isinstance(fast, Exception)
        raise fast  # refused by both, for the same reason
    return fast, reference


def _outcome(result: Message | Exception) -> tuple[str, str | None, str]:
    if isinstance(result, AddressError | MessageError):
        return type(result).__name__, result.field, str(result)
    return "built", None, ""


def parse(data: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def _legacy_values(data: bytes, name: str) -> list[str]:
    # Top-level headers are UTF-8 in an SMTPUTF8 message, ASCII otherwise.
    legacy = email.message_from_string(data.decode("utf-8"), policy=email.policy.compat32)
    return [re.sub(r"\r?\n", "", value) for value in legacy.get_all(name) or []]


def legacy_text(data: bytes, name: str) -> list[str]:
    """A header's values decoded per RFC 2047 6.2, by the legacy parser."""
    return [str(make_header(decode_header(value))) for value in _legacy_values(data, name)]


def legacy_mailboxes(data: bytes, name: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of a header, decoded per RFC 2047 6.2 (see test_message)."""
    pairs = email.utils.getaddresses(_legacy_values(data, name))
    return [(str(make_header(decode_header(display))), addr) for display, addr in pairs]


def tree(part: email.message.EmailMessage) -> dict[str, Any]:
    """Everything a reader learns from a part, but its boundary and filename (compared apart)."""
    content_type = part["content-type"]
    disposition = part["content-disposition"]
    node: dict[str, Any] = {
        "type": part.get_content_type(),
        "params": {k: v for k, v in content_type.params.items() if k != "boundary"} if content_type else {},
        "disposition": part.get_content_disposition(),
        "disposition params": (
            {k: v for k, v in disposition.params.items() if k != "filename"} if disposition else {}
        ),
        "content-id": part["content-id"],
        "cte": part.get("content-transfer-encoding"),
    }
    if part.is_multipart():
        node["parts"] = [tree(p) for p in part.iter_parts()]
    else:
        try:
            node["content"] = part.get_content()
        except KeyError:  # a maintype the content manager has no handler for, e.g. chemical/*
            node["content"] = None
        node["payload"] = part.get_payload(decode=True)
    return node


def filenames(part: email.message.EmailMessage) -> list[str | None]:
    """Each leaf part's filename parameter, decoded (get_filename() also strips blanks and quotes)."""
    return [
        p["content-disposition"].params.get("filename") if p["content-disposition"] else None
        for p in part.walk()
        if not p.is_multipart()
    ]


def assert_same_meaning(fast: Message, reference: Message) -> None:
    ours, theirs = fast.as_bytes(), reference.as_bytes()
    assert header_names(ours) == header_names(theirs)
    a, b = parse(ours), parse(theirs)
    # The modern parser keeps the blank between adjacent encoded words in a display name
    # (RFC 2047 6.2 says to drop it), so it only reads the same where neither side has such.
    modern_ok = not _ADJACENT_WORDS.search(ours.split(b"\r\n\r\n")[0] + theirs.split(b"\r\n\r\n")[0])
    for name in {n for n in header_names(ours) if n != "content-type"}:
        if name in ADDRESS_HEADERS:
            # Mailboxes as the legacy parser reads them (RFC 2047 6.2 for display names)...
            assert legacy_mailboxes(ours, name) == legacy_mailboxes(theirs, name), name
            if modern_ok:
                # ... and as the modern one does.
                got = [(m.display_name, m.addr_spec) for m in a[name].addresses]
                assert got == [(m.display_name, m.addr_spec) for m in b[name].addresses], name
        else:
            assert [str(v) for v in a.get_all(name, [])] == [str(v) for v in b.get_all(name, [])], name
            assert legacy_text(ours, name) == legacy_text(theirs, name), name
    assert tree(a) == tree(b)
    assert not [p.defects for p in a.walk() if p.defects]
    if filenames(a) != filenames(b):
        # The standard library writes a filename that looks like an RFC 2047 encoded word as a
        # quoted string, which its own parser (and many mail clients) then decode: it changes
        # the name. The fast writer uses RFC 2231 for such names, which nobody decodes further.
        assert any(_ENCODED_WORD.search(a.filename) for a in fast.attachments)
    assert [n for n in filenames(a) if n is not None] == [x.filename for x in _attachment_order(fast)]


_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?[^?]*\?=")
_ADJACENT_WORDS = re.compile(rb"\?=\s+=\?")


def _attachment_order(msg: Message) -> list[Attachment]:
    if msg.html is None:
        return list(msg.attachments)
    inline = [a for a in msg.attachments if a.inline]
    return inline + [a for a in msg.attachments if not a.inline]


def assert_fast_wire(msg: Message) -> None:
    """The promises of as_bytes(), and folding at 78 wherever a line has room to break."""
    data = msg.as_bytes()
    assert_wire(data)
    head, _, body = data.partition(b"\r\n\r\n")
    assert body.isascii(), "only top-level headers may be 8-bit"
    assert head.isascii() or msg.requires_smtputf8
    assert "bcc" not in header_names(data)
    # Body content lines are at most 76 octets, so a longer line in the body is a part's header
    # field, all written by the fast writer: it must hold one word that cannot be broken.
    # (Top-level fields may come from the standard library's folder: test_header_writers.)
    for line in body.split(b"\r\n"):
        if len(line) > 78:
            assert re.fullmatch(rb"([!-9;-~]+: |[ \t])\S+", line), line
    for part in parse(data).walk():
        if part.get("content-transfer-encoding") == "quoted-printable":
            raw = part.get_payload()
            assert isinstance(raw, str)
            assert max(map(len, raw.splitlines())) <= 76  # RFC 2045 6.7 (5)


def check(**kwargs: Any) -> Message:
    fast, reference = build_both(**kwargs)
    assert_fast_wire(fast)
    assert_same_meaning(fast, reference)
    return fast


# --- shapes --------------------------------------------------------------------------------------


class TestShapes:
    def test_plain_ascii_text_is_byte_for_byte_the_reference(self) -> None:
        fast, reference = build_both(
            subject="Hello", text="Hi Bob,\n\nsee you.\n", to=["Bob <b@example.org>"]
        )
        assert fast.as_bytes() == reference.as_bytes()

    @pytest.mark.parametrize(
        "body",
        [
            {"text": "Hi"},
            {"html": "<p>Hi</p>"},
            {"text": "Hi", "html": "<p>Hi</p>"},
            {},
            {"text": "", "html": ""},
            {"text": "see attached", "attachments": [Attachment(b"%PDF-1.4", "report.pdf")]},
            {"attachments": [Attachment(b"x", "x.bin"), Attachment(b"", "empty.bin")]},
            {"text": "Hi", "attachments": [Attachment(b"img", "logo.png", inline=True)]},
            {"html": "<img src=cid:x>", "attachments": [Attachment(b"img", "logo.png", inline=True)]},
            {
                "text": "Hi",
                "html": "<p>Hi</p>",
                "attachments": [
                    Attachment(b"img", "logo.png", inline=True, content_id="logo@example.com"),
                    Attachment(bytes(range(256)) * 80, "blob.bin"),
                    Attachment(b"a,b\n", "table.csv"),
                ],
            },
        ],
    )
    def test_every_shape(self, body: dict[str, Any]) -> None:
        check(subject="Shapes", **body)

    @pytest.mark.parametrize(
        "text",
        [
            "a" * 5000,
            "short\n" + "é" * 3000 + "\nend",
            "bare\rcarriage\rreturns",
            "mixed\r\nendings\rand\nmore\r\n\r\n",
            ".\n..\n.\r\n.",
            "From the start\nFrom here\n>From there",
            "nul\x00byte and \x01\x02\x1b\x7f controls",
            "trailing spaces   \nand tabs\t\t\n",
            "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029 unicode line breaks stay content",
            "=3D=\n=",
            "日本語のテキスト" * 40,
            "x" * 76 + "\n" + "y" * 77,
            "--=_" + "0" * 32 + "\n--=_" + "0" * 32 + "--\n",
        ],
    )
    def test_hostile_bodies(self, text: str) -> None:
        for msg in (check(text=text), check(html=text), check(text=text, html=text)):
            parsed = parse(msg.as_bytes())
            for part in parsed.iter_parts() if parsed.is_multipart() else [parsed]:
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                assert payload.decode("utf-8") == crlf(text)


# --- header fields -------------------------------------------------------------------------------


class TestHeaders:
    @pytest.mark.parametrize(
        "subject",
        [
            "",
            "Hello",
            "word " * 300 + "end",
            "x" * 3000,
            "x" * 200,
            "é" * 2000,
            "a" * 90 + " " + "b" * 90,
            "Grüße aus Köln \u2013 日本語 ✓",
            "a\tb  c\t\td",
            "=?utf-8?q?caf=C3=A9?=",
            "a =?utf-8?b?w6k=?= b",
            "question? equals= under_score",
            "ascii words and then ü at the end " * 4,
        ],
    )
    def test_subjects(self, subject: str) -> None:
        assert parse(check(subject=subject).as_bytes())["Subject"] == subject.strip(" \t")

    def test_long_structured_custom_header_is_not_encoded(self) -> None:
        # Readers of List-Unsubscribe (RFC 2369) do not decode encoded words: a long URL must
        # stay as it is, on a line of its own when it cannot be folded.
        url = "<https://example.com/unsubscribe?token=" + "a1b2" * 30 + ">"
        value = f"{url}, <mailto:unsubscribe@example.com>"
        msg = check(headers=[("List-Unsubscribe", value)])
        assert f"List-Unsubscribe: {url},\r\n <mailto:unsubscribe@example.com>\r\n".encode() in msg.as_bytes()

    @pytest.mark.parametrize(
        "names",
        [
            ["Bob"],
            ["Smith, Bob", 'Bob "the builder"', "Dr. Who", "back\\slash", "a@b.example", "(not a comment)"],
            ["Zoë Ø", "山田 太郎", "Jörg Müller"],
            ["x" * 2000],
            ["word " * 60],
            ["é" * 1500],
            ["日本" * 300],
            ["Smith, " + "Ünï" * 40],
            ["a=?b", "ends with =?"],
            [f"Person {i}" for i in range(60)],
        ],
    )
    def test_display_names(self, names: list[str]) -> None:
        to = [Address(f"u{i}@example.org", display_name=n) for i, n in enumerate(names)]
        msg = check(to=to, cc=to[:2], reply_to=to[-1:])
        assert mailboxes(msg.as_bytes(), "To") == [(a.display_name, a.addr_spec) for a in to]

    def test_many_plain_recipients_fold_after_commas(self) -> None:
        msg = check(to=[f"rcpt{i}@bench.test" for i in range(40)])
        head = msg.as_bytes().split(b"\r\n\r\n")[0]
        assert all(len(line) <= 78 for line in head.split(b"\r\n"))

    def test_idn_and_smtputf8_addresses(self) -> None:
        check(sender="Bäcker <info@bäckerei.example>", to="Kunde <k@bücher.example>")
        msg = check(to=["Jörg <jörg@bücher.example>", '"Smith, Bob" <b@example.org>'], subject="Grüße")
        assert "To: Jörg <jörg@bücher.example>".encode() in msg.as_bytes()

    def test_sender_and_custom_headers(self) -> None:
        check(
            headers=[
                ("Sender", "Bot Ö <bot@example.com>"),
                ("X-Tag", "a"),
                ("X-Tag", "Ünïcödé " * 30),
                ("X-A-Rather-Long-Header-Name-That-Leaves-Little-Room", "ünïcödé value"),
                ("Comments", "  spaced\tout  "),
            ]
        )


# --- attachments ---------------------------------------------------------------------------------


class TestAttachments:
    @pytest.mark.parametrize(
        "filename",
        [
            "report.pdf",
            "résumé 2025.pdf",
            "a" * 500 + ".txt",
            "日本語" * 100 + ".txt",
            'quote"and;semicolon=.txt',
            "back\\slash.txt",
            "  padded  .txt  ",
            "100% 'sure' *.txt",
            "x" * 60 + " with a space.txt",
        ],
    )
    def test_filenames(self, filename: str) -> None:
        msg = check(attachments=[Attachment(b"x", filename)])
        (part,) = parse(msg.as_bytes()).iter_parts()
        assert part.get_filename() == filename.strip()

    def test_filename_that_looks_encoded_is_kept_literally(self) -> None:
        for filename in ("=?utf-8?q?evil?=.pdf", "=?utf-8?q?a=0D=0AX-Evil:_1?=.txt"):
            msg = check(attachments=[Attachment(b"x", filename)])
            (part,) = parse(msg.as_bytes()).iter_parts()
            assert part.get_filename() == filename

    def test_long_filenames_are_continued_within_78_columns(self) -> None:
        msg = check(attachments=[Attachment(b"x", "ü" * 200 + ".pdf")])
        assert b"filename*0*=utf-8''" in msg.as_bytes()
        assert max(map(len, msg.as_bytes().split(b"\r\n"))) <= 78

    def test_long_content_ids(self) -> None:
        cid = "c" * 120 + "@" + "d" * 129
        logo = Attachment(b"img", "logo.png", inline=True, content_id=cid)
        for body in ({"html": f"<img src=cid:{cid}>"}, {"text": "no html: mixed"}):
            msg = check(attachments=[logo], **body)
            assert f"Content-ID: <{cid}>\r\n".encode() in msg.as_bytes()

    def test_long_media_type_stays_whole(self) -> None:
        kind = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        msg = check(attachments=[Attachment(b"PK", "a.docx", content_type=kind)])
        assert f"Content-Type: {kind}\r\n".encode() in msg.as_bytes()


# --- boundaries ----------------------------------------------------------------------------------


def test_a_boundary_found_in_the_content_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = iter(["0" * 32, "1" * 32, "2" * 32, "3" * 32])
    monkeypatch.setattr(_mime_fast.secrets, "token_hex", lambda _: next(tokens))
    # The text holds the first two candidates; the attachment's base64 cannot hold any.
    text = f"--=_{'0' * 32}\nand =_{'1' * 32} inside a line\n"
    msg = Message(
        sender=SENDER, to="b@example.org", text=text, html="<p>x</p>", attachments=[Attachment(b"x", "x")]
    )
    data = msg.as_bytes()
    assert f'boundary="=_{"2" * 32}"'.encode() in data  # alternative
    assert f'boundary="=_{"3" * 32}"'.encode() in data  # mixed
    plain = next(p for p in parse(data).walk() if p.get_content_type() == "text/plain")
    assert plain.get_content() == crlf(text)


def test_boundaries_differ_and_do_not_prefix_each_other() -> None:
    msg = Message(
        sender=SENDER,
        to="b@example.org",
        text="t",
        html="h",
        attachments=[Attachment(b"i", "i.png", inline=True), Attachment(b"x", "x.bin")],
    )
    boundaries = re.findall(rb'boundary="([^"]+)"', msg.as_bytes())
    assert len(boundaries) == 3
    assert len(set(boundaries)) == 3
    assert len({len(b) for b in boundaries}) == 1  # same length: none is a prefix of another


# --- generated messages --------------------------------------------------------------------------

_any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
_tricky_text = st.text(
    alphabet=st.sampled_from(list('a Z é\r\n.\x00\t=?_-"\\;,<>@()日✓\u2028')), max_size=300
)
_long_lines = st.builds(
    lambda n, c, tail: c * n + tail,
    st.integers(0, 1100),
    st.sampled_from(["a", "é", " ", "=", ".", "\t"]),
    _tricky_text,
)
_bodies = st.none() | _any_text | _tricky_text | _long_lines
_header_text = (
    _any_text
    | _tricky_text
    | st.builds(lambda w, n: (w + " ") * n, st.sampled_from(["w", "wörd", "x" * 90]), st.integers(0, 40))
)
_names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=70) | st.text(
    alphabet=st.sampled_from(list('ab Zé日,."\\()<>@=?;:')), max_size=90
)
_local_parts = st.sampled_from(["bob", "Bob.Smith", "o'neil", "a+tag", "x" * 60, "jörg"])
_domains = st.sampled_from(
    ["example.org", "EXAMPLE.com", "bücher.example", "mail.sub.example.net", "localhost"]
)
_filenames = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=120
) | st.text(alphabet=st.sampled_from(list("ab .é日\"\\;=?%'*()")), min_size=1, max_size=200)
_content_types = st.sampled_from(
    [None, "text/csv", "application/pdf", "image/png", "application/octet-stream"]
)


@st.composite
def _addresses(draw: st.DrawFn) -> Address:
    try:
        return Address(f"{draw(_local_parts)}@{draw(_domains)}", display_name=draw(_names))
    except AddressError:
        assume(False)
        raise


@st.composite
def _attachments(draw: st.DrawFn) -> Attachment:
    try:
        return Attachment(
            draw(st.binary(max_size=3000)),
            draw(_filenames),
            content_type=draw(_content_types),
            inline=draw(st.booleans()),
        )
    except MessageError:
        assume(False)
        raise


@given(
    st.fixed_dictionaries(
        {
            "subject": st.none() | _header_text,
            "text": _bodies,
            "html": _bodies,
            "to": st.lists(_addresses(), min_size=1, max_size=12),
            "cc": st.lists(_addresses(), max_size=3),
            "sender": _addresses(),
            "attachments": st.lists(_attachments(), max_size=3),
            "headers": st.lists(
                st.tuples(st.sampled_from(["X-Tag", "List-Id", "Comments"]), _header_text), max_size=2
            ),
        }
    )
)
def test_generated_messages_mean_the_same(kwargs: dict[str, Any]) -> None:
    try:
        fast = check(**kwargs)
    except (AddressError, MessageError):
        return  # refused by both, for the same reason (build_both checks)
    subject, text, html, to = kwargs["subject"], kwargs["text"], kwargs["html"], kwargs["to"]
    parsed = parse(fast.as_bytes())
    # What was asked for, read back from the fast output.
    if subject is not None:
        assert parsed["Subject"] == fast.subject
    for name, value in fast.headers:
        assert value in [str(v) for v in parsed.get_all(name, [])]
    assert legacy_mailboxes(fast.as_bytes(), "To") == [(a.display_name, a.addr_spec) for a in to]
    leaves = [p for p in parsed.walk() if not p.is_multipart()]
    texts = [p for p in leaves if p.get_filename() is None]
    for part, want in zip(texts, [t for t in (text, html) if t is not None], strict=False):
        assert part.get_payload(decode=True) == crlf(want).encode("utf-8")
    files = [p.get_payload(decode=True) for p in leaves if p.get_filename() is not None]
    assert files == [a.data for a in _attachment_order(fast)]


# --- the wire check ------------------------------------------------------------------------------


def _old_verify(data: bytes) -> bool:
    """The wire check as it was first written (three counts and a split)."""
    crlf_count = data.count(b"\r\n")
    return not (
        not data.endswith(b"\r\n")
        or data.count(b"\r") != crlf_count
        or data.count(b"\n") != crlf_count
        or b"\x00" in data
        or max(map(len, data.split(b"\r\n"))) > 998
    )


def _new_verify(data: bytes) -> bool:
    try:
        _message._verify_wire(b"X: y\r\n\r\n" + data, ["X"])
    except MessageError:
        return False
    return True


@given(
    st.lists(
        st.sampled_from([b"\r\n", b"\r", b"\n", b"a", b"\x00", b"\n\r", b"a" * 998, b"a" * 999]), max_size=12
    ).map(b"".join)
)
def test_the_faster_wire_check_refuses_exactly_what_the_first_one_did(data: bytes) -> None:
    assert _new_verify(data) == _old_verify(b"X: y\r\n\r\n" + data)


# --- caches --------------------------------------------------------------------------------------


def test_cached_folding_is_shared_safely_between_threads() -> None:
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            for i in range(30):
                name = f"Zoë {'Ø' * (i % 7 + 1)} " + "ü" * (40 + i % 5)  # long: the library's folder, cached
                msg = Message(sender=SENDER, to=Address(f"r{i}@example.org", display_name=name), text="x")
                assert mailboxes(msg.as_bytes(), "To") == [(name, f"r{i}@example.org")]
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    info: Callable[[], Any] = _message._fold_addresses_library.cache_info
    assert info().currsize <= 1024


def test_qp_text_matches_binascii_decoding() -> None:
    # The quoted-printable body decodes to the CRLF text (hard breaks), soft breaks removed.
    text = "a long line, " * 30 + "Grüße\n" + "x" * 200 + "\n.\ntrailing blank \n"
    msg = Message(sender=SENDER, to="b@example.org", text=text)
    head, body = msg.as_bytes().split(b"\r\n\r\n", 1)
    assert b"Content-Transfer-Encoding: quoted-printable" in head
    assert binascii.a2b_qp(body) == crlf(text).encode("utf-8")


@given(st.text(alphabet=st.sampled_from(list("a ;.=\t\x00éZ\n")), max_size=400))
def test_quoted_printable_lines_stay_within_76_and_decode_exactly(text: str) -> None:
    # binascii.b2a_qp alone lets an escaped blank at the end of a line reach 77 or 78.
    data = "\n".join(text.split("\n")).encode("utf-8") + b"\n"
    encoded = _mime_fast._quoted_printable(data)
    assert_wire(encoded) if encoded else None
    assert max(map(len, encoded.split(b"\r\n"))) <= 76
    assert binascii.a2b_qp(encoded.replace(b"\r\n", b"\n")) == data


# --- the header writers on their own ------------------------------------------------------


def assert_folded(folded: str) -> None:
    """A field written by the fast writer: CRLF lines, each within 78 unless it is one word."""
    assert folded.endswith("\r\n")
    lines = folded[:-2].split("\r\n")
    assert all(line[:1] in (" ", "\t") and line.strip(" \t") for line in lines[1:])
    for line in lines:
        assert "\r" not in line and "\n" not in line
        assert len(line.encode("utf-8")) <= 998
        if len(line) > 78:
            assert len(re.sub(r"^[!-9;-~]+: ", "", line).split()) == 1, line


_field_names = st.sampled_from(["Subject", "X-Tag", "List-Unsubscribe", "X-" + "N" * 38, "X-" + "N" * 50])


@given(name=_field_names, value=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_header_writers_unstructured(name: str, value: str) -> None:
    try:
        value = _message._check_header_value(name, value, name)
    except MessageError:
        return
    for utf8 in (False, True):
        folded = _mime_fast.fold_unstructured(name, value, utf8=utf8)
        if folded is None:
            continue
        assert_folded(folded)
        assert folded.isascii()
        data = (folded + "\r\n").encode("ascii")
        assert str(parse(data)[name]) == value
        assert legacy_text(data, name) == [value]


@given(st.lists(st.tuples(_names, _local_parts, _domains), min_size=1, max_size=8))
def test_header_writers_mailboxes(mailboxes: list[tuple[str, str, str]]) -> None:
    addresses = []
    for name, local, domain in mailboxes:
        try:
            addresses.append(Address(f"{local}@{domain}", display_name=name))
        except AddressError:
            return
    want = [(a.display_name, a.addr_spec) for a in addresses]
    for utf8 in (False, True):
        folded = _mime_fast.fold_mailboxes("To", want, utf8=utf8)
        if folded is None:
            continue
        assert_folded(folded)
        assert utf8 or folded.isascii()
        data = (folded + "\r\n").encode("utf-8")
        assert legacy_mailboxes(data, "To") == want
        # The fast writer's phrases are read right by the modern parser as well.
        parsed = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
        assert [(m.display_name, m.addr_spec) for m in parsed["To"].addresses] == want
