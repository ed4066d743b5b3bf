"""What to send: :class:`Message` and :class:`Attachment`.

A Message is validated and serialized once, at construction, and is immutable afterwards:
``as_bytes()`` returns the same bytes (same Message-ID, same Date) on every call, which is what
retries across MX hosts and the Outbox need.

Strategy:
    Every check on input runs first, the same for every writer. The bytes are then written by
    ``_mime_fast``, which writes the MIME shapes a Message has (text/plain, text/html,
    multipart/alternative, /related and /mixed) and the common header forms directly: it is
    ten times faster than building an ``email`` object tree, and serialization must not be
    what limits a sender (issue 5). The standard library's ``email`` package stays the
    reference (DESIGN.md): ``Message._reference`` builds any message with it alone, and
    tests/test_message_fast.py parses the output of both back and compares them.

    The top-level header fields are folded one by one. Forms the fast writer covers (plain
    ASCII folded at blanks, RFC 2047 encoded words, mailboxes with atom, quoted or single
    encoded-word display names) are exact by construction. Others (non-ASCII text in an
    SMTPUTF8 message, long non-ASCII display names, words over 998 octets) go through the
    library's own folder and are read back before they are used (unstructured text by the
    library's parser, addresses by our strict parser, which has the library's parser check the
    addr-specs): the field must mean exactly what was asked for (the same text, the same
    mailboxes), stay within 998 octets per line (RFC 5322 2.1.1) and be ASCII unless SMTPUTF8
    is needed. A field that fails is folded again as RFC 2047 encoded words; if that fails too,
    an error is raised. What the library folds is cached (bounded), as batches repeat their
    subjects and names. Body part headers are always ASCII (RFC 2231 filenames), so only the
    top-level fields can ever be 8-bit. Finally the whole serialization is checked, whichever
    writer made it: CRLF only, no line over 998 octets, no NUL, and exactly the header fields
    that were set -- nothing injected can reach the wire.

    Bodies are re-encoded, never refused: text with only short ASCII lines goes as 7bit;
    anything else (long lines, non-ASCII, NUL and other control characters) goes as
    quoted-printable or base64, whichever is shorter, so the output is 7-bit clean.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.errors
import email.generator
import email.message
import email.policy
import email.utils
import functools
import io
import mimetypes
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import headerregistry
from email.header import Header, decode_header, make_header
from email.message import EmailMessage, MIMEPart
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeAlias, cast

from . import _mime_fast
from ._address import (
    Address,
    _validate_addr_spec,
    describe_char,
    parse_address_list,
)
from ._errors import AddressError, MessageError

__all__ = ["Attachment", "Message"]

AddressInput: TypeAlias = "str | Address"
AddressesInput: TypeAlias = "str | Address | Iterable[str | Address] | None"
HeadersInput: TypeAlias = "Mapping[str, str] | Iterable[tuple[str, str]] | None"
_Policy: TypeAlias = "email.policy.EmailPolicy[EmailMessage]"

#: RFC 5322 2.1.1: lines MUST be no more than 998 characters, excluding the CRLF.
MAX_LINE_OCTETS: Final = 998
# Folding target (RFC 5322 2.1.1 "SHOULD be no more than 78").
_FOLD_AT: Final = 78

_POLICY: Final = email.policy.SMTP
_POLICY_UTF8: Final = email.policy.SMTPUTF8
_READ_POLICY: Final = email.policy.default
_WRAP_POLICY: Final = email.policy.compat32.clone(linesep="\r\n")

# Header values we build: no C0 control but TAB, no DEL, no C1 control, no Unicode line or
# paragraph separator (str.splitlines() breaks lines on all of these).
_VALUE_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# Header values of a wrapped message, after RFC 2047 decoding: no C0 control but TAB, no DEL.
_WRAPPED_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
# RFC 5322 3.6.8: field-name = 1*ftext, printable ASCII except ":". Capped so "Name: " fits a line.
_FIELD_NAME = re.compile(r"[!-9;-~]{1,76}\Z")
_FIELD_NAME_BYTES = re.compile(rb"[!-9;-~]+\Z")
# RFC 6838 4.2 restricted-name characters, for type and subtype.
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\Z")
# RFC 5322 3.6.4 msg-id, without obsolete forms and without quoting.
_MSG_ID = re.compile(r"<[!#-'*-9=?A-Z^-~.]+@[!#-'*-9=?A-Z^-~.]+>\Z")
_CONTENT_ID = re.compile(r"[!#-'*-9=?-Z^-~.]{1,250}\Z")
_NEWLINES = re.compile(rb"\r\n|\r|\n")
# Values written without the email package's folder: they cannot hold an encoded word ("=?"
# is excluded), a line break or a non-ASCII character, and they start and end with a printable.
_PLAIN_TEXT = re.compile(r"(?!.*=\?)[!-~]([ \t]*[!-~])*\Z|\Z")

# headers= names that have their own argument, are structural, or belong to the envelope.
_ARGUMENT_FIELDS: Final = {"from": "sender", "to": "to", "cc": "cc", "bcc": "bcc", "reply-to": "reply_to"}
_STRUCTURAL_FIELDS: Final = frozenset(
    {"content-type", "content-transfer-encoding", "mime-version", "content-disposition", "content-id"}
)
# RFC 5322 3.6: fields that may occur at most once.
_UNIQUE_FIELDS: Final = frozenset(
    {
        "date",
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "message-id",
        "in-reply-to",
        "references",
        "subject",
    }
)
# Media types of compressed files, by the encoding mimetypes.guess_type() reports.
_COMPRESSION_TYPES: Final = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}


def _check_optional_text(value: object, field: str) -> str | None:
    return None if value is None else _check_text(value, field)


def _check_text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise MessageError(f"{field}: text is not valid Unicode (lone surrogate)", field=field) from err
    return value


def _check_header_value(name: str, value: object, field: str) -> str:
    """Validate one header value we are asked to write; return it without surrounding blanks."""
    text = _check_text(value, field)
    bad = _VALUE_FORBIDDEN.search(text)
    if bad:
        raise MessageError(
            f"{field}: header value contains a control character ({describe_char(bad.group())})", field=field
        )
    if "=?" in text:
        # The email package decodes RFC 2047 encoded words in what it is given; a CR or LF
        # hidden in one would be written out raw (CVE-2024-6923, CVE-2026-1299).
        decoded = _decode_words(name, text)
        bad = _VALUE_FORBIDDEN.search(decoded)
        if bad:
            raise MessageError(
                f"{field}: header value hides a control character ({describe_char(bad.group())})"
                " in an RFC 2047 encoded word",
                field=field,
            )
    return text.strip(" \t")


def _decode_words(name: str, text: str) -> str:
    """Every decoding of RFC 2047 words a reader might apply, joined for checking.

    Two decoders: the modern header parser and the legacy ``email.header`` one, which
    differ on encoded words inside quoted strings and next to other text.
    """
    try:
        decoded = [str(_READ_POLICY.header_factory(name, text))]
    except ValueError:
        # headerregistry.Address refuses a decoded display name holding CR or LF.
        decoded = ["\r"]
    # Undecodable words stay as they are, and were checked as such.
    with contextlib.suppress(email.errors.HeaderParseError, LookupError, UnicodeError, ValueError):
        decoded.append(str(make_header(decode_header(text))))
    return " ".join(decoded)


def _check_field_name(name: object, field: str = "headers") -> str:
    if not isinstance(name, str):
        raise TypeError(f"header names must be str, not {type(name).__name__}")
    if not _FIELD_NAME.match(name):
        raise MessageError(
            f"{field}: {name!r} is not a valid header field name (RFC 5322 3.6.8: 1-76 printable"
            " ASCII characters, no spaces, no ':')",
            field=name,
        )
    return name


# --- attachments -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Attachment:
    """A file attached to a :class:`Message`, or an inline image referenced from its HTML.

    Args:
        data: the content, as bytes (``bytearray`` and ``memoryview`` are copied to bytes).
        filename: the name shown to the recipient; non-ASCII names are encoded per RFC 2231.
        content_type: ``"type/subtype"``; guessed from ``filename`` when None (compressed
            files get their compression's type; unknown extensions ``application/octet-stream``).
        inline: True for an image or other part shown inside the HTML body (``cid:`` URL).
        content_id: the Content-ID, with or without angle brackets. Generated for inline
            attachments when None.

    Attributes:
        content_id: the Content-ID without angle brackets, for ``<img src="cid:...">``, or None.

    Raises:
        MessageError: an empty filename, a control character in the filename, an invalid or
            multipart/message content type, or an invalid content ID.
        TypeError: data is not bytes-like or filename is not a str.
    """

    data: bytes
    filename: str
    content_type: str
    inline: bool
    content_id: str | None

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        filename: str,
        *,
        content_type: str | None = None,
        inline: bool = False,
        content_id: str | None = None,
    ) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"attachment data must be bytes, not {type(data).__name__} (encode text first)")
        if not isinstance(filename, str):
            raise TypeError(f"attachment filename must be a str, not {type(filename).__name__}")
        _check_text(filename, "filename")
        bad = _VALUE_FORBIDDEN.search(filename) or re.search("\t", filename)
        if bad:
            raise MessageError(
                f"filename: {filename!r} contains a control character ({describe_char(bad.group())})",
                field="filename",
            )
        if not filename.strip():
            raise MessageError("filename: an attachment needs a non-empty filename", field="filename")
        content_type = _guess_type(filename) if content_type is None else _check_content_type(content_type)
        if content_id is not None:
            content_id = _check_content_id(content_id)
        elif inline:
            content_id = f"{secrets.token_hex(16)}@smtprelay"
        object.__setattr__(self, "data", bytes(data))
        object.__setattr__(self, "filename", filename)
        object.__setattr__(self, "content_type", content_type)
        object.__setattr__(self, "inline", bool(inline))
        object.__setattr__(self, "content_id", content_id)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        filename: str | None = None,
        content_type: str | None = None,
        inline: bool = False,
        content_id: str | None = None,
    ) -> Attachment:
        """Read a file into an Attachment.

        Args:
            path: the file to read (all of it, now).
            filename: the name shown to the recipient; the file's own name when None.
            content_type, inline, content_id: as for :class:`Attachment`.

        Returns:
            The attachment.

        Raises:
            OSError: the file cannot be read.
            MessageError: as for :class:`Attachment`.
        """
        file = Path(path)
        data = file.read_bytes()
        return cls(
            data,
            file.name if filename is None else filename,
            content_type=content_type,
            inline=inline,
            content_id=content_id,
        )

    def __repr__(self) -> str:
        extra = f", inline=True, content_id={self.content_id!r}" if self.inline else ""
        return (
            f"Attachment(filename={self.filename!r}, content_type={self.content_type!r},"
            f" size={len(self.data)}{extra})"
        )


def _guess_type(filename: str) -> str:
    guessed, encoding = mimetypes.guess_type(filename, strict=False)
    if encoding is not None:
        return _COMPRESSION_TYPES.get(encoding, "application/octet-stream")
    if guessed is None or guessed.split("/")[0] in ("multipart", "message"):
        # message/rfc822 may not be base64-encoded (RFC 2046 5.2.1): send the bytes opaquely.
        return "application/octet-stream"
    return guessed.lower() if _MEDIA_TYPE.match(guessed.lower()) else "application/octet-stream"


def _check_content_type(content_type: object) -> str:
    if not isinstance(content_type, str):
        raise TypeError(f"content_type must be a str, not {type(content_type).__name__}")
    value = content_type.strip().lower()
    if not _MEDIA_TYPE.match(value):
        raise MessageError(
            f"content_type: {content_type!r} is not a media type of the form 'type/subtype'"
            " (parameters are not accepted)",
            field="content_type",
        )
    if value.startswith(("multipart/", "message/")):
        raise MessageError(
            f"content_type: {value!r} cannot be used for attachment bytes"
            " (use application/octet-stream to attach a raw email)",
            field="content_type",
        )
    return value


def _check_content_id(content_id: object) -> str:
    if not isinstance(content_id, str):
        raise TypeError(f"content_id must be a str, not {type(content_id).__name__}")
    value = content_id.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    if not _CONTENT_ID.match(value):
        raise MessageError(
            f"content_id: {content_id!r} is not a valid Content-ID (printable ASCII, no spaces,"
            " quotes, brackets or parentheses)",
            field="content_id",
        )
    return value


# --- header folding ----------------------------------------------------------------------------


class _FoldedField(NamedTuple):
    """A header field already folded and checked, written to the wire as it is."""

    name: str
    folded: str


def _lines_ok(folded: str, name: str, utf8: bool) -> bool:
    """True when ``folded`` is one well-formed field: right name, CRLF-only, short lines."""
    if not folded.startswith(f"{name}:") or not folded.endswith("\r\n"):
        return False
    if not utf8 and not folded.isascii():
        return False
    lines = folded[:-2].split("\r\n")
    if any("\r" in line or "\n" in line for line in lines):
        return False
    if any(line[:1] not in (" ", "\t") or not line.strip(" \t") for line in lines[1:]):
        return False
    return all(len(line.encode("utf-8")) <= MAX_LINE_OCTETS for line in lines)


def _unfold(folded: str, name: str) -> str:
    # What a parser hands to the header factory: blanks that start the first line's value are
    # stripped (email.policy.EmailPolicy.header_source_parse), line breaks removed
    # (header_fetch_parse); a continuation line keeps the blank it starts with.
    lines = folded[len(name) + 1 : -2].split("\r\n")
    return lines[0].lstrip(" \t") + "".join(lines[1:])


def _fold_text(
    name: str, value: str, policy: _Policy, field: str, *, reference: bool = False
) -> _FoldedField:
    """Fold an unstructured field (RFC 5322 3.2.5) so that it reads back as ``value``.

    ``reference``: use the standard library's folder only (what the fast writer is tested against).
    """
    if reference:
        return _fold_text_library.__wrapped__(name, value, bool(policy.utf8), field)
    if _PLAIN_TEXT.match(value) and len(name) + len(value) <= _FOLD_AT - 2:
        # Fast path, exact by construction: printable ASCII on one short line, nothing to decode.
        return _FoldedField(name, f"{name}: {value}\r\n")
    folded = _mime_fast.fold_unstructured(name, value, utf8=bool(policy.utf8))
    if folded is not None:
        return _FoldedField(name, folded)
    fold = _fold_text_library if len(value) <= _CACHED_CHARS else _fold_text_library.__wrapped__
    return fold(name, value, bool(policy.utf8), field)


# The standard library's folding, proven by reading back, costs 100-500 us a field; its result
# depends on its arguments only, and a batch repeats its subjects and names: a cache, bounded
# in entries and, by leaving long values out, in size (functools.lru_cache is thread-safe;
# errors are not cached).
_CACHED_CHARS: Final = 1000


@functools.lru_cache(maxsize=1024)
def _fold_text_library(name: str, value: str, utf8: bool, field: str) -> _FoldedField:
    policy = _POLICY_UTF8 if utf8 else _POLICY

    def library() -> str:
        return str(policy.header_factory(name, value).fold(policy=policy))

    def encoded_words() -> str:
        # The whole value as UTF-8 encoded words, which can be split anywhere.
        encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n", maxlinelen=_FOLD_AT)
        return f"{name}: {encoded}\r\n"

    for make in (library, encoded_words):
        folded = make()
        if (
            _lines_ok(folded, name, utf8)
            and str(_READ_POLICY.header_factory(name, _unfold(folded, name))) == value
        ):
            return _FoldedField(name, folded)
    raise MessageError(
        f"{field}: the {name} header cannot be written so that it reads back unchanged", field=field
    )


def _fold_addresses(
    name: str, addresses: Sequence[Address], policy: _Policy, field: str, *, reference: bool = False
) -> _FoldedField:
    """Fold an address field so that a reader finds exactly these mailboxes in it.

    ``reference``: use the standard library's folder only (what the fast writer is tested against).
    """
    if reference:
        return _fold_addresses_library.__wrapped__(name, tuple(addresses), bool(policy.utf8), field)
    # Exact by construction: atoms, quoted strings or single encoded words.
    folded = _mime_fast.fold_mailboxes(
        name, [(a.display_name, a.addr_spec) for a in addresses], utf8=bool(policy.utf8)
    )
    if folded is not None:
        return _FoldedField(name, folded)
    cached = sum(len(a.addr_spec) + len(a.display_name) for a in addresses) <= _CACHED_CHARS
    fold = _fold_addresses_library if cached else _fold_addresses_library.__wrapped__
    return fold(name, tuple(addresses), bool(policy.utf8), field)


@functools.lru_cache(maxsize=1024)
def _fold_addresses_library(
    name: str, addresses: tuple[Address, ...], utf8: bool, field: str
) -> _FoldedField:
    """The standard library's folding, read back with the strict parser (cached, see above)."""
    policy = _POLICY_UTF8 if utf8 else _POLICY
    want = [(a.display_name, a.addr_spec) for a in addresses]

    def library() -> str:
        objects = [
            headerregistry.Address(display_name=a.display_name, username=a.local_part, domain=a.domain)
            for a in addresses
        ]
        return str(policy.header_factory(name, objects).fold(policy=policy))

    def encoded_words() -> str:
        mailboxes = []
        for a in addresses:
            if a.display_name:
                phrase = Header(a.display_name, "utf-8").encode(linesep="\r\n", maxlinelen=_FOLD_AT - 2)
                mailboxes.append(f"{phrase}\r\n <{a.addr_spec}>")
            else:
                mailboxes.append(a.addr_spec)
        return f"{name}: " + ",\r\n ".join(mailboxes) + "\r\n"

    for make in (library, encoded_words):
        folded = make()
        if not _lines_ok(folded, name, utf8):
            continue
        # Read back with the strict parser, which also has the standard library check the
        # addresses. Not with the standard library alone: its phrase reader keeps the space
        # between adjacent encoded words, which RFC 2047 6.2 says to drop, and so would refuse
        # every long non-ASCII display name the library itself folded correctly.
        try:
            got = parse_address_list(_unfold(folded, name), allow_groups=False)
        except AddressError:
            continue
        if [(a.display_name, a.addr_spec) for a in got] == want:
            return _FoldedField(name, folded)
    raise AddressError(
        f"{field}: the {name} header cannot be written so that it reads back unchanged", field=field
    )


def _fold_simple(name: str, value: str) -> _FoldedField:
    # For values validated as short printable ASCII without spaces to fold at (Message-ID, Date).
    return _FoldedField(name, f"{name}: {value}\r\n")


# --- bodies -------------------------------------------------------------------------------------


def _text_part(text: str, subtype: str, policy: _Policy) -> MIMEPart:
    data = text.encode("utf-8")
    cte = _mime_fast.choose_text_cte(data, data.splitlines())
    part = MIMEPart(policy=policy)
    part.set_content(text, subtype=subtype, charset="utf-8", cte=cte)
    return part


def _attachment_part(attachment: Attachment, policy: _Policy) -> MIMEPart:
    maintype, subtype = attachment.content_type.split("/")
    part = MIMEPart(policy=policy)
    part.set_content(
        attachment.data,
        maintype,
        subtype,
        disposition="inline" if attachment.inline else "attachment",
        filename=attachment.filename,
        cid=f"<{attachment.content_id}>" if attachment.content_id else None,
    )
    return part


def _multipart(subtype: str, parts: Sequence[MIMEPart], policy: _Policy) -> MIMEPart:
    container = MIMEPart(policy=policy)
    # RFC 2387 3.1: multipart/related names the type of its root part.
    container["Content-Type"] = (
        f'multipart/{subtype}; type="text/html"' if subtype == "related" else (f"multipart/{subtype}")
    )
    for part in parts:
        container.attach(part)
    return container


def _verify_wire(data: bytes, field_names: Sequence[str]) -> None:
    """Refuse to emit bytes that break a promise of :meth:`Message.as_bytes`."""
    lines = data.splitlines()
    lengths = list(map(len, lines))
    # bytes.splitlines() ends a line at CRLF (two octets), or at a bare CR or LF (one): the
    # data is CRLF-only and ends with CRLF exactly when every line end took two octets.
    if not data.endswith(b"\r\n") or len(data) != sum(lengths) + 2 * len(lines) or b"\x00" in data:
        raise MessageError("internal error: serialization produced a bare CR, LF or NUL", field="message")
    if max(lengths) > MAX_LINE_OCTETS:
        raise MessageError(f"a line is longer than {MAX_LINE_OCTETS} octets", field="message")
    head = data[: data.find(b"\r\n\r\n")]
    names = [
        line.split(b":", 1)[0].decode("ascii", "replace").lower()
        for line in head.split(b"\r\n")
        if line[:1] not in b" \t"
    ]
    if names != [name.lower() for name in field_names]:
        raise MessageError(
            f"internal error: serialized header fields {names} differ from those set", field="message"
        )


# --- the message ------------------------------------------------------------------------------


def _coerce_address(value: object, field: str) -> Address:
    if isinstance(value, Address):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str or an Address, not {type(value).__name__}")
    try:
        return Address.parse(value)
    except AddressError as err:
        raise AddressError(f"{field}: {err.message}", field=field, address=value) from err


def _coerce_addresses(value: object, field: str) -> tuple[Address, ...]:
    if value is None:
        return ()
    if isinstance(value, str | Address):
        return (_coerce_address(value, field),)
    if isinstance(value, bytes | bytearray) or not isinstance(value, Iterable):
        raise TypeError(f"{field} must be an address or an iterable of addresses, not {type(value).__name__}")
    return tuple(_coerce_address(item, field) for item in value)


def _unique_recipients(groups: Iterable[Iterable[Address]]) -> tuple[str, ...]:
    seen: set[tuple[str, str]] = set()
    out = []
    for group in groups:
        for address in group:
            # Local parts may be case-sensitive (RFC 5321 2.4); domains never are.
            key = (address.local_part, address.domain.lower())
            if key not in seen:
                seen.add(key)
                out.append(address.addr_spec)
    return tuple(out)


def _new_message_id(sender: Address) -> str:
    domain = _validate_addr_spec(sender.addr_spec).ascii_domain
    return f"<{secrets.token_hex(16)}@{domain}>"


def _check_message_id(value: str, field: str) -> str:
    if not _MSG_ID.match(value) or len(value) > 900:
        raise MessageError(
            f"{field}: {value!r} is not a Message-ID of the form <left@right> (RFC 5322 3.6.4)", field=field
        )
    return value


def _check_date(value: object, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{field} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise MessageError(f"{field}: the date must be timezone-aware", field=field)
    return value.replace(microsecond=0)


def _parse_date_header(value: str, field: str) -> datetime:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError) as err:
        raise MessageError(f"{field}: {value!r} is not an RFC 5322 date", field=field) from err
    if not value.isascii() or len(value) > 200:
        raise MessageError(f"{field}: {value!r} is not an RFC 5322 date", field=field)
    return parsed


class Message:
    """An email message, validated and serialized at construction and immutable afterwards.

    Args:
        sender: the author (From), as ``"addr"``, ``"Name <addr>"`` or an :class:`Address`.
            Its bare address is also the envelope sender unless ``envelope_from`` is given.
        to, cc: recipients shown in the To and Cc headers; an address or an iterable of them.
        bcc: recipients that receive the message but appear in no header.
        subject: the Subject header, or None for none.
        text: the plain-text body. Line endings become CRLF, a final line ending is added.
        html: the HTML body. With ``text``, the two become multipart/alternative.
        attachments: :class:`Attachment` values; inline ones are related to the HTML body.
        headers: extra header fields, a mapping or (name, value) pairs, written in order.
            Subject, Date, Message-ID and Sender may be given here instead of by argument;
            From, To, Cc, Bcc and Reply-To must use their arguments; Content-* and
            MIME-Version, Resent-* and Return-Path are refused.
        reply_to: the Reply-To header; an address or an iterable of them.
        envelope_from: the envelope sender (MAIL FROM) when it differs from ``sender``.
        date: the Date header, timezone-aware; now (local time) when None.

    Raises:
        AddressError: an invalid, ambiguous or unsafe address; the field is named.
        MessageError: no recipient, a control character in a header value (also when hidden
            in an RFC 2047 encoded word), an invalid or forbidden header name, a header given
            twice, an invalid Message-ID or Date.
        TypeError: an argument of the wrong type.

    Example::

        msg = Message(sender="Alice <alice@example.com>", to="bob@example.org",
                      subject="Hello", text="Hi Bob", html="<p>Hi Bob</p>")
        msg.recipients   # ('bob@example.org',)
        msg.as_bytes()   # b'From: Alice <alice@example.com>\\r\\nTo: ...'
    """

    __slots__ = (
        "_data",
        "attachments",
        "bcc",
        "cc",
        "date",
        "envelope_from",
        "headers",
        "html",
        "message_id",
        "recipients",
        "reply_to",
        "requires_8bitmime",
        "requires_smtputf8",
        "sender",
        "subject",
        "text",
        "to",
    )

    #: The author (From header), or the sender chosen for a wrapped message.
    sender: Address
    #: To, Cc and Bcc as given (for a wrapped message: as read from its headers, if they were).
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    subject: str | None
    text: str | None
    html: str | None
    attachments: tuple[Attachment, ...]
    #: Extra header fields as (name, value) pairs, as given.
    headers: tuple[tuple[str, str], ...]
    #: The envelope sender (MAIL FROM): the bare address of envelope_from, else of sender.
    envelope_from: str
    #: The envelope recipients: to + cc + bcc as bare addresses, without duplicates, in order.
    recipients: tuple[str, ...]
    #: The Message-ID, with angle brackets; the same for every call to as_bytes().
    message_id: str
    #: The Date header's value; None only for a wrapped message whose Date cannot be parsed.
    date: datetime | None
    #: True when an envelope address or a header needs UTF-8 (RFC 6531 SMTPUTF8).
    requires_smtputf8: bool
    #: True when the serialized bytes contain octets above 127 (RFC 6152 8BITMIME).
    requires_8bitmime: bool
    _data: bytes

    def __init__(
        self,
        *,
        sender: AddressInput,
        to: AddressesInput = (),
        cc: AddressesInput = (),
        bcc: AddressesInput = (),
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
        attachments: Iterable[Attachment] = (),
        headers: HeadersInput = None,
        reply_to: AddressesInput = None,
        envelope_from: AddressInput | None = None,
        date: datetime | None = None,
    ) -> None:
        self._build(
            sender=sender,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            text=text,
            html=html,
            attachments=attachments,
            headers=headers,
            reply_to=reply_to,
            envelope_from=envelope_from,
            date=date,
            reference=False,
        )

    @classmethod
    def _reference(cls, **kwargs: Any) -> Message:
        """Build as ``Message(**kwargs)`` does, writing every header and the MIME body with the
        standard library only: the reference the fast writer is tested (and benchmarked) against.
        """
        self = object.__new__(cls)
        self._build(**kwargs, reference=True)
        return self

    def _build(
        self,
        *,
        sender: AddressInput,
        to: AddressesInput = (),
        cc: AddressesInput = (),
        bcc: AddressesInput = (),
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
        attachments: Iterable[Attachment] = (),
        headers: HeadersInput = None,
        reply_to: AddressesInput = None,
        envelope_from: AddressInput | None = None,
        date: datetime | None = None,
        reference: bool,
    ) -> None:
        _set = object.__setattr__
        author = _coerce_address(sender, "sender")
        to_ = _coerce_addresses(to, "to")
        cc_ = _coerce_addresses(cc, "cc")
        bcc_ = _coerce_addresses(bcc, "bcc")
        reply_to_ = _coerce_addresses(reply_to, "reply_to")
        envelope = author if envelope_from is None else _coerce_address(envelope_from, "envelope_from")
        if subject is not None:
            subject = _check_header_value("Subject", subject, "subject")
        text = _check_optional_text(text, "text")
        html = _check_optional_text(html, "html")
        if isinstance(attachments, Attachment):
            attachments = (attachments,)
        attached = tuple(attachments)
        for item in attached:
            if not isinstance(item, Attachment):
                raise TypeError(f"attachments must be Attachment values, not {type(item).__name__}")
        when = None if date is None else _check_date(date, "date")
        extra = self._check_headers(headers, subject_given=subject is not None, date_given=when is not None)

        recipients = _unique_recipients((to_, cc_, bcc_))
        if not recipients:
            raise MessageError(
                "recipients: the message has no recipient (to, cc and bcc are empty)", field="recipients"
            )

        # Fields that headers= may supply instead of an argument.
        sender_field: Address | None = None
        custom: list[tuple[str, str]] = []
        message_id: str | None = None
        date_text: str | None = None
        for name, value in extra:
            key = name.lower()
            if key == "subject":
                subject = value
            elif key == "date":
                when = _parse_date_header(value, name)
                date_text = value
            elif key == "message-id":
                message_id = _check_message_id(value, name)
            elif key == "sender":
                sender_field = _coerce_address(value, name)
            else:
                custom.append((name, value))
        if message_id is None:
            message_id = _new_message_id(author)
        if when is None:
            when = datetime.now().astimezone().replace(microsecond=0)

        header_addresses = [author, *to_, *cc_, *reply_to_, *([sender_field] if sender_field else [])]
        utf8 = any(a.requires_smtputf8 for a in header_addresses)
        policy = _POLICY_UTF8 if utf8 else _POLICY

        ref = reference
        fields: list[_FoldedField] = [_fold_addresses("From", [author], policy, "sender", reference=ref)]
        if sender_field is not None:
            fields.append(_fold_addresses("Sender", [sender_field], policy, "Sender", reference=ref))
        for name, group, field in (("To", to_, "to"), ("Cc", cc_, "cc"), ("Reply-To", reply_to_, "reply_to")):
            if group:
                fields.append(_fold_addresses(name, group, policy, field, reference=ref))
        if subject is not None:
            fields.append(_fold_text("Subject", subject, policy, "subject", reference=ref))
        fields.append(_fold_simple("Date", date_text or email.utils.format_datetime(when)))
        fields.append(_fold_simple("Message-ID", message_id))
        fields.extend(_fold_text(name, value, policy, name, reference=ref) for name, value in custom)

        # The body is always serialized without SMTPUTF8: its MIME headers stay ASCII (RFC 2231
        # filenames), so only the top-level fields above can ever be 8-bit.
        if reference:
            body = self._body(text, html, attached, _POLICY)
            body_bytes, body_fields = body.as_bytes(policy=_POLICY), tuple(body.keys())
        else:
            body_bytes, body_fields = _mime_fast.build_body(text, html, attached)
        charset = "utf-8" if utf8 else "ascii"
        data = "".join(f.folded for f in fields).encode(charset) + b"MIME-Version: 1.0\r\n" + body_bytes
        # Whichever writer made them, the bytes are checked before they can be sent.
        _verify_wire(data, [*(f.name for f in fields), "MIME-Version", *body_fields])

        _set(self, "sender", author)
        _set(self, "to", to_)
        _set(self, "cc", cc_)
        _set(self, "bcc", bcc_)
        _set(self, "reply_to", reply_to_)
        _set(self, "subject", subject)
        _set(self, "text", text)
        _set(self, "html", html)
        _set(self, "attachments", attached)
        _set(self, "headers", tuple(extra))
        _set(self, "envelope_from", envelope.addr_spec)
        _set(self, "recipients", recipients)
        _set(self, "message_id", message_id)
        _set(self, "date", when)
        envelope_utf8 = envelope.requires_smtputf8 or any(not r.isascii() for r in recipients)
        _set(self, "requires_smtputf8", utf8 or envelope_utf8)
        _set(self, "requires_8bitmime", not data.isascii())
        _set(self, "_data", data)

    @staticmethod
    def _check_headers(
        headers: HeadersInput, *, subject_given: bool, date_given: bool
    ) -> list[tuple[str, str]]:
        if headers is None:
            return []
        if isinstance(cast(object, headers), str | bytes):
            raise TypeError("headers must be a mapping or (name, value) pairs")
        items: Iterable[Any] = headers.items() if isinstance(headers, Mapping) else headers
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise TypeError(f"headers must hold (name, value) pairs, not {item!r}")
            name = _check_field_name(item[0])
            key = name.lower()
            if key in _ARGUMENT_FIELDS:
                raise MessageError(
                    f"headers: {name} cannot be set in headers=; use the {_ARGUMENT_FIELDS[key]}= argument",
                    field=name,
                )
            if key in _STRUCTURAL_FIELDS:
                raise MessageError(
                    f"headers: {name} is set by the MIME structure and cannot be overridden", field=name
                )
            if key.startswith("resent-") or key == "return-path":
                raise MessageError(
                    f"headers: {name} is added by relaying systems, not by a message's author"
                    " (wrap an existing message with Message.from_email instead)",
                    field=name,
                )
            if (key == "subject" and subject_given) or (key == "date" and date_given):
                raise MessageError(
                    f"headers: {name} is given both in headers= and as the {key}= argument", field=name
                )
            if key in _UNIQUE_FIELDS and key in seen:
                raise MessageError(f"headers: {name} may appear only once (RFC 5322 3.6)", field=name)
            seen.add(key)
            out.append((name, _check_header_value(name, item[1], name)))
        return out

    @staticmethod
    def _body(
        text: str | None,
        html: str | None,
        attachments: tuple[Attachment, ...],
        policy: _Policy,
    ) -> MIMEPart:
        inline = [a for a in attachments if a.inline] if html is not None else []
        attached = [a for a in attachments if not (a.inline and html is not None)]
        html_part: MIMEPart | None = None
        if html is not None:
            html_part = _text_part(html, "html", policy)
            if inline:
                html_part = _multipart(
                    "related", [html_part, *(_attachment_part(a, policy) for a in inline)], policy
                )
        parts: list[MIMEPart] = []
        if text is not None and html_part is not None:
            parts.append(_multipart("alternative", [_text_part(text, "plain", policy), html_part], policy))
        elif html_part is not None:
            parts.append(html_part)
        elif text is not None or not attached:
            # No body at all is an empty text/plain part, unless attachments make the body.
            parts.append(_text_part(text or "", "plain", policy))
        if not attached:
            return parts[0]
        parts.extend(_attachment_part(a, policy) for a in attached)
        return _multipart("mixed", parts, policy)

    # -- wrapping an existing message -------------------------------------------------------------

    @classmethod
    def from_email(
        cls,
        message: email.message.Message | bytes | bytearray | memoryview,
        *,
        sender: AddressInput | None = None,
        recipients: AddressesInput = None,
    ) -> Message:
        """Wrap a message an application already has, to send it as it is.

        The bytes are kept as they are, except that line endings become CRLF, Bcc and
        Resent-Bcc fields are removed, a Message-ID and a Date are appended to the header
        section when missing, and a body part with a line over 998 octets or a NUL is
        re-encoded (quoted-printable for text, base64 otherwise).

        Args:
            message: an ``email.message.Message``/``EmailMessage`` or the raw bytes.
            sender: the envelope sender. Default: the Sender field's address, else the From
                field's (single) address; for a resent message (a Resent-* block at the top),
                Resent-Sender, else Resent-From.
            recipients: the envelope recipients. Default: the addresses in To, Cc and Bcc --
                or, for a resent message with Resent-To/Cc/Bcc, those instead.

        Returns:
            A Message whose ``as_bytes()`` is the wrapped message.

        Raises:
            AddressError: a needed address field is missing, repeated, invalid or ambiguous.
            MessageError: malformed header section, control characters in a header (also
                hidden in an RFC 2047 encoded word), no recipient, an over-long header line.
        """
        if isinstance(message, email.message.Message):
            data = _flatten(message)
        elif isinstance(message, bytes | bytearray | memoryview):
            data = bytes(message)
        else:
            raise TypeError(
                f"from_email() takes an email.message.Message or bytes, not {type(message).__name__}"
            )
        return _wrap(cls, data, sender, recipients)

    # -- the public surface -----------------------------------------------------------------------

    def as_bytes(self) -> bytes:
        """The message as it goes on the wire: CRLF line endings, no Bcc, Message-ID and Date present.

        Returns the same bytes on every call (computed once, at construction).
        """
        return self._data

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Message is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Message is immutable; cannot delete {name!r}")

    def __repr__(self) -> str:
        return (
            f"<Message {self.message_id} from {self.envelope_from} to {len(self.recipients)}"
            f" recipient{'s' if len(self.recipients) != 1 else ''}, {len(self._data)} bytes>"
        )


# --- from_email ---------------------------------------------------------------------------------


def _flatten(message: email.message.Message) -> bytes:
    """Serialize an application's message object with its own policy, CRLF line endings."""
    for part in message.walk():
        for name, value in part.items():
            _check_wrapped_value(str(name), str(value))
    buffer = io.BytesIO()
    try:
        policy = message.policy.clone(linesep="\r\n")
        email.generator.BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(message)
    except (ValueError, TypeError, LookupError, UnicodeError) as err:
        raise MessageError(
            f"message: the message object cannot be serialized: {err}", field="message"
        ) from err
    data = buffer.getvalue()
    head = data.split(b"\r\n\r\n", 1)[0]
    written = [
        line.split(b":", 1)[0].decode("ascii", "replace").lower()
        for line in head.split(b"\r\n")
        if line[:1] not in b" \t"
    ]
    if written != [str(name).lower() for name in message]:
        raise MessageError(
            "message: a header of the message object would inject header fields", field="message"
        )
    return data


def _check_wrapped_value(name: str, value: str) -> None:
    bad = _WRAPPED_FORBIDDEN.search(value)
    if bad is None and "=?" in value:
        bad = _WRAPPED_FORBIDDEN.search(_decode_words(name, value))
        if bad:
            raise MessageError(
                f"{name}: header hides a control character ({describe_char(bad.group())}) in an RFC 2047"
                " encoded word",
                field=name,
            )
    if bad:
        raise MessageError(
            f"{name}: header contains a control character ({describe_char(bad.group())})", field=name
        )


class _Field:
    __slots__ = ("key", "name", "raw")

    def __init__(self, name: str, raw: bytes) -> None:
        self.name = name
        self.key = name.lower()
        self.raw = raw  # the whole field, continuation lines included, without the final CRLF

    @property
    def value(self) -> str:
        return (
            self.raw.split(b":", 1)[1].replace(b"\r\n", b"").decode("utf-8", "surrogateescape").strip(" \t")
        )


def _split_fields(head: bytes) -> list[_Field]:
    fields: list[_Field] = []
    for number, line in enumerate(head.split(b"\r\n"), start=1):
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise MessageError(
                    "message: the header section starts with a continuation line", field="message"
                )
            fields[-1].raw += b"\r\n" + line
            continue
        name, colon, _ = line.partition(b":")
        if not colon or not _FIELD_NAME_BYTES.match(name):
            shown = line[:40].decode("ascii", "backslashreplace")
            raise MessageError(
                f"message: header line {number} is not a header field ({shown!r}...)", field="message"
            )
        fields.append(_Field(name.decode("ascii"), line))
    for field in fields:
        if len(field.name) > MAX_LINE_OCTETS or any(
            len(line) > MAX_LINE_OCTETS for line in field.raw.split(b"\r\n")
        ):
            raise MessageError(
                f"{field.name}: a header line is longer than {MAX_LINE_OCTETS} octets (RFC 5322 2.1.1)",
                field=field.name,
            )
        _check_wrapped_value(field.name, field.value)
    return fields


def _only(
    fields: Sequence[_Field], key: str, error: type[MessageError | AddressError] = AddressError
) -> _Field | None:
    found = [f for f in fields if f.key == key]
    if len(found) > 1:
        raise error(
            f"{found[0].name}: the field appears {len(found)} times; which one counts is ambiguous",
            field=found[0].name,
        )
    return found[0] if found else None


def _read_addresses(field: _Field) -> tuple[Address, ...]:
    try:
        return parse_address_list(field.value, allow_groups=True)
    except AddressError as err:
        raise AddressError(f"{field.name}: {err.message}", field=field.name, address=field.value) from err


def _current_resent_block(fields: Sequence[_Field]) -> list[_Field]:
    # RFC 5322 3.6.6: each resending prepends a block of Resent-* fields; the first is current.
    start = next((i for i, f in enumerate(fields) if f.key.startswith("resent-")), None)
    if start is None:
        return []
    block = []
    for field in fields[start:]:
        if not field.key.startswith("resent-"):
            break
        block.append(field)
    return block


def _default_sender(fields: Sequence[_Field], resent: Sequence[_Field]) -> Address:
    for key in ("resent-sender", "resent-from") if resent else ():
        found = _only(resent, key)
        if found is not None:
            return _single(found)
    for key in ("sender", "from"):
        found = _only(fields, key)
        if found is not None:
            return _single(found)
    raise AddressError("sender: the message has no From or Sender field; pass sender=", field="sender")


def _single(field: _Field) -> Address:
    addresses = _read_addresses(field)
    if len(addresses) != 1:
        raise AddressError(
            f"{field.name}: expected one address to use as the sender, found {len(addresses)}; pass sender=",
            field=field.name,
        )
    return addresses[0]


def _default_recipients(
    fields: Sequence[_Field], resent: Sequence[_Field]
) -> tuple[tuple[Address, ...], ...]:
    keys = ("resent-to", "resent-cc", "resent-bcc")
    if any(f.key in keys for f in resent):
        source, names = resent, keys
    else:
        source, names = fields, ("to", "cc", "bcc")
    groups = []
    for key in names:
        found = _only(source, key)
        groups.append(_read_addresses(found) if found is not None else ())
    return tuple(groups)


def _wrap(
    cls: type[Message], data: bytes, sender: AddressInput | None, recipients: AddressesInput
) -> Message:
    data = _NEWLINES.sub(b"\r\n", data)
    if not data.strip(b"\r\n \t"):
        raise MessageError("message: the message is empty", field="message")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"\r\n"):
        raise MessageError("message: the message has no header section", field="message")
    end = data.find(b"\r\n\r\n")
    head, body = (data[:end], data[end + 4 :]) if end >= 0 else (data[:-2], b"")
    if b"\x00" in head:
        raise MessageError("message: the header section contains a NUL", field="message")
    fields = _split_fields(head)
    resent = _current_resent_block(fields)

    author = _coerce_address(sender, "sender") if sender is not None else _default_sender(fields, resent)
    if recipients is not None:
        to: tuple[Address, ...] = ()
        cc: tuple[Address, ...] = ()
        bcc: tuple[Address, ...] = ()
        envelope = _unique_recipients([_coerce_addresses(recipients, "recipients")])
    else:
        to, cc, bcc = _default_recipients(fields, resent)
        envelope = _unique_recipients((to, cc, bcc))
    if not envelope:
        raise MessageError("recipients: the message has no recipient; pass recipients=", field="recipients")

    kept = [f for f in fields if f.key not in ("bcc", "resent-bcc")]
    id_field = _only(kept, "message-id", MessageError)
    date_field = _only(kept, "date", MessageError)
    message_id = id_field.value if id_field is not None else _new_message_id(author)
    when: datetime | None
    added = b""
    if id_field is None:
        added += f"Message-ID: {message_id}\r\n".encode("ascii")
    if date_field is None:
        when = datetime.now().astimezone().replace(microsecond=0)
        added += f"Date: {email.utils.format_datetime(when)}\r\n".encode("ascii")
    else:
        try:
            when = email.utils.parsedate_to_datetime(date_field.value)
        except (TypeError, ValueError, IndexError):
            when = None
    head = b"".join(f.raw + b"\r\n" for f in kept) + added
    body, root_cte = _reencode_if_needed(head, body)
    if root_cte is not None:
        kept = [f for f in kept if f.key != "content-transfer-encoding"]
        if not any(f.key == "mime-version" for f in kept):
            added += b"MIME-Version: 1.0\r\n"  # RFC 2045 4: a transfer encoding needs MIME
        added += f"Content-Transfer-Encoding: {root_cte}\r\n".encode("ascii")
        head = b"".join(f.raw + b"\r\n" for f in kept) + added
    out = head + b"\r\n" + body
    if max(map(len, out.split(b"\r\n"))) > MAX_LINE_OCTETS:
        raise MessageError(
            f"message: a line outside any re-encodable body part is longer than {MAX_LINE_OCTETS} octets",
            field="message",
        )

    self = object.__new__(cls)
    _set = object.__setattr__
    _set(self, "sender", author)
    _set(self, "to", to)
    _set(self, "cc", cc)
    _set(self, "bcc", bcc)
    _set(self, "reply_to", ())
    _set(self, "subject", _read_subject(kept))
    _set(self, "text", None)
    _set(self, "html", None)
    _set(self, "attachments", ())
    _set(self, "headers", ())
    _set(self, "envelope_from", author.addr_spec)
    _set(self, "recipients", envelope)
    _set(self, "message_id", message_id)
    _set(self, "date", when)
    envelope_utf8 = author.requires_smtputf8 or any(not r.isascii() for r in envelope)
    _set(self, "requires_smtputf8", envelope_utf8 or not head.isascii())
    _set(self, "requires_8bitmime", not out.isascii())
    _set(self, "_data", out)
    return self


def _read_subject(fields: Sequence[_Field]) -> str | None:
    found = [f for f in fields if f.key == "subject"]
    if len(found) != 1:
        return None
    return str(_READ_POLICY.header_factory("subject", found[0].value))


def _needs_reencoding(payload: str) -> bool:
    return "\x00" in payload or any(len(line) > MAX_LINE_OCTETS for line in payload.split("\r\n"))


def _reencode_if_needed(head: bytes, body: bytes) -> tuple[bytes, str | None]:
    """Re-encode the body parts that cannot travel as they are (long lines, NUL).

    Only the affected leaf parts change: their payload is decoded and written again as
    quoted-printable (text) or base64 (anything else). The top-level header section is kept
    byte for byte, except Content-Transfer-Encoding when the top level itself is re-encoded:
    the new encoding is then returned with the body, for the caller to write.
    """
    if b"\x00" not in body and max(map(len, body.split(b"\r\n"))) <= MAX_LINE_OCTETS:
        return body, None
    root = email.message_from_bytes(head + b"\r\n" + body, policy=_WRAP_POLICY)
    for part in root.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload()
        if not isinstance(payload, str) or not _needs_reencoding(payload):
            continue
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):  # pragma: no cover - a non-multipart payload decodes to bytes
            continue
        if part.get_content_maintype() == "text":
            cte = "quoted-printable"
            encoded = binascii.b2a_qp(_NEWLINES.sub(b"\r\n", raw), istext=True).decode("ascii")
        else:
            cte = "base64"
            encoded = base64.encodebytes(raw).decode("ascii")
        del part["Content-Transfer-Encoding"]
        part["Content-Transfer-Encoding"] = cte
        part.set_payload(encoded)
        if part is root:
            # The top level is a single part: its own body is all there is.
            return _NEWLINES.sub(b"\r\n", encoded.encode("ascii")), cte
    buffer = io.BytesIO()
    email.generator.BytesGenerator(buffer, mangle_from_=False, policy=_WRAP_POLICY).flatten(root)
    data = buffer.getvalue()
    return data[data.find(b"\r\n\r\n") + 4 :], None
