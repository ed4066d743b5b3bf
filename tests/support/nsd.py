"""NSD as a real authoritative DNS server on loopback, serving test zones given as text.

:class:`NsdServer` writes a tiny private ``nsd.conf`` plus one zone file per zone into its own
temporary directory, runs ``nsd -d -c nsd.conf`` in the foreground (below a reaper process in
its own session) on a fresh 127.0.0.N address and a port free for both UDP and TCP, waits until
it answers (about 0.2 s), and stops it with SIGTERM (SIGKILL for the whole session after 5 s).

- :func:`zone_text` builds a zone file: ``$ORIGIN``, ``$TTL``, an SOA and an apex NS record, then
  the records you give (``"@ MX 10 mx1"``, ``"mx1 A 127.0.0.5"``, ``"mx1 AAAA ::1"``).
  ``soa=False`` leaves the SOA (and NS) out: NSD then refuses to load the zone and answers every
  query for it with SERVFAIL at once -- the documented way to simulate a transient DNS failure.
- :meth:`NsdServer.resolver` returns a ``dns.resolver.Resolver(configure=False)`` pointed at the
  server (``nameservers``, ``port``, a short ``lifetime``, no cache, no SERVFAIL retries): pass it
  to code under test. :meth:`NsdServer.query` sends one raw query and returns the response
  message, whatever its rcode (use it to see SERVFAIL itself: the resolver turns SERVFAIL into
  ``dns.resolver.NoNameservers``).

Gotchas:

- 127.0.0.53 is systemd-resolved's address on many machines; this uses ``loopback_address()``.
  NSD binds addresses in 127.0.0.0/8 that are not configured on ``lo`` without complaint (Linux
  routes the whole /8 to loopback); BIND refuses to.
- ``username: ""`` keeps NSD running as root (no privilege drop, so no permission games with
  the temp directory); ``database: ""`` keeps zones in memory only; ``zonelistfile``,
  ``xfrdfile``, ``xfrdir``, ``pidfile`` and ``logfile`` all point into the temp directory, and
  ``remote-control`` is off, so nothing under /etc/nsd or /var/lib/nsd is read or written.
- NSD forks an xfrd and ``server-count`` server processes even in ``-d`` mode, and on SIGTERM
  the main process may exit before them: they would linger as <defunct> entries under PID 1. So
  NSD runs below :class:`support.postfix.Reaped` (a child-subreaper) that reaps them; ``pid`` is
  the reaper's.
- A port free for TCP may be taken for UDP: the port is checked for both.
- The apex NS points at ``ns.<origin>`` with no address record unless you add one; that is fine
  for an authoritative-only server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.resolver

from support.network import free_port, loopback_address
from support.postfix import Reaped

__all__ = ["NsdError", "NsdServer", "find_nsd", "zone_text"]

_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class NsdError(RuntimeError):
    """NSD could not be configured or started; the message includes its log."""


def find_nsd() -> str | None:
    """Path of the ``nsd`` binary, or None when NSD is not installed."""
    return shutil.which("nsd", path=_SBIN_PATH)


def zone_text(
    origin: str, records: Iterable[str] = (), *, soa: bool = True, ttl: int = 60, serial: int = 1
) -> str:
    """A zone file for ``origin``: SOA and NS at the apex (unless ``soa=False``), then ``records``.

    Records are zone-file lines relative to the origin, e.g. ``"@ MX 10 mx1"``, ``"mx1 A 127.0.0.5"``.
    """
    origin = origin.rstrip(".") + "."
    lines = [f"$ORIGIN {origin}", f"$TTL {ttl}"]
    if soa:
        lines += [
            f"@ IN SOA ns.{origin} hostmaster.{origin} {serial} 3600 600 86400 {ttl}",
            f"@ IN NS ns.{origin}",
        ]
    lines += list(records)
    return "\n".join(lines) + "\n"


def _free_udp_and_tcp_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        port = free_port(host)
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((host, port))
            except OSError:
                continue
        return port
    raise NsdError(f"no port free for both UDP and TCP on {host}")


class NsdServer:
    """A private NSD serving ``zones`` ({origin: zone file text}) on ``host``:``port``."""

    def __init__(
        self,
        zones: Mapping[str, str],
        *,
        host: str | None = None,
        port: int | None = None,
        base_dir: str | Path | None = None,
    ) -> None:
        if not zones:
            raise ValueError("NSD needs at least one zone")
        self.zones = {origin.rstrip(".").lower() + ".": text for origin, text in zones.items()}
        self.host = host or loopback_address()
        self.port = port or _free_udp_and_tcp_port(self.host)
        self.binary = find_nsd()
        self._base_parent = Path(base_dir) if base_dir is not None else None
        self.directory: Path | None = None
        self._reaper: Reaped | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._reaper.pid if self._reaper is not None else None

    def _config(self) -> str:
        assert self.directory is not None
        base = self.directory
        listen = f"{self.host}@{self.port}"
        ipv6 = ":" in self.host
        lines = [
            "server:",
            f'    ip-address: "{listen}"',
            f"    port: {self.port}",
            f"    do-ip4: {'no' if ipv6 else 'yes'}",
            f"    do-ip6: {'yes' if ipv6 else 'no'}",
            '    username: ""',
            '    chroot: ""',
            f'    zonesdir: "{base}/zones"',
            '    database: ""',
            f'    zonelistfile: "{base}/zone.list"',
            f'    xfrdfile: "{base}/xfrd.state"',
            f'    xfrdir: "{base}/xfr"',
            f'    pidfile: "{base}/nsd.pid"',
            f'    logfile: "{base}/nsd.log"',
            "    server-count: 1",
            "    verbosity: 2",
            "    hide-version: yes",
            "    identity: smtprelay-test",
            "    reuseport: no",
            "    round-robin: no",
            "    zonefiles-write: 0",
            "remote-control:",
            "    control-enable: no",
        ]
        for index, origin in enumerate(self.zones):
            lines += ["zone:", f'    name: "{origin}"', f'    zonefile: "zone{index}.zone"']
        return "\n".join(lines) + "\n"

    def start(self) -> NsdServer:
        if self._reaper is not None:
            return self
        if self.binary is None:
            raise NsdError("NSD is not installed (apt-get install nsd)")
        if self._base_parent is not None:
            self._base_parent.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix="smtprelay-nsd-", dir=self._base_parent))
        zones_dir = self.directory / "zones"
        zones_dir.mkdir()
        (self.directory / "xfr").mkdir()
        for index, text in enumerate(self.zones.values()):
            (zones_dir / f"zone{index}.zone").write_text(text)
        config = self.directory / "nsd.conf"
        config.write_text(self._config())
        self._reaper = Reaped([self.binary, "-d", "-c", str(config)], self.directory / "stderr")
        try:
            self._wait_answering(timeout=10.0)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_answering(self, timeout: float) -> None:
        assert self._reaper is not None
        probe = dns.message.make_query(next(iter(self.zones)), dns.rdatatype.SOA)
        deadline = time.monotonic() + timeout
        while True:
            code = self._reaper.command_exit_code(timeout=0)
            if code is not None:
                raise NsdError(f"nsd exited with {code}:\n{self.log()}")
            with contextlib.suppress(dns.exception.Timeout, OSError):
                dns.query.udp(probe, self.host, port=self.port, timeout=0.2)
                return  # any answer, SERVFAIL included, means it is serving
            if time.monotonic() > deadline:
                raise NsdError(f"nsd does not answer on {self.host}@{self.port}:\n{self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        """NSD's log file and its stderr so far."""
        if self.directory is None:
            return ""
        parts = []
        for name in ("nsd.log", "stderr"):
            with contextlib.suppress(OSError):
                parts.append((self.directory / name).read_text(errors="replace"))
        return "\n".join(p for p in parts if p)

    def resolver(self, lifetime: float = 2.0) -> dns.resolver.Resolver:
        """A resolver that asks only this server: no system configuration, no cache."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.host]
        resolver.port = self.port
        resolver.timeout = lifetime
        resolver.lifetime = lifetime
        resolver.retry_servfail = False
        resolver.cache = None
        return resolver

    def query(
        self,
        name: str,
        rdtype: str | dns.rdatatype.RdataType = "A",
        *,
        timeout: float = 2.0,
        tcp: bool = False,
    ) -> dns.message.Message:
        """Send one query straight to the server; return the response whatever its rcode."""
        request = dns.message.make_query(dns.name.from_text(name), rdtype)
        if tcp:
            return dns.query.tcp(request, self.host, port=self.port, timeout=timeout)
        return dns.query.udp(request, self.host, port=self.port, timeout=timeout)

    def stop(self) -> None:
        """SIGTERM to NSD; its xfrd and server children follow. SIGKILL after 5 s."""
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.signal(signal.SIGTERM)
            if not reaper.wait(timeout=5.0):
                reaper.kill()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> NsdServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<NsdServer {self.host}@{self.port} zones={list(self.zones)} pid={self.pid}>"
