"""SMTP commands as frozen values, and their encoding to bytes.

Every value that ends up on a command line is checked when the command is built: CR, LF, NUL and
every other control character are refused with a ``ValueError`` subclass before a single byte is
produced (RELIABILITY 24; aiosmtplib 5.1.1 "before anything is written"). Extension parameters are
produced only for extensions the server advertised (``MailParams.for_server``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from .._errors import AddressError, MessageError
from ._capabilities import Capabilities
from ._phase import Phase

__all__ = [
    "Command",
    "Greeting",
    "Ehlo",
    "Helo",
    "StartTLS",
    "Auth",
    "AuthResponse",
    "Mail",
    "Rcpt",
    "Data",
    "MessageData",
    "Bdat",
    "Rset",
    "Noop",
    "Quit",
    "DSNRequest",
    "xtext",
    "check_hostname",
    "MAX_COMMAND_LINE",
    "MAX_PATH",
]

#: RFC 5321 §4.5.3.1.4: a command line is at most 512 octets, CRLF included (extensions may add parameters).
MAX_COMMAND_LINE = 512
#: RFC 5321 §4.5.3.1.3: a reverse- or forward-path is at most 256 octets.
MAX_PATH = 256

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?"
    r"|\[[0-9.]+\]|\[IPv6:[0-9A-Fa-f:.]+\]"
)
_XTEXT_SAFE = frozenset(range(0x21, 0x7F)) - {ord("+"), ord("=")}
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})


def _refuse_controls(value: str, what: str) -> None:
    match = _CONTROL.search(value)
    if match is not None:
        raise AddressError(
            f"{what} contains the control character {match.group()!r}: {value!r}", field=what, address=value
        )


def check_hostname(name: str, what: str = "local hostname") -> str:
    """Validate an EHLO/HELO name: a domain or an address literal, ASCII, no control characters."""
    _refuse_controls(name, what)
    if not name.isascii():
        raise AddressError(f"{what} must be ASCII (IDNA-encode it): {name!r}", field=what, address=name)
    if len(name) > 255 or not _HOSTNAME.fullmatch(name):
        raise AddressError(
            f"{what} is not a domain name or address literal: {name!r}", field=what, address=name
        )
    return name


def xtext(value: str) -> str:
    """Encode ``value`` as RFC 3461 §4 xtext: printable ASCII except '+' and '=' as is, the rest as +XX."""
    return "".join(chr(b) if b in _XTEXT_SAFE else f"+{b:02X}" for b in value.encode("utf-8"))


def _check_path(address: str, what: str, *, smtputf8: bool) -> str:
    _refuse_controls(address, what)
    if not address.isascii() and not smtputf8:
        raise AddressError(
            f"{what} {address!r} is not ASCII and the session does not use SMTPUTF8",
            field=what,
            address=address,
        )
    if len(address.encode("utf-8")) > MAX_PATH - 2:
        raise AddressError(
            f"{what} is longer than {MAX_PATH - 2} octets: {address!r}", field=what, address=address
        )
    if address and ("@" not in address or address.startswith("<") or address.endswith(">")):
        raise AddressError(f"{what} is not a bare address: {address!r}", field=what, address=address)
    return address


@dataclass(frozen=True, slots=True)
class DSNRequest:
    """Delivery Status Notification parameters (RFC 3461), sent only to servers that advertise DSN.

    Attributes:
        notify: ``{"NEVER"}`` or a subset of ``{"SUCCESS", "FAILURE", "DELAY"}``; None: server default.
        ret: ``"FULL"`` or ``"HDRS"``: what a bounce returns.
        envid: an envelope identifier echoed in DSNs (at most 100 characters, printable ASCII).
        orcpt: send ORCPT=rfc822;<recipient> so DSNs name the original recipient.
    """

    notify: frozenset[str] | None = None
    ret: str | None = None
    envid: str | None = None
    orcpt: bool = False

    def __post_init__(self) -> None:
        if self.notify is not None:
            notify = frozenset(n.upper() for n in self.notify)
            if not notify or (notify != {"NEVER"} and not notify <= _NOTIFY):
                raise MessageError(
                    f"DSN notify must be NEVER or SUCCESS/FAILURE/DELAY: {sorted(notify)}", field="dsn"
                )
            object.__setattr__(self, "notify", notify)
        if self.ret is not None and self.ret.upper() not in ("FULL", "HDRS"):
            raise MessageError(f"DSN ret must be FULL or HDRS, not {self.ret!r}", field="dsn")
        if self.envid is not None and (
            _CONTROL.search(self.envid) or not self.envid.isascii() or len(self.envid) > 100
        ):
            raise MessageError(
                f"DSN envid must be printable ASCII, at most 100 characters: {self.envid!r}", field="dsn"
            )


class Command:
    """Base of every command. ``phase`` names the timeout that covers its reply."""

    __slots__ = ()
    _phase: ClassVar[Phase]
    #: RFC 2920 §3.1: commands whose outcome changes what may follow can only end a pipelined group.
    ends_group: ClassVar[bool] = False

    @property
    def phase(self) -> Phase:
        """The session phase whose timeout covers the wait for this command's reply."""
        return self._phase

    def encode(self) -> bytes:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Greeting(Command):
    """Pseudo-command standing for the server's opening 220, which answers the connection itself."""

    _phase: ClassVar[Phase] = Phase.GREETING
    ends_group: ClassVar[bool] = True

    def encode(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class _Hello(Command):
    """EHLO and HELO: the client's name, checked to be a domain or an address literal."""

    hostname: str
    _verb: ClassVar[bytes] = b""
    _phase: ClassVar[Phase] = Phase.EHLO
    ends_group: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_hostname(self.hostname)

    def encode(self) -> bytes:
        return self._verb + b" " + self.hostname.encode("ascii") + b"\r\n"


@dataclass(frozen=True, slots=True)
class Ehlo(_Hello):
    _verb: ClassVar[bytes] = b"EHLO"


@dataclass(frozen=True, slots=True)
class Helo(_Hello):
    _verb: ClassVar[bytes] = b"HELO"


@dataclass(frozen=True, slots=True)
class StartTLS(Command):
    _phase: ClassVar[Phase] = Phase.STARTTLS
    ends_group: ClassVar[bool] = True  # RFC 3207 §4: nothing may follow STARTTLS in a group

    def encode(self) -> bytes:
        return b"STARTTLS\r\n"


@dataclass(frozen=True, slots=True)
class Auth(Command):
    """AUTH with an optional initial response (already base64; never shown in reprs)."""

    mechanism: str
    initial_response: str | None = field(default=None, repr=False)
    _phase: ClassVar[Phase] = Phase.AUTH
    ends_group: ClassVar[bool] = True  # RFC 4954 §4: AUTH is the last command of a group

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z0-9_-]{1,20}", self.mechanism):
            raise ValueError(f"not a SASL mechanism name: {self.mechanism!r}")
        if self.initial_response is not None and not re.fullmatch(
            r"[A-Za-z0-9+/]*={0,2}|=", self.initial_response
        ):
            raise ValueError("AUTH initial response must be base64")

    def encode(self) -> bytes:
        if self.initial_response is None:
            return f"AUTH {self.mechanism}\r\n".encode("ascii")
        return f"AUTH {self.mechanism} {self.initial_response}\r\n".encode("ascii")


@dataclass(frozen=True, slots=True)
class AuthResponse(Command):
    """One SASL response line after a 334 challenge (base64, or ``*`` to cancel)."""

    data: str = field(repr=False)
    _phase: ClassVar[Phase] = Phase.AUTH
    ends_group: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}|\*", self.data):
            raise ValueError("SASL response must be base64 or '*'")

    def encode(self) -> bytes:
        return self.data.encode("ascii") + b"\r\n"


def _params(params: tuple[tuple[str, str | None], ...]) -> str:
    out = []
    for key, value in params:
        out.append(f" {key}" if value is None else f" {key}={value}")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Mail(Command):
    """MAIL FROM. ``sender`` is the bare reverse-path ("" for the null sender of bounces)."""

    sender: str
    params: tuple[tuple[str, str | None], ...] = ()
    smtputf8: bool = False
    _phase: ClassVar[Phase] = Phase.MAIL

    def __post_init__(self) -> None:
        _check_path(self.sender, "envelope sender", smtputf8=self.smtputf8)
        for key, value in self.params:
            _refuse_controls(key + (value or ""), "MAIL parameter")

    @classmethod
    def for_server(
        cls,
        sender: str,
        capabilities: Capabilities,
        *,
        size: int | None = None,
        eight_bit: bool = False,
        smtputf8: bool = False,
        dsn: DSNRequest | None = None,
    ) -> Mail:
        """Build MAIL with the parameters the server's advertised extensions allow, and only those.

        The caller decides beforehand whether a needed extension is missing (SMTPUTF8, 8BITMIME):
        this only declares what is both needed and offered.
        """
        params: list[tuple[str, str | None]] = []
        if size is not None and "SIZE" in capabilities:
            params.append(("SIZE", str(size)))
        if eight_bit and capabilities.eight_bit_mime:
            params.append(("BODY", "8BITMIME"))
        if smtputf8 and capabilities.smtputf8:
            params.append(("SMTPUTF8", None))
        if dsn is not None and capabilities.dsn:
            if dsn.ret is not None:
                params.append(("RET", dsn.ret.upper()))
            if dsn.envid is not None:
                params.append(("ENVID", xtext(dsn.envid)))
        return cls(sender, tuple(params), smtputf8=smtputf8 and capabilities.smtputf8)

    def encode(self) -> bytes:
        return f"MAIL FROM:<{self.sender}>{_params(self.params)}\r\n".encode(
            "utf-8" if self.smtputf8 else "ascii"
        )


@dataclass(frozen=True, slots=True)
class Rcpt(Command):
    """RCPT TO with a bare forward-path."""

    recipient: str
    params: tuple[tuple[str, str | None], ...] = ()
    smtputf8: bool = False
    _phase: ClassVar[Phase] = Phase.RCPT

    def __post_init__(self) -> None:
        _check_path(self.recipient, "recipient", smtputf8=self.smtputf8)
        if not self.recipient:
            raise AddressError("recipient must not be empty", field="recipient", address="")
        for key, value in self.params:
            _refuse_controls(key + (value or ""), "RCPT parameter")

    @classmethod
    def for_server(
        cls,
        recipient: str,
        capabilities: Capabilities,
        *,
        smtputf8: bool = False,
        dsn: DSNRequest | None = None,
    ) -> Rcpt:
        """Build RCPT with NOTIFY/ORCPT only when the server advertised DSN."""
        params: list[tuple[str, str | None]] = []
        if dsn is not None and capabilities.dsn:
            if dsn.notify is not None:
                order = ("NEVER", "SUCCESS", "FAILURE", "DELAY")
                params.append(("NOTIFY", ",".join(n for n in order if n in dsn.notify)))
            if dsn.orcpt and recipient.isascii():
                params.append(("ORCPT", "rfc822;" + xtext(recipient)))
        return cls(recipient, tuple(params), smtputf8=smtputf8 and capabilities.smtputf8)

    def encode(self) -> bytes:
        return f"RCPT TO:<{self.recipient}>{_params(self.params)}\r\n".encode(
            "utf-8" if self.smtputf8 else "ascii"
        )


@dataclass(frozen=True, slots=True)
class Data(Command):
    _phase: ClassVar[Phase] = Phase.DATA
    ends_group: ClassVar[bool] = True

    def encode(self) -> bytes:
        return b"DATA\r\n"


@dataclass(frozen=True, slots=True)
class MessageData(Command):
    """The message content after 354, dot-stuffed and terminated; its reply is the one that counts.

    RFC 2920 §3.1: message content may be the first "command" of a group, so commands may follow it.
    """

    payload: bytes = field(repr=False)
    _phase: ClassVar[Phase] = Phase.END_OF_DATA

    def encode(self) -> bytes:
        return self.payload

    def __repr__(self) -> str:
        return f"MessageData(<{len(self.payload)} bytes>)"


@dataclass(frozen=True, slots=True)
class Bdat(Command):
    """BDAT (RFC 3030) with its chunk. ``last`` marks the final chunk of the message."""

    chunk: bytes = field(repr=False)
    last: bool = False
    _phase: ClassVar[Phase] = Phase.DATA_BLOCK

    def encode(self) -> bytes:
        return f"BDAT {len(self.chunk)}{' LAST' if self.last else ''}\r\n".encode("ascii") + self.chunk

    @property
    def phase(self) -> Phase:
        return Phase.END_OF_DATA if self.last else Phase.DATA_BLOCK

    def __repr__(self) -> str:
        return f"Bdat(<{len(self.chunk)} bytes>, last={self.last})"


@dataclass(frozen=True, slots=True)
class Rset(Command):
    _phase: ClassVar[Phase] = Phase.RSET

    def encode(self) -> bytes:
        return b"RSET\r\n"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    _phase: ClassVar[Phase] = Phase.NOOP
    ends_group: ClassVar[bool] = True

    def encode(self) -> bytes:
        return b"NOOP\r\n"


@dataclass(frozen=True, slots=True)
class Quit(Command):
    _phase: ClassVar[Phase] = Phase.QUIT
    ends_group: ClassVar[bool] = True

    def encode(self) -> bytes:
        return b"QUIT\r\n"
