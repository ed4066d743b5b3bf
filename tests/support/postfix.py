"""A private Postfix instance as a real receiving MTA for integration tests.

:class:`PostfixInstance` builds a throw-away Postfix configuration in its own temporary directory
(``/tmp/smtprelay-postfix-XXXX``) and runs it with ``postfix -c DIR/etc start``. It never writes
to ``/etc/postfix`` (Postfix only reads the ``meta_directory`` files it ships there) and never
touches the system's mail service. Several instances can run at once (own directories, own
addresses/ports); starting one takes about 0.25 s, stopping one about 20 ms.

Layout of the directory::

    etc/        config_directory: main.cf, master.cf, virtual_mailbox (regexp), recipient_access
    queue/      queue_directory (postfix-script's create-missing makes the subdirectories)
    data/       data_directory
    mail/       virtual_mailbox_base, owned by the unprivileged delivery user ('nobody')
      Maildir/  where virtual(8) stores every accepted message for the test domains
    maillog     maillog_file (postlogd writes it; no syslog needed)

What it does:

- smtpd listens on one or more ``host:port`` pairs given as master.cf service lines
  (``127.0.0.5:2525 inet n - n - - smtpd``): ``inet_interfaces`` refuses addresses that are not on
  an interface, master.cf service addresses do not care, so any 127.0.0.N works.
- ``chroot = n`` on every service (the master.cf is written from scratch); STARTTLS is offered
  (``smtpd_tls_security_level = may``) with a certificate from :mod:`support.certs`; SMTPUTF8 is
  on. EHLO advertises PIPELINING, SIZE, VRFY, ETRN, STARTTLS, ENHANCEDSTATUSCODES, 8BITMIME, DSN,
  SMTPUTF8 and CHUNKING.
- Any local part at the configured domains is accepted and delivered by virtual(8) to one
  Maildir (``virtual_mailbox_maps`` is the regexp ``/@/ Maildir/``). Tests isolate themselves by
  recipient address: :meth:`PostfixInstance.messages` and :meth:`~PostfixInstance.wait_for_messages`
  select messages by their ``Delivered-To:`` header (case-insensitively).
- Everything else (other domains, address literals) is accepted and thrown away by discard(8):
  ``mydestination`` is empty and ``local_transport``, ``relay_transport`` and
  ``default_transport`` are all ``discard:``. All loopback clients are in ``mynetworks``, so the
  default relay restrictions permit them. Nothing is ever bounced back to a test address or to
  a postmaster: bounces for foreign senders are discarded too and ``notify_classes`` is empty.
- ``reject`` maps recipient addresses to SMTP replies (``{"rejected@mx.test": "550 5.1.1 No"}``)
  through ``check_recipient_access`` on a texthash table; ``main_cf`` adds or overrides any other
  main.cf setting (``smtpd_forbid_bare_newline = reject``, ``message_size_limit = 20000``, ...).

What Postfix adds to a stored message (see :func:`split_stored_message`), at the top, in order::

    Return-Path: <sender>                          by virtual(8)
    X-Original-To: Rcpt@mx.test                    by virtual(8): the recipient as sent
    Delivered-To: Rcpt@mx.test                     by virtual(8)
    Received: from HELO (unknown [127.0.0.1])      by smtpd: 3 lines (more with
    \tby mx.test (Postfix) with ESMTPS id 4ABC          smtpd_tls_received_header)
    \tfor <Rcpt@mx.test>; Tue, 2 Jan 2024 10:00:00 +0000 (UTC)

With several recipients in one transaction the second Received line ends in ``;`` and the third
is the date alone. The protocol word is ESMTP / ESMTPS (after STARTTLS) / UTF8SMTP / UTF8SMTPS
(with SMTPUTF8).

After them comes the message exactly as sent, except that every line ends in LF instead of CRLF
(Maildir convention; :func:`stored_to_sent` undoes it), dot-stuffing is undone, and cleanup has
removed any ``Bcc:`` header. Because ``local_header_rewrite_clients`` is empty, cleanup neither
rewrites addresses in headers nor adds a missing ``Message-ID``/``Date``/``From``.

Gotchas found on the way:

- ``postfix`` writes its fatal errors only to a terminal (otherwise it just exits 1):
  ``postfix start`` runs under ``script -qec CMD /dev/null`` and the captured text goes into
  :class:`PostfixError` (e.g. "postfix: fatal: parameter inet_interfaces: no local interface
  found for 127.0.0.77").
- Postfix refuses to read main.cf or a table file modified in the current second: it sleeps 300 ms
  at a time until the clock moves on, 2 s per start. The config files are backdated a minute.
- virtual(8) forbids ``$1`` substitution from regexp tables ("regular expression substitution is
  not allowed"), so a Maildir per recipient is impossible without one table entry per address;
  hence the single Maildir and selection by ``Delivered-To:``. (``/`` also cannot appear in a
  regexp table pattern delimited by ``/``, and ``!/.../`` means "does not match".)
- Postfix daemons switch to ``mail_owner`` (``postfix``) and virtual(8) to ``nobody``: the whole
  directory must be traversable by them, so it lives under /tmp with mode 0755 -- pytest's
  ``tmp_path`` is under a 0700 directory and does not work.
- smtpd looks up the client's host name by default, which would send DNS queries to the
  machine's resolver (off loopback): ``smtpd_peername_lookup = no``. Received headers therefore say
  ``from HELO (unknown [127.0.0.N])``.
- ``smtpd_forbid_bare_newline_exclusions`` defaults to ``$mynetworks``, which holds every test
  client: it is emptied, so ``smtpd_forbid_bare_newline = reject`` really answers
  ``550 5.5.2 ... Error: bare <LF> received`` at the end of DATA (the session stays open).
- ``in_flow_delay = 0`` (smtpd otherwise may sleep up to 1 s per message when the queue manager
  lags) and ``local_recipient_maps =``/``alias_maps =`` (no /etc/aliases, no proxymap lookups).
- ``myhostname`` defaults to the first domain. It must not also be in ``mydestination`` (Postfix
  warns and local(8) would take the mail), so ``mydestination`` stays empty.
- ``postfix start`` daemonizes the master; when it stops, children that exit after it would
  become <defunct> entries under PID 1 (which in a container may reap them seconds later). So the
  command runs below :class:`Reaped`, a small child-subreaper process that adopts and reaps them;
  it exits only once every process of the instance is gone. :meth:`PostfixInstance.stop` sends
  SIGTERM to the master (what ``postfix stop`` does), waits for the reaper, and SIGKILLs anything
  left that carries ``MAIL_CONFIG=<this config dir>`` in its environment (master passes it on to
  every daemon).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from support.certs import CertFiles
from support.network import free_port, loopback_address

__all__ = [
    "PostfixError",
    "PostfixInstance",
    "Reaped",
    "find_postfix",
    "split_stored_message",
    "stored_to_sent",
]

_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class PostfixError(RuntimeError):
    """Postfix could not be configured, started or stopped; the message says why."""


def find_postfix() -> str | None:
    """Path of the ``postfix`` command, or None when Postfix is not installed."""
    return shutil.which("postfix", path=_SBIN_PATH)


def _service_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Run by the test interpreter as a tiny init: it becomes a "child subreaper" (prctl), runs the
# command, writes the command's exit code to STATUS_FILE, then reaps every orphan that ends up
# below it (a daemonized Postfix master, NSD's xfrd and server children) until none is left.
# Without it, a peer's children that outlive their parent for a moment end up as <defunct>
# entries under PID 1, which (in containers) may take seconds to reap them.
_REAPER_SOURCE = r"""
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("reaper: prctl(PR_SET_CHILD_SUBREAPER) failed")
status_file, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
def forward(signum, frame):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
while True:
    try:
        child, raw = os.wait()
    except ChildProcessError:
        break
    if child == pid:
        with open(status_file + ".tmp", "w") as out:
            out.write(str(os.waitstatus_to_exitcode(raw)))
        os.rename(status_file + ".tmp", status_file)
"""


class Reaped:
    """``argv`` run below a child-subreaper process, so none of its descendants becomes a zombie.

    :meth:`command_exit_code` waits for the command itself; :meth:`wait` for the reaper, which exits
    only when the command and every process it left behind (daemons included) have exited and
    been reaped. :meth:`signal` sends a signal to the command (through the reaper).
    """

    def __init__(self, argv: Sequence[str], output: Path) -> None:
        self.status_file = output.with_name(output.name + ".status")
        self.output = output
        program = output.with_name("reaper.py")  # a file, so that ps shows a short command line
        program.write_text(_REAPER_SOURCE)
        with output.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(program), str(self.status_file), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def command_exit_code(self, timeout: float) -> int | None:
        """The command's exit code once it has exited (None if it still runs after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError, ValueError):
                return int(self.status_file.read_text())
            if self.process.poll() is not None:  # the reaper itself died
                return self.process.returncode or 127
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)

    def output_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.output.read_text(errors="replace").replace("\r\n", "\n").strip()
        return ""

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def wait(self, timeout: float) -> bool:
        """Wait until the reaper (and so everything below it) has exited."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the reaper's process group (the reaper and whatever did not leave it)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


_CONTINUATION = (b" ", b"\t")
_ADDED_HEADERS = (
    (b"return-path:", True),
    (b"x-original-to:", False),
    (b"delivered-to:", True),
    (b"received:", True),
)


def split_stored_message(stored: bytes) -> tuple[list[bytes], bytes]:
    """Split a message as virtual(8) stored it into (the header lines Postfix added, the rest).

    Postfix prepends, in this order: ``Return-Path: <sender>``, ``X-Original-To: recipient`` (as
    the client gave it; only while ``enable_original_recipient = yes``, the default),
    ``Delivered-To: recipient`` (both by virtual(8)) and smtpd's ``Received:`` header (3 lines,
    continuation lines start with a TAB). The first list holds those headers, each with its
    continuation lines; the second is everything after them, still with LF line endings.
    """
    added: list[bytes] = []
    rest = stored
    for name, required in _ADDED_HEADERS:
        if rest[: len(name)].lower() != name:
            if required:
                raise ValueError(f"stored message lacks Postfix's {name.decode()} header here: {rest[:80]!r}")
            continue
        end = rest.find(b"\n")
        while end != -1 and rest[end + 1 : end + 2] in _CONTINUATION:
            end = rest.find(b"\n", end + 1)
        if end == -1:
            raise ValueError("stored message ends inside Postfix's own headers")
        added.append(rest[: end + 1])
        rest = rest[end + 1 :]
    return added, rest


def stored_to_sent(stored: bytes) -> bytes:
    """The message as the client sent it in DATA (CRLF line endings, no dot-stuffing).

    Strips the headers Postfix prepended and turns LF back into CRLF. Exact for messages whose
    lines all ended in CRLF (what SMTP requires and smtplib sends).
    """
    _, rest = split_stored_message(stored)
    return rest.replace(b"\n", b"\r\n")


class PostfixInstance:
    """A private Postfix receiving MTA on loopback; see the module docstring.

    ``listen`` is a list of ``(host, port)`` pairs for smtpd (default: one fresh 127.0.0.N address
    and a free port). ``certificate`` enables STARTTLS. ``reject`` maps recipient addresses to
    SMTP replies. ``main_cf`` adds or overrides main.cf settings. Use as a context manager or call
    :meth:`start`/:meth:`stop`.
    """

    def __init__(
        self,
        *,
        domains: Sequence[str] = ("mx.test",),
        listen: Sequence[tuple[str, int]] | None = None,
        certificate: CertFiles | None = None,
        myhostname: str | None = None,
        reject: Mapping[str, str] | None = None,
        main_cf: Mapping[str, str] | None = None,
        mail_user: str = "nobody",
        base_dir: str | Path | None = None,
        keep_files: bool = False,
    ) -> None:
        if not domains:
            raise ValueError("a Postfix instance needs at least one virtual mailbox domain")
        self.domains = tuple(d.lower().rstrip(".") for d in domains)
        if listen is None:
            host = loopback_address()
            listen = [(host, free_port(host))]
        if not listen:
            raise ValueError("smtpd must listen somewhere")
        self.listen: tuple[tuple[str, int], ...] = tuple(listen)
        self.certificate = certificate
        self.myhostname = myhostname or self.domains[0]
        self.reject = {address.lower(): reply for address, reply in (reject or {}).items()}
        for address, reply in self.reject.items():
            if not re.fullmatch(r"[245]\d\d( .*)?", reply):
                raise ValueError(f"reply for {address!r} must start with an SMTP code: {reply!r}")
        self.extra_main_cf = dict(main_cf or {})
        self.mail_user = mail_user
        self.keep_files = keep_files
        self._base_parent = Path(base_dir) if base_dir is not None else None
        self.postfix = find_postfix()
        self.directory: Path | None = None
        self._reaper: Reaped | None = None

    # -- paths and addresses -------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address smtpd listens on (the first one when there are several)."""
        return self.listen[0][0]

    @property
    def port(self) -> int:
        return self.listen[0][1]

    @property
    def address(self) -> tuple[str, int]:
        return self.listen[0]

    def _dir(self, name: str) -> Path:
        if self.directory is None:
            raise PostfixError("the Postfix instance has not been started")
        return self.directory / name

    @property
    def config_dir(self) -> Path:
        return self._dir("etc")

    @property
    def queue_dir(self) -> Path:
        return self._dir("queue")

    @property
    def mail_dir(self) -> Path:
        return self._dir("mail")

    @property
    def maillog_path(self) -> Path:
        return self._dir("maillog")

    # -- configuration ---------------------------------------------------------------------------

    def main_cf_settings(self) -> dict[str, str]:
        """The main.cf settings this instance runs with (after ``main_cf`` overrides)."""
        etc, base = self.config_dir, self.directory
        assert base is not None
        user = pwd.getpwnam(self.mail_user)
        ipv6 = any(":" in host for host, _ in self.listen)
        settings: dict[str, str] = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self._dir("data")),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": self.myhostname,
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "all" if ipv6 else "ipv4",
            "mynetworks": "127.0.0.0/8 [::1]/128" if ipv6 else "127.0.0.0/8",
            "maillog_file": str(self.maillog_path),
            "maillog_file_prefixes": str(base),
            "smtputf8_enable": "yes",
            "smtpd_peername_lookup": "no",
            "in_flow_delay": "0",
            # Every test client is in mynetworks, which is exempt by default: without this,
            # smtpd_forbid_bare_newline = reject (set through main_cf) would change nothing.
            "smtpd_forbid_bare_newline_exclusions": "",
            "notify_classes": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            "local_header_rewrite_clients": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "relay_domains": "",
            "local_transport": "discard:",
            "relay_transport": "discard:",
            "default_transport": "discard:",
            "virtual_mailbox_domains": " ".join(self.domains),
            "virtual_mailbox_base": str(self.mail_dir),
            "virtual_mailbox_maps": f"regexp:{etc / 'virtual_mailbox'}",
            "virtual_uid_maps": f"static:{user.pw_uid}",
            "virtual_gid_maps": f"static:{user.pw_gid}",
            "virtual_minimum_uid": str(min(100, user.pw_uid)),
            "virtual_mailbox_limit": "0",
        }
        if self.certificate is not None:
            settings.update(
                {
                    "smtpd_tls_security_level": "may",
                    "smtpd_tls_cert_file": str(self.certificate.cert),
                    "smtpd_tls_key_file": str(self.certificate.key),
                    "smtpd_tls_loglevel": "1",
                    "smtpd_tls_session_cache_database": "",
                }
            )
        if self.reject:
            settings["smtpd_recipient_restrictions"] = (
                f"check_recipient_access texthash:{etc / 'recipient_access'}"
            )
        settings.update(self.extra_main_cf)
        return settings

    def _master_cf(self) -> str:
        services = [f"{_service_address(h, p)} inet n - n - - smtpd" for h, p in self.listen]
        services += [
            "pickup     unix  n - n 60    1 pickup",
            "cleanup    unix  n - n -     0 cleanup",
            "qmgr       unix  n - n 300   1 qmgr",
            "tlsmgr     unix  - - n 1000? 1 tlsmgr",
            "rewrite    unix  - - n -     - trivial-rewrite",
            "bounce     unix  - - n -     0 bounce",
            "defer      unix  - - n -     0 bounce",
            "trace      unix  - - n -     0 bounce",
            "verify     unix  - - n -     1 verify",
            "flush      unix  n - n 1000? 0 flush",
            "proxymap   unix  - - n -     - proxymap",
            "proxywrite unix  - - n -     1 proxymap",
            "showq      unix  n - n -     - showq",
            "error      unix  - - n -     - error",
            "retry      unix  - - n -     - error",
            "discard    unix  - - n -     - discard",
            "virtual    unix  - n n -     - virtual",
            "anvil      unix  - - n -     1 anvil",
            "scache     unix  - - n -     1 scache",
            "postlog    unix-dgram n - n - 1 postlogd",
        ]
        return "\n".join(services) + "\n"

    def _write_config(self) -> None:
        etc = self.config_dir
        etc.mkdir(mode=0o755)
        self.queue_dir.mkdir(mode=0o755)
        user = pwd.getpwnam(self.mail_user)
        self.mail_dir.mkdir(mode=0o755)
        os.chown(self.mail_dir, user.pw_uid, user.pw_gid)
        main = "".join(f"{key} = {value}\n" for key, value in self.main_cf_settings().items())
        (etc / "main.cf").write_text(main)
        (etc / "master.cf").write_text(self._master_cf())
        # ${2}/${1}/: trailing slash = Maildir. The domain is one of ours (the table is consulted
        # only for virtual_mailbox_domains); the local part may not start with '.' nor contain '/'.
        (etc / "virtual_mailbox").write_text("/@/\tMaildir/\n")
        (etc / "recipient_access").write_text(
            "".join(f"{address}\t{reply}\n" for address, reply in self.reject.items())
        )
        # Postfix refuses to read a table or main.cf modified in the current second: it sleeps
        # 300 ms at a time until the clock moves on (up to 2 s per fresh file). Backdate them.
        past = time.time() - 60
        for path in etc.iterdir():
            os.utime(path, (past, past))

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> PostfixInstance:
        if self._reaper is not None:
            return self
        if self.postfix is None:
            raise PostfixError("Postfix is not installed (apt-get install postfix)")
        if os.geteuid() != 0:
            raise PostfixError("a private Postfix instance must be started as root")
        if self._base_parent is not None:
            self._base_parent.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix="smtprelay-postfix-", dir=self._base_parent))
        os.chmod(self.directory, 0o755)
        try:
            self._write_config()
            command = [self.postfix, "-c", str(self.config_dir), "start"]
            script = shutil.which("script")
            if script is not None:  # postfix prints fatal errors only to a terminal
                command = [script, "-qec", shlex.join(command), "/dev/null"]
            self._reaper = Reaped(command, self._dir("postfix-start.out"))
            code = self._reaper.command_exit_code(timeout=60)
            if code != 0:
                raise PostfixError(
                    f"postfix -c {self.config_dir} start failed (exit {code}):\n"
                    f"{self._reaper.output_text()}\n--- maillog ---\n{self.maillog()[-4000:]}"
                )
            self._wait_listening(timeout=10.0)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for host, port in self.listen:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            while True:
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.settimeout(1.0)
                    if probe.connect_ex((host, port)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise PostfixError(
                        f"Postfix does not listen on {host}:{port}\n--- maillog ---\n{self.maillog()[-4000:]}"
                    )
                time.sleep(0.02)

    def master_pid(self) -> int | None:
        """The master daemon's pid while it runs, else None."""
        if self.directory is None:
            return None
        try:
            pid = int(self._dir("queue/pid/master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def processes(self) -> list[int]:
        """Pids of every process belonging to this instance (``MAIL_CONFIG`` names its config dir)."""
        if self.directory is None:
            return []
        marker = f"MAIL_CONFIG={self.config_dir}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """Stop the master and every Postfix process of this instance, then remove its directory.

        SIGTERM to the master (exactly what ``postfix stop`` does, minus its 1-second polling);
        the master passes it on to its children. Anything still alive after 5 s gets SIGKILL.
        """
        reaper, self._reaper = self._reaper, None
        if self.directory is None:
            return
        try:
            pid = self.master_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            if reaper is not None and not reaper.wait(timeout=5.0):
                for leftover in self.processes():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(leftover, signal.SIGKILL)
                if not reaper.wait(timeout=5.0):
                    reaper.kill()
            if not _wait_gone(self.processes(), timeout=5.0):
                raise PostfixError(f"Postfix processes outlived stop(): {self.processes()}")
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self.directory is not None and not self.keep_files:
            if self.processes():  # never delete a queue under a running daemon
                return
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- inspection ------------------------------------------------------------------------------

    def maillog(self) -> str:
        """The instance's log so far (for assertion messages and debugging)."""
        try:
            return self.maillog_path.read_text(errors="replace")
        except (OSError, PostfixError):
            return ""

    @property
    def maildir(self) -> Path:
        """The one Maildir virtual(8) delivers every accepted message to."""
        return self.mail_dir / "Maildir"

    def message_paths(self, recipient: str | None = None) -> list[Path]:
        """Files of the messages delivered so far (to ``recipient`` only, if given), oldest first.

        A message is "to" a recipient when its ``Delivered-To:`` header names it (compared
        case-insensitively, UTF-8 local parts included); virtual(8) stores one copy per recipient.
        """
        files: list[Path] = []
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                files.extend(p for p in (self.maildir / sub).iterdir() if p.is_file())
        if recipient is not None:
            wanted = recipient.casefold()
            files = [p for p in files if _delivered_to(p) == wanted]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def messages(self, recipient: str | None = None) -> list[bytes]:
        """The messages delivered so far, as stored (LF line endings), oldest first."""
        return [p.read_bytes() for p in self.message_paths(recipient)]

    def wait_for_messages(self, recipient: str, count: int = 1, timeout: float = 10.0) -> list[bytes]:
        """Poll the Maildir until ``count`` messages for ``recipient`` arrived; return them all.

        Raises AssertionError with the end of the maillog when they do not arrive in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            paths = self.message_paths(recipient)
            if len(paths) >= count:
                return [p.read_bytes() for p in paths]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(paths)} of {count} messages arrived for {recipient} within {timeout}s\n"
                    f"--- maillog (end) ---\n{self.maillog()[-4000:]}"
                )
            time.sleep(0.02)

    def clear_mailbox(self, recipient: str | None = None) -> None:
        """Delete the messages delivered so far (to ``recipient`` only, if given)."""
        for path in self.message_paths(recipient):
            path.unlink(missing_ok=True)

    def log_lines(self, pattern: str) -> list[str]:
        """Maillog lines matching the regular expression ``pattern``."""
        regex = re.compile(pattern)
        return [line for line in self.maillog().splitlines() if regex.search(line)]

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> list[str]:
        """Poll the maillog until a line matches ``pattern``; return the matching lines.

        postlogd writes asynchronously, so a line may appear a moment after the SMTP reply.
        """
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines(pattern)
            if lines:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no maillog line matches {pattern!r} within {timeout}s\n"
                    f"--- maillog (end) ---\n{self.maillog()[-4000:]}"
                )
            time.sleep(0.02)

    def __repr__(self) -> str:
        listen = ", ".join(_service_address(h, p) for h, p in self.listen)
        return f"<PostfixInstance {listen} domains={list(self.domains)} dir={self.directory}>"


def _delivered_to(path: Path) -> str:
    """The (casefolded) address in the ``Delivered-To:`` header virtual(8) prepends."""
    try:
        with path.open("rb") as stored:
            for _ in range(3):  # Return-Path, X-Original-To (optional), Delivered-To
                line = stored.readline(4096)
                if line[:13].lower() == b"delivered-to:":
                    return line[13:].strip().decode("utf-8", "surrogateescape").casefold()
    except FileNotFoundError:
        pass
    return ""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie has exited; only its parent's wait() is missing.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_gone(pids: Iterable[int], timeout: float) -> bool:
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [pid for pid in pending if _alive(pid)]
        if not pending:
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
