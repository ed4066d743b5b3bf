"""Command encoding: control characters refused before a byte exists (RELIABILITY 24, 29, 33)."""

from __future__ import annotations

import pytest

from smtprelay import AddressError, MessageError
from smtprelay._protocol import (
    Auth,
    AuthResponse,
    Bdat,
    Capabilities,
    Data,
    DSNRequest,
    Ehlo,
    Helo,
    Mail,
    Noop,
    Quit,
    Rcpt,
    Reply,
    Rset,
    StartTLS,
    xtext,
)

ALL = Capabilities.from_ehlo(Reply(250, ("mx", "SIZE 1000000", "8BITMIME", "SMTPUTF8", "DSN", "PIPELINING")))
NONE = Capabilities()

CONTROL_CHARACTERS = ["\r", "\n", "\r\n", "\x00", "\t", "\x1b", "\x7f", "\x0b", "\x0c"]


def test_simple_commands() -> None:
    assert Ehlo("client.example").encode() == b"EHLO client.example\r\n"
    assert Helo("[192.0.2.1]").encode() == b"HELO [192.0.2.1]\r\n"
    assert StartTLS().encode() == b"STARTTLS\r\n"
    assert Data().encode() == b"DATA\r\n"
    assert Rset().encode() == b"RSET\r\n"
    assert Noop().encode() == b"NOOP\r\n"
    assert Quit().encode() == b"QUIT\r\n"
    assert Mail("a@example.com").encode() == b"MAIL FROM:<a@example.com>\r\n"
    assert Mail("").encode() == b"MAIL FROM:<>\r\n"  # the null reverse-path of bounces
    assert Rcpt("b@example.org").encode() == b"RCPT TO:<b@example.org>\r\n"
    assert Bdat(b"hello", last=True).encode() == b"BDAT 5 LAST\r\nhello"
    assert Bdat(b"", last=True).encode() == b"BDAT 0 LAST\r\n"


@pytest.mark.parametrize("bad", CONTROL_CHARACTERS)
def test_control_characters_refused_in_addresses(bad: str) -> None:
    with pytest.raises(AddressError, match="control character"):
        Mail(f"a{bad}b@example.com")
    with pytest.raises(AddressError, match="control character"):
        Rcpt(f"bob@example.org{bad}RCPT TO:<eve@evil.example>")
    with pytest.raises(AddressError, match="control character"):
        Mail.for_server(f"a@ex{bad}ample.com", ALL)


@pytest.mark.parametrize("bad", CONTROL_CHARACTERS)
def test_control_characters_refused_in_hostname_and_params(bad: str) -> None:
    with pytest.raises(AddressError):
        Ehlo(f"client{bad}.example")
    with pytest.raises(AddressError):
        Mail("a@example.com", (("X-PARAM", f"v{bad}"),))
    with pytest.raises(MessageError):
        DSNRequest(envid=f"id{bad}x")


@pytest.mark.parametrize(
    "name",
    [
        "client example",
        "-bad.example",
        "a..b",
        "",
        "x" * 64 + ".example",
        "client.example/x",
        "\u00e9xample.com",
    ],
)
def test_invalid_hostnames(name: str) -> None:
    with pytest.raises(AddressError):
        Ehlo(name)


@pytest.mark.parametrize(
    "name",
    ["localhost", "mail.example.com", "mail.example.com.", "[127.0.0.1]", "[IPv6:::1]", "a-b.c-d.example"],
)
def test_valid_hostnames(name: str) -> None:
    assert Ehlo(name).encode() == f"EHLO {name}\r\n".encode()


def test_non_ascii_address_needs_smtputf8() -> None:
    with pytest.raises(AddressError, match="SMTPUTF8"):
        Rcpt("j\u00f6rg@example.org")
    assert (
        Rcpt("j\u00f6rg@example.org", smtputf8=True).encode()
        == "RCPT TO:<j\u00f6rg@example.org>\r\n".encode()
    )


def test_path_length_limit() -> None:
    Rcpt("a" * 64 + "@" + "b" * 180 + ".example")  # 253 octets: fine
    with pytest.raises(AddressError, match="longer than 254"):
        Rcpt("a" * 64 + "@" + "b" * 190 + ".example")


def test_paths_must_be_bare() -> None:
    with pytest.raises(AddressError, match="bare address"):
        Rcpt("<bob@example.org>")
    with pytest.raises(AddressError, match="bare address"):
        Rcpt("bob")
    with pytest.raises(AddressError, match="empty"):
        Rcpt("")


def test_mail_parameters_only_when_advertised() -> None:
    dsn = DSNRequest(ret="hdrs", envid="id+1=2")
    mail = Mail.for_server("a@example.com", ALL, size=1234, eight_bit=True, smtputf8=True, dsn=dsn)
    assert (
        mail.encode()
        == b"MAIL FROM:<a@example.com> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1+3D2\r\n"
    )
    bare = Mail.for_server("a@example.com", NONE, size=1234, eight_bit=True, dsn=dsn)
    assert bare.encode() == b"MAIL FROM:<a@example.com>\r\n"


def test_rcpt_dsn_parameters_only_when_advertised() -> None:
    dsn = DSNRequest(notify=frozenset({"failure", "delay"}), orcpt=True)
    rcpt = Rcpt.for_server("bob+tag@example.org", ALL, dsn=dsn)
    assert (
        rcpt.encode()
        == b"RCPT TO:<bob+tag@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob+2Btag@example.org\r\n"
    )
    assert Rcpt.for_server("bob@example.org", NONE, dsn=dsn).encode() == b"RCPT TO:<bob@example.org>\r\n"


def test_dsn_validation() -> None:
    with pytest.raises(MessageError, match="notify"):
        DSNRequest(notify=frozenset({"NEVER", "SUCCESS"}))
    with pytest.raises(MessageError, match="notify"):
        DSNRequest(notify=frozenset({"SOMETIMES"}))
    with pytest.raises(MessageError, match="ret"):
        DSNRequest(ret="ALL")
    with pytest.raises(MessageError, match="envid"):
        DSNRequest(envid="x" * 101)
    assert DSNRequest(notify=frozenset({"never"})).notify == {"NEVER"}


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("plain", "plain"),
        ("a+b", "a+2Bb"),
        ("a=b", "a+3Db"),
        ("sp ace", "sp+20ace"),
        ("\u00e9", "+C3+A9"),
        ("~!", "~!"),
    ],
)
def test_xtext(raw: str, encoded: str) -> None:
    assert xtext(raw) == encoded


def test_auth_secrets_never_in_repr() -> None:
    auth = Auth("PLAIN", "AHVzZXIAc2VjcmV0")
    assert "AHVzZXIAc2VjcmV0" not in repr(auth)
    assert auth.encode() == b"AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"
    response = AuthResponse("c2VjcmV0")
    assert "c2VjcmV0" not in repr(response)
    with pytest.raises(ValueError, match="base64"):
        AuthResponse("not base64\r\nMAIL FROM:<x@y>")
    with pytest.raises(ValueError, match="base64"):
        Auth("PLAIN", "abc\r\nQUIT")


def test_command_lines_stay_under_512_octets() -> None:
    longest = Mail("a" * 64 + "@" + "b" * 180 + ".example")
    assert len(longest.encode()) <= 512
