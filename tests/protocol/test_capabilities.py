"""EHLO capabilities (RFC 5321 §4.1.1.1 and the extensions the client uses)."""

from __future__ import annotations

import pytest

from smtprelay._protocol import Capabilities, Reply


def caps(*lines: str) -> Capabilities:
    return Capabilities.from_ehlo(Reply(250, ("mx.test greets client.test", *lines)))


def test_postfix_style_ehlo() -> None:
    c = caps(
        "PIPELINING",
        "SIZE 10240000",
        "VRFY",
        "ETRN",
        "STARTTLS",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "DSN",
        "SMTPUTF8",
        "CHUNKING",
    )
    assert c.greeting == "mx.test greets client.test"
    assert c.pipelining and c.starttls and c.enhanced_status_codes and c.eight_bit_mime
    assert c.dsn and c.smtputf8 and c.chunking
    assert not c.requiretls
    assert c.max_size == 10240000
    assert c["size"] == "10240000"
    assert "Pipelining" in c and "pipelining" in c
    assert c.auth_mechanisms == frozenset()


@pytest.mark.parametrize(
    ("line", "expected"), [("SIZE 0", None), ("SIZE", None), ("SIZE abc", None), ("SIZE 1000", 1000)]
)
def test_size(line: str, expected: int | None) -> None:
    assert caps(line).max_size == expected


def test_no_size_means_no_limit() -> None:
    assert caps("PIPELINING").max_size is None


def test_auth_mechanisms_old_and_new_syntax_merge() -> None:
    c = caps("AUTH PLAIN LOGIN", "AUTH=LOGIN CRAM-MD5", "auth xoauth2")
    assert c.auth_mechanisms == {"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"}


def test_auth_equals_only() -> None:
    assert caps("AUTH=PLAIN LOGIN").auth_mechanisms == {"PLAIN", "LOGIN"}


def test_limits_rfc9422() -> None:
    c = caps("LIMITS RCPTMAX=100 MAILMAX=1000 RCPTDOMAINMAX=5 BOGUS=x")
    assert c.limits == {"RCPTMAX": 100, "MAILMAX": 1000, "RCPTDOMAINMAX": 5}
    assert c.rcpt_max == 100
    assert c.mail_max == 1000


def test_no_limits() -> None:
    c = caps("PIPELINING")
    assert c.rcpt_max is None and c.mail_max is None and dict(c.limits) == {}


def test_requiretls() -> None:
    assert caps("REQUIRETLS").requiretls


def test_lines_that_are_not_keywords_are_ignored() -> None:
    c = caps("-BAD", "", "X_UNDERSCORE", "GOOD-ONE param")
    assert list(c) == ["GOOD-ONE"]
    assert c["good-one"] == "param"


def test_helo_means_no_extensions() -> None:
    c = Capabilities()
    assert len(c) == 0 and not c.pipelining and c.max_size is None


def test_read_only() -> None:
    c = caps("PIPELINING")
    with pytest.raises(TypeError):
        c["X"] = "y"  # type: ignore[index]
