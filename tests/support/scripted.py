"""Scripted raw-socket SMTP servers on loopback, for what no real server will do on purpose.

Each accepted connection runs a script (a function of :class:`Conn`) in its own thread: send
exactly these bytes, wait for that command, stall, trickle, inject, hang up. The conversation is
recorded, so a test can assert what the client sent (e.g. that no MAIL followed a failed STARTTLS).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType

from .network import loopback_address

DEFAULT_EXTENSIONS = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES")


class ScriptDone(Exception):
    """The client went away while the script was still talking; not a failure of the script."""


class Conn:
    """The server side of one connection, as seen by a script."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = b""
        #: Every byte the client sent, in order (after TLS, the decrypted bytes).
        self.received = bytearray()
        #: Every command line the client sent.
        self.lines: list[bytes] = []
        self.sock.settimeout(timeout)

    # -- sending -------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise ScriptDone(str(error)) from error

    def reply(self, *lines: str) -> None:
        """Send one reply; each argument is a full line like "250-PIPELINING" or "250 OK"."""
        self.send(b"".join(line.encode() + b"\r\n" for line in lines))

    def trickle(self, data: bytes, delay: float) -> None:
        for i in range(len(data)):
            self.send(data[i : i + 1])
            time.sleep(delay)

    # -- receiving -----------------------------------------------------------------------------
    def _fill(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (OSError, ssl.SSLError) as error:
            raise ScriptDone(str(error)) from error
        if not data:
            raise ScriptDone("client closed the connection")
        self.received += data
        self.buffer += data

    def line(self) -> bytes:
        """The next line the client sent, without CRLF."""
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        self.lines.append(line)
        return line

    def expect(self, verb: str) -> bytes:
        """Read the next line and check it starts with ``verb`` (case-insensitive)."""
        line = self.line()
        if not line.upper().startswith(verb.upper().encode()):
            raise AssertionError(f"expected {verb}, client sent {line!r}")
        return line

    def read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_data(self) -> bytes:
        """Read DATA content up to and including CRLF.CRLF; return it (still dot-stuffed)."""
        while True:
            if self.buffer.startswith(b".\r\n"):
                self.buffer = self.buffer[3:]
                return b".\r\n"
            end = self.buffer.find(b"\r\n.\r\n")
            if end >= 0:
                data, self.buffer = self.buffer[: end + 5], self.buffer[end + 5 :]
                return data
            self._fill()

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """Wait until the client closes; True if it did."""
        try:
            self.sock.settimeout(timeout)
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.received += data
        except (OSError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    # -- conversation helpers ------------------------------------------------------------------
    def ehlo(
        self, extensions: Sequence[str] = DEFAULT_EXTENSIONS, *, greeting: str = "220 mx.test ESMTP"
    ) -> None:
        """Greet, and answer EHLO with ``extensions``."""
        if greeting:
            self.reply(greeting)
        self.expect("EHLO")
        lines = ["mx.test", *extensions]
        self.reply(*[f"250{' ' if i == len(lines) - 1 else '-'}{text}" for i, text in enumerate(lines)])

    def accept_mail(self, recipients: int = 1) -> bytes:
        """Accept one pipelined MAIL/RCPT*/DATA transaction and return the DATA content."""
        self.expect("MAIL")
        for _ in range(recipients):
            self.expect("RCPT")
        self.expect("DATA")
        self.reply(
            *["250 2.1.0 Ok"] + ["250 2.1.5 Ok"] * recipients + ["354 End data with <CR><LF>.<CR><LF>"]
        )
        data = self.read_data()
        self.reply("250 2.0.0 Ok: queued")
        return data

    def quit(self) -> None:
        self.expect("QUIT")
        self.reply("221 2.0.0 Bye")

    def starttls(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock, server_side=True)
        self.sock.settimeout(self.timeout)
        self.buffer = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


Script = Callable[[Conn], None]


class ScriptedServer:
    """A TCP server on a loopback address; each connection runs ``script`` (or the next of ``scripts``).

    ``errors`` collects assertion errors raised inside scripts; :meth:`check` re-raises the first.
    """

    def __init__(
        self,
        script: Script | Sequence[Script],
        *,
        host: str | None = None,
        timeout: float = 5.0,
        implicit_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.scripts = list(script) if isinstance(script, Sequence) else None
        self.script = script if callable(script) else None
        self.host = host or loopback_address()
        self.timeout = timeout
        self.implicit_tls = implicit_tls
        self.conns: list[Conn] = []
        self.errors: list[BaseException] = []
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.create_server((self.host, 0), family=family)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True, name=f"scripted-{self.port}")

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def __enter__(self) -> ScriptedServer:
        self._acceptor.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if exc_type is None:
            self.check()

    def _next_script(self) -> Script | None:
        if self.script is not None:
            return self.script
        assert self.scripts is not None
        return self.scripts.pop(0) if self.scripts else None

    def _accept(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            script = self._next_script()
            if script is None:
                sock.close()
                continue
            thread = threading.Thread(target=self._run, args=(sock, script), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket, script: Script) -> None:
        if self.implicit_tls is not None:
            sock.settimeout(self.timeout)
            try:
                sock = self.implicit_tls.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                sock.close()
                return
        conn = Conn(sock, self.timeout)
        self.conns.append(conn)
        try:
            script(conn)
        except ScriptDone:
            pass
        except OSError as error:
            if not self._stopping:
                self.errors.append(error)
        except BaseException as error:
            self.errors.append(error)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in self.conns:
            conn.close()
        self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]

    def wait_for_scripts(self, timeout: float = 5.0) -> None:
        """Wait until every script started so far has finished."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def scripted(script: Script | Sequence[Script], **kwargs: object) -> Iterator[ScriptedServer]:
    with ScriptedServer(script, **kwargs) as server:  # type: ignore[arg-type]
        yield server
