"""Message: MIME shapes, headers, envelope, wire-format guarantees and bad input.

Every test parses ``as_bytes()`` back with the standard library, as a receiving client would.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import email.utils
import re
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtprelay import Address, AddressError, Attachment, Message, MessageError

SENDER = "Alice <alice@example.com>"


def build(**kwargs: Any) -> Message:
    kwargs.setdefault("sender", SENDER)
    kwargs.setdefault("to", ["bob@example.org"])
    return Message(**kwargs)


def parse(msg: Message) -> email.message.EmailMessage:
    data = msg.as_bytes()
    assert_wire(data)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def assert_wire(data: bytes) -> None:
    """The promises of as_bytes(): CRLF only, no line over 998 octets, no NUL."""
    assert data.endswith(b"\r\n")
    crlf = data.count(b"\r\n")
    assert data.count(b"\r") == crlf, "bare CR"
    assert data.count(b"\n") == crlf, "bare LF"
    assert b"\x00" not in data
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[0].decode().lower() for line in head.split(b"\r\n") if line[:1] not in b" \t"]


def mailboxes(data: bytes, name: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of one header, decoded per RFC 2047 6.2.

    The modern parser keeps the space between adjacent encoded words in a display name
    (RFC 2047 says to drop it), so long non-ASCII names are read with the legacy one.
    """
    raw = email.message_from_bytes(data, policy=email.policy.compat32)[name]
    assert isinstance(raw, str)
    pairs = email.utils.getaddresses([re.sub(r"\r?\n", "", raw)])
    return [(str(make_header(decode_header(display))), addr) for display, addr in pairs]


def crlf(text: str) -> str:
    """What a text body becomes: every line ending CRLF, a final CRLF added if missing."""
    text = re.sub(r"\r\n|\r|\n", "\r\n", text)
    return text if text.endswith("\r\n") else text + "\r\n"


def body_text(part: email.message.EmailMessage) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode("utf-8")


# --- MIME shapes ---------------------------------------------------------------------------------


class TestShapes:
    def test_text_only(self) -> None:
        parsed = parse(build(subject="Hello", text="Hi Bob"))
        assert parsed.get_content_type() == "text/plain"
        assert parsed.get_content_charset() == "utf-8"
        assert parsed["MIME-Version"] == "1.0"
        assert parsed["Content-Transfer-Encoding"] == "7bit"
        assert not parsed.is_multipart()
        assert body_text(parsed) == "Hi Bob\r\n"

    def test_html_only(self) -> None:
        parsed = parse(build(html="<p>Hi</p>"))
        assert parsed.get_content_type() == "text/html"
        assert body_text(parsed) == "<p>Hi</p>\r\n"

    def test_text_and_html_are_alternatives_plain_first(self) -> None:
        parsed = parse(build(text="Hi", html="<p>Hi</p>"))
        assert parsed.get_content_type() == "multipart/alternative"
        parts = list(parsed.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        assert body_text(parts[0]) == "Hi\r\n"
        assert body_text(parts[1]) == "<p>Hi</p>\r\n"

    def test_inline_image_is_related_to_html(self) -> None:
        logo = Attachment(b"\x89PNG...", "logo.png", inline=True)
        assert logo.content_id
        parsed = parse(build(html=f'<img src="cid:{logo.content_id}">', attachments=[logo]))
        assert parsed.get_content_type() == "multipart/related"
        assert parsed.get_param("type") == "text/html"
        html, image = parsed.iter_parts()
        assert html.get_content_type() == "text/html"
        assert image.get_content_type() == "image/png"
        assert image["Content-ID"] == f"<{logo.content_id}>"
        assert image.get_content_disposition() == "inline"
        assert image.get_filename() == "logo.png"
        assert image.get_payload(decode=True) == b"\x89PNG..."
        assert f"cid:{logo.content_id}" in body_text(html)

    def test_text_html_and_inline_image(self) -> None:
        logo = Attachment(b"img", "logo.png", inline=True)
        parsed = parse(build(text="Hi", html="<p>Hi</p>", attachments=[logo]))
        assert parsed.get_content_type() == "multipart/alternative"
        plain, related = parsed.iter_parts()
        assert plain.get_content_type() == "text/plain"
        assert related.get_content_type() == "multipart/related"
        assert [p.get_content_type() for p in related.iter_parts()] == ["text/html", "image/png"]

    def test_attachment_makes_mixed_on_top(self) -> None:
        parsed = parse(build(text="see attached", attachments=[Attachment(b"%PDF-1.4", "report.pdf")]))
        assert parsed.get_content_type() == "multipart/mixed"
        body, pdf = parsed.iter_parts()
        assert body.get_content_type() == "text/plain"
        assert pdf.get_content_type() == "application/pdf"
        assert pdf.get_content_disposition() == "attachment"
        assert pdf.get_filename() == "report.pdf"
        assert pdf["Content-Transfer-Encoding"] == "base64"
        assert pdf.get_payload(decode=True) == b"%PDF-1.4"
        assert "Content-ID" not in pdf

    def test_everything(self) -> None:
        logo = Attachment(b"img", "logo.png", inline=True)
        files = [Attachment(b"a", "a.pdf"), Attachment(b"b,c\n", "b.csv")]
        parsed = parse(build(text="Hi", html="<p>Hi</p>", attachments=[logo, *files]))
        assert parsed.get_content_type() == "multipart/mixed"
        alternative, pdf, csv = parsed.iter_parts()
        assert alternative.get_content_type() == "multipart/alternative"
        plain, related = alternative.iter_parts()
        assert plain.get_content_type() == "text/plain"
        assert [p.get_content_type() for p in related.iter_parts()] == ["text/html", "image/png"]
        assert pdf.get_filename() == "a.pdf"
        assert csv.get_content_type() == "text/csv"
        assert csv.get_payload(decode=True) == b"b,c\n"  # attachment bytes are never touched

    def test_no_body_is_an_empty_text_part(self) -> None:
        parsed = parse(build())
        assert parsed.get_content_type() == "text/plain"
        assert body_text(parsed) == "\r\n"

    def test_attachments_without_body(self) -> None:
        parsed = parse(build(attachments=[Attachment(b"x", "x.bin")]))
        assert parsed.get_content_type() == "multipart/mixed"
        (only,) = parsed.iter_parts()
        assert only.get_content_type() == "application/octet-stream"

    def test_inline_without_html_goes_to_mixed_inline(self) -> None:
        logo = Attachment(b"img", "logo.png", inline=True)
        parsed = parse(build(text="Hi", attachments=[logo]))
        assert parsed.get_content_type() == "multipart/mixed"
        plain, image = parsed.iter_parts()
        assert plain.get_content_type() == "text/plain"
        assert image.get_content_disposition() == "inline"
        assert image["Content-ID"] == f"<{logo.content_id}>"

    def test_a_single_attachment_may_be_passed_alone(self) -> None:
        parsed = parse(build(attachments=Attachment(b"x", "x.pdf")))  # type: ignore[arg-type]
        assert parsed.get_content_type() == "multipart/mixed"


# --- headers -------------------------------------------------------------------------------------


class TestHeaders:
    def test_address_headers(self) -> None:
        msg = build(
            to=["Bob <bob@example.org>", "carol@example.org"],
            cc="Dave <dave@example.net>",
            bcc=["eve@example.net"],
            reply_to="Support <support@example.com>",
            subject="Hello",
        )
        parsed = parse(msg)
        assert str(parsed["From"]) == "Alice <alice@example.com>"
        assert [a.addr_spec for a in parsed["To"].addresses] == ["bob@example.org", "carol@example.org"]
        assert parsed["To"].addresses[0].display_name == "Bob"
        assert str(parsed["Cc"]) == "Dave <dave@example.net>"
        assert str(parsed["Reply-To"]) == "Support <support@example.com>"
        assert parsed["Subject"] == "Hello"
        assert header_names(msg.as_bytes()) == [
            "from",
            "to",
            "cc",
            "reply-to",
            "subject",
            "date",
            "message-id",
            "mime-version",
            "content-type",
            "content-transfer-encoding",
        ]

    def test_bcc_never_in_the_bytes(self) -> None:
        msg = build(bcc=["Hidden Person <hidden@example.net>"], subject="x")
        data = msg.as_bytes()
        assert b"hidden" not in data.lower()
        assert "bcc" not in header_names(data)
        assert "hidden@example.net" in msg.recipients

    def test_only_bcc_recipients(self) -> None:
        msg = Message(sender=SENDER, bcc="hidden@example.net", text="x")
        parsed = parse(msg)
        assert "To" not in parsed and "Cc" not in parsed and "Bcc" not in parsed
        assert msg.recipients == ("hidden@example.net",)

    def test_no_subject_means_no_subject_header(self) -> None:
        assert "Subject" not in parse(build())
        assert parse(build(subject=""))["Subject"] == ""

    def test_unicode_subject_is_rfc2047_encoded_and_round_trips(self) -> None:
        subject = "Grüße aus Köln \u2013 日本語 ✓"
        msg = build(subject=subject)
        assert msg.as_bytes().isascii()
        assert b"=?utf-8?" in msg.as_bytes()
        assert parse(msg)["Subject"] == subject

    def test_long_subject_is_folded_and_round_trips(self) -> None:
        for subject in ("word " * 300 + "end", "x" * 3000, "é" * 2000, "a" * 90 + " " + "b" * 90):
            msg = build(subject=subject)
            assert parse(msg)["Subject"] == subject

    def test_unicode_display_names_round_trip(self) -> None:
        msg = build(
            sender="Jörg Müller <joerg@example.com>",
            to=["Zoë Ø <zoe@example.org>", "山田 太郎 <t@example.org>"],
        )
        assert msg.as_bytes().isascii()
        parsed = parse(msg)
        assert parsed["From"].addresses[0].display_name == "Jörg Müller"
        assert [a.display_name for a in parsed["To"].addresses] == ["Zoë Ø", "山田 太郎"]

    def test_idn_domain_round_trips_in_ascii_form(self) -> None:
        msg = build(sender="Bäcker <info@bäckerei.example>", to="Kunde <k@bücher.example>")
        assert msg.as_bytes().isascii()
        parsed = parse(msg)
        assert parsed["From"].addresses[0].addr_spec == "info@xn--bckerei-5wa.example"
        assert parsed["To"].addresses[0].addr_spec == "k@xn--bcher-kva.example"
        assert msg.envelope_from == "info@xn--bckerei-5wa.example"
        assert msg.recipients == ("k@xn--bcher-kva.example",)
        assert not msg.requires_smtputf8

    def test_quoted_display_names_round_trip(self) -> None:
        names = [
            "Smith, Bob",
            'Bob "the builder"',
            "Dr. Who",
            "back\\slash",
            "a@b.example",
            "(not a comment)",
        ]
        msg = build(to=[Address(f"u{i}@example.org", display_name=n) for i, n in enumerate(names)])
        assert [a.display_name for a in parse(msg)["To"].addresses] == names

    def test_very_long_display_name_is_folded(self) -> None:
        for name in ("x" * 2000, "word " * 400, "é" * 1500, "日本" * 300, "Smith, " + "Ünï" * 40):
            msg = build(to=Address("bob@example.org", display_name=name))
            assert parse(msg)["To"].addresses[0].addr_spec == "bob@example.org"
            assert mailboxes(msg.as_bytes(), "To") == [(name.strip(), "bob@example.org")]

    def test_many_recipients_are_folded(self) -> None:
        to = [f"Person {i} <p{i}@example.org>" for i in range(500)]
        msg = build(to=to)
        assert [a.addr_spec for a in parse(msg)["To"].addresses] == [f"p{i}@example.org" for i in range(500)]

    def test_custom_headers_in_order(self) -> None:
        msg = build(headers={"X-Campaign": "42", "List-Unsubscribe": "<mailto:u@example.com>", "X-Empty": ""})
        parsed = parse(msg)
        assert parsed["X-Campaign"] == "42"
        assert parsed["List-Unsubscribe"] == "<mailto:u@example.com>"
        assert parsed["X-Empty"] == ""
        names = header_names(msg.as_bytes())
        assert names.index("x-campaign") < names.index("list-unsubscribe") < names.index("x-empty")
        assert msg.headers == (
            ("X-Campaign", "42"),
            ("List-Unsubscribe", "<mailto:u@example.com>"),
            ("X-Empty", ""),
        )

    def test_custom_headers_as_pairs_may_repeat(self) -> None:
        msg = build(headers=[("X-Tag", "a"), ("X-Tag", "b"), ("Comments", "c")])
        assert parse(msg).get_all("X-Tag") == ["a", "b"]

    def test_custom_header_values_are_stripped_and_keep_inner_blanks(self) -> None:
        assert parse(build(headers={"X-A": "  a  b\tc  "}))["X-A"] == "a  b\tc"

    def test_custom_header_unicode_and_long(self) -> None:
        value = "Ünïcödé " * 200
        assert parse(build(headers={"X-Long": value}))["X-Long"] == value.strip()

    def test_subject_date_message_id_sender_via_headers(self) -> None:
        msg = build(
            headers={
                "subject": "From headers",
                "Date": "Tue, 01 Jul 2025 10:00:00 +0200",
                "Message-ID": "<abc.123@example.com>",
                "Sender": "Bot <bot@example.com>",
            }
        )
        parsed = parse(msg)
        assert parsed["Subject"] == "From headers"
        assert parsed["Date"].datetime == datetime(2025, 7, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
        assert parsed["Message-ID"] == "<abc.123@example.com>"
        assert str(parsed["Sender"]) == "Bot <bot@example.com>"
        assert msg.message_id == "<abc.123@example.com>"
        assert msg.subject == "From headers"
        assert msg.envelope_from == "alice@example.com"  # Sender does not change the envelope
        assert header_names(msg.as_bytes()).count("date") == 1

    def test_header_values_are_text_even_when_they_look_encoded(self) -> None:
        # Values are text: something that looks like an RFC 2047 encoded word is encoded
        # itself, so that the recipient reads exactly what was given.
        for value in ("=?utf-8?q?caf=C3=A9?=", "a =?utf-8?b?w6k=?= b", "=?x?q?y?="):
            msg = build(subject=value, headers={"X-A": value})
            assert parse(msg)["Subject"] == value
            assert parse(msg)["X-A"] == value
            assert msg.subject == value


# --- envelope and identity -----------------------------------------------------------------------


class TestEnvelope:
    def test_recipients_to_cc_bcc_in_order_without_duplicates(self) -> None:
        msg = build(
            to=["bob@example.org", "Bob Again <bob@EXAMPLE.org>", "carol@example.org"],
            cc=["carol@Example.Org", "dave@example.net"],
            bcc=["bob@example.org", "eve@example.net"],
        )
        assert msg.recipients == (
            "bob@example.org",
            "carol@example.org",
            "dave@example.net",
            "eve@example.net",
        )
        assert all(isinstance(r, str) for r in msg.recipients)

    def test_local_parts_are_case_sensitive(self) -> None:
        msg = build(to=["Bob@example.org", "bob@example.org"])
        assert msg.recipients == ("Bob@example.org", "bob@example.org")

    def test_idn_duplicates_collapse(self) -> None:
        msg = build(to=["k@bücher.example", "k@xn--bcher-kva.example", "k@BÜCHER.example"])
        assert msg.recipients == ("k@xn--bcher-kva.example",)

    def test_address_objects_and_single_strings_are_accepted(self) -> None:
        msg = Message(
            sender=Address("alice@example.com", display_name="Alice"),
            to=Address("bob@example.org"),
            cc="carol@example.org",
        )
        assert msg.recipients == ("bob@example.org", "carol@example.org")
        assert msg.sender == Address("alice@example.com", display_name="Alice")
        assert msg.to == (Address("bob@example.org"),)

    def test_envelope_from_defaults_to_sender(self) -> None:
        assert build().envelope_from == "alice@example.com"

    def test_envelope_from_given(self) -> None:
        msg = build(envelope_from="Bounces <bounces+42@example.com>")
        assert msg.envelope_from == "bounces+42@example.com"
        assert parse(msg)["From"].addresses[0].addr_spec == "alice@example.com"

    def test_message_id_uses_sender_domain_and_is_stable(self) -> None:
        msg = build(sender="a@mail.example.com")
        assert re.fullmatch(r"<[0-9a-f]{32}@mail\.example\.com>", msg.message_id)
        first, second = msg.as_bytes(), msg.as_bytes()
        assert first == second
        assert first is second  # computed once
        assert parse(msg)["Message-ID"] == msg.message_id

    def test_message_ids_are_unique(self) -> None:
        assert len({build().message_id for _ in range(50)}) == 50

    def test_message_id_for_idn_and_utf8_senders_is_ascii(self) -> None:
        assert build(sender="a@bücher.example").message_id.endswith("@xn--bcher-kva.example>")
        assert build(sender="jörg@bücher.example").message_id.endswith("@xn--bcher-kva.example>")

    def test_date_is_fixed_at_construction_with_time_zone(self) -> None:
        msg = build()
        assert msg.date is not None
        assert msg.date.tzinfo is not None
        date = parse(msg)["Date"]
        assert date.datetime == msg.date
        assert date.datetime.utcoffset() is not None
        assert abs(datetime.now(UTC) - date.datetime) < timedelta(minutes=5)
        assert msg.as_bytes() == msg.as_bytes()

    def test_date_given(self) -> None:
        when = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=-5)))
        msg = build(date=when)
        assert parse(msg)["Date"].datetime == when.replace(microsecond=0)
        assert b"Date: Thu, 29 Feb 2024 23:59:58 -0500\r\n" in msg.as_bytes()

    def test_immutable(self) -> None:
        msg = build()
        with pytest.raises(AttributeError):
            msg.subject = "changed"  # type: ignore[misc]
        with pytest.raises(AttributeError):
            msg._data = b""  # type: ignore[misc]
        with pytest.raises(AttributeError):
            del msg.recipients
        with pytest.raises(AttributeError):
            msg.anything = 1  # type: ignore[attr-defined]

    def test_attributes_and_repr(self) -> None:
        att = Attachment(b"x", "x.bin")
        msg = build(subject="S", text="T", html="<p>H</p>", attachments=[att], reply_to="r@example.com")
        assert (msg.subject, msg.text, msg.html, msg.attachments) == ("S", "T", "<p>H</p>", (att,))
        assert msg.reply_to == (Address("r@example.com"),)
        assert msg.message_id in repr(msg)
        assert "1 recipient," in repr(msg)


class TestInternationalEnvelope:
    def test_non_ascii_local_part_requires_smtputf8(self) -> None:
        msg = build(to="Jörg <jörg@bücher.example>", subject="Grüße")
        assert msg.requires_smtputf8
        assert msg.recipients == ("jörg@bücher.example",)
        data = msg.as_bytes()
        assert "To: Jörg <jörg@bücher.example>".encode() in data  # RFC 6532 UTF-8 header
        assert msg.requires_8bitmime  # the UTF-8 header octets are over 127
        assert_wire(data)
        parsed = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
        assert parsed["To"].addresses[0].addr_spec == "jörg@bücher.example"
        assert parsed["To"].addresses[0].display_name == "Jörg"
        assert parsed["Subject"] == "Grüße"
        assert parsed["Message-ID"] == msg.message_id

    def test_only_top_level_headers_are_8bit_in_an_smtputf8_message(self) -> None:
        msg = build(to="jörg@example.org", text="Grüße", attachments=[Attachment(b"x", "résumé.pdf")])
        head, body = msg.as_bytes().split(b"\r\n\r\n", 1)
        assert not head.isascii()
        assert body.isascii()
        assert b"filename*=utf-8''r%C3%A9sum%C3%A9.pdf" in body

    def test_non_ascii_bcc_requires_smtputf8_but_headers_stay_ascii(self) -> None:
        msg = build(bcc="jörg@example.org")
        assert msg.requires_smtputf8
        assert msg.as_bytes().isascii()
        assert not msg.requires_8bitmime

    def test_non_ascii_envelope_from_requires_smtputf8(self) -> None:
        msg = build(envelope_from="jörg@example.com")
        assert msg.requires_smtputf8
        assert msg.envelope_from == "jörg@example.com"

    def test_ascii_message_needs_nothing(self) -> None:
        msg = build(subject="Ünïcödé", text="Grüße, 日本語", html="<p>✓</p>", to="Zoë <z@bücher.example>")
        assert not msg.requires_smtputf8
        assert not msg.requires_8bitmime
        assert msg.as_bytes().isascii()


# --- bodies on the wire ------------------------------------------------------------------------


class TestBodies:
    @pytest.mark.parametrize(
        "text",
        [
            "a" * 5000,
            "short\n" + "é" * 3000 + "\nend",
            "bare\rcarriage\rreturns",
            "bare\nline\nfeeds",
            "mixed\r\nendings\rand\nmore\r\n\r\n",
            ".\n..\n.\r\n.",
            "\r\n.\r\n",
            "From the start\nFrom here\n>From there",
            "nul\x00byte and \x01\x02\x1b\x7f controls",
            "trailing spaces   \nand tabs\t\t\n",
            "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029 unicode line breaks stay content",
            "",
            "\n",
            "no final newline",
            " ",
            "=3D=\n=",
        ],
    )
    def test_hostile_text_bodies_arrive_unchanged_with_crlf(self, text: str) -> None:
        for msg in (build(text=text), build(html=text), build(text=text, html=text)):
            parsed = parse(msg)
            parts = list(parsed.iter_parts()) if parsed.is_multipart() else [parsed]
            for part in parts:
                assert body_text(part) == crlf(text)
            assert msg.as_bytes().isascii()

    def test_short_ascii_is_7bit_and_other_text_is_encoded(self) -> None:
        assert parse(build(text="plain\nlines"))["Content-Transfer-Encoding"] == "7bit"
        assert parse(build(text="x" * 77))["Content-Transfer-Encoding"] == "quoted-printable"
        assert (
            parse(build(text="Viele liebe Grüße aus Köln und bis bald, euer Team"))[
                "Content-Transfer-Encoding"
            ]
            == "quoted-printable"
        )
        assert parse(build(text="日本語のテキスト" * 10))["Content-Transfer-Encoding"] == "base64"
        assert (
            parse(build(text="a line with a nul \x00 in it"))["Content-Transfer-Encoding"]
            == "quoted-printable"
        )

    def test_lone_dot_lines_are_left_to_the_transport(self) -> None:
        # Dot-stuffing is the DATA encoder's job; the message bytes carry the dot as it is.
        assert b"\r\n.\r\n" in build(text="a\n.\nb").as_bytes()

    def test_surrogates_are_refused(self) -> None:
        with pytest.raises(MessageError) as info:
            build(text="bad \udc80")
        assert info.value.field == "text"


@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_any_text_body_round_trips_after_crlf_normalisation(text: str) -> None:
    msg = build(text=text, html=text)
    plain, html = parse(msg).iter_parts()
    assert body_text(plain) == crlf(text)
    assert body_text(html) == crlf(text)
    assert msg.as_bytes().isascii()


_header_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=120) | st.text(
    alphabet=st.sampled_from(' \t\r\n\x00=?:;,<>@"\\aéZ_Bcc-'), max_size=120
)


@given(value=_header_values)
def test_any_header_value_round_trips_or_is_refused(value: str) -> None:
    try:
        msg = build(subject=value, headers={"X-Test": value})
    except MessageError as err:
        refused = err
    else:
        refused = None
    if refused is not None:
        assert refused.field in ("subject", "X-Test")
        return
    data = msg.as_bytes()
    assert header_names(data) == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "x-test",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    ]
    parsed = parse(msg)
    assert parsed["Subject"] == value.strip(" \t")
    assert parsed["X-Test"] == value.strip(" \t")


@given(name=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_display_name_in_a_message_round_trips_or_is_refused(name: str) -> None:
    try:
        msg = build(to=Address("bob@example.org", display_name=name))
    except AddressError:
        return
    (got,) = parse(msg)["To"].addresses
    assert got.addr_spec == "bob@example.org"
    assert mailboxes(msg.as_bytes(), "To") == [(msg.to[0].display_name, "bob@example.org")]


# --- bad input -----------------------------------------------------------------------------------


class TestBadInput:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"sender": "not an address"}, "sender"),
            ({"sender": "alice@example.com\r\nBcc: eve@example.net"}, "sender"),
            ({"to": ["bob@example.org", "bob@example.org\nX: y"]}, "to"),
            ({"to": "alice@example.org<bob@example.com>"}, "to"),
            ({"to": "bob@example.org, eve@example.net"}, "to"),
            ({"cc": ["Bob <bob@example.org"]}, "cc"),
            ({"bcc": ["\x00@example.org"]}, "bcc"),
            ({"reply_to": "reply@[192.0.2.1]"}, "reply_to"),
            ({"envelope_from": "bounce@"}, "envelope_from"),
            ({"to": "=?utf-8?q?x=0D=0A?= <bob@example.org>"}, "to"),
        ],
    )
    def test_address_errors_name_the_field(self, kwargs: dict[str, Any], field: str) -> None:
        with pytest.raises(AddressError) as info:
            build(**kwargs)
        assert info.value.field == field
        assert str(info.value).startswith(f"{field}:")

    @pytest.mark.parametrize(
        ("subject", "problem"),
        [
            ("hi\r\nBcc: eve@example.net", "CR"),
            ("hi\nBcc: eve@example.net", "LF"),
            ("hi\rthere", "CR"),
            ("nul\x00", "NUL"),
            ("esc\x1b", "U+001B"),
            ("del\x7f", "DEL"),
            ("nel\x85", "U+0085"),
            ("ls\u2028", "U+2028"),
            ("=?utf-8?q?hi=0D=0ABcc:_x@evil.example?=", "CR"),
            ("=?utf-8?b?aGkNCkJjYzogeEBldmlsLmV4YW1wbGU=?=", "CR"),
            ("ok =?utf-8?q?hi=0ABcc:_x@evil.example?= ok", "LF"),
            ("=?utf-8?q?nul=00?=", "NUL"),
        ],
    )
    def test_control_characters_in_subject(self, subject: str, problem: str) -> None:
        with pytest.raises(MessageError) as info:
            build(subject=subject)
        assert info.value.field == "subject"
        assert problem in str(info.value)

    def test_encoded_newline_in_custom_header(self) -> None:
        with pytest.raises(MessageError) as info:
            build(headers={"X-Note": "=?utf-8?q?a=0D=0ABcc:_x@evil.example?="})
        assert info.value.field == "X-Note"

    def test_tab_is_allowed_in_header_values(self) -> None:
        assert parse(build(subject="a\tb"))["Subject"] == "a\tb"

    @pytest.mark.parametrize(
        "name", ["X Bad", "X:Bad", "", "Ünï", "X-Bad\r\nBcc", "X\x00", "X" * 77, "X-Bad "]
    )
    def test_invalid_header_names(self, name: str) -> None:
        with pytest.raises(MessageError) as info:
            build(headers={name: "v"})
        assert info.value.field == name

    @pytest.mark.parametrize(
        "name",
        ["Content-Type", "content-transfer-encoding", "MIME-Version", "Content-Disposition", "Content-ID"],
    )
    def test_structural_headers_cannot_be_overridden(self, name: str) -> None:
        with pytest.raises(MessageError, match="MIME structure") as info:
            build(headers={name: "text/html"})
        assert info.value.field == name

    @pytest.mark.parametrize(
        ("name", "argument"),
        [("From", "sender"), ("to", "to"), ("CC", "cc"), ("Bcc", "bcc"), ("Reply-To", "reply_to")],
    )
    def test_address_headers_must_use_their_argument(self, name: str, argument: str) -> None:
        with pytest.raises(MessageError, match=f"{argument}= argument") as info:
            build(headers={name: "x@example.org"})
        assert info.value.field == name

    @pytest.mark.parametrize("name", ["Resent-Bcc", "Resent-To", "resent-from", "Return-Path"])
    def test_relay_headers_are_refused(self, name: str) -> None:
        with pytest.raises(MessageError) as info:
            build(headers={name: "x@example.org"})
        assert info.value.field == name

    @pytest.mark.parametrize("name", ["Subject", "subject", "SUBJECT"])
    def test_subject_twice_is_an_error(self, name: str) -> None:
        with pytest.raises(MessageError, match="both") as info:
            build(subject="a", headers={name: "b"})
        assert info.value.field == name

    def test_date_twice_is_an_error(self) -> None:
        with pytest.raises(MessageError) as info:
            build(date=datetime.now(UTC), headers={"Date": "Tue, 01 Jul 2025 10:00:00 +0200"})
        assert info.value.field == "Date"

    @pytest.mark.parametrize("name", ["Subject", "Message-ID", "In-Reply-To", "References", "Sender"])
    def test_unique_headers_given_twice(self, name: str) -> None:
        with pytest.raises(MessageError, match="only once"):
            build(headers=[(name, "<a@b.example>"), (name.upper(), "<c@d.example>")])

    def test_no_recipients(self) -> None:
        for kwargs in ({"to": []}, {"to": None}, {"to": (), "cc": [], "bcc": []}):
            with pytest.raises(MessageError) as info:
                build(**kwargs)
            assert info.value.field == "recipients"

    @pytest.mark.parametrize(
        "value", ["abc@example.com", "<abc>", "<a b@example.com>", "<a@b@c>", "<>", "<é@x.example>"]
    )
    def test_invalid_message_id(self, value: str) -> None:
        with pytest.raises(MessageError) as info:
            build(headers={"Message-ID": value})
        assert info.value.field == "Message-ID"

    @pytest.mark.parametrize("value", ["yesterday", "", "Tue, 01 Jul 2025"])
    def test_invalid_date_header(self, value: str) -> None:
        with pytest.raises(MessageError) as info:
            build(headers={"Date": value})
        assert info.value.field == "Date"

    def test_naive_date(self) -> None:
        with pytest.raises(MessageError) as info:
            build(date=datetime(2025, 1, 1))  # naive: the point of the test
        assert info.value.field == "date"

    def test_sender_header_must_be_one_address(self) -> None:
        with pytest.raises(AddressError) as info:
            build(headers={"Sender": "a@example.com, b@example.com"})
        assert info.value.field == "Sender"

    def test_wrong_types(self) -> None:
        with pytest.raises(TypeError):
            build(to=[b"bob@example.org"])
        with pytest.raises(TypeError):
            build(to=b"bob@example.org")
        with pytest.raises(TypeError):
            build(to=42)
        with pytest.raises(TypeError):
            build(subject=b"bytes")
        with pytest.raises(TypeError):
            build(text=b"bytes")
        with pytest.raises(TypeError):
            build(headers={"X-A": 1})
        with pytest.raises(TypeError):
            build(headers="X-A: 1")
        with pytest.raises(TypeError):
            build(headers=[("X-A", "1", "extra")])
        with pytest.raises(TypeError):
            build(attachments=[b"raw"])
        with pytest.raises(TypeError):
            build(date="2025-01-01")

    def test_keyword_only(self) -> None:
        with pytest.raises(TypeError):
            Message(SENDER, "bob@example.org")  # type: ignore[misc]

    def test_errors_are_value_errors(self) -> None:
        with pytest.raises(ValueError):  # the point: both are ValueError
            build(to=[])
        with pytest.raises(ValueError):
            build(to="nobody")


# --- attachments ---------------------------------------------------------------------------------


class TestAttachment:
    def test_defaults(self) -> None:
        att = Attachment(b"%PDF", "report.pdf")
        assert att.data == b"%PDF"
        assert att.filename == "report.pdf"
        assert att.content_type == "application/pdf"
        assert att.inline is False
        assert att.content_id is None

    @pytest.mark.parametrize(
        ("filename", "expected"),
        [
            ("photo.JPG", "image/jpeg"),
            ("notes.txt", "text/plain"),
            ("data.unknown-extension", "application/octet-stream"),
            ("noextension", "application/octet-stream"),
            ("archive.tar.gz", "application/gzip"),
            ("dump.sql.bz2", "application/x-bzip2"),
            ("mail.eml", "application/octet-stream"),
        ],
    )
    def test_content_type_is_guessed(self, filename: str, expected: str) -> None:
        assert Attachment(b"x", filename).content_type == expected

    def test_content_type_given_is_normalised(self) -> None:
        assert Attachment(b"x", "x", content_type=" Text/CSV ").content_type == "text/csv"

    @pytest.mark.parametrize(
        "content_type",
        [
            "text",
            "text/",
            "/plain",
            "text/plain; charset=utf-8",
            "text/plain\r\nX-Evil: 1",
            "multipart/mixed",
            "message/rfc822",
            "te xt/plain",
            "text/pl\x00ain",
            "",
        ],
    )
    def test_bad_content_types(self, content_type: str) -> None:
        with pytest.raises(MessageError) as info:
            Attachment(b"x", "x.bin", content_type=content_type)
        assert info.value.field == "content_type"

    @pytest.mark.parametrize(
        "filename", ["a\r\nb.pdf", "a\nb", "nul\x00.pdf", "tab\t.pdf", "del\x7f", "", "   ", "ls\u2028"]
    )
    def test_bad_filenames(self, filename: str) -> None:
        with pytest.raises(MessageError) as info:
            Attachment(b"x", filename)
        assert info.value.field == "filename"

    def test_inline_gets_a_content_id(self) -> None:
        att = Attachment(b"x", "logo.png", inline=True)
        assert att.content_id is not None
        assert "<" not in att.content_id and "@" in att.content_id
        assert Attachment(b"x", "logo.png", inline=True).content_id != att.content_id

    @pytest.mark.parametrize(
        ("given", "stored"), [("<logo@example.com>", "logo@example.com"), ("logo", "logo")]
    )
    def test_content_id_given(self, given: str, stored: str) -> None:
        att = Attachment(b"x", "logo.png", inline=True, content_id=given)
        assert att.content_id == stored
        parsed = parse(build(html=f'<img src="cid:{stored}">', attachments=[att]))
        assert list(parsed.iter_parts())[1]["Content-ID"] == f"<{stored}>"

    @pytest.mark.parametrize("content_id", ["", "<>", "a b", "a\r\nb", "<a>b>", 'a"b', "é@x"])
    def test_bad_content_ids(self, content_id: str) -> None:
        with pytest.raises(MessageError) as info:
            Attachment(b"x", "logo.png", inline=True, content_id=content_id)
        assert info.value.field == "content_id"

    def test_non_ascii_filename_is_rfc2231_encoded(self) -> None:
        msg = build(attachments=[Attachment(b"x", "résumé 2025.pdf")])
        assert b"filename*=utf-8''r%C3%A9sum%C3%A9%202025.pdf" in msg.as_bytes()
        assert msg.as_bytes().isascii()
        (part,) = parse(msg).iter_parts()
        assert part.get_filename() == "résumé 2025.pdf"

    def test_long_filenames_are_continued(self) -> None:
        for name in ("a" * 500 + ".txt", "日本語" * 100 + ".txt", 'quote"and;semicolon=.txt'):
            (part,) = parse(build(attachments=[Attachment(b"x", name)])).iter_parts()
            assert part.get_filename() == name

    def test_binary_data_round_trips(self) -> None:
        data = bytes(range(256)) * 100 + b"\r\n.\r\n\n\r"
        (part,) = parse(build(attachments=[Attachment(data, "blob.bin")])).iter_parts()
        assert part.get_payload(decode=True) == data

    def test_bytes_like_data_is_copied(self) -> None:
        buffer = bytearray(b"abc")
        att = Attachment(buffer, "a.bin")
        buffer[0] = ord("z")
        assert att.data == b"abc"
        assert isinstance(att.data, bytes)
        assert Attachment(memoryview(b"mv"), "m.bin").data == b"mv"

    def test_str_data_is_refused(self) -> None:
        with pytest.raises(TypeError, match="encode"):
            Attachment("text", "a.txt")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            Attachment(b"x", Path("a.txt"))  # type: ignore[arg-type]

    def test_frozen_slotted_value(self) -> None:
        att = Attachment(b"x", "a.pdf")
        with pytest.raises(AttributeError):
            att.filename = "b.pdf"  # type: ignore[misc]
        assert not hasattr(att, "__dict__")
        assert att == Attachment(b"x", "a.pdf")
        assert hash(att) == hash(Attachment(b"x", "a.pdf"))
        assert "size=1" in repr(att) and "b'x'" not in repr(att)

    def test_from_path(self, tmp_path: Path) -> None:
        path = tmp_path / "chart.png"
        path.write_bytes(b"\x89PNG")
        att = Attachment.from_path(path)
        assert (att.data, att.filename, att.content_type) == (b"\x89PNG", "chart.png", "image/png")
        renamed = Attachment.from_path(str(path), filename="Übersicht.gif", inline=True, content_id="chart")
        assert (renamed.filename, renamed.content_type, renamed.content_id) == (
            "Übersicht.gif",
            "image/gif",
            "chart",
        )
        forced = Attachment.from_path(path, content_type="application/octet-stream")
        assert forced.content_type == "application/octet-stream"

    def test_from_path_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            Attachment.from_path(tmp_path / "missing.pdf")
