"""A small authoritative DNS server on loopback, speaking real DNS wire format, for tests.

Strategy: one background thread multiplexes a UDP socket, a TCP listener and its TCP connections with
``selectors``; a socket pair wakes it up to stop. Every query is parsed with ``dns.message.from_wire``
and answered from an in-memory table of RRsets under a lock, so records can change while it runs.
Answers follow what an authoritative server does (RFC 1034 §4.3.2): CNAMEs are chased within the
data, names that exist without the asked type get NODATA, unknown names NXDOMAIN, and both negative
answers carry the zone's SOA in the authority section so that negative caching works (RFC 2308).
UDP answers larger than the client can take (512 bytes without EDNS, RFC 1035 §4.2.1; the EDNS
payload size with it, RFC 6891 §6.2.5) are truncated with TC=1 and the client retries over TCP.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME

__all__ = ["DNSQuery", "DNSZone"]

_log = logging.getLogger(__name__)

#: RFC 1035 §4.2.1: a UDP answer without EDNS holds at most 512 bytes.
_CLASSIC_UDP_LIMIT = 512
#: Longest CNAME chain followed before answering SERVFAIL (a loop, or a misconfiguration).
_MAX_CNAME_CHAIN = 16
#: Seconds a TCP client may stay silent before the server closes its connection.
_TCP_IDLE_TIMEOUT = 10.0
_MAX_TTL = 2**31 - 1

IN = dns.rdataclass.IN
_IDNA = dns.name.IDNA_2008_Practical if dns.name.have_idna_2008 else dns.name.IDNA_2003_Practical


@dataclass(frozen=True, slots=True)
class DNSQuery:
    """One question the zone server received.

    Attributes:
        name: the name asked for, lower-case, in IDNA (A-label) form, without the final dot.
        rdtype: the record type asked for, e.g. ``"MX"``.
        transport: ``"udp"`` or ``"tcp"``.
    """

    name: str
    rdtype: str
    transport: Literal["udp", "tcp"]


class _Failure(enum.Enum):
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class _RRData:
    ttl: int
    rdatas: tuple[dns.rdata.Rdata, ...]


NameLike = str | dns.name.Name
RdataType = dns.rdatatype.RdataType


def _to_name(name: NameLike) -> dns.name.Name:
    """An absolute, lower-case name; Unicode labels are converted to their IDNA form."""
    if isinstance(name, dns.name.Name):
        result = name if name.is_absolute() else name.concatenate(dns.name.root)
    else:
        result = dns.name.from_text(name, origin=dns.name.root, idna_codec=_IDNA)
    return result.canonicalize()


def _name_text(name: dns.name.Name) -> str:
    return name.canonicalize().to_text(omit_final_dot=True) or "."


def _to_rdtype(rdtype: str | RdataType) -> RdataType:
    return dns.rdatatype.RdataType.make(rdtype)


def _check_ttl(ttl: int) -> int:
    if not 0 <= ttl <= _MAX_TTL:
        raise ValueError(f"TTL out of range: {ttl}")
    return ttl


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DNSZone:
    """An authoritative DNS server for test zones, on a loopback address, in a background thread.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`); configure records with
    :meth:`mx`, :meth:`a`, :meth:`aaaa`, :meth:`cname`, :meth:`txt`, :meth:`records`, failures with
    :meth:`nxdomain`, :meth:`servfail` and :meth:`timeout`, and hand :meth:`resolver` to the code
    under test. Records may be changed at any time, also while the server runs.

    Each setter *replaces* the records of its type at that name and clears the failures configured
    for that name (the last call wins). Names are case-insensitive; Unicode names are stored in
    their IDNA form. A name's zone is the longest zone already known that contains it, else its last
    two labels (``mx1.example.test`` is in ``example.test``); a zone apex exists (it has an SOA).

    Args:
        host: loopback address to listen on (UDP and TCP).
        port: port to listen on; 0 picks a free port (the same one for UDP and TCP).
        default_ttl: TTL of records set without ``ttl=``.
        negative_ttl: TTL and MINIMUM of the SOA sent with negative answers (how long a resolver
            may cache NXDOMAIN and NODATA).

    Raises:
        ValueError: ``host`` is not a loopback address.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        default_ttl: int = 300,
        negative_ttl: int = 60,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(f"DNSZone listens on loopback addresses only, not {host!r}")
        self._host = host
        self._requested_port = port
        self._port = port
        self._default_ttl = _check_ttl(default_ttl)
        self._negative_ttl = _check_ttl(negative_ttl)
        self._lock = threading.Lock()
        self._data: dict[dns.name.Name, dict[RdataType, _RRData]] = {}
        self._failures: dict[tuple[dns.name.Name, RdataType | None], _Failure] = {}
        self._zones: set[dns.name.Name] = set()
        self._queries: list[DNSQuery] = []
        self._thread: threading.Thread | None = None
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the server listens on (known once started)."""
        return self._port

    @property
    def running(self) -> bool:
        """Whether the server thread is running."""
        return self._thread is not None

    def start(self) -> Self:
        """Bind the UDP and TCP sockets and start answering in a background thread.

        Returns:
            The zone itself, so ``zone = DNSZone().start()`` reads well.

        Raises:
            RuntimeError: already started.
            OSError: the address or port could not be bound.
        """
        if self._thread is not None:
            raise RuntimeError("DNSZone is already running")
        self._udp, self._tcp = self._bind()
        self._port = int(self._udp.getsockname()[1])
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name=f"DNSZone {self._host}:{self._port}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering, join the server thread and close every socket. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            if self._wake_w is not None:
                with contextlib.suppress(OSError):
                    self._wake_w.send(b"x")
            thread.join()
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = self._wake_r = self._wake_w = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<DNSZone {self._host}:{self._port} {state}, {len(self._data)} names>"

    def resolver(
        self, *, lifetime: float = 2.0, timeout: float | None = None, cache: bool = False
    ) -> dns.resolver.Resolver:
        """A new dnspython resolver that asks this server only.

        It is built with ``configure=False`` (no /etc/resolv.conf) and never touches dnspython's
        default resolver.

        Args:
            lifetime: seconds a whole resolution may take (``LifetimeTimeout`` after that).
            timeout: seconds to wait for one answer before retrying; defaults to ``lifetime``.
            cache: give the resolver a fresh ``dns.resolver.Cache`` (negative answers included).

        Raises:
            RuntimeError: the server has not been started (its port is not known yet).
        """
        if self._port == 0:
            raise RuntimeError("start the DNSZone before asking for a resolver")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self._host]
        resolver.port = self._port
        resolver.lifetime = lifetime
        resolver.timeout = lifetime if timeout is None else timeout
        if cache:
            resolver.cache = dns.resolver.Cache()
        return resolver

    # -- configuration -----------------------------------------------------------------------

    def mx(self, name: NameLike, hosts: Iterable[tuple[int, NameLike]], *, ttl: int | None = None) -> None:
        """Set the MX records of ``name``: ``[(preference, exchange host), ...]``."""
        rdatas = [
            dns.rdata.from_text(IN, dns.rdatatype.MX, f"{int(preference)} {_to_name(exchange)}")
            for preference, exchange in hosts
        ]
        self._set(name, dns.rdatatype.MX, rdatas, ttl)

    def null_mx(self, name: NameLike, *, ttl: int | None = None) -> None:
        """Publish a null MX (``MX 0 .``, RFC 7505): the domain accepts no mail."""
        self.mx(name, [(0, dns.name.root)], ttl=ttl)

    def a(self, name: NameLike, addresses: str | Iterable[str], *, ttl: int | None = None) -> None:
        """Set the A records (IPv4 addresses) of ``name``."""
        self.records(name, "A", [addresses] if isinstance(addresses, str) else addresses, ttl=ttl)

    def aaaa(self, name: NameLike, addresses: str | Iterable[str], *, ttl: int | None = None) -> None:
        """Set the AAAA records (IPv6 addresses) of ``name``."""
        self.records(name, "AAAA", [addresses] if isinstance(addresses, str) else addresses, ttl=ttl)

    def cname(self, name: NameLike, target: NameLike, *, ttl: int | None = None) -> None:
        """Make ``name`` an alias of ``target``; every other record at ``name`` is removed.

        Queries for ``name`` are answered with the CNAME followed by ``target``'s records of the asked
        type, as far as this server knows them (RFC 1034 §3.6.2, §4.3.2).
        """
        owner = _to_name(name)
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CNAME, _to_name(target).to_text())
        with self._lock:
            self._data.pop(owner, None)
        self._set(owner, dns.rdatatype.CNAME, [rdata], ttl)

    def txt(self, name: NameLike, texts: str | Iterable[str], *, ttl: int | None = None) -> None:
        """Set the TXT records of ``name``, one record per string (each string up to 255 bytes)."""
        items = [texts] if isinstance(texts, str) else list(texts)
        rdatas = [
            dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, '"' + _escape_txt(text) + '"')
            for text in items
        ]
        self._set(name, dns.rdatatype.TXT, rdatas, ttl)

    def records(
        self, name: NameLike, rdtype: str | RdataType, rdatas: Iterable[str], *, ttl: int | None = None
    ) -> None:
        """Set records of any type from their zone-file text, e.g. ``records(n, "TLSA", ["3 1 1 ab..."])``.

        Names inside the text are relative to the root (``"10 mx.example.test"`` is absolute).

        Raises:
            ValueError: the text is not valid for the type, or the list is empty.
        """
        kind = _to_rdtype(rdtype)
        try:
            parsed = [
                dns.rdata.from_text(dns.rdataclass.IN, kind, text, origin=dns.name.root, idna_codec=_IDNA)
                for text in rdatas
            ]
        except dns.exception.DNSException as err:
            raise ValueError(f"invalid {kind.name} record data: {err}") from err
        self._set(name, kind, parsed, ttl)

    def nxdomain(self, name: NameLike) -> None:
        """Make ``name`` not exist: its records are removed and queries get NXDOMAIN with an SOA."""
        owner = _to_name(name)
        with self._lock:
            self._data.pop(owner, None)
            self._failures = {key: f for key, f in self._failures.items() if key[0] != owner}
            self._failures[(owner, None)] = _Failure.NXDOMAIN

    def servfail(self, name: NameLike, rdtype: str | RdataType | None = None) -> None:
        """Answer SERVFAIL for ``name`` (for every type, or only ``rdtype``); its records are kept."""
        self._fail(name, rdtype, _Failure.SERVFAIL)

    def timeout(self, name: NameLike, rdtype: str | RdataType | None = None) -> None:
        """Never answer queries for ``name`` (for every type, or only ``rdtype``): clients time out."""
        self._fail(name, rdtype, _Failure.TIMEOUT)

    def remove(self, name: NameLike, rdtype: str | RdataType | None = None) -> None:
        """Forget the records of ``rdtype`` at ``name`` (all of them if None) and its failures."""
        owner = _to_name(name)
        kind = None if rdtype is None else _to_rdtype(rdtype)
        with self._lock:
            if kind is None:
                self._data.pop(owner, None)
                self._failures = {key: f for key, f in self._failures.items() if key[0] != owner}
            else:
                node = self._data.get(owner)
                if node is not None:
                    node.pop(kind, None)
                    if not node:
                        del self._data[owner]
                self._clear_failures(owner, kind)

    def clear(self) -> None:
        """Forget every record, failure, zone and logged query."""
        with self._lock:
            self._data.clear()
            self._failures.clear()
            self._zones.clear()
            self._queries.clear()

    # -- query log ---------------------------------------------------------------------------

    @property
    def queries(self) -> tuple[DNSQuery, ...]:
        """Every query received so far, in order (a snapshot)."""
        with self._lock:
            return tuple(self._queries)

    def queries_for(self, name: NameLike, rdtype: str | RdataType | None = None) -> tuple[DNSQuery, ...]:
        """The logged queries for ``name`` (and ``rdtype``, if given)."""
        wanted = _name_text(_to_name(name))
        kind = None if rdtype is None else _to_rdtype(rdtype).name
        return tuple(q for q in self.queries if q.name == wanted and (kind is None or q.rdtype == kind))

    def clear_queries(self) -> None:
        """Empty the query log."""
        with self._lock:
            self._queries.clear()

    # -- internals: configuration ------------------------------------------------------------

    def _set(
        self, name: NameLike, rdtype: RdataType, rdatas: Iterable[dns.rdata.Rdata], ttl: int | None
    ) -> None:
        owner = _to_name(name)
        items = tuple(rdatas)
        if not items:
            raise ValueError(f"no {rdtype.name} data given for {_name_text(owner)}")
        data = _RRData(self._default_ttl if ttl is None else _check_ttl(ttl), items)
        with self._lock:
            node = self._data.setdefault(owner, {})
            others = node.keys() - {dns.rdatatype.CNAME}
            if (rdtype == dns.rdatatype.CNAME and others) or (
                rdtype != dns.rdatatype.CNAME and dns.rdatatype.CNAME in node
            ):
                raise ValueError(f"a CNAME cannot share its name with other data (RFC 1034 §3.6.2): {owner}")
            node[rdtype] = data
            self._clear_failures(owner, rdtype)
            if self._zone_of(owner) is None:
                self._zones.add(owner if len(owner) <= 3 else owner.split(3)[1])

    def _fail(self, name: NameLike, rdtype: str | RdataType | None, failure: _Failure) -> None:
        owner = _to_name(name)
        kind = None if rdtype is None else _to_rdtype(rdtype)
        with self._lock:
            if kind is None:  # a name-wide failure replaces the per-type ones
                self._failures = {key: f for key, f in self._failures.items() if key[0] != owner}
            self._failures[(owner, kind)] = failure

    def _clear_failures(self, owner: dns.name.Name, rdtype: RdataType | None) -> None:
        self._failures.pop((owner, None), None)
        if rdtype is not None:
            self._failures.pop((owner, rdtype), None)

    # -- internals: answering ----------------------------------------------------------------

    def _zone_of(self, name: dns.name.Name) -> dns.name.Name | None:
        best: dns.name.Name | None = None
        for zone in self._zones:
            if name.is_subdomain(zone) and (best is None or len(zone) > len(best)):
                best = zone
        return best

    def _exists(self, name: dns.name.Name, zone: dns.name.Name | None) -> bool:
        if name in self._data or name == zone:
            return True
        # An empty non-terminal (RFC 8020 §2): a name inside a zone with data below it.
        return zone is not None and any(other.is_subdomain(name) for other in self._data)

    def _soa(self, name: dns.name.Name) -> dns.rrset.RRset:
        zone = self._zone_of(name)
        if zone is None:
            zone = name.parent() if name != dns.name.root else name
        return dns.rrset.from_rdata_list(zone, self._negative_ttl, [self._soa_rdata(zone)])

    def _soa_rdata(self, zone: dns.name.Name) -> dns.rdata.Rdata:
        mname = dns.name.from_text("ns", origin=zone)
        rname = dns.name.from_text("hostmaster", origin=zone)
        text = f"{mname} {rname} 1 3600 600 86400 {self._negative_ttl}"
        return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, text)

    def _rrsets_at(
        self, name: dns.name.Name, owner: dns.name.Name, rdtype: RdataType
    ) -> list[dns.rrset.RRset]:
        node = self._data.get(name, {})
        if rdtype == dns.rdatatype.ANY:
            found = list(node.items())
        elif rdtype in node:
            found = [(rdtype, node[rdtype])]
        else:
            found = []
        rrsets = [dns.rrset.from_rdata_list(owner, data.ttl, list(data.rdatas)) for _, data in found]
        if name == self._zone_of(name) and rdtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
            rrsets.append(dns.rrset.from_rdata_list(owner, self._negative_ttl, [self._soa_rdata(name)]))
        return rrsets

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        """The response to ``query``, or None when it must go unanswered (a scripted timeout)."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
            response.flags &= ~dns.flags.AA
            response.set_rcode(dns.rcode.REFUSED)
            return response
        qtype = question.rdtype
        owner = question.name
        name = owner.canonicalize()
        seen: set[dns.name.Name] = set()
        for _ in range(_MAX_CNAME_CHAIN):
            seen.add(name)
            failure = self._failures.get((name, qtype)) or self._failures.get((name, None))
            if failure is _Failure.TIMEOUT:
                return None
            if failure is _Failure.SERVFAIL:
                response.answer.clear()
                response.flags &= ~dns.flags.AA
                response.set_rcode(dns.rcode.SERVFAIL)
                return response
            if failure is _Failure.NXDOMAIN:
                response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(self._soa(name))
                return response
            found = self._rrsets_at(name, owner, qtype)
            if found:
                response.answer.extend(found)
                self._add_additional(response, found)
                return response
            node = self._data.get(name, {})
            cname = node.get(dns.rdatatype.CNAME)
            if cname is not None and qtype != dns.rdatatype.CNAME:
                response.answer.append(dns.rrset.from_rdata_list(owner, cname.ttl, list(cname.rdatas)))
                target: CNAME = cname.rdatas[0]  # type: ignore[assignment]  # only CNAMEs are stored there
                name = owner = target.target.canonicalize()
                if name in seen:  # a CNAME loop: answer what we have, as BIND does
                    return response
                continue
            if not self._exists(name, self._zone_of(name)):
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._soa(name))  # NODATA or NXDOMAIN, both negative (RFC 2308)
            return response
        response.answer.clear()
        response.set_rcode(dns.rcode.SERVFAIL)
        return response

    def _add_additional(self, response: dns.message.Message, answer: list[dns.rrset.RRset]) -> None:
        # RFC 1035 §3.3.9: MX answers carry the exchanges' addresses as additional data when known.
        for rrset in answer:
            if rrset.rdtype != dns.rdatatype.MX:
                continue
            for rdata in rrset:
                host = rdata.exchange.canonicalize()
                for kind in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    data = self._data.get(host, {}).get(kind)
                    if data is not None:
                        response.additional.append(
                            dns.rrset.from_rdata_list(host, data.ttl, list(data.rdatas))
                        )

    def _respond(self, wire: bytes, transport: Literal["udp", "tcp"]) -> bytes | None:
        """Wire bytes of the response to the query in ``wire``, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # any garbage: a real server answers FORMERR if it can read an ID
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None  # a response sent to us: never answer it (no loops)
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            refusal = dns.message.make_response(query)
            refusal.set_rcode(dns.rcode.NOTIMP if query.opcode() != dns.opcode.QUERY else dns.rcode.FORMERR)
            return refusal.to_wire()
        question = query.question[0]
        with self._lock:
            self._queries.append(
                DNSQuery(_name_text(question.name), dns.rdatatype.to_text(question.rdtype), transport)
            )
            try:
                response = self._answer(query)
            except Exception:  # a bug here must not kill the server thread: say SERVFAIL, log why
                _log.exception("DNSZone failed to answer %s", question)
                response = dns.message.make_response(query)
                response.set_rcode(dns.rcode.SERVFAIL)
        if response is None:
            return None
        if transport == "tcp":
            return response.to_wire(max_size=65535)
        limit = max(query.payload, _CLASSIC_UDP_LIMIT) if query.edns >= 0 else _CLASSIC_UDP_LIMIT
        return _fit(response, limit)

    # -- internals: sockets ------------------------------------------------------------------

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        attempts = 1 if self._requested_port else 20
        for attempt in range(attempts):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                udp.bind((self._host, self._requested_port))
                # Same port for TCP: a resolver retries a truncated answer over TCP on the same port.
                tcp.bind((self._host, udp.getsockname()[1]))
                tcp.listen(16)
            except OSError:
                udp.close()
                tcp.close()
                if attempt == attempts - 1:
                    raise
                continue
            udp.setblocking(False)
            tcp.setblocking(False)
            return udp, tcp
        raise AssertionError("unreachable")  # pragma: no cover

    def _serve(self) -> None:
        assert self._udp is not None
        assert self._tcp is not None
        assert self._wake_r is not None
        selector = selectors.DefaultSelector()
        selector.register(self._udp, selectors.EVENT_READ, "udp")
        selector.register(self._tcp, selectors.EVENT_READ, "listen")
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        connections: dict[socket.socket, _TCPConnection] = {}
        try:
            while not self._stopping.is_set():
                for key, _ in selector.select(timeout=1.0):
                    if key.data == "udp":
                        self._serve_udp()
                    elif key.data == "listen":
                        self._accept(selector, connections)
                    elif key.data == "tcp":
                        conn = connections[key.fileobj]  # type: ignore[index]
                        if not self._serve_tcp(conn):
                            selector.unregister(conn.sock)
                            connections.pop(conn.sock).close()
                now = time.monotonic()
                for sock, conn in list(connections.items()):
                    if now - conn.last_active > _TCP_IDLE_TIMEOUT:
                        selector.unregister(sock)
                        connections.pop(sock).close()
        finally:
            for conn in connections.values():
                conn.close()
            selector.close()

    def _serve_udp(self) -> None:
        assert self._udp is not None
        try:
            wire, peer = self._udp.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # e.g. ICMP port unreachable reported on Linux for an earlier reply
        reply = self._respond(wire, "udp")
        if reply is not None:
            with contextlib.suppress(OSError):
                self._udp.sendto(reply, peer)

    def _accept(
        self, selector: selectors.BaseSelector, connections: dict[socket.socket, _TCPConnection]
    ) -> None:
        assert self._tcp is not None
        try:
            sock, _ = self._tcp.accept()
        except (BlockingIOError, InterruptedError):
            return
        # Reads happen only when the selector says data is there; a timeout bounds the writes.
        sock.settimeout(2.0)
        connections[sock] = _TCPConnection(sock)
        selector.register(sock, selectors.EVENT_READ, "tcp")

    def _serve_tcp(self, conn: _TCPConnection) -> bool:
        """Read what arrived and answer every complete query; False when the connection is done."""
        try:
            chunk = conn.sock.recv(65535)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return True
        except OSError:
            return False
        if not chunk:
            return False
        conn.last_active = time.monotonic()
        conn.buffer += chunk
        # RFC 1035 §4.2.2 / RFC 7766 §8: each message is preceded by its two-byte length.
        while len(conn.buffer) >= 2:
            (length,) = struct.unpack("!H", conn.buffer[:2])
            if len(conn.buffer) < 2 + length:
                break
            wire = bytes(conn.buffer[2 : 2 + length])
            del conn.buffer[: 2 + length]
            reply = self._respond(wire, "tcp")
            if reply is not None:
                try:
                    conn.sock.sendall(struct.pack("!H", len(reply)) + reply)
                except OSError:
                    return False
        return True


class _TCPConnection:
    __slots__ = ("buffer", "last_active", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.last_active = time.monotonic()

    def close(self) -> None:
        self.sock.close()


def _fit(response: dns.message.Message, limit: int) -> bytes:
    """Render ``response`` within ``limit`` bytes, as an authoritative server does over UDP.

    Additional data is dropped first (it is optional, RFC 2181 §9); if the answer still does not
    fit, the reply carries only the question and TC=1, and the client retries over TCP.
    """
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        pass
    response.additional.clear()
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        pass
    response.answer.clear()
    response.authority.clear()
    response.flags |= dns.flags.TC
    return response.to_wire(max_size=limit)


def _formerr(wire: bytes) -> bytes | None:
    if len(wire) < 12 or wire[2] & 0x80:
        return None  # no header to answer, or a response: stay silent
    flags = 0x8000 | ((wire[2] & 0x79) << 8) | dns.rcode.FORMERR  # QR, the opcode and RD echoed
    return wire[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)


def _escape_txt(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
