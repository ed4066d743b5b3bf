"""Message content on the wire: the DATA encoder and BDAT chunking.

DATA (RFC 5321 §4.5.2): every line ending becomes CRLF, a line starting with "." gets another ".",
and the content ends with CRLF "." CRLF. Normalising *every* bare CR and bare LF to CRLF is what
makes SMTP smuggling impossible: no variant of the end-of-data sequence (``\\n.\\n``, ``\\r.\\r``,
``\\r\\n.\\n``, ...) survives, so the only end of data a server can see is the one we send
(RELIABILITY 27, the smtpsmug variants).

Strategy: work line-ending-agnostic by first folding CRLF and bare CR into LF, stuff dots after LF,
then expand LF to CRLF; four C-speed passes over the bytes. The incremental encoder keeps two bits
of state across chunks: whether the output is at the start of a line (for dot-stuffing) and whether
the previous chunk ended in CR (which may be half of a CRLF split across chunks).
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["DataEncoder", "encode_data", "normalize_line_endings", "bdat_chunks", "END_OF_DATA"]

END_OF_DATA = b".\r\n"


def _to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def normalize_line_endings(data: bytes) -> bytes:
    """Return ``data`` with every CRLF, bare CR and bare LF as CRLF, ending with CRLF unless empty."""
    if not data:
        return b""
    data = _to_lf(data)
    if not data.endswith(b"\n"):
        data += b"\n"
    return data.replace(b"\n", b"\r\n")


class DataEncoder:
    """Incremental DATA encoder: ``feed()`` chunks in any split, then ``finish()``.

    The concatenated output is exactly ``encode_data(b"".join(chunks))``.
    """

    __slots__ = ("_at_line_start", "_finished", "_pending_cr", "_seen")

    def __init__(self) -> None:
        self._at_line_start = True
        self._pending_cr = False
        self._seen = False
        self._finished = False

    def feed(self, chunk: bytes) -> bytes:
        """Encode the next piece of content; returns the bytes to send (possibly empty)."""
        if self._finished:
            raise RuntimeError("DataEncoder.feed() after finish()")
        if not chunk:
            return b""
        self._seen = True
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            # It may be the first half of a CRLF: decide when the next byte (or the end) arrives.
            chunk = chunk[:-1]
            self._pending_cr = True
        text = _to_lf(chunk)
        if not text:
            return b""
        text = text.replace(b"\n.", b"\n..")
        if self._at_line_start and text.startswith(b"."):
            text = b"." + text
        self._at_line_start = text.endswith(b"\n")
        return text.replace(b"\n", b"\r\n")

    def finish(self) -> bytes:
        """End the content: the pending line end, a final CRLF if missing, and ``.CRLF``."""
        if self._finished:
            raise RuntimeError("DataEncoder.finish() called twice")
        self._finished = True
        tail = b""
        if self._pending_cr:
            self._pending_cr = False
            self._at_line_start = True
            tail = b"\r\n"
        if self._seen and not self._at_line_start:
            tail += b"\r\n"
        return tail + END_OF_DATA


def encode_data(data: bytes) -> bytes:
    """Encode a whole message for DATA: CRLF everywhere, dot-stuffed, terminated by CRLF.CRLF.

    An empty message becomes just ``.CRLF`` (the empty body terminator of RFC 2920 §3.1).
    """
    if not data:
        return END_OF_DATA
    text = _to_lf(data).replace(b"\n.", b"\n..")
    if text.startswith(b"."):
        text = b"." + text
    if not text.endswith(b"\n"):
        text += b"\n"
    return text.replace(b"\n", b"\r\n") + END_OF_DATA


def bdat_chunks(data: bytes, chunk_size: int) -> Iterator[tuple[bytes, bool]]:
    """Split already-normalised content into (chunk, last) pairs for BDAT (RFC 3030).

    BDAT carries bytes verbatim (no dot-stuffing); callers normalise line endings first with
    :func:`normalize_line_endings`. Empty content yields one empty LAST chunk (``BDAT 0 LAST``).
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    if not data:
        yield b"", True
        return
    view = memoryview(data)
    for start in range(0, len(data), chunk_size):
        end = start + chunk_size
        yield bytes(view[start:end]), end >= len(data)
