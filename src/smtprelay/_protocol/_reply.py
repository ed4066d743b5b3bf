"""SMTP replies: the value type and a bounded, incremental parser.

Strategy: bytes are appended to one buffer; :meth:`ReplyReader.next_reply` scans forward for line
ends from where the previous scan stopped, validates each line as it completes, and returns a
:class:`Reply` only when a final line (``NNN<SP>`` or a bare ``NNN``) arrives. Nothing is decoded or
copied until a reply is complete. Every dimension is capped (RFC 5321 §4.5.3.1.5 says a reply line
is at most 512 octets; we allow far more, but never unbounded), so a hostile server cannot make the
client buffer without limit: an over-long line is refused as soon as the buffer holds that many
bytes without a line end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._errors import ProtocolError

__all__ = ["Reply", "ReplyReader", "MAX_LINE", "MAX_REPLY", "MAX_LINES"]

#: Longest reply line accepted, line end included (RFC 5321 allows 512; servers exceed it).
MAX_LINE = 8192
#: Largest whole reply accepted, all lines together.
MAX_REPLY = 64 * 1024
#: Most lines in one multi-line reply.
MAX_LINES = 1000

# RFC 3463 §2: class "." subject "." detail; class is 2, 4 or 5; subject and detail 1-3 digits.
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete SMTP reply.

    ``lines`` holds the text of every line without the code, the separator and any enhanced status
    code (decoded as UTF-8; undecodable bytes become U+FFFD, so text from any server is safe to log).
    ``enhanced_status`` is the RFC 3463 code (``"5.1.1"``) when the server advertised
    ENHANCEDSTATUSCODES and the code's class matches the reply's first digit.
    """

    code: int
    lines: tuple[str, ...] = ("",)
    enhanced_status: str | None = None

    @property
    def text(self) -> str:
        """All lines joined with a space (what a person reads)."""
        return " ".join(line for line in self.lines if line)

    @property
    def kind(self) -> int:
        """The first digit: 2 positive, 3 intermediate, 4 transient, 5 permanent (RFC 5321 §4.2.1)."""
        return self.code // 100

    @property
    def is_positive(self) -> bool:
        return self.kind == 2

    @property
    def is_intermediate(self) -> bool:
        return self.kind == 3

    @property
    def is_transient(self) -> bool:
        return self.kind == 4

    @property
    def is_permanent(self) -> bool:
        return self.kind == 5

    @property
    def is_closing(self) -> bool:
        """421: the server is closing the transmission channel (RFC 5321 §3.8)."""
        return self.code == 421

    def __str__(self) -> str:
        status = f" {self.enhanced_status}" if self.enhanced_status else ""
        return f"{self.code}{status} {self.text}".rstrip()


class ReplyReader:
    """Incremental parser of SMTP replies with hard limits.

    Feed bytes with :meth:`feed`; call :meth:`next_reply` until it returns None (need more bytes).
    Malformed or oversized input raises :class:`ProtocolError`; after that the reader is unusable,
    as is the connection it reads.
    """

    __slots__ = (
        "_buffer",
        "_codes",
        "_eof",
        "_lines",
        "_scan",
        "_size",
        "max_line",
        "max_lines",
        "max_reply",
    )

    def __init__(
        self, *, max_line: int = MAX_LINE, max_reply: int = MAX_REPLY, max_lines: int = MAX_LINES
    ) -> None:
        self.max_line = max_line
        self.max_reply = max_reply
        self.max_lines = max_lines
        self._buffer = bytearray()
        self._scan = 0  # offset where the current (incomplete) line starts
        self._lines: list[bytes] = []  # completed lines of the reply being read, without line ends
        self._codes: bytes = b""
        self._size = 0
        self._eof = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a reply."""
        return len(self._buffer)

    @property
    def at_eof(self) -> bool:
        return self._eof

    @property
    def in_reply(self) -> bool:
        """True when part of a reply has been received (buffered bytes or continuation lines)."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
            return
        self._buffer += data

    def discard(self) -> int:
        """Forget everything buffered (e.g. plaintext received before a TLS handshake); return the count."""
        count = len(self._buffer)
        self._buffer.clear()
        self._lines.clear()
        self._scan = 0
        self._size = 0
        self._codes = b""
        return count

    def next_reply(self, *, enhanced: bool = False) -> Reply | None:
        """Return the next complete reply, or None when more bytes are needed.

        Args:
            enhanced: parse RFC 3463 enhanced status codes (only when ENHANCEDSTATUSCODES was advertised).

        Raises:
            ProtocolError: malformed reply, inconsistent codes, or a limit exceeded.
        """
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._scan)
            if end < 0:
                if len(buffer) - self._scan > self.max_line:
                    raise ProtocolError(f"reply line longer than {self.max_line} bytes")
                return None
            if end + 1 - self._scan > self.max_line:
                raise ProtocolError(f"reply line longer than {self.max_line} bytes")
            line = bytes(buffer[self._scan : end])
            if line.endswith(b"\r"):
                line = line[:-1]
            self._size += end + 1 - self._scan
            self._scan = end + 1
            if self._size > self.max_reply:
                raise ProtocolError(f"reply longer than {self.max_reply} bytes")
            final = self._check_line(line)
            self._lines.append(line)
            if final:
                return self._complete(enhanced)
            if len(self._lines) >= self.max_lines:
                raise ProtocolError(f"reply has more than {self.max_lines} lines")

    def _check_line(self, line: bytes) -> bool:
        """Validate one reply line; return True when it is the last line of its reply."""
        if len(line) < 3 or not line[:3].isdigit():
            raise ProtocolError(f"malformed reply line {_show(line)}")
        code = line[:3]
        if code[0] not in b"2345":
            raise ProtocolError(f"reply code {code.decode()} is not 2xx-5xx")
        if self._lines and code != self._codes:
            raise ProtocolError(
                f"multi-line reply changed its code from {self._codes.decode()} to {code.decode()}"
            )
        self._codes = code
        if len(line) == 3:
            return True
        separator = line[3:4]
        if separator == b" ":
            return True
        if separator == b"-":
            return False
        raise ProtocolError(f"malformed reply line {_show(line)}")

    def _complete(self, enhanced: bool) -> Reply:
        code = int(self._codes)
        texts = [line[4:].decode("utf-8", "replace") for line in self._lines]
        del self._buffer[: self._scan]
        self._scan = 0
        self._size = 0
        self._lines.clear()
        self._codes = b""
        status = None
        if enhanced:
            status, texts = _strip_enhanced(code, texts)
        return Reply(code, tuple(texts), status)


def _strip_enhanced(code: int, texts: list[str]) -> tuple[str | None, list[str]]:
    """Take the RFC 3463 code off each line that carries it; only a class matching the first digit counts."""
    match = _ENHANCED.match(texts[0])
    if match is None or int(match.group(1)) != code // 100:
        return None, texts
    status = f"{match.group(1)}.{int(match.group(2))}.{int(match.group(3))}"
    prefix = match.group(0).rstrip()
    stripped = []
    for text in texts:
        if text.startswith(prefix) and (len(text) == len(prefix) or text[len(prefix)].isspace()):
            stripped.append(text[len(prefix) :].lstrip())
        else:
            stripped.append(text)
    return status, stripped


def _show(line: bytes, limit: int = 60) -> str:
    """A short, printable rendering of server bytes for error messages."""
    shown = repr(line[:limit])
    return shown + ("..." if len(line) > limit else "")
