"""Postfix's ``smtp-sink``: a fast SMTP server that accepts everything and throws it away.

:class:`SmtpSink` starts ``smtp-sink -c [-d DIR/...] [extra options] HOST:PORT BACKLOG`` on a loopback
address and a free port, waits until it accepts connections, and stops it with SIGTERM (SIGKILL if
needed). ``counters()`` parses the running counters ``-c`` prints (``sess=N quit=N mesg=N``);
``wait_for_messages(n)`` polls them. With ``dump=True`` every transaction is also written to a
file (``-d``) and :meth:`SmtpSink.dumps` returns those files' bytes, oldest first.

Useful extra options (see smtp-sink(1)): ``-f rcpt`` / ``-r rcpt`` reject a command with 5xx/4xx,
``-q data`` disconnects without replying, ``-w 3`` waits before answering DATA, ``-p`` hides
PIPELINING, ``-e`` hides ESMTP, ``-8`` hides 8BITMIME, ``-a`` hides AUTH, ``-h NAME`` sets the
greeting host name.

Gotchas:

- As root, smtp-sink refuses to start without ``-u USER`` (it drops to that user after binding);
  ``user`` defaults to ``nobody``. Dump files are therefore written as that user: the dump
  directory is chowned to it.
- It advertises PIPELINING, 8BITMIME, DSN, ENHANCEDSTATUSCODES, XCLIENT, XFORWARD and AUTH, but
  not STARTTLS, SIZE, SMTPUTF8 or CHUNKING.
- ``-c`` writes ``sess=N quit=N mesg=N`` followed by a carriage return (not a newline) whenever a
  session ends, QUIT is received or a message is accepted, so the counters lag a moment behind
  the client's 250 reply to the final dot: poll, don't read once. The readiness probe
  (a connect and close at start) counts as one session in ``sess``.
- A dump file holds smtp-sink's own headers (``X-Client-Addr``, ``X-Mail-Args``, ``X-Rcpt-Args``
  per recipient, a 3-line ``Received:``), then the message with LF line endings, then an empty
  line.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from support.network import free_port, loopback_address

__all__ = ["SinkError", "SmtpSink", "find_smtp_sink"]

_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
_COUNTERS = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")


class SinkError(RuntimeError):
    """smtp-sink could not be started."""


def find_smtp_sink() -> str | None:
    """Path of ``smtp-sink`` (package ``postfix``), or None."""
    return shutil.which("smtp-sink", path=_SBIN_PATH)


class SmtpSink:
    """A running ``smtp-sink`` on loopback; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        hostname: str = "sink.test",
        dump: bool = False,
        extra_args: Sequence[str] = (),
        user: str = "nobody",
        backlog: int = 256,
    ) -> None:
        self.host = host or loopback_address()
        self.port = port or free_port(self.host)
        self.hostname = hostname
        self.dump = dump
        self.extra_args = tuple(extra_args)
        self.user = user
        self.backlog = backlog
        self.binary = find_smtp_sink()
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        assert self.binary is not None and self.directory is not None
        argv = [self.binary, "-c", "-h", self.hostname]
        if os.geteuid() == 0:
            argv += ["-u", self.user]
        if self.dump:
            argv += ["-d", f"{self.directory / 'dump'}/%Y%m%d%H%M%S."]
        listen = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return [*argv, *self.extra_args, listen, str(self.backlog)]

    def start(self) -> SmtpSink:
        if self._process is not None:
            return self
        if self.binary is None:
            raise SinkError("smtp-sink is not installed (apt-get install postfix)")
        self.directory = Path(tempfile.mkdtemp(prefix="smtprelay-sink-"))
        os.chmod(self.directory, 0o755)
        if self.dump:
            (self.directory / "dump").mkdir(mode=0o755)
            if os.geteuid() == 0:
                entry = pwd.getpwnam(self.user)
                os.chown(self.directory / "dump", entry.pw_uid, entry.pw_gid)
        with (self.directory / "output").open("wb") as output:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 5.0
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        while True:
            if self._process.poll() is not None:
                out = self.output()
                self._process = None
                self._remove_directory()
                raise SinkError(f"smtp-sink exited at once: {out.decode(errors='replace').strip()}")
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                if probe.connect_ex(self.address) == 0:
                    # The probe counts as one session: it ends when the socket closes here.
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise SinkError(f"smtp-sink does not listen on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def output(self) -> bytes:
        """Everything smtp-sink wrote to stdout/stderr so far."""
        if self.directory is None:
            return b""
        try:
            return (self.directory / "output").read_bytes()
        except FileNotFoundError:
            return b""

    def counters(self) -> dict[str, int]:
        """The latest ``-c`` counters: ``{"sess": ..., "quit": ..., "mesg": ...}`` (zeros before any)."""
        matches = _COUNTERS.findall(self.output())
        sess, quit_, mesg = (int(v) for v in matches[-1]) if matches else (0, 0, 0)
        return {"sess": sess, "quit": quit_, "mesg": mesg}

    @property
    def message_count(self) -> int:
        """Messages accepted so far (the ``mesg`` counter)."""
        return self.counters()["mesg"]

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> int:
        """Poll until the ``mesg`` counter reaches ``count``; return it. AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.message_count
            if seen >= count:
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"smtp-sink counted {seen} of {count} messages within {timeout}s")
            time.sleep(0.01)

    def dumps(self) -> list[bytes]:
        """The dumped transactions (``dump=True`` only), oldest first."""
        if not self.dump or self.directory is None:
            raise SinkError("start the sink with dump=True to keep the messages")
        files = [p for p in (self.directory / "dump").iterdir() if p.is_file()]
        files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.read_bytes() for p in files]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._remove_directory()

    def _remove_directory(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SmtpSink {self.host}:{self.port} pid={self.pid}>"
