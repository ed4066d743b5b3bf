"""Message.from_email: wrapping bytes or an email.message object an application already has."""

from __future__ import annotations

import email
import email.message
import email.policy
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from smtprelay import Address, AddressError, Message, MessageError
from test_message import assert_wire, header_names

RAW = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.org>, carol@example.org\r\n"
    b"Cc: Team: dave@example.net, Erin <erin@example.net>;, undisclosed-recipients:;\r\n"
    b"Bcc: hidden@example.net,\r\n"
    b"  also-hidden@example.net\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Date: Tue, 01 Jul 2025 10:00:00 +0200\r\n"
    b"Message-ID: <orig.1@example.com>\r\n"
    b"X-Folded: first\r\n"
    b"\tsecond\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b".\r\n"
    b"From the team\r\n"
)


def wrap(data: bytes | email.message.Message, **kwargs: object) -> Message:
    msg = Message.from_email(data, **kwargs)  # type: ignore[arg-type]
    assert_wire(msg.as_bytes())
    return msg


class TestBytes:
    def test_envelope_from_headers(self) -> None:
        msg = wrap(RAW)
        assert msg.envelope_from == "alice@example.com"
        assert msg.sender == Address("alice@example.com", display_name="Alice")
        assert msg.recipients == (
            "bob@example.org",
            "carol@example.org",
            "dave@example.net",
            "erin@example.net",
            "hidden@example.net",
            "also-hidden@example.net",
        )
        assert [a.addr_spec for a in msg.bcc] == ["hidden@example.net", "also-hidden@example.net"]
        assert msg.subject == "Grüße"
        assert msg.message_id == "<orig.1@example.com>"
        assert msg.date is not None and msg.date.isoformat() == "2025-07-01T10:00:00+02:00"

    def test_bytes_are_kept_except_bcc(self) -> None:
        data = wrap(RAW).as_bytes()
        assert data == RAW.replace(b"Bcc: hidden@example.net,\r\n  also-hidden@example.net\r\n", b"")
        assert b"hidden" not in data

    def test_line_endings_become_crlf(self) -> None:
        for newline in (b"\n", b"\r"):
            msg = wrap(RAW.replace(b"\r\n", newline))
            assert msg.as_bytes() == wrap(RAW).as_bytes()

    def test_bare_cr_and_lf_in_the_body_become_crlf(self) -> None:
        raw = b"From: a@example.com\r\nTo: b@example.org\r\n\r\none\rtwo\nthree\r\n.\n\x0cfour"
        data = wrap(raw).as_bytes()
        assert data.endswith(b"\r\n\r\none\r\ntwo\r\nthree\r\n.\r\n\x0cfour\r\n")

    def test_missing_message_id_and_date_are_appended(self) -> None:
        raw = b"From: a@mail.example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
        msg = wrap(raw)
        data = msg.as_bytes()
        assert header_names(data) == ["from", "to", "subject", "message-id", "date"]
        assert msg.message_id.endswith("@mail.example.com>")
        assert f"Message-ID: {msg.message_id}\r\n".encode() in data
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert parsed["Date"].datetime == msg.date
        assert msg.date is not None and msg.date.tzinfo is not None
        assert data.startswith(b"From: a@mail.example.com\r\nTo: b@example.org\r\nSubject: hi\r\n")
        assert data.endswith(b"\r\n\r\nbody\r\n")
        assert msg.as_bytes() is data  # stable across calls

    def test_header_only_message(self) -> None:
        data = wrap(b"From: a@example.com\r\nTo: b@example.org").as_bytes()
        assert data.endswith(b"\r\n\r\n")
        assert data.startswith(b"From: a@example.com\r\nTo: b@example.org\r\n")

    def test_unparseable_date_is_kept(self) -> None:
        msg = wrap(b"From: a@example.com\r\nTo: b@example.org\r\nDate: sometime\r\n\r\nx\r\n")
        assert msg.date is None
        assert b"Date: sometime\r\n" in msg.as_bytes()
        assert header_names(msg.as_bytes()).count("date") == 1

    def test_tab_folded_address_headers(self) -> None:
        raw = (
            b'From: Alice\r\n\t<alice@example.com>\r\nTo: "Smith,\r\n\tBob" <bob@example.org>,\r\n'
            b"\tcarol@example.org\r\n\r\nx\r\n"
        )
        msg = wrap(raw)
        assert msg.sender == Address("alice@example.com", display_name="Alice")
        assert msg.to == (Address("bob@example.org", display_name="Smith, Bob"), Address("carol@example.org"))
        assert msg.as_bytes().startswith(raw[: raw.index(b"\r\n\r\n")])

    def test_repeated_message_id(self) -> None:
        raw = (
            b"From: a@example.com\r\nTo: b@example.org\r\nMessage-ID: <1@x>\r\nMessage-ID: <2@x>\r\n\r\nx\r\n"
        )
        with pytest.raises(MessageError) as info:
            Message.from_email(raw)
        assert info.value.field == "Message-ID"

    def test_sender_header_is_the_envelope_sender(self) -> None:
        raw = (
            b"From: a@example.com, b@example.com\r\nSender: list@example.com\r\n"
            b"To: c@example.org\r\n\r\nx\r\n"
        )
        assert wrap(raw).envelope_from == "list@example.com"

    def test_explicit_sender_and_recipients(self) -> None:
        raw = b"From: a@example.com\r\nTo: b@example.org\r\nBcc: c@example.org\r\n\r\nx\r\n"
        msg = wrap(raw, sender="bounces@example.com", recipients=["z@example.org", "Y <y@example.org>"])
        assert msg.envelope_from == "bounces@example.com"
        assert msg.recipients == ("z@example.org", "y@example.org")
        assert b"Bcc" not in msg.as_bytes()  # still stripped
        assert wrap(raw, recipients="solo@example.org").recipients == ("solo@example.org",)

    def test_explicit_recipients_skip_header_parsing(self) -> None:
        raw = b"From: a@example.com\r\nTo: alice@example.org<bob@example.com>\r\n\r\nx\r\n"
        with pytest.raises(AddressError):
            wrap(raw)
        assert wrap(raw, recipients=["bob@example.com"]).recipients == ("bob@example.com",)

    def test_non_ascii_headers_need_smtputf8(self) -> None:
        raw = (
            "From: Jörg <jörg@bücher.example>\r\nTo: Zoë <z@example.org>\r\nSubject: Grüße\r\n\r\nx\r\n"
        ).encode()
        msg = wrap(raw)
        assert msg.requires_smtputf8
        assert msg.requires_8bitmime
        assert msg.envelope_from == "jörg@bücher.example"
        assert msg.recipients == ("z@example.org",)
        assert msg.message_id.endswith("@xn--bcher-kva.example>")

    def test_8bit_body_needs_8bitmime_only(self) -> None:
        raw = (
            b"From: a@example.com\r\nTo: b@example.org\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + "Grüße\r\n".encode()
        )
        msg = wrap(raw)
        assert msg.requires_8bitmime
        assert not msg.requires_smtputf8
        assert msg.as_bytes().endswith("\r\n\r\nGrüße\r\n".encode())

    def test_ascii_message_needs_nothing(self) -> None:
        msg = wrap(RAW)
        assert not msg.requires_8bitmime
        assert not msg.requires_smtputf8


class TestResent:
    RESENT = (
        b"Resent-From: Forwarder <fwd@example.com>\r\n"
        b"Resent-To: new@example.org\r\n"
        b"Resent-Bcc: secret@example.org\r\n"
        b"Resent-Date: Wed, 02 Jul 2025 10:00:00 +0000\r\n"
        b"Resent-Message-ID: <resent.1@example.com>\r\n"
        b"Received: from somewhere\r\n"
        b"Resent-From: older@example.com\r\n"
        b"Resent-To: old@example.org\r\n"
        b"Resent-Bcc: oldsecret@example.org\r\n"
    )

    def test_current_resent_block_decides_the_envelope(self) -> None:
        msg = wrap(self.RESENT + RAW)
        assert msg.envelope_from == "fwd@example.com"
        assert msg.recipients == ("new@example.org", "secret@example.org")
        data = msg.as_bytes()
        assert b"secret" not in data  # every Resent-Bcc is stripped
        assert "resent-bcc" not in header_names(data)
        assert b"Bcc:" not in data
        assert b"Resent-To: new@example.org\r\n" in data
        assert b"Resent-To: old@example.org\r\n" in data

    def test_resent_sender_wins_over_resent_from(self) -> None:
        raw = (
            b"Resent-Sender: agent@example.com\r\nResent-From: boss@example.com\r\n"
            b"Resent-To: n@example.org\r\n" + RAW
        )
        assert wrap(raw).envelope_from == "agent@example.com"

    def test_resent_block_without_recipients_falls_back_to_to_cc_bcc(self) -> None:
        msg = wrap(b"Resent-From: fwd@example.com\r\nResent-Date: Wed, 02 Jul 2025 10:00:00 +0000\r\n" + RAW)
        assert msg.envelope_from == "fwd@example.com"
        assert msg.recipients[0] == "bob@example.org"


class TestMessageObjects:
    def test_email_message(self) -> None:
        original = EmailMessage()
        original["From"] = "Alice <alice@example.com>"
        original["To"] = "Bob <bob@example.org>"
        original["Bcc"] = "hidden@example.net"
        original["Subject"] = "Grüße"
        original.set_content("Hi Bob\n.\nFrom me\n")
        original.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="r.pdf")
        msg = wrap(original)
        assert msg.recipients == ("bob@example.org", "hidden@example.net")
        assert msg.envelope_from == "alice@example.com"
        data = msg.as_bytes()
        assert b"hidden" not in data
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert parsed["Subject"] == "Grüße"
        assert parsed["Message-ID"] == msg.message_id
        text, pdf = parsed.iter_parts()
        assert text.get_content() == "Hi Bob\r\n.\r\nFrom me\r\n"
        assert pdf.get_payload(decode=True) == b"%PDF"
        assert "Bcc" in original  # the application's object is not changed

    def test_legacy_message_object(self) -> None:
        original = MIMEMultipart()
        original["From"] = "alice@example.com"
        original["To"] = "bob@example.org"
        original["Message-ID"] = "<legacy@example.com>"
        original.attach(MIMEText("From the legacy API\n"))
        msg = wrap(original)
        assert msg.message_id == "<legacy@example.com>"
        assert b"\r\nFrom the legacy API\r\n" in msg.as_bytes()  # never mangled to ">From"

    def test_encoded_newline_in_a_message_object_is_refused(self) -> None:
        original = EmailMessage()
        original["From"] = "alice@example.com"
        original["To"] = "bob@example.org"
        original["Subject"] = "=?utf-8?q?hi=0D=0ABcc:_x@evil.example?="
        original.set_content("x")
        with pytest.raises(MessageError) as info:
            Message.from_email(original)
        assert info.value.field == "Subject"

    def test_raw_newline_in_a_legacy_object_is_refused(self) -> None:
        original = MIMEText("x")
        original["From"] = "alice@example.com"
        original["To"] = "bob@example.org"
        original["X-Note"] = "a\r\nBcc: x@evil.example"
        with pytest.raises(MessageError) as info:
            Message.from_email(original)
        assert info.value.field == "X-Note"


class TestReencoding:
    def test_long_lines_in_a_single_part_are_quoted_printable(self) -> None:
        body = b"x" * 3000 + b"\r\n" + b"short\r\nnul\x00here\r\n"
        msg = wrap(b"From: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\n\r\n" + body)
        data = msg.as_bytes()
        assert data.startswith(b"From: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\n")
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
        assert parsed["MIME-Version"] == "1.0"
        assert parsed.get_payload(decode=True) == body

    def test_only_the_offending_part_is_reencoded(self) -> None:
        raw = (
            b"From: a@example.com\r\nTo: b@example.org\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="BOUNDARY"\r\n\r\n'
            b"preamble\r\n"
            b"--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nshort text\r\n"
            b"--BOUNDARY\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
            + b"y" * 2000
            + b"\r\n--BOUNDARY--\r\n"
        )
        msg = wrap(raw)
        data = msg.as_bytes()
        assert data.startswith(raw[: raw.index(b"\r\n\r\n") + 2])
        assert b"--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nshort text\r\n" in data
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        text, blob = parsed.iter_parts()
        assert text.get_content() == "short text"  # the CRLF before a boundary belongs to it
        assert blob["Content-Transfer-Encoding"] == "base64"
        assert blob.get_payload(decode=True) == b"y" * 2000

    def test_long_line_outside_any_part_is_refused(self) -> None:
        raw = (
            b"From: a@example.com\r\nTo: b@example.org\r\n"
            b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
            + b"p" * 2000
            + b"\r\n--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n"
        )
        with pytest.raises(MessageError, match="998"):
            Message.from_email(raw)


class TestRefused:
    @pytest.mark.parametrize(
        ("to", "why"),
        [
            (b"alice@example.org<bob@example.com>", "CVE-2023-27043"),
            (b'"a@b"@example.com', "quoted local part"),
            (b"alice@example.org (Alice) <bob@example.com>", "comment"),
            (b"bob@example.org eve@example.net", "missing comma"),
            (b"Bob <bob@example.org", "unclosed"),
            (b"=?utf-8?q?Bob=0D=0ABcc=3A_x=40evil.example?= <bob@example.org>", "encoded newline"),
            (b"bob@[192.0.2.1]", "domain literal"),
            (b"group: bob@example.org", "unclosed group"),
        ],
    )
    def test_ambiguous_or_bad_recipient_headers(self, to: bytes, why: str) -> None:
        raw = b"From: a@example.com\r\nTo: " + to + b"\r\n\r\nx\r\n"
        with pytest.raises((AddressError, MessageError)) as info:
            Message.from_email(raw)
        assert info.value.field == "To", why

    def test_repeated_address_field(self) -> None:
        raw = b"From: a@example.com\r\nTo: b@example.org\r\nTo: c@example.org\r\n\r\nx\r\n"
        with pytest.raises(AddressError, match="2 times") as info:
            Message.from_email(raw)
        assert info.value.field == "To"

    def test_several_authors_without_sender(self) -> None:
        raw = b"From: a@example.com, b@example.com\r\nTo: c@example.org\r\n\r\nx\r\n"
        with pytest.raises(AddressError) as info:
            Message.from_email(raw)
        assert info.value.field == "From"

    def test_no_author(self) -> None:
        with pytest.raises(AddressError) as info:
            Message.from_email(b"To: c@example.org\r\n\r\nx\r\n")
        assert info.value.field == "sender"

    def test_no_recipients(self) -> None:
        with pytest.raises(MessageError) as info:
            Message.from_email(b"From: a@example.com\r\nTo: undisclosed-recipients:;\r\n\r\nx\r\n")
        assert info.value.field == "recipients"
        with pytest.raises(MessageError) as info:
            Message.from_email(RAW, recipients=[])
        assert info.value.field == "recipients"

    def test_bad_explicit_addresses(self) -> None:
        with pytest.raises(AddressError) as info:
            Message.from_email(RAW, sender="bad\r\n@example.com")
        assert info.value.field == "sender"
        with pytest.raises(AddressError) as info:
            Message.from_email(RAW, recipients=["ok@example.org", "not-an-address"])
        assert info.value.field == "recipients"

    @pytest.mark.parametrize(
        ("header", "field"),
        [
            (b"Subject: =?utf-8?q?hi=0D=0ABcc:_x@evil.example?=", "Subject"),
            (b"X-Note: a =?utf-8?b?DQpCY2M6IHhAZXZpbC5leGFtcGxl?= b", "X-Note"),
            (b"Subject: nul\x00byte", "message"),
            (b"Subject: esc\x1bchar", "Subject"),
            (b"X-Del: \x7f", "X-Del"),
        ],
    )
    def test_control_characters_in_headers(self, header: bytes, field: str) -> None:
        raw = b"From: a@example.com\r\nTo: b@example.org\r\n" + header + b"\r\n\r\nx\r\n"
        with pytest.raises(MessageError) as info:
            Message.from_email(raw)
        assert info.value.field == field

    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b"\r\n\r\n",
            b"\r\nbody only\r\n",
            b" continuation first\r\nFrom: a@example.com\r\nTo: b@example.org\r\n\r\nx",
            b"From a@example.com Mon Jan 1 00:00:00 2025\r\nTo: b@example.org\r\n\r\nx",
            b"From: a@example.com\r\nTo: b@example.org\r\nBad Name: x\r\n\r\nx",
            b"From: a@example.com\r\nTo: b@example.org\r\nX-Long: " + b"z" * 1000 + b"\r\n\r\nx",
        ],
    )
    def test_malformed_header_sections(self, raw: bytes) -> None:
        with pytest.raises(MessageError):
            Message.from_email(raw)

    def test_wrong_type(self) -> None:
        with pytest.raises(TypeError):
            Message.from_email(RAW.decode())  # type: ignore[arg-type]

    def test_keyword_only(self) -> None:
        with pytest.raises(TypeError):
            Message.from_email(RAW, "a@example.com")  # type: ignore[misc]
