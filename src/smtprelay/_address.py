"""Email addresses: the public :class:`Address` value and the strict parsers behind it.

Strategy:
    An address is accepted only when it is unambiguous. Header text (``"Name <addr>"``, address
    lists, groups) is split by a small tokenizer of our own that refuses every form two parsers
    could read differently (CVE-2023-27043): an ``@`` in an unquoted display name
    (``alice@example.org<bob@example.com>``), quoted local parts (``"a@b"@c``), comments,
    source routes, two addresses without a comma. What it accepts is then parsed again by the
    standard library's header parser; both must find the same addr-specs, without defects.
    Each addr-spec is finally checked by email-validator for syntax only (no DNS).

    email-validator refuses special-use domains (``.test``, ``.localhost``, ...) through its
    module-level ``SPECIAL_USE_DOMAIN_NAMES`` list. We must accept them (tests and local setups
    use them; the Relay's DNS lookup decides deliverability) and we never mutate another
    library's globals (STYLE rule 9). So the special-use last label is replaced by a neutral
    label of the same length for validation, and restored afterwards.
"""

from __future__ import annotations

import contextlib
import email.policy
import functools
import re
import unicodedata
from dataclasses import dataclass, field
from email import errors as email_errors
from email.header import decode_header, make_header
from typing import NamedTuple

from email_validator import EmailNotValidError, validate_email

from ._errors import AddressError

__all__ = ["Address"]

#: Top-level names accepted although email-validator refuses some of them (RFC 6761, 6762,
#: 7686; RFC 2606 for ``example``). Subdomains of these are accepted too.
SPECIAL_USE_DOMAINS = frozenset({"test", "example", "invalid", "localhost", "local", "onion", "arpa"})

# Label separators that UTS 46 maps to "." (full stop, ideographic, fullwidth, halfwidth).
_LABEL_SEPARATOR = re.compile("[.\u3002\uff0e\uff61]")

# Characters never allowed in an address: C0 controls (TAB included), DEL, C1 controls and the
# Unicode line and paragraph separators (str.splitlines() breaks on them, and so do parts of
# the email package). Display names and header text may hold TAB, as folding whitespace.
_ADDRESS_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TEXT_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")

# What may appear inside <...>: anything an addr-spec can hold, but no quoting, comments,
# whitespace or route syntax (RFC 5322 obs-route "@a,@b:").
_ANGLE_FORBIDDEN = frozenset('<"()\\,;: \t')

# An RFC 2047 encoded word; the email package decodes these wherever it finds them.
ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bBqQ]\?[^?\s]*\?=")

_CONTROL_NAMES = {"\x00": "NUL", "\t": "TAB", "\n": "LF", "\r": "CR", "\x7f": "DEL"}


def describe_char(char: str) -> str:
    """Name a character for an error message: ``CR``, ``LF``, ``NUL`` or ``U+001F``."""
    return _CONTROL_NAMES.get(char) or f"U+{ord(char):04X}"


class _Validated(NamedTuple):
    addr_spec: str
    local_part: str
    domain: str
    ascii_domain: str
    smtputf8: bool


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: a bare address (``addr_spec``) and an optional display name.

    Construction validates and normalises: the domain is lower-cased and, when the local part
    is ASCII, kept in its ASCII (IDNA) form so no SMTPUTF8 is needed; the display name loses
    surrounding whitespace and runs of spaces and tabs become one space.

    Args:
        addr_spec: the bare address, e.g. ``"bob@example.org"`` (no display name, no brackets).
        display_name: the human-readable name, any Unicode text without control characters.

    Raises:
        AddressError: the address is not valid or contains control characters.

    Example::

        Address("bob@example.org", display_name="Bob")  # str() -> 'Bob <bob@example.org>'
        Address.parse('"Smith, Bob" <bob@example.org>')
    """

    addr_spec: str
    display_name: str = field(default="", kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.addr_spec, str):
            raise TypeError(f"addr_spec must be a str, not {type(self.addr_spec).__name__}")
        if not isinstance(self.display_name, str):
            raise TypeError(f"display_name must be a str, not {type(self.display_name).__name__}")
        validated = _validate_addr_spec(self.addr_spec)
        object.__setattr__(self, "addr_spec", validated.addr_spec)
        object.__setattr__(self, "display_name", _check_display_name(self.display_name, self.addr_spec))

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse one address written as in a header: ``bob@example.org`` or ``Bob <bob@example.org>``.

        Display names may be quoted (``"Smith, Bob" <bob@example.org>``) and may hold RFC 2047
        encoded words, which are decoded.

        Raises:
            AddressError: not exactly one valid, unambiguous address.
        """
        if not isinstance(text, str):
            raise TypeError(f"Address.parse() takes a str, not {type(text).__name__}")
        mailboxes = parse_address_list(text, allow_groups=False)
        if len(mailboxes) != 1:
            raise AddressError(
                f"expected exactly one address, found {len(mailboxes)} in {text!r}", address=text
            )
        return mailboxes[0]

    @property
    def local_part(self) -> str:
        """The part before the last ``@``."""
        return self.addr_spec.rpartition("@")[0]

    @property
    def domain(self) -> str:
        """The part after the last ``@``: ASCII (IDNA) unless the local part is not ASCII."""
        return self.addr_spec.rpartition("@")[2]

    @property
    def requires_smtputf8(self) -> bool:
        """True when the address cannot be written in ASCII (its local part is not ASCII)."""
        return not self.addr_spec.isascii()

    def __str__(self) -> str:
        """The header form, unencoded: ``Bob <bob@example.org>``, or the bare address."""
        if not self.display_name:
            return self.addr_spec
        return f"{_quote_phrase(self.display_name)} <{self.addr_spec}>"


def _quote_phrase(name: str) -> str:
    # An unquoted phrase is a run of atoms (RFC 5322 3.2.3; RFC 6532 adds non-ASCII to atext).
    if all(_is_atext(c) for c in name.replace(" ", "")):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _is_atext(char: str) -> bool:
    return char.isalnum() or char in "!#$%&'*+-/=?^_`{|}~" or not char.isascii()


def _check_display_name(name: str, address: str) -> str:
    bad = _TEXT_FORBIDDEN.search(name)
    if bad:
        raise AddressError(
            f"display name contains a control character ({describe_char(bad.group())})", address=address
        )
    if ENCODED_WORD.search(name):
        # The email package would decode it when writing the header and change the name.
        raise AddressError(
            f"display name {name!r} contains an RFC 2047 encoded word; pass the decoded text",
            address=address,
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as err:
        raise AddressError("display name is not valid Unicode (lone surrogate)", address=address) from err
    return re.sub("[ \t]+", " ", name).strip(" ")


@functools.lru_cache(maxsize=4096)
def _validate_addr_spec(addr_spec: str) -> _Validated:
    """Check one bare address with email-validator (syntax only) and return its normal form."""
    bad = _ADDRESS_FORBIDDEN.search(addr_spec)
    if bad:
        raise AddressError(
            f"address contains a control character ({describe_char(bad.group())})", address=addr_spec
        )
    local, at, domain = addr_spec.rpartition("@")
    if not at:
        raise AddressError(f"{addr_spec!r} is not an email address (no '@')", address=addr_spec)
    if ENCODED_WORD.search(local):
        # Some readers decode it, some do not: =?utf-8?q?bob=40evil.example?=@example.org.
        raise AddressError(
            f"{addr_spec!r} has a local part that looks like an RFC 2047 encoded word", address=addr_spec
        )
    probe, neutral, special = _neutralise_special_use(domain)
    try:
        info = validate_email(
            f"{local}@{probe}",
            # Every option given, so that nobody's change to email_validator's module defaults
            # can change what we accept.
            allow_smtputf8=True,
            allow_empty_local=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            strict=False,
            check_deliverability=False,
            test_environment=False,
            globally_deliverable=True,
        )
    except EmailNotValidError as err:
        raise AddressError(f"{addr_spec!r} is not a valid email address: {err}", address=addr_spec) from err
    ascii_domain, unicode_domain = info.ascii_domain, info.domain
    if special:
        ascii_domain = ascii_domain[: -len(neutral)] + special
        unicode_domain = unicode_domain[: -len(neutral)] + special
    if info.ascii_local_part:
        # RFC 6531: an ASCII local part with the IDNA domain needs no SMTPUTF8 anywhere.
        local = info.ascii_local_part
        return _Validated(f"{local}@{ascii_domain}", local, ascii_domain, ascii_domain, False)
    local = info.local_part
    return _Validated(f"{local}@{unicode_domain}", local, unicode_domain, ascii_domain, True)


def _neutralise_special_use(domain: str) -> tuple[str, str, str]:
    """Return (domain to validate, neutral suffix used, special-use label replaced or "").

    The last label is compared after NFKC case folding, close to the UTS 46 mapping
    email-validator applies (so a fullwidth ``TEST`` counts as ``test``). It is replaced by a label of
    the same length so that the length limits are checked on the real length. A bare
    special-use name (``root@localhost``) becomes a two-label name, since email-validator
    requires a dot.
    """
    labels = _LABEL_SEPARATOR.split(domain)
    last = labels[-1]
    special = unicodedata.normalize("NFKC", last).casefold()
    if special not in SPECIAL_USE_DOMAINS:
        return domain, "", ""
    size = len(last)
    neutral = "x" * size if len(labels) > 1 else "x." + "x" * (size - 2)
    return domain[: len(domain) - size] + neutral, neutral, special


# --- header text parsing -----------------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # "atom", "quoted", "angle", ",", ":" or ";"
    text: str


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in " \t":
            i += 1
        elif char == '"':
            if i > 0 and text[i - 1] not in ' \t,:;<>"':
                raise ValueError("a quoted string is glued to the text before it")
            j, chunk = i + 1, []
            while True:
                if j >= n:
                    raise ValueError("a quoted string is not closed")
                if text[j] == "\\" and j + 1 < n:
                    chunk.append(text[j + 1])
                    j += 2
                elif text[j] == '"':
                    break
                else:
                    chunk.append(text[j])
                    j += 1
            i = j + 1
            if i < n and text[i] not in " \t,:;<":
                # "a@b"@c: a quoted local part, read differently by different parsers.
                raise ValueError("quoted local parts are not supported")
            tokens.append(_Token("quoted", "".join(chunk)))
        elif char == "<":
            j = text.find(">", i + 1)
            if j < 0:
                raise ValueError("'<' without a matching '>'")
            inner = text[i + 1 : j]
            bad = _ANGLE_FORBIDDEN.intersection(inner)
            if bad:
                shown = ", ".join(repr(c) for c in sorted(bad))
                raise ValueError(f"the address inside <...> contains {shown}")
            tokens.append(_Token("angle", inner))
            i = j + 1
        elif char in ",:;":
            tokens.append(_Token(char, char))
            i += 1
        elif char in "()":
            raise ValueError("comments in parentheses are not supported")
        elif char in ">\\":
            raise ValueError(f"unexpected {char!r}")
        else:
            j = i
            while j < n and text[j] not in ' \t",:;<>()\\':
                j += 1
            tokens.append(_Token("atom", text[i:j]))
            i = j
    return tokens


def _phrase(words: list[_Token]) -> str:
    parts = []
    for word in words:
        if word.kind == "atom" and ("@" in word.text or "[" in word.text or "]" in word.text):
            # CVE-2023-27043: alice@example.org<bob@example.com> has two candidate addresses.
            raise ValueError(f"unquoted {word.text!r} before '<' looks like an address; quote display names")
        parts.append(word.text)
    name = " ".join(parts)
    if "=?" in name:
        # Undecodable words stay encoded; the checks after this and the serializer's still apply.
        with contextlib.suppress(email_errors.HeaderParseError, LookupError, UnicodeError, ValueError):
            name = str(make_header(decode_header(name)))
    return name


def _split(text: str, *, allow_groups: bool) -> list[tuple[str, str]]:
    """Split header text into (display name, raw addr-spec) pairs; group members are flattened."""
    tokens = _tokenize(text)
    found: list[tuple[str, str]] = []
    in_group = False
    i = 0
    while i < len(tokens):
        start = i
        while i < len(tokens) and tokens[i].kind in ("atom", "quoted"):
            i += 1
        words = tokens[start:i]
        following = tokens[i] if i < len(tokens) else None
        if following is None or following.kind in (",", ";"):
            if len(words) == 1 and words[0].kind == "atom" and "@" in words[0].text:
                found.append(("", words[0].text))
            elif words:
                shown = " ".join(w.text for w in words)
                raise ValueError(f"{shown!r} is not an address (several words need <...> around the address)")
            if following is not None and following.kind == ";":
                if not in_group:
                    raise ValueError("';' outside a group")
                in_group = False
                if i + 1 < len(tokens) and tokens[i + 1].kind != ",":
                    raise ValueError("text after the end of a group")
            i += 1
        elif following.kind == "angle":
            found.append((_phrase(words), following.text))
            i += 1
            if i < len(tokens) and tokens[i].kind not in (",", ";"):
                raise ValueError("text after '>' (a comma is needed between addresses)")
        elif following.kind == ":":
            if not allow_groups:
                raise ValueError("a group (name: ...;) is not allowed here")
            if in_group:
                raise ValueError("groups cannot be nested")
            if not words:
                raise ValueError("a group needs a name before ':'")
            _phrase(words)
            in_group = True
            i += 1
        else:  # pragma: no cover - the tokenizer yields no other kind
            raise ValueError(f"unexpected {following.text!r}")
    if in_group:
        raise ValueError("a group is not closed with ';'")
    return found


# Defects that do not make an address ambiguous: "Dr. Bob" (obsolete period in a phrase) and
# RFC 6532 local parts, which the standard library flags but parses the same.
_HARMLESS_DEFECTS = (email_errors.ObsoleteHeaderDefect, email_errors.NonASCIILocalPartDefect)

# One mailbox in the plainest RFC 5322 forms (3.2.3, 3.4, 3.4.1): an addr-spec of two ASCII
# dot-atoms, alone or in angle brackets after a phrase of atoms (RFC 6532 3.2: non-ASCII
# characters are atext too; no dots, no quoting, no comments, no encoded word). The grammar
# gives such text exactly one reading, so the standard library's parser is bound to find the
# same addr-spec, and printable text gives it no defect to report: its second opinion, which
# costs more than the rest of the parse, is skipped (checked against it in tests/test_address.py).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PHRASE_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+"
_DOT_ATOM_ADDR = rf"{_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*"
_SIMPLE_MAILBOX = re.compile(
    rf"(?!.*=\?)(?:{_DOT_ATOM_ADDR}|{_PHRASE_ATEXT}(?: {_PHRASE_ATEXT})* <{_DOT_ATOM_ADDR}>)\Z"
)


def is_simple_mailbox(text: str) -> bool:
    """True for one mailbox in a form only one way to read: see ``_SIMPLE_MAILBOX``."""
    return _SIMPLE_MAILBOX.match(text) is not None and text.isprintable()


#: Header text longer than this is parsed every time rather than cached.
_CACHED_CHARS = 1000


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str, allow_groups: bool) -> tuple[Address, ...]:
    bad = _TEXT_FORBIDDEN.search(text)
    if bad:
        raise AddressError(
            f"address contains a control character ({describe_char(bad.group())})", address=text
        )
    try:
        pairs = _split(text, allow_groups=allow_groups)
    except ValueError as err:
        raise AddressError(f"cannot read {text!r} unambiguously: {err}", address=text) from err
    addresses = tuple(Address(raw, display_name=name) for name, raw in pairs)
    if not is_simple_mailbox(text):
        _second_opinion(text, [raw for _, raw in pairs])
    return addresses


def _second_opinion(text: str, found: list[str]) -> None:
    """The standard library's RFC 5322 parser must find the same addr-specs, without defects."""
    header = email.policy.default.header_factory("to", text)
    theirs = [a.addr_spec for a in header.addresses]
    defects = [d for d in header.defects if not isinstance(d, _HARMLESS_DEFECTS)]
    if defects or theirs != found:
        problem = defects[0] if defects else f"the standard library reads {theirs!r}"
        raise AddressError(f"{text!r} is ambiguous: {problem}", address=text)


def parse_address_list(text: str, *, allow_groups: bool = True) -> tuple[Address, ...]:
    """Parse header text holding addresses separated by commas (and, if allowed, groups).

    Raises:
        AddressError: an address is invalid, or the text could be read in more than one way.
    """
    if len(text) > _CACHED_CHARS:
        return _parse_cached.__wrapped__(text, allow_groups)  # keeps the cache small
    return _parse_cached(text, allow_groups)
