"""SASL for SMTP AUTH (RFC 4954): PLAIN, LOGIN, CRAM-MD5 and XOAUTH2, with no I/O.

An :class:`Authenticator` produces the AUTH command and answers each 334 challenge. The number of
challenges is bounded (a server that keeps sending 334 cannot hold the client in a loop,
RELIABILITY 37), and secrets appear in no repr, error message or log line (RELIABILITY 43).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from .._errors import AuthenticationError
from ._commands import Auth, AuthResponse
from ._phase import Phase
from ._reply import Reply

__all__ = ["AUTH_PREFERENCE", "Authenticator", "choose_mechanism", "MAX_CHALLENGES"]

#: Mechanisms in order of preference. Over TLS the simple ones are as safe and the most widely
#: supported; on a plaintext connection (only with allow_plaintext_auth) CRAM-MD5 at least keeps the
#: password itself off the wire.
AUTH_PREFERENCE: dict[bool, tuple[str, ...]] = {
    True: ("PLAIN", "LOGIN", "CRAM-MD5"),
    False: ("CRAM-MD5", "PLAIN", "LOGIN"),
}
#: A SASL exchange of the supported mechanisms needs at most two challenges; allow some slack.
MAX_CHALLENGES = 5


def choose_mechanism(offered: frozenset[str], *, encrypted: bool, token: bool) -> str | None:
    """The mechanism to use among those the server ``offered``, or None when none fits.

    Args:
        offered: upper-cased mechanism names from the EHLO AUTH line.
        encrypted: the connection is protected by TLS.
        token: the secret is an OAuth2 bearer token (then only XOAUTH2 will do).
    """
    if token:
        return "XOAUTH2" if "XOAUTH2" in offered else None
    for mechanism in AUTH_PREFERENCE[encrypted]:
        if mechanism in offered:
            return mechanism
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Authenticator:
    """One AUTH exchange.

    Args:
        mechanism: one of PLAIN, LOGIN, CRAM-MD5, XOAUTH2.
        username: the authentication identity.
        secret: the password, or the OAuth2 access token for XOAUTH2.
    """

    __slots__ = ("_challenges", "_secret", "_step", "mechanism", "username")

    def __init__(self, mechanism: str, username: str, secret: str) -> None:
        mechanism = mechanism.upper()
        if mechanism not in ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"):
            raise ValueError(f"unsupported SASL mechanism {mechanism!r}")
        for what, value in (("username", username), ("password", secret)):
            if "\x00" in value or (mechanism == "XOAUTH2" and "\x01" in value):
                raise AuthenticationError(
                    f"the {what} contains a control character that SASL {mechanism} forbids"
                )
        self.mechanism = mechanism
        self.username = username
        self._secret = secret
        self._challenges = 0
        self._step = 0

    def __repr__(self) -> str:
        return f"<Authenticator {self.mechanism} user={self.username!r}>"

    def start(self) -> Auth:
        """The AUTH command, with an initial response where the mechanism has one."""
        user, secret = self.username.encode("utf-8"), self._secret.encode("utf-8")
        if self.mechanism == "PLAIN":
            return Auth("PLAIN", _b64(b"\x00" + user + b"\x00" + secret))
        if self.mechanism == "XOAUTH2":
            return Auth("XOAUTH2", _b64(b"user=" + user + b"\x01auth=Bearer " + secret + b"\x01\x01"))
        return Auth(self.mechanism)

    def respond(self, reply: Reply) -> AuthResponse:
        """Answer a 334 challenge.

        Raises:
            AuthenticationError: too many challenges, or a challenge the mechanism cannot answer.
        """
        if reply.code != 334:
            raise ValueError(f"respond() needs a 334 challenge, not {reply.code}")
        self._challenges += 1
        if self._challenges > MAX_CHALLENGES:
            raise AuthenticationError(
                f"server sent more than {MAX_CHALLENGES} AUTH {self.mechanism} challenges", phase=Phase.AUTH
            )
        self._step += 1
        try:
            challenge = base64.b64decode(reply.text.strip(), validate=True)
        except (binascii.Error, ValueError):
            challenge = None
        user, secret = self.username.encode("utf-8"), self._secret.encode("utf-8")
        if self.mechanism == "PLAIN":
            # The initial response was refused as such; some servers want it after an empty 334.
            if self._step > 1:
                raise AuthenticationError("server repeated the AUTH PLAIN challenge", phase=Phase.AUTH)
            return AuthResponse(_b64(b"\x00" + user + b"\x00" + secret))
        if self.mechanism == "LOGIN":
            prompt = (challenge or b"").lower()
            if b"password" in prompt or (self._step == 2 and b"user" not in prompt):
                return AuthResponse(_b64(secret))
            if self._step > 2:
                raise AuthenticationError(
                    "server asked for more than a user name and password", phase=Phase.AUTH
                )
            return AuthResponse(_b64(user))
        if self.mechanism == "CRAM-MD5":
            if challenge is None or self._step > 1:
                raise AuthenticationError("invalid CRAM-MD5 challenge from the server", phase=Phase.AUTH)
            digest = hmac.new(secret, challenge, hashlib.md5).hexdigest()
            return AuthResponse(_b64(user + b" " + digest.encode("ascii")))
        # XOAUTH2: a 334 carries a JSON error; an empty response makes the server send the final reply.
        return AuthResponse("")
