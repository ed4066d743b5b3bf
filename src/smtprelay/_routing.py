"""Where mail for a domain goes: MX resolution (RFC 5321 §5.1, RFC 7505) and smarthosts.

The decisions are plain functions and values (ordering MX records, classifying DNS failures,
refusing private addresses); :class:`MXResolver` is the thin I/O part that asks the injected
dnspython resolver and caches answers for their TTL in a bounded cache.

What a DNS answer means for delivery (DESIGN.md "Meanings"):
- MX records: the hosts in preference order, equal preferences shuffled (RFC 5321 §5.1).
- No MX records: the domain's own A/AAAA records are an implicit MX with preference 0.
- A null MX (RFC 7505: one ``MX 0 .``): the domain accepts no mail; BOUNCED 5.1.10, no connection.
- NXDOMAIN: BOUNCED 5.1.2. SERVFAIL, timeouts, no answer from any nameserver: DEFERRED 4.4.3.
- An MX host with no address is skipped; an address that is loopback, private, link-local,
  unspecified or otherwise not globally routable is refused unless allowed (an application that
  mails user-supplied addresses must not be steerable into its own network, RELIABILITY 23).
"""

from __future__ import annotations

import collections
import ipaddress
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

from ._policies import TLSPolicy
from ._results import Status

__all__ = [
    "Smarthost",
    "MXHost",
    "Route",
    "RouteFailure",
    "MXResolver",
    "order_mx",
    "refusal_reason",
    "ascii_domain",
]


@dataclass(frozen=True, slots=True)
class Smarthost:
    """A relay host that takes all (or some) mail for onward delivery, usually with AUTH.

    A smarthost is trusted configuration: it may be anywhere, loopback included (the private-address
    guard applies only to MX hosts found through DNS). Its host name resolves like any client's
    (``socket.getaddrinfo``); an IP address needs no DNS query.

    Args:
        host: host name or IP address (``"[::1]"`` is accepted for IPv6).
        port: 587 (submission with STARTTLS) by default; 465 means implicit TLS unless told otherwise.
        username, password: AUTH credentials; ``password`` may be a callable returning an OAuth2 token.
        tls: TLS policy, ``"verify"`` by default; ``"none"`` suits a local relay (AUTH over it needs
            ``allow_plaintext_auth=True``).
        implicit_tls: TLS from the first byte; None means True exactly on port 465.
        tls_hostname: the name the certificate must carry (default: ``host``).
        ssl_context: the context for verification (e.g. one trusting a private CA).
        allow_plaintext_auth: permit AUTH on a connection that is not encrypted.
    """

    host: str
    port: int = 587
    username: str | None = None
    password: str | Callable[[], str] | None = field(default=None, repr=False)
    tls: TLSPolicy | str = TLSPolicy.VERIFY
    implicit_tls: bool | None = None
    tls_hostname: str | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    allow_plaintext_auth: bool = False

    def __post_init__(self) -> None:
        host = self.host
        if not isinstance(host, str) or not host:
            raise ValueError(f"smarthost host must be a non-empty str, not {host!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            object.__setattr__(self, "host", host)
        if any(ord(c) < 33 or ord(c) == 127 for c in host):
            raise ValueError(f"smarthost host contains spaces or control characters: {host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"smarthost port must be 1-65535, not {self.port!r}")
        object.__setattr__(self, "tls", TLSPolicy.parse(self.tls))
        if (self.username is None) != (self.password is None):
            raise ValueError("smarthost username and password go together")
        if self.username is not None and self.tls is TLSPolicy.NONE and not self.allow_plaintext_auth:
            raise ValueError(
                "smarthost AUTH with tls='none' would send the password in plaintext; "
                "pass allow_plaintext_auth=True for a trusted local relay"
            )

    @classmethod
    def parse(cls, value: Smarthost | str) -> Smarthost:
        """A Smarthost from itself or from ``"host"``, ``"host:port"`` or ``"[v6address]:port"``."""
        if isinstance(value, Smarthost):
            return value
        if not isinstance(value, str):
            raise TypeError(f"a smarthost is a Smarthost or a 'host:port' string, not {type(value).__name__}")
        match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", value.strip())
        if match is None:
            raise ValueError(f"not a smarthost 'host:port': {value!r}")
        host = match.group(1) or match.group(3)
        port = match.group(2) or match.group(4)
        return cls(host, int(port)) if port else cls(host)

    @property
    def key(self) -> tuple[object, ...]:
        """What makes two smarthost connections interchangeable (never shared across credentials)."""
        return (self.host.lower(), self.port, self.tls, self.implicit_tls, self.tls_hostname, self.username)


@dataclass(frozen=True, slots=True)
class RouteFailure:
    """Why a domain cannot be delivered to now (DNS), as a recipient outcome."""

    status: Status
    enhanced_status: str
    text: str


@dataclass(frozen=True, slots=True)
class MXHost:
    """One MX host of a route: its name (ASCII, no final dot) and preference."""

    name: str
    preference: int


@dataclass(frozen=True, slots=True)
class Route:
    """Where mail for ``domain`` goes: MX hosts in the order to try, or why it cannot go anywhere."""

    domain: str
    hosts: tuple[MXHost, ...] = ()
    implicit: bool = False
    failure: RouteFailure | None = None

    @property
    def key(self) -> tuple[tuple[int, str], ...]:
        """The MX hosts with their preferences: domains with the same MX records share transactions
        (the same hosts at other preferences are another destination, RFC 5321 §5.1)."""
        return tuple(sorted((h.preference, h.name) for h in self.hosts))


# -- pure decisions ------------------------------------------------------------------------------


def ascii_domain(domain: str) -> str:
    """The DNS form of ``domain``: IDNA-encoded, lower case, no final dot.

    Raises:
        ValueError: the domain cannot be encoded (not a valid IDN).
    """
    try:
        return dns.name.from_unicode(domain.rstrip(".")).to_text(omit_final_dot=True).lower()
    except (dns.exception.DNSException, UnicodeError) as error:
        raise ValueError(f"{domain!r} is not a valid domain name: {error}") from None


def order_mx(records: Iterable[tuple[int, str]], rng: random.Random) -> tuple[MXHost, ...]:
    """MX hosts in the order to try: by preference, equal preferences shuffled (RFC 5321 §5.1).

    Duplicate host names keep their best preference.
    """
    best: dict[str, int] = {}
    for preference, exchange in records:
        name = exchange.rstrip(".").lower()
        if name not in best or preference < best[name]:
            best[name] = preference
    groups: dict[int, list[str]] = collections.defaultdict(list)
    for name, preference in best.items():
        groups[preference].append(name)
    ordered: list[MXHost] = []
    for preference in sorted(groups):
        names = sorted(groups[preference])  # a stable start so the shuffle depends only on rng
        rng.shuffle(names)
        ordered.extend(MXHost(name, preference) for name in names)
    return tuple(ordered)


def refusal_reason(address: str) -> str | None:
    """Why ``address`` must not be an MX target, or None when it is globally routable."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "it is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for test, reason in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_private", "private"),
    ):
        if getattr(ip, test):
            return f"it is a {reason} address"
    if not ip.is_global:
        return "it is not a globally routable address"
    return None


def _looks_like_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def classify_dns_error(error: BaseException, what: str) -> RouteFailure:
    """The outcome a DNS failure gives a domain's recipients."""
    if isinstance(error, dns.resolver.NXDOMAIN):
        return RouteFailure(Status.BOUNCED, "5.1.2", f"{what}: the domain does not exist (NXDOMAIN)")
    if isinstance(error, dns.resolver.LifetimeTimeout | dns.exception.Timeout):
        return RouteFailure(Status.DEFERRED, "4.4.3", f"{what}: DNS lookup timed out")
    if isinstance(error, dns.resolver.NoNameservers):
        causes = [entry[3] for entry in error.kwargs.get("errors", ()) if len(entry) > 3]
        if causes and all(isinstance(cause, dns.message.ChainTooLong) for cause in causes):
            # A CNAME loop in an authoritative answer will not fix itself (RELIABILITY 22).
            return RouteFailure(Status.BOUNCED, "5.4.4", f"{what}: CNAME loop or chain too long")
        return RouteFailure(Status.DEFERRED, "4.4.3", f"{what}: no nameserver answered (SERVFAIL or refused)")
    return RouteFailure(Status.DEFERRED, "4.4.3", f"{what}: DNS lookup failed ({type(error).__name__})")


# -- I/O: the resolver and its cache -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Addresses:
    """The addresses of one host: usable ones in the order to try, refused ones with why, or a failure."""

    usable: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    failure: RouteFailure | None = None


class _TTLCache:
    """A bounded mapping whose entries expire (LRU eviction when full)."""

    def __init__(self, size: int, clock: Callable[[], float]) -> None:
        self._size = size
        self._clock = clock
        self._data: collections.OrderedDict[object, tuple[float, object]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object) -> object | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            expires, value = entry
            if expires <= self._clock():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def put(self, key: object, value: object, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._data[key] = (self._clock() + ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class MXResolver:
    """Answers "where does mail for this domain go?" with the injected dnspython resolver.

    Positive answers (and null MX, which is as definite) are cached for their TTL, in a bounded
    cache; failures are not cached, so a retry asks again. The process-wide default resolver is
    never used or changed.
    """

    def __init__(
        self,
        resolver: dns.resolver.Resolver | None,
        *,
        rng: random.Random,
        allow_private: bool = False,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        lifetime: float | None = None,
        rng_lock: threading.Lock | None = None,
    ) -> None:
        self._resolver = resolver
        self._resolver_lock = threading.Lock()
        self._rng = rng
        self._rng_lock = rng_lock or threading.Lock()  # shared with the owner of rng, if it uses it too
        self.allow_private = allow_private
        self._lifetime = lifetime
        self._routes = _TTLCache(cache_size, clock)
        self._addresses = _TTLCache(cache_size, clock)

    @property
    def resolver(self) -> dns.resolver.Resolver:
        """The resolver in use; a private one reading /etc/resolv.conf is made on first need."""
        with self._resolver_lock:
            if self._resolver is None:
                self._resolver = dns.resolver.Resolver()
            return self._resolver

    def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.resolver.Answer:
        return self.resolver.resolve(
            dns.name.from_text(name), rdtype, search=False, lifetime=self._lifetime, raise_on_no_answer=True
        )

    def route(self, domain: str) -> Route:
        """The route for ``domain`` (its ASCII form is used for DNS)."""
        try:
            name = ascii_domain(domain)
        except ValueError as error:
            return Route(domain, failure=RouteFailure(Status.BOUNCED, "5.1.2", str(error)))
        cached = self._routes.get(name)
        if isinstance(cached, Route):
            return self._shuffled(cached)
        try:
            answer = self._query(name, dns.rdatatype.MX)
        except dns.resolver.NoAnswer:
            return self._implicit_route(name)
        except dns.exception.DNSException as error:
            return Route(name, failure=classify_dns_error(error, f"MX lookup for {name}"))
        records = [(rr.preference, rr.exchange.to_text(omit_final_dot=True)) for rr in answer]
        ttl = answer.rrset.ttl if answer.rrset is not None else 0
        real = [(pref, host) for pref, host in records if host not in ("", ".")]
        if not real:
            # RFC 7505: "MX 0 ." says the domain accepts no mail at all.
            route = Route(
                name,
                failure=RouteFailure(
                    Status.BOUNCED, "5.1.10", f"{name} does not accept mail (null MX, RFC 7505)"
                ),
            )
        else:
            route = Route(name, order_mx(real, random.Random(0)))  # noqa: S311 - canonical order, reshuffled on use
        self._routes.put(name, route, ttl)
        return self._shuffled(route)

    def _shuffled(self, route: Route) -> Route:
        """The route with equal preferences shuffled anew on every call, cached or not, so that
        equal-preference hosts share the load of a batch even when connections are pooled."""
        if len(route.hosts) < 2:
            return route
        with self._rng_lock:
            hosts = order_mx(((h.preference, h.name) for h in route.hosts), self._rng)
        return Route(route.domain, hosts, route.implicit, route.failure)

    def _implicit_route(self, name: str) -> Route:
        # RFC 5321 §5.1: no MX records -> the domain itself, as if "MX 0 domain".
        addresses = self.addresses(name)
        if addresses.failure is not None and not addresses.usable and not addresses.refused:
            failure = addresses.failure
            if failure.status is Status.BOUNCED:
                failure = RouteFailure(
                    Status.BOUNCED, "5.1.2", f"{name} has no MX records and no address records"
                )
            return Route(name, failure=failure)
        return Route(name, (MXHost(name, 0),), implicit=True)

    def addresses(self, host: str) -> Addresses:
        """The A and AAAA addresses of an MX host (IPv4 first), with the private-address guard applied."""
        name = host.rstrip(".").lower()
        cached = self._addresses.get(name)
        if isinstance(cached, Addresses):
            return cached
        if _looks_like_ip(name):
            # RFC 5321 §5.1: an MX names a host, never an address. Refuse rather than guess.
            return Addresses(
                failure=RouteFailure(Status.DEFERRED, "4.4.4", f"MX target {name} is an IP address")
            )
        found: list[str] = []
        ttls: list[int] = []
        failures: list[RouteFailure] = []
        missing = 0
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                answer = self._query(name, rdtype)
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                missing += 1
                continue
            except dns.exception.DNSException as error:
                failures.append(classify_dns_error(error, f"address lookup for {name}"))
                continue
            found.extend(rr.to_text() for rr in answer)
            if answer.rrset is not None:
                ttls.append(answer.rrset.ttl)
        usable: list[str] = []
        refused: list[tuple[str, str]] = []
        for address in dict.fromkeys(found):
            reason = None if self.allow_private else refusal_reason(address)
            if reason is None:
                usable.append(address)
            else:
                refused.append((address, reason))
        failure = failures[0] if failures else None
        if not found and failure is None and missing:
            failure = RouteFailure(Status.BOUNCED, "5.4.4", f"{name} has no address records")
        result = Addresses(tuple(usable), tuple(refused), failure)
        if found and not failures:
            self._addresses.put(name, result, min(ttls) if ttls else 0)
        return result
