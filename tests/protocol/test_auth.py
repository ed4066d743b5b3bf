"""SASL mechanisms, bounded challenges, no secrets in reprs (RELIABILITY 37, 43)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from smtprelay import AuthenticationError
from smtprelay._protocol import Authenticator, Reply, choose_mechanism


def challenge(text: bytes) -> Reply:
    return Reply(334, (base64.b64encode(text).decode(),))


def decode(data: str | None) -> bytes:
    assert data is not None
    return base64.b64decode(data)


def test_plain() -> None:
    auth = Authenticator("PLAIN", "user", "p\u00e4ss")
    assert decode(auth.start().initial_response) == b"\x00user\x00p\xc3\xa4ss"


def test_plain_after_empty_challenge_once() -> None:
    auth = Authenticator("PLAIN", "user", "pass")
    auth.start()
    assert decode(auth.respond(Reply(334, ("",))).data) == b"\x00user\x00pass"
    with pytest.raises(AuthenticationError, match="repeated"):
        auth.respond(Reply(334, ("",)))


def test_login() -> None:
    auth = Authenticator("LOGIN", "user", "pass")
    assert auth.start().initial_response is None
    assert decode(auth.respond(challenge(b"Username:")).data) == b"user"
    assert decode(auth.respond(challenge(b"Password:")).data) == b"pass"


def test_login_with_unusual_prompts_answers_in_order() -> None:
    auth = Authenticator("LOGIN", "user", "pass")
    auth.start()
    assert decode(auth.respond(challenge(b"who?")).data) == b"user"
    assert decode(auth.respond(challenge(b"secret?")).data) == b"pass"
    with pytest.raises(AuthenticationError, match="more than"):
        auth.respond(challenge(b"and?"))


def test_cram_md5() -> None:
    auth = Authenticator("CRAM-MD5", "tim", "tanstaaftanstaaf")
    nonce = b"<1896.697170952@postoffice.reston.mci.net>"  # RFC 2195's example
    response = decode(auth.respond(challenge(nonce)).data)
    assert response == b"tim b913a602c7eda7a495b4e6e7334d3890"
    assert response.split()[1].decode() == hmac.new(b"tanstaaftanstaaf", nonce, hashlib.md5).hexdigest()


def test_xoauth2() -> None:
    auth = Authenticator("XOAUTH2", "someone@example.com", "ya29.token")
    assert (
        decode(auth.start().initial_response) == b"user=someone@example.com\x01auth=Bearer ya29.token\x01\x01"
    )
    error = base64.b64encode(b'{"status":"401"}')
    assert auth.respond(Reply(334, (error.decode(),))).data == ""


def test_endless_challenges_are_bounded() -> None:
    auth = Authenticator("XOAUTH2", "u", "t")
    auth.start()
    for _ in range(5):
        auth.respond(Reply(334, ("",)))
    with pytest.raises(AuthenticationError, match="more than 5"):
        auth.respond(Reply(334, ("",)))


def test_secrets_never_in_repr_or_errors() -> None:
    auth = Authenticator("PLAIN", "user", "hunter2")
    assert "hunter2" not in repr(auth)
    assert "hunter2" not in repr(auth.start())
    with pytest.raises(AuthenticationError) as info:
        Authenticator("PLAIN", "user", "hun\x00ter2")
    assert "hun" not in str(info.value)


@pytest.mark.parametrize(
    ("offered", "encrypted", "token", "expected"),
    [
        ({"PLAIN", "LOGIN", "CRAM-MD5"}, True, False, "PLAIN"),
        ({"LOGIN", "CRAM-MD5"}, True, False, "LOGIN"),
        ({"PLAIN", "LOGIN", "CRAM-MD5"}, False, False, "CRAM-MD5"),
        ({"PLAIN"}, False, False, "PLAIN"),
        ({"XOAUTH2", "PLAIN"}, True, True, "XOAUTH2"),
        ({"PLAIN"}, True, True, None),
        ({"GSSAPI", "NTLM"}, True, False, None),
    ],
)
def test_choose_mechanism(offered: set[str], encrypted: bool, token: bool, expected: str | None) -> None:
    assert choose_mechanism(frozenset(offered), encrypted=encrypted, token=token) == expected


def test_unknown_mechanism() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Authenticator("GSSAPI", "u", "p")
