"""A direct MIME writer for the common message shapes, checked against the standard library.

Strategy:
    The standard library's ``email`` package is the reference for MIME (DESIGN.md); building a
    ``MIMEPart`` tree, parsing back every header it sets and refolding it on output costs far
    more than the bytes are worth for the shapes almost every message has. This module writes
    those shapes directly, from values :mod:`smtprelay._message` has already validated:

    - text/plain and text/html parts, in the transfer encoding ``choose_text_cte`` picks for
      both writers (7bit for short ASCII lines; quoted-printable or base64 otherwise);
    - attachments as base64 with a Content-Disposition filename, quoted when it is plain
      printable ASCII, else RFC 2231 (``filename*=utf-8''...``, continued over lines);
    - multipart/alternative, multipart/related and multipart/mixed with a random boundary that
      is checked not to occur anywhere in the parts it separates (RFC 2046 5.1.1);
    - top-level header values: unstructured text folded at whitespace or written as RFC 2047
      encoded words, and address lists of mailboxes whose display name is atoms, one quoted
      string, or one encoded word (RFC 2047 5(3) characters only).

    The header writers return None for what they do not cover (non-ASCII text in SMTPUTF8
    messages, display names or header names too long to write simply, values that would need
    a line over 998 octets); the caller then uses the standard library's folder, as before.
    Nothing here decides what is valid: every check on input happens before, for both writers
    alike. The tests in tests/test_message_fast.py parse the output of both writers back and
    compare them.
"""

from __future__ import annotations

import binascii
import re
import secrets
import string
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._message import Attachment

__all__ = [
    "build_body",
    "choose_text_cte",
    "fold_mailboxes",
    "fold_unstructured",
]

#: RFC 5322 2.1.1: lines SHOULD be no more than 78 characters and MUST be no more than 998.
FOLD_AT: Final = 78
MAX_LINE: Final = 998
# RFC 2045 2.7: 7bit lines are short; we keep them to the 76 of quoted-printable and base64.
_MAX_7BIT_LINE: Final = 76
# RFC 2047 2: an encoded word is at most 75 characters.
_MAX_ENCODED_WORD: Final = 75
# Header names longer than this are left to the standard library's folder.
_MAX_FAST_NAME: Final = 40

# Octets that keep a text body from being sent as 7bit (RFC 2045 2.7), CR and LF aside.
_NOT_7BIT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]")
# Octets quoted-printable writes as themselves (RFC 2045 6.7 rules 2-4).
_QP_LITERAL = bytes(range(33, 61)) + bytes(range(62, 127)) + b" \t\r\n"

# RFC 2047 5(3): the only characters an encoded word may show unencoded in a phrase; with
# them, one "Q" word is valid in every place an encoded word may be ("_" is the space).
_Q_LITERAL: Final = frozenset(string.ascii_letters + string.digits + "!*+-/")
_Q_ASCII: Final = tuple(
    "_" if c == " " else c if c in _Q_LITERAL else f"={ord(c):02X}" for c in map(chr, range(128))
)
# RFC 2231 7: attribute-char, what an extended parameter value shows without %-encoding.
_ATTRIBUTE_CHAR: Final = frozenset(string.ascii_letters + string.digits + "!#$&+-.^_`{|}~")
# RFC 5322 3.2.3 atoms, for display names written as they are.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
# Printable ASCII and single spaces without '"' or '\\': a quoted string needing no escapes.
_QUOTABLE = re.compile(r"[!#-\[\]-~]+(?: [!#-\[\]-~]+)*\Z")
# Whitespace-separated pieces of a value: a fold may go before each piece but the first.
_PIECES = re.compile(r"[ \t]*[^ \t]+")
# Any blank but the space (str.isspace() and \s agree on every code point).
_UNICODE_BLANK = re.compile(r"[^\S ]")


# --- bodies ------------------------------------------------------------------------------------


def choose_text_cte(data: bytes, lines: Sequence[bytes]) -> str:
    """The Content-Transfer-Encoding of a text part holding ``data`` (UTF-8), split into ``lines``.

    Shared by both writers, so that their choices cannot differ.
    """
    if not _NOT_7BIT.search(data) and max(map(len, lines), default=0) <= _MAX_7BIT_LINE:
        return "7bit"
    # Quoted-printable costs 2 extra octets per octet it must escape; base64 a third of all.
    escaped = len(data.translate(None, _QP_LITERAL))
    return "quoted-printable" if 6 * escaped < len(data) else "base64"


def _base64_lines(data: bytes) -> bytes:
    # RFC 2045 6.8: lines of at most 76 characters (57 octets of data each).
    encoded = binascii.b2a_base64(data, newline=False)
    if not encoded:
        return b""
    return b"\r\n".join([encoded[i : i + 76] for i in range(0, len(encoded), 76)]) + b"\r\n"


def _quoted_printable(data: bytes) -> bytes:
    """``data`` (lines ending in LF, no CR) as quoted-printable lines ending in CRLF (RFC 2045 6.7).

    binascii.b2a_qp escapes "=", controls, 8-bit octets and blanks at the end of a line, and
    breaks lines at 76 characters -- except that a blank it escapes at the end of a line can
    take it to 78: such lines are broken again here.
    """
    lines = binascii.b2a_qp(data, istext=True).split(b"\n")
    if max(map(len, lines)) > _MAX_QP_LINE:
        lines = [piece for line in lines for piece in _rewrap_qp(line)]
    return b"\r\n".join(lines)


_MAX_QP_LINE: Final = 76
_QP_TOKEN = re.compile(rb"=[0-9A-F]{2}|[^=]")


def _rewrap_qp(line: bytes) -> list[bytes]:
    """One encoded line as lines of at most 76 characters, joined by soft line breaks."""
    if len(line) <= _MAX_QP_LINE:
        return [line]
    soft = line.endswith(b"=")  # an escape ends in a hex digit: a final "=" is a soft break
    tokens = _QP_TOKEN.findall(line[:-1] if soft else line)
    out: list[bytes] = []
    current = b""
    for token in tokens:
        if len(current) + len(token) > _MAX_QP_LINE - 1:  # room for the soft break's "="
            out.append(current + b"=")
            current = b""
        current += token
    out.append(current + (b"=" if soft else b""))
    return out


def text_part(text: str, subtype: str) -> bytes:
    """A text/``subtype`` part (headers, blank line, body); every line of ``text`` ends in CRLF."""
    data = text.encode("utf-8")
    # bytes.splitlines() breaks at CRLF, CR and LF only, as the standard library's writer does.
    lines = data.splitlines()
    cte = choose_text_cte(data, lines)
    if cte == "7bit":
        body = b"\r\n".join(lines) + b"\r\n"
    elif cte == "quoted-printable":
        body = _quoted_printable(b"\n".join(lines) + b"\n")
    else:
        body = _base64_lines(b"\r\n".join(lines) + b"\r\n")
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    return head.encode("ascii") + body


def _disposition(kind: str, filename: str) -> str:
    """The Content-Disposition field (RFC 2183) with its filename parameter, folded."""
    start = f"Content-Disposition: {kind};"
    if _QUOTABLE.match(filename) and "=?" not in filename:
        quoted = f' filename="{filename}"'
        if len(start) + len(quoted) <= FOLD_AT:
            return f"{start}{quoted}\r\n"
        if len(quoted) <= FOLD_AT:
            return f"{start}\r\n{quoted}\r\n"
    # RFC 2231 4: charset'language'%-encoded octets; 3: numbered sections, never splitting a
    # character (a reader may decode each section on its own).
    pieces = [
        c if c in _ATTRIBUTE_CHAR else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in filename
    ]
    whole = " filename*=utf-8''" + "".join(pieces)
    if len(start) + len(whole) <= FOLD_AT:
        return f"{start}{whole}\r\n"
    if len(whole) <= FOLD_AT:
        return f"{start}\r\n{whole}\r\n"
    sections: list[str] = []
    current = " filename*0*=utf-8''"
    for piece in pieces:
        # Room for the ";" that ends every section but the last.
        if len(current) + len(piece) + 1 > FOLD_AT:
            sections.append(current)
            current = f" filename*{len(sections)}*="
        current += piece
    sections.append(current)
    return start + "\r\n" + ";\r\n".join(sections) + "\r\n"


def attachment_part(attachment: Attachment, disposition: str) -> bytes:
    """An attachment as base64 with its type, disposition, filename and Content-ID."""
    head = f"Content-Type: {attachment.content_type}\r\nContent-Transfer-Encoding: base64\r\n" + _disposition(
        disposition, attachment.filename
    )
    if attachment.content_id:
        head += f"Content-ID: <{attachment.content_id}>\r\n"
    return head.encode("ascii") + b"\r\n" + _base64_lines(attachment.data)


def multipart(subtype: str, parts: Sequence[bytes], parameter: str = "") -> bytes:
    """A multipart/``subtype`` entity around ``parts``, each of which ends with CRLF.

    ``parameter``: one more Content-Type parameter, written before the boundary.
    """
    while True:
        # 128 random bits; the check makes a collision impossible rather than unlikely, even
        # for content crafted to contain a boundary (RFC 2046 5.1.1).
        boundary = "=_" + secrets.token_hex(16)
        marker = boundary.encode("ascii")
        if not any(marker in part for part in parts):
            break
    head = f"Content-Type: multipart/{subtype};" + (f" {parameter};" if parameter else "")
    if len(head) + len(boundary) + 12 <= FOLD_AT:
        head += f' boundary="{boundary}"'
    else:
        head += f'\r\n boundary="{boundary}"'
    delimiter = b"\r\n--" + marker + b"\r\n"
    return (
        head.encode("ascii")
        + b"\r\n\r\n--"
        + marker
        + b"\r\n"
        + delimiter.join(parts)
        + b"\r\n--"
        + marker
        + b"--\r\n"
    )


def build_body(
    text: str | None, html: str | None, attachments: Sequence[Attachment]
) -> tuple[bytes, tuple[str, ...]]:
    """The MIME entity of a message body and the names of its header fields, in order.

    The shapes are those of ``Message._body``: text/plain, text/html, multipart/alternative
    (plain first), multipart/related around the HTML for its inline attachments, and
    multipart/mixed on top for the other attachments.
    """
    inline = [a for a in attachments if a.inline] if html is not None else []
    attached = [a for a in attachments if not (a.inline and html is not None)]
    html_part: bytes | None = None
    html_fields = _TEXT_FIELDS
    if html is not None:
        html_part = text_part(html, "html")
        if inline:
            # RFC 2387 3.1: multipart/related names the type of its root part.
            related = [html_part, *(attachment_part(a, "inline") for a in inline)]
            html_part = multipart("related", related, 'type="text/html"')
            html_fields = _MULTIPART_FIELDS
    parts: list[bytes] = []
    fields = _TEXT_FIELDS
    if text is not None and html_part is not None:
        parts.append(multipart("alternative", [text_part(text, "plain"), html_part]))
        fields = _MULTIPART_FIELDS
    elif html_part is not None:
        parts.append(html_part)
        fields = html_fields
    elif text is not None or not attached:
        # No body at all is an empty text/plain part, unless attachments make the body.
        parts.append(text_part(text or "", "plain"))
    if not attached:
        return parts[0], fields
    parts.extend(attachment_part(a, "inline" if a.inline else "attachment") for a in attached)
    return multipart("mixed", parts), _MULTIPART_FIELDS


_TEXT_FIELDS: Final[tuple[str, ...]] = ("Content-Type", "Content-Transfer-Encoding")
_MULTIPART_FIELDS: Final[tuple[str, ...]] = ("Content-Type",)


# --- header fields -----------------------------------------------------------------------------


def _encoded_words(text: str, first: int) -> list[str] | None:
    """``text`` as UTF-8 encoded words (RFC 2047), the first at most ``first`` characters long.

    Every character, spaces included, is inside a word, and words are separated only by folding
    whitespace, which readers drop between encoded words (RFC 2047 6.2): what is read back is
    ``text`` exactly. "Q" when it is no longer than "B" for the whole text.
    """
    if not text:
        return None
    q_pieces = [_Q_ASCII[ord(c)] if c < "\x80" else _q_octets(c) for c in text]
    data_size = len(text.encode("utf-8"))
    use_q = sum(map(len, q_pieces)) <= (data_size + 2) // 3 * 4
    prefix = "=?utf-8?q?" if use_q else "=?utf-8?b?"
    words: list[str] = []
    limit = min(first, _MAX_ENCODED_WORD) - len(prefix) - 2
    start = 0  # index of the first character of the current word
    size = 0  # its encoded (Q) or raw (B) size so far
    for index, char in enumerate(text):
        grow = len(q_pieces[index]) if use_q else len(char.encode("utf-8"))
        encoded_size = size + grow if use_q else (size + grow + 2) // 3 * 4
        if encoded_size > limit and index > start:
            words.append(_encode_word(text[start:index], q_pieces[start:index], use_q))
            limit = _MAX_ENCODED_WORD - len(prefix) - 2
            start, size = index, 0
            encoded_size = grow if use_q else (grow + 2) // 3 * 4
        if encoded_size > limit:
            return None  # not even one character fits on the first line
        size += grow
    words.append(_encode_word(text[start:], q_pieces[start:], use_q))
    return words


def _q_octets(char: str) -> str:
    return "".join(f"={b:02X}" for b in char.encode("utf-8"))


def _encode_word(chunk: str, q_pieces: list[str], use_q: bool) -> str:
    if use_q:
        return "=?utf-8?q?" + "".join(q_pieces) + "?="
    return "=?utf-8?b?" + binascii.b2a_base64(chunk.encode("utf-8"), newline=False).decode("ascii") + "?="


def fold_unstructured(name: str, value: str, *, utf8: bool) -> str | None:
    """An unstructured field (RFC 5322 3.2.5) that reads back as ``value``, or None.

    ``value`` has been checked: no control character but TAB, no surrounding blanks. Printable
    ASCII without "=?" is folded before whitespace, as it is (a word longer than a line stays
    whole: readers of structured fields such as List-Unsubscribe do not decode encoded words);
    anything else becomes encoded words, except in an SMTPUTF8 message (``utf8``), which
    shows non-ASCII text as it is (RFC 6532): that is left to the standard library.
    """
    if len(name) > _MAX_FAST_NAME:
        return None
    if value.isascii() and "=?" not in value:
        lines: list[str] = []
        line = f"{name}: "
        for number, piece in enumerate(_PIECES.findall(value)):
            if number == 0 or len(line) + len(piece) <= FOLD_AT:
                line += piece
            else:
                lines.append(line)
                line = piece  # starts with the blank it was folded before
        lines.append(line)
        if any(len(line) > MAX_LINE for line in lines):
            return None
        return "\r\n".join(lines) + "\r\n"
    if utf8:
        return None
    words = _encoded_words(value, FOLD_AT - len(name) - 2)
    if words is None:
        return None
    return f"{name}: " + "\r\n ".join(words) + "\r\n"


def _phrase(display_name: str, utf8: bool) -> str | None:
    """A display name as one unbreakable phrase token, or None when it would not be simple."""
    if not display_name or (_ATOMS.match(display_name) and "=?" not in display_name):
        return display_name
    if _QUOTABLE.match(display_name) and "=?" not in display_name:
        return f'"{display_name}"'
    if utf8 or _UNICODE_BLANK.search(display_name):
        # An SMTPUTF8 message shows non-ASCII names as they are (RFC 6532): the library's job.
        # The standard library's parser merges a space and the Unicode blanks (U+00A0, ...)
        # after it, and drops those that end a name, when they are inside an encoded word in
        # a phrase; its folder writes such names so that it reads them back.
        return None
    words = _encoded_words(display_name, _MAX_ENCODED_WORD)
    if words is None or len(words) != 1:
        # Several adjacent encoded words in a phrase are read with spaces between them by
        # the standard library's parser (contrary to RFC 2047 6.2): leave them to its folder.
        return None
    return words[0]


def fold_mailboxes(name: str, mailboxes: Sequence[tuple[str, str]], *, utf8: bool) -> str | None:
    """An address field listing ``(display name, addr-spec)`` pairs, folded, or None.

    The display names must be normalised by :class:`~smtprelay.Address`; the addr-specs must
    be ASCII unless ``utf8`` (an SMTPUTF8 message). Lines break after a comma or between a
    display name and its ``<addr-spec>``; a line longer than 78 characters can only be one
    long addr-spec.
    """
    if not mailboxes:
        return None
    tokens: list[str] = []  # phrase, angle-addr or bare addr-spec, in order
    ends: list[bool] = []  # whether a token ends a mailbox that is followed by another
    last = len(mailboxes) - 1
    for number, (display_name, addr_spec) in enumerate(mailboxes):
        if not (utf8 or addr_spec.isascii()):
            return None
        phrase = _phrase(display_name, utf8)
        if phrase is None or len(phrase) > FOLD_AT - len(name) - 3:
            return None
        if phrase:
            tokens.append(phrase)
            ends.append(False)
            tokens.append(f"<{addr_spec}>")
        else:
            tokens.append(addr_spec)
        ends.append(number < last)
    lines: list[str] = []
    line = f"{name}: {tokens[0]}" + ("," if ends[0] else "")
    for token, end in zip(tokens[1:], ends[1:], strict=True):
        piece = token + ("," if end else "")
        if len(line) + 1 + len(piece) <= FOLD_AT:
            line += " " + piece
        else:
            lines.append(line)
            line = " " + piece
    lines.append(line)
    if any(len(line) > MAX_LINE for line in lines):
        return None
    return "\r\n".join(lines) + "\r\n"
