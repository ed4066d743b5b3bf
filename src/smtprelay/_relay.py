"""Relay: route each recipient, deliver per destination, retry what was deferred, report.

Strategy for one ``send``:
1. Group the recipients by domain; route each domain (smarthost from ``routes``/``smarthost``,
   or MX through DNS). Domains whose MX hosts are the same go to the same destination, so each
   destination gets one transaction with all its recipients.
2. For each destination, try candidates in order — MX addresses (at most 5 addresses and 2 SMTP
   sessions per attempt, Postfix's smtp_mx_address_limit and smtp_mx_session_limit) or the
   configured smarthosts. Connection, TLS, greeting and EHLO failures and a 4xx to MAIL move to the
   next candidate; replies to RCPT and to the end of data settle recipients for this attempt (4xx:
   deferred to the next attempt, as Postfix does — no backup MX within the attempt).
3. If the connection fails after the end of data was written, the outcome is unknown: those
   recipients are DEFERRED with ``possibly_delivered`` and retried (losing mail is worse than a
   duplicate, RFC 5321 §6.1; Postfix cleanup_api.c "Better to deliver twice than to lose mail").
4. Recipients DEFERRED after an attempt are tried again after a backoff (tenacity drives the loop,
   :class:`RetryPolicy` computes the waits); delivered and bounced recipients are never tried again.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType

import dns.resolver
import tenacity

from . import events as ev
from ._address import Address
from ._batch import run_batch
from ._errors import AddressError, ConnectionFailed, MessageError, SMTPRelayError, TLSError
from ._message import Message
from ._policies import PoolLimits, RetryPolicy, Timeouts, TLSPolicy
from ._pool import ConnectionPool, Lease, PoolKey
from ._protocol import Envelope, Phase, check_hostname
from ._report import DeliveryReport
from ._results import RecipientResult, Status
from ._routing import MXResolver, Route, RouteFailure, Smarthost, ascii_domain
from ._scheduler import RateLimiter
from ._transport import Delivery, Transport, default_local_hostname

__all__ = ["Relay"]

log = logging.getLogger("smtprelay")

#: Postfix smtp_mx_address_limit: addresses tried per attempt before it ends.
MAX_ADDRESSES = 5
#: Postfix smtp_mx_session_limit: SMTP sessions (greeting received) per attempt before it ends.
MAX_SESSIONS = 2

SmarthostSpec = Smarthost | str
EventHook = Callable[[ev.Event], None]


@dataclass(frozen=True, slots=True)
class _Candidate:
    """One server to try for a destination."""

    host: str  # the name: MX host, smarthost, shown in results and verified by TLS
    address: str  # what to connect to: an IP for MX hosts, the configured name for smarthosts
    port: int
    tls: TLSPolicy
    counts_toward_limits: bool  # MX candidates obey the address/session limits; smarthosts do not
    smarthost: Smarthost | None = None

    @property
    def label(self) -> str:
        return self.host if self.host == self.address else f"{self.host}[{self.address}]"


@dataclass(frozen=True, slots=True)
class _Refused:
    """An MX address the private-address guard refused, or a host that could not be resolved."""

    text: str
    permanent: bool  # refused by the guard, or the host has no address at all: retrying will not help


@dataclass(frozen=True, slots=True)
class _Group:
    """Recipients that share a destination (MX hosts with the same preferences, or smarthosts)."""

    key: tuple[object, ...]
    target: Route | tuple[Smarthost, ...]
    recipients: tuple[str, ...]
    rate: float | None


@dataclass
class _SendState:
    message: Message
    content: bytes
    targets: tuple[str, ...]
    results: dict[str, RecipientResult] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    pending: tuple[str, ...] = ()
    attempt: int = 0
    #: Recipients an attempt may have delivered to (connection lost after the end of data).
    possibly: set[str] = field(default_factory=set)
    #: time.monotonic() after which no new connection is started (RetryPolicy.deadline).
    deadline: float | None = None

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def _deferred(
    recipient: str, text: str, enhanced: str, *, host: str | None = None, possibly_delivered: bool = False
) -> RecipientResult:
    return RecipientResult(
        recipient, Status.DEFERRED, None, enhanced, text, host=host, possibly_delivered=possibly_delivered
    )


def _from_failure(recipient: str, failure: RouteFailure, host: str | None = None) -> RecipientResult:
    return RecipientResult(recipient, failure.status, None, failure.enhanced_status, failure.text, host)


class Relay:
    """Delivers messages: directly to each recipient domain's MX hosts, or through smarthosts.

    ``send()`` never raises for a delivery outcome: it returns a :class:`DeliveryReport` with one
    result per recipient (DELIVERED, BOUNCED with the reason, or DEFERRED with the reason once the
    retries are spent). It raises only for bad input, before any I/O, and for misuse (a closed Relay).

    Args:
        smarthost: a :class:`Smarthost`, ``"host:port"``, or a list of them tried in order; None
            delivers directly to MX hosts.
        routes: per-domain smarthosts, e.g. ``{"corp.example": Smarthost(...)}``; a key starting with
            a dot (``".corp.example"``) also covers subdomains. Other domains go to ``smarthost`` or MX.
        local_hostname: the EHLO name (default: the fully qualified host name).
        tls: TLS policy for MX hosts (smarthosts carry their own); ``"opportunistic"`` by default, as
            every MTA does.
        resolver: the dnspython resolver for MX lookups (the global default is never used or
            changed); by default a private one reading /etc/resolv.conf.
        port: the port of MX hosts (25).
        retry: in-call retries of deferred recipients (:class:`RetryPolicy`).
        pool: connection limits (:class:`PoolLimits`).
        timeout: seconds per SMTP phase, or a :class:`Timeouts` (the end of data waits 600 s).
        ssl_context: the context used when TLS is verified (e.g. one trusting a test CA).
        allow_private_mx: allow MX hosts on loopback, private or link-local addresses.
        on_event: a callable receiving :mod:`smtprelay.events` values as delivery proceeds.
        rng: the source of randomness (equal-preference MX shuffling, retry jitter).
        rate_limit: at most this many messages per second to any one destination, evenly spaced and
            counted across all its connections (None: no limit).
        rate_limits: per-destination limits keyed by recipient domain or destination host name,
            e.g. ``{"example.org": 2.0}``; they take precedence over ``rate_limit``.
    """

    def __init__(
        self,
        *,
        smarthost: SmarthostSpec | Sequence[SmarthostSpec] | None = None,
        routes: Mapping[str, SmarthostSpec | Sequence[SmarthostSpec]] | None = None,
        local_hostname: str | None = None,
        tls: TLSPolicy | str = TLSPolicy.OPPORTUNISTIC,
        resolver: dns.resolver.Resolver | None = None,
        port: int = 25,
        retry: RetryPolicy | None = None,
        pool: PoolLimits | None = None,
        timeout: float | Timeouts = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        allow_private_mx: bool = False,
        on_event: EventHook | None = None,
        rng: random.Random | None = None,
        rate_limit: float | None = None,
        rate_limits: Mapping[str, float] | None = None,
    ) -> None:
        self._smarthosts = self._smarthost_list(smarthost, "smarthost") if smarthost is not None else ()
        self._routes: dict[str, tuple[Smarthost, ...]] = {}
        for domain, target in (routes or {}).items():
            if not isinstance(domain, str) or not domain.strip("."):
                raise ValueError(f"routes keys are domains, not {domain!r}")
            prefix = "." if domain.startswith(".") else ""
            self._routes[prefix + ascii_domain(domain.lstrip("."))] = self._smarthost_list(
                target, f"routes[{domain!r}]"
            )
        self._tls = TLSPolicy.parse(tls)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be 1-65535, not {port!r}")
        self._port = port
        self._timeouts = Timeouts.coerce(timeout)
        self._retry = retry if retry is not None else RetryPolicy()
        if not isinstance(self._retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy")
        self._pool_limits = pool if pool is not None else PoolLimits()
        if not isinstance(self._pool_limits, PoolLimits):
            raise TypeError("pool must be a PoolLimits")
        if resolver is not None and not isinstance(resolver, dns.resolver.Resolver):
            raise TypeError("resolver must be a dns.resolver.Resolver")
        self._local_hostname = check_hostname(
            local_hostname if local_hostname is not None else default_local_hostname()
        )
        self._ssl_context = ssl_context
        self._on_event = on_event
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - load spreading, not secrets
        self._rng_lock = threading.Lock()
        self._router = MXResolver(
            resolver, rng=self._rng, rng_lock=self._rng_lock, allow_private=allow_private_mx
        )
        for name, rate in [
            ("rate_limit", rate_limit),
            *((f"rate_limits[{k!r}]", v) for k, v in (rate_limits or {}).items()),
        ]:
            if rate is not None and (
                isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0
            ):
                raise ValueError(f"{name} must be a positive number of messages per second, not {rate!r}")
        self._rate_limit = float(rate_limit) if rate_limit is not None else None
        self._rate_limits = {k.lower().strip("."): float(v) for k, v in (rate_limits or {}).items()}
        self._limiter = RateLimiter()
        self._pool = ConnectionPool(self._pool_limits)
        self._closing = threading.Event()
        self._sleep: Callable[[float], None] = self._interruptible_sleep
        self._closed = False

    @staticmethod
    def _smarthost_list(value: SmarthostSpec | Sequence[SmarthostSpec], what: str) -> tuple[Smarthost, ...]:
        items = [value] if isinstance(value, Smarthost | str) else list(value)
        if not items:
            raise ValueError(f"{what} is an empty list")
        return tuple(Smarthost.parse(item) for item in items)

    # -- public --------------------------------------------------------------------------------
    def send(self, message: Message, *, recipients: Sequence[str] | None = None) -> DeliveryReport:
        """Deliver ``message`` (to ``recipients``, a subset of its envelope, when given).

        Returns:
            A :class:`DeliveryReport` with one result per recipient, in envelope order.

        Raises:
            TypeError, MessageError, AddressError: bad input, before any I/O.
            RuntimeError: the Relay is closed.
        """
        state = self._new_state(message, recipients)
        retrying = tenacity.Retrying(
            stop=self._stop_condition(),
            wait=self._wait,
            retry=tenacity.retry_if_result(bool),
            sleep=self._sleep,
            retry_error_callback=lambda retry_state: (
                retry_state.outcome.result() if retry_state.outcome else ()
            ),
        )
        retrying(self._attempt, state)
        return self._report(state)

    def send_many(
        self, messages: Iterable[Message], *, concurrency: int | None = None
    ) -> Iterator[DeliveryReport]:
        """Deliver many messages concurrently; yield one report per message, in completion order.

        ``messages`` may be any iterable, a generator included: it is read only as fast as delivery
        proceeds, so memory stays constant however many there are. Work is scheduled per
        destination (at most ``pool.max_connections_per_host`` at once each, and ``rate_limit``),
        so a slow, rate-limited or deferring destination never holds up the others, and a recipient
        waiting for its retry occupies no worker. Each report names its message (``report.message``).

        Args:
            messages: the messages to send.
            concurrency: worker threads (default 16).

        Raises:
            TypeError, MessageError: a bad item in ``messages``; the messages already taken are still
                delivered and their reports yielded first.
            RuntimeError: the Relay is closed.
        """
        if self._closed:
            raise RuntimeError("this Relay is closed")
        return run_batch(self, messages, concurrency)

    def _new_state(
        self, message: Message, recipients: Sequence[str] | None, *, check_closed: bool = True
    ) -> _SendState:
        if check_closed and self._closed:
            raise RuntimeError("this Relay is closed")
        if not isinstance(message, Message):
            raise TypeError(f"expected a Message, not {type(message).__name__} (see Message.from_email)")
        targets = self._targets(message, recipients)
        state = _SendState(message, message.as_bytes(), targets, pending=targets)
        if self._retry.deadline is not None:
            state.deadline = time.monotonic() + self._retry.deadline
        return state

    def _closed_report(self, state: _SendState) -> DeliveryReport:
        """The report for a message taken but never tried because the Relay was closed."""
        for recipient in state.targets:
            state.results[recipient] = _deferred(
                recipient, "the relay was closed before this message could be sent", "4.3.2"
            )
        return self._report(state)

    def _report(self, state: _SendState) -> DeliveryReport:
        results = tuple(self._final(state, r) for r in state.targets)
        for result in results:
            self._emit(ev.Outcome(state.message.message_id, result))
        return DeliveryReport(state.message, results)

    def _next_delay(self, retry: int) -> float:
        with self._rng_lock:
            return self._retry.delay(retry, self._rng)

    @staticmethod
    def _final(state: _SendState, recipient: str) -> RecipientResult:
        result = replace(state.results[recipient], attempts=state.attempts.get(recipient, 1))
        if (
            recipient in state.possibly
            and result.status is not Status.DELIVERED
            and not result.possibly_delivered
        ):
            result = replace(
                result,
                possibly_delivered=True,
                text=f"{result.text} (an earlier attempt may already have delivered the message)",
            )
        return result

    def close(self) -> None:
        """Close every pooled connection (QUIT, within a few seconds in all); the Relay cannot send
        afterwards. Idempotent."""
        self._closed = True
        self._closing.set()
        self._pool.close()

    def _interruptible_sleep(self, seconds: float) -> None:
        """Wait between attempts, but wake at once when the Relay is closed."""
        self._closing.wait(seconds)

    @property
    def pool(self) -> ConnectionPool:
        """The connection pool (its repr shows active/idle/connecting per destination)."""
        return self._pool

    def __enter__(self) -> Relay:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = ", ".join(f"{s.host}:{s.port}" for s in self._smarthosts) or "direct MX"
        return f"<Relay {where} tls={self._tls.value}{' closed' if self._closed else ''}>"

    # -- input ---------------------------------------------------------------------------------
    @staticmethod
    def _targets(message: Message, recipients: Sequence[str] | None) -> tuple[str, ...]:
        if recipients is None:
            return tuple(message.recipients)
        if isinstance(recipients, str):
            raise MessageError(
                "recipients must be a sequence of addresses, not one string", field="recipients"
            )
        known = {r.lower(): r for r in message.recipients}
        targets: list[str] = []
        for recipient in recipients:
            if not isinstance(recipient, str):
                raise AddressError(f"recipients: not an address: {recipient!r}", field="recipients")
            try:
                normalised = Address(recipient).addr_spec
            except AddressError as error:
                raise AddressError(
                    f"recipients: {error.message}", field="recipients", address=recipient
                ) from None
            match = known.get(normalised.lower())
            if match is None:
                raise MessageError(f"{recipient} is not a recipient of this message", field="recipients")
            if match not in targets:
                targets.append(match)
        if not targets:
            raise MessageError("no recipients to send to", field="recipients")
        return tuple(targets)

    # -- retry ---------------------------------------------------------------------------------
    def _stop_condition(self) -> tenacity.stop.stop_base:
        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(
            self._retry.attempts
        ) | tenacity.stop_when_event_set(self._closing)
        if self._retry.deadline is not None:
            stop = stop | tenacity.stop_before_delay(self._retry.deadline)
        return stop

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        return self._next_delay(retry_state.attempt_number)

    def _start_attempt(self, state: _SendState, recipients: tuple[str, ...]) -> None:
        state.attempt += 1
        for recipient in recipients:
            state.attempts[recipient] = state.attempts.get(recipient, 0) + 1
        self._emit(ev.Attempt(state.message.message_id, state.attempt, recipients))

    def _attempt(self, state: _SendState) -> tuple[str, ...]:
        """One attempt for the pending recipients; returns those still DEFERRED."""
        pending = state.pending
        self._start_attempt(state, pending)
        for group in self._plan(pending, state):
            self._throttle(group)
            self._record(state, self._deliver(state, group.recipients, group.target))
        state.pending = tuple(r for r in pending if state.results[r].status is Status.DEFERRED)
        if state.pending:
            log.debug(
                "message %s: attempt %d left %d deferred",
                state.message.message_id,
                state.attempt,
                len(state.pending),
            )
        return state.pending

    @staticmethod
    def _record(state: _SendState, results: Mapping[str, RecipientResult]) -> None:
        state.results.update(results)
        state.possibly.update(r.recipient for r in results.values() if r.possibly_delivered)

    # -- routing -------------------------------------------------------------------------------
    def _smarthosts_for(self, domain: str) -> tuple[Smarthost, ...]:
        if domain in self._routes:
            return self._routes[domain]
        labels = domain.split(".")
        for i in range(len(labels)):
            key = "." + ".".join(labels[i:])
            if key in self._routes:
                return self._routes[key]
        return self._smarthosts

    def _plan(self, recipients: Sequence[str], state: _SendState) -> list[_Group]:
        """Group recipients by destination; settle those whose domain cannot be routed."""
        by_domain: dict[str, list[str]] = {}
        for recipient in recipients:
            try:
                domain = ascii_domain(_domain_of(recipient))
            except ValueError as error:
                state.results[recipient] = RecipientResult(
                    recipient, Status.BOUNCED, None, "5.1.2", str(error)
                )
                continue
            by_domain.setdefault(domain, []).append(recipient)
        groups: dict[tuple[object, ...], tuple[Route | tuple[Smarthost, ...], list[str], list[str]]] = {}
        for domain, members in by_domain.items():
            smarthosts = self._smarthosts_for(domain)
            target: Route | tuple[Smarthost, ...]
            if smarthosts:
                key: tuple[object, ...] = ("smarthost", *(s.key for s in smarthosts))
                target = smarthosts
            else:
                route = self._router.route(domain)
                if route.failure is not None:
                    for recipient in members:
                        state.results[recipient] = _from_failure(recipient, route.failure)
                    continue
                key = ("mx", *route.key)
                target = route
            if key in groups:
                groups[key][1].extend(members)
                groups[key][2].append(domain)
            else:
                groups[key] = (target, list(members), [domain])
        return [
            _Group(key, target, tuple(members), self._rate_for(domains, target))
            for key, (target, members, domains) in groups.items()
        ]

    def _rate_for(self, domains: Sequence[str], target: Route | tuple[Smarthost, ...]) -> float | None:
        """The messages-per-second limit of a destination: by recipient domain, then host name."""
        if self._rate_limits:
            hosts = [s.host for s in target] if isinstance(target, tuple) else [h.name for h in target.hosts]
            for name in (*domains, *hosts):
                rate = self._rate_limits.get(name.lower())
                if rate is not None:
                    return rate
        return self._rate_limit

    def _throttle(self, group: _Group) -> None:
        """Relay.send's share of a destination's rate limit: wait for the next free slot."""
        if group.rate is not None:
            delay = self._limiter.reserve(group.key, group.rate, time.monotonic())
            if delay > 0:
                self._closing.wait(delay)

    def _candidates(self, target: Route | tuple[Smarthost, ...]) -> Iterator[_Candidate | _Refused]:
        if isinstance(target, tuple):
            for smarthost in target:
                yield _Candidate(
                    smarthost.tls_hostname or smarthost.host,  # the name results show, as Transport does
                    smarthost.host,
                    smarthost.port,
                    TLSPolicy.parse(smarthost.tls),
                    counts_toward_limits=False,
                    smarthost=smarthost,
                )
            return
        for host in target.hosts:
            found = self._router.addresses(host.name)
            for address, reason in found.refused:
                yield _Refused(
                    f"MX host {host.name} address {address} refused: {reason} (allow_private_mx=False)",
                    permanent=True,
                )
            if not found.usable:
                if found.failure is not None:
                    yield _Refused(
                        f"MX host {host.name} skipped: {found.failure.text}",
                        permanent=found.failure.status is Status.BOUNCED,
                    )
                continue
            for address in found.usable:
                yield _Candidate(host.name, address, self._port, self._tls, counts_toward_limits=True)

    # -- delivery ------------------------------------------------------------------------------
    def _deliver(
        self, state: _SendState, recipients: tuple[str, ...], target: Route | tuple[Smarthost, ...]
    ) -> dict[str, RecipientResult]:
        """Deliver to one destination, failing over between its candidates within this attempt."""
        message = state.message
        settled: dict[str, RecipientResult] = {}
        fallback: dict[str, RecipientResult] = {}
        remaining = list(recipients)
        reasons: list[str] = []
        only_permanent_refusals = True
        last_error: SMTPRelayError | None = None
        addresses = sessions = 0
        for candidate in self._candidates(target):
            if isinstance(candidate, _Refused):
                reasons.append(candidate.text)
                only_permanent_refusals = only_permanent_refusals and candidate.permanent
                continue
            only_permanent_refusals = False
            if self._closed or state.expired():
                reasons.append("the relay was closed" if self._closed else "the delivery deadline passed")
                break
            if candidate.counts_toward_limits:
                if addresses >= MAX_ADDRESSES or sessions >= MAX_SESSIONS:
                    break
                addresses += 1
            try:
                lease = self._lease(candidate)
            except SMTPRelayError as error:
                last_error = error
                reasons.append(f"{candidate.label}: {error}")
                if error.phase not in (None, Phase.CONNECT):
                    sessions += 1
                self._emit(
                    ev.ConnectFailed(
                        message.message_id, candidate.host, candidate.address, candidate.port, str(error)
                    )
                )
                continue
            sessions += 1
            try:
                delivery = self._transact(state, candidate, lease, tuple(remaining))
            except SMTPRelayError as error:
                last_error = error
                for result in error.results:
                    settled[result.recipient] = result
                remaining = [r for r in remaining if r not in settled]
                if error.data_sent:
                    # The outcome is unknown: retry later rather than risk losing the message.
                    text = (
                        f"{candidate.label}: {error}; the message may already have been delivered "
                        "and will be retried"
                    )
                    for recipient in remaining:
                        settled[recipient] = _deferred(
                            recipient, text, "4.4.2", host=candidate.host, possibly_delivered=True
                        )
                    return settled
                reasons.append(f"{candidate.label}: {error}")
                continue
            self._emit_replies(message.message_id, candidate.host, delivery.results)
            if self._try_elsewhere(delivery.mail_refusal, delivery.results):
                fallback = {r.recipient: r for r in delivery.results}
                reasons.append(
                    f"{candidate.label}: {delivery.results[0].code or ''} {delivery.results[0].text}"
                )
                continue
            settled.update((r.recipient, r) for r in delivery.results)
            return settled
        for recipient in remaining:
            if recipient in fallback:
                settled[recipient] = fallback[recipient]
            elif only_permanent_refusals and reasons:
                settled[recipient] = RecipientResult(
                    recipient, Status.BOUNCED, None, "5.4.4", "; ".join(reasons)
                )
            else:
                enhanced = "4.7.5" if isinstance(last_error, TLSError) else "4.4.1"
                text = "; ".join(reasons) or "no server to deliver to"
                settled[recipient] = _deferred(recipient, text, enhanced)
        return settled

    @staticmethod
    def _try_elsewhere(mail_refusal: object, results: Sequence[RecipientResult]) -> bool:
        """A 4xx to MAIL, or a server lacking what the message needs (SIZE, SMTPUTF8, 8BITMIME):
        no recipient was judged, so another server of the destination may take it."""
        if mail_refusal is not None:
            return all(r.status is Status.DEFERRED for r in results)
        return bool(results) and all(r.code is None and r.status is Status.BOUNCED for r in results)

    def _transact(
        self, state: _SendState, candidate: _Candidate, lease: Lease, recipients: tuple[str, ...]
    ) -> Delivery:
        """One delivery on a pooled connection. A reused connection that turns out dead before
        anything was accepted (EOF, or 421 to the pipelined MAIL) is replaced once, transparently:
        nothing was accepted, so nothing can be duplicated."""
        message = state.message
        envelope = Envelope(
            message.envelope_from,
            recipients,
            smtputf8=message.requires_smtputf8,
            eight_bit=message.requires_8bitmime,
        )

        def on_data_sent(in_flight: tuple[str, ...]) -> None:
            self._emit(ev.DataSent(message.message_id, candidate.host, in_flight))

        for retry_fresh in (lease.reused, False):
            transport = lease.transport
            if not lease.reused:
                self._emit(
                    ev.Connected(message.message_id, candidate.host, transport.peer[0], candidate.port)
                )
                if transport.tls_version is not None:
                    self._emit(
                        ev.TLSStarted(
                            message.message_id, candidate.host, transport.tls_version, transport.cipher
                        )
                    )
            try:
                delivery = transport.deliver(envelope, state.content, on_data_sent=on_data_sent)
            except ConnectionFailed as error:
                self._pool.release(lease, reusable=False)
                if not (retry_fresh and not error.data_sent and not error.results):
                    raise
                log.debug("%s: reused connection was dead (%s); reconnecting", candidate.label, error)
            except SMTPRelayError:
                self._pool.release(lease, reusable=False)
                raise
            else:
                refusal = delivery.mail_refusal
                if retry_fresh and refusal is not None and refusal.is_closing:
                    self._pool.release(lease, reusable=False)
                    log.debug("%s: reused connection got 421 to MAIL; reconnecting", candidate.label)
                else:
                    self._pool.release(lease)
                    return delivery
            lease = self._lease(candidate, fresh=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _pool_key(self, candidate: _Candidate) -> PoolKey:
        smarthost = candidate.smarthost
        return PoolKey(
            candidate.host,
            candidate.address,
            candidate.port,
            candidate.tls.value,
            implicit_tls=smarthost.implicit_tls if smarthost else None,
            tls_hostname=smarthost.tls_hostname if smarthost else None,
            username=smarthost.username if smarthost else None,
            secret=smarthost.password if smarthost else None,
            local_hostname=self._local_hostname,
        )

    def _lease(self, candidate: _Candidate, *, fresh: bool = False) -> Lease:
        return self._pool.acquire(
            self._pool_key(candidate), functools.partial(self._connect, candidate), fresh=fresh
        )

    def _connect(self, candidate: _Candidate) -> Transport:
        smarthost = candidate.smarthost
        if smarthost is not None:
            policy = TLSPolicy.parse(smarthost.tls)
            return Transport.connect(
                candidate.address,
                candidate.port,
                tls=policy,
                implicit_tls=smarthost.implicit_tls,
                tls_hostname=smarthost.tls_hostname,
                ssl_context=smarthost.ssl_context
                or (self._ssl_context if policy is TLSPolicy.VERIFY else None),
                local_hostname=self._local_hostname,
                username=smarthost.username,
                password=smarthost.password,
                allow_plaintext_auth=smarthost.allow_plaintext_auth,
                timeout=self._timeouts,
            )
        return Transport.connect(
            candidate.address,
            candidate.port,
            tls=candidate.tls,
            tls_hostname=candidate.host,
            ssl_context=self._ssl_context if candidate.tls is TLSPolicy.VERIFY else None,
            local_hostname=self._local_hostname,
            timeout=self._timeouts,
        )

    # -- events --------------------------------------------------------------------------------
    def _emit(self, event: ev.Event) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a broken hook must never change a delivery outcome
            log.exception("on_event hook raised on %s; ignored", type(event).__name__)

    def _emit_replies(self, message_id: str, host: str, results: Sequence[RecipientResult]) -> None:
        if self._on_event is None:
            return
        groups: dict[tuple[int, str | None, str], list[str]] = {}
        for result in results:
            if result.code is not None:
                groups.setdefault((result.code, result.enhanced_status, result.text), []).append(
                    result.recipient
                )
        for (code, enhanced, text), recipients in groups.items():
            self._emit(ev.ReplyReceived(message_id, host, code, enhanced, text, tuple(recipients)))
