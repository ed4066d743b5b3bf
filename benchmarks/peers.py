"""Processes the benchmarks start: Postfix's smtp-sink, and client runs in fresh child processes.

Everything started here is stopped by its context manager (SIGTERM to the whole process group,
SIGKILL if it lingers), so an exception or Ctrl-C in the harness leaves nothing running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "ChildResult",
    "SinkError",
    "SmtpSink",
    "free_port",
    "run_child",
    "vm_hwm_kib",
    "which_postfix_tool",
]

_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
_COUNTERS = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")


class SinkError(RuntimeError):
    """smtp-sink could not be started, or did not count what it should have."""


def which_postfix_tool(name: str) -> str | None:
    """Path of a Postfix test tool (``smtp-sink``, ``smtp-source``; package ``postfix``), or None."""
    return shutil.which(name, path=_SBIN_PATH)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM the process group, SIGKILL it if it does not go; reap it."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


class SmtpSink:
    """``smtp-sink -c`` on a loopback address and a free port; counts sessions and messages.

    As root smtp-sink refuses to run without ``-u USER`` (it drops to that user after binding), so
    ``-u nobody`` is added then. It offers PIPELINING but not CHUNKING, SIZE or STARTTLS.
    ``-c`` makes it write ``sess=N quit=N mesg=N`` and a carriage return whenever a session ends,
    QUIT arrives or a message is accepted; :meth:`counters` reads the last of those.
    """

    def __init__(self, host: str = "127.0.0.1", *, backlog: int = 1024, user: str = "nobody") -> None:
        self.host = host
        self.port = 0
        self.backlog = backlog
        self.user = user
        self.binary = which_postfix_tool("smtp-sink")
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._output_start = 0

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> SmtpSink:
        if self.binary is None:
            raise SinkError("smtp-sink is not installed (apt-get install postfix)")
        self.directory = Path(tempfile.mkdtemp(prefix="smtprelay-bench-sink-"))
        try:
            return self._start()
        except BaseException:  # Ctrl-C while starting: leave nothing behind
            self.stop()
            raise

    def _start(self, port: int | None = None) -> SmtpSink:
        assert self.binary is not None and self.directory is not None
        for attempt in range(5):  # the free port may be taken between the probe and smtp-sink's bind
            self.port = port if port and attempt == 0 else free_port(self.host)
            argv = [self.binary, "-c", "-h", "sink.bench.test"]
            if os.geteuid() == 0:
                argv += ["-u", self.user]
            argv += [f"{self.host}:{self.port}", str(self.backlog)]
            # Appended to, so that after a restart the history (and why it died) is still there.
            with (self.directory / "output").open("ab") as output:
                self._output_start = output.tell()  # counters() reads only this process's output
                self._process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_listening():
                return self
        self.stop()
        raise SinkError(f"smtp-sink did not start: {self.output()[-500:].decode(errors='replace')}")

    def died(self) -> str | None:
        """None while smtp-sink runs; once it has ended, how (exit status or signal, its last output)."""
        if self._process is None or self._process.poll() is None:
            return None
        code = self._process.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        tail = self.output()[-300:].decode(errors="replace").replace("\r", " ").strip()
        return f"smtp-sink {how} (its last output: {tail[-200:]!r})"

    def restart(self) -> None:
        """Start smtp-sink again (after it died), on the same port when that is free."""
        process, self._process = self._process, None
        _stop_process(process)
        self._start(port=self.port)

    def _wait_listening(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                if probe.connect_ex(self.address) == 0:
                    return True  # (the probe counts as one session)
            time.sleep(0.01)
        _stop_process(self._process)
        self._process = None
        return False

    def output(self) -> bytes:
        """The end of what the current smtp-sink process wrote (its last 4 KiB)."""
        if self.directory is None:
            return b""
        try:
            with (self.directory / "output").open("rb") as output:
                size = output.seek(0, os.SEEK_END)
                output.seek(max(self._output_start, size - 4096))
                return output.read()
        except FileNotFoundError:
            return b""

    def counters(self) -> dict[str, int]:
        """The latest ``-c`` counters: ``{"sess": ..., "quit": ..., "mesg": ...}``."""
        matches = _COUNTERS.findall(self.output())
        sess, quit_, mesg = (int(v) for v in matches[-1]) if matches else (0, 0, 0)
        return {"sess": sess, "quit": quit_, "mesg": mesg}

    def wait_for_messages(self, count: int, *, timeout: float = 10.0, settle: float = 0.05) -> int:
        """Poll until the ``mesg`` counter reaches ``count`` (or ``timeout``); return the last value.

        The counter lags a moment behind the client's 250 reply, so it is polled; once it reached
        ``count`` it is read once more after ``settle`` seconds, so a surplus is seen too.
        """
        deadline = time.monotonic() + timeout
        while True:
            seen = self.counters()["mesg"]
            if seen >= count:
                time.sleep(settle)
                return self.counters()["mesg"]
            if time.monotonic() > deadline:
                return seen
            time.sleep(0.01)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        process, self._process = self._process, None
        _stop_process(process)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _vm_hwm_kib(status_file: str) -> int:
    """VmHWM of a running process in KiB (0 once it has exited)."""
    try:
        with open(status_file, "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def vm_hwm_kib() -> int:
    """This process's peak resident set size (VmHWM) in KiB."""
    return _vm_hwm_kib("/proc/self/status")


@dataclasses.dataclass(frozen=True)
class ChildResult:
    """How a child process ended: exit code, its output, wall time, and its peak RSS (ru_maxrss)."""

    returncode: int
    stdout: str
    stderr: str
    wall: float
    #: The highest VmHWM (peak resident set) seen in /proc/PID/status while the child ran, sampled
    #: every 10 ms. (wait4()'s ru_maxrss cannot be used: Linux folds the forking parent's memory
    #: into it at exec, so every child would weigh as much as the harness.)
    sampled_hwm_kib: int
    #: CPU seconds (user + system) the child used, from wait4().
    cpu: float
    timed_out: bool


def run_child(argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> ChildResult:
    """Run ``argv`` in a new process group; return its exit status, output, wall time and peak RSS.

    On timeout, or if this function is interrupted (Ctrl-C), the child's whole process group is
    killed.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, start_new_session=True
        )
        timed_out = False
        reaped: list[tuple[int, float, float]] = []

        # A blocking wait4() in a helper thread returns the moment the child exits (accurate wall
        # time for children that cannot time themselves, like smtp-source); the join has a timeout.
        def wait() -> None:
            _, status, usage = os.wait4(process.pid, 0)
            reaped.append((status, time.monotonic(), usage.ru_utime + usage.ru_stime))

        waiter = threading.Thread(target=wait, daemon=True)
        hwm = 0
        status_file = f"/proc/{process.pid}/status"
        try:
            waiter.start()
            deadline = started + timeout
            pause = 0.001
            while waiter.is_alive() and time.monotonic() < deadline:
                hwm = max(hwm, _vm_hwm_kib(status_file))
                waiter.join(pause)
                pause = min(pause * 2, 0.01)
            if waiter.is_alive():
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                waiter.join()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            waiter.join(5)
            process.returncode = -9
            raise
        status, ended, cpu = reaped[0]
        wall = ended - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildResult(
            returncode=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            wall=wall,
            sampled_hwm_kib=hwm,
            cpu=cpu,
            timed_out=timed_out,
        )
