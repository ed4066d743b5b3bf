"""One benchmark client run, in a fresh process: ``python benchmarks/clients.py CLIENT SPEC_JSON``.

The harness (run.py) starts this script once per run so that each run's peak RSS is its own and no
run warms up another. Each client imports its library *before* the clock starts (a process imports
once), then, inside the timed region, builds every message (same sender, subject, body and
recipients for all clients: see workload.py), connects, sends, and says goodbye. It prints one
JSON line: ``{"status": "ok", "sent": N, "elapsed": seconds, "cpu": CPU seconds (process_time, every
thread) of the timed region, "vm_hwm_kib": peak RSS}``, or
``{"status": "n/a", ...}`` when the client cannot run yet. The peak RSS is this process's VmHWM
from /proc/self/status (the whole run: interpreter, imports, and the run itself).

SPEC_JSON: ``{"host", "port", "messages", "recipients", "connections", "dns": [host, port] | null,
"domains": 0 | N}``. ``domains`` > 0 spreads the messages over that many recipient domains (the
many-domains workload, Relay only).

The smtprelay ``Relay`` runs are in their own section at the end: they detect at run time whether
``Relay.send_many`` exists and report "n/a" until it does.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from peers import vm_hwm_kib
from workload import BODY, CLIENT_HOSTNAME, SENDER, SUBJECT, domain_name, recipients

Spec = dict[str, Any]
Result = dict[str, Any]

TIMEOUT = 60.0


class ClientError(RuntimeError):
    """A client did not deliver what it was asked to (the run is reported as failed)."""


class _Clock:
    """Wall time and this process's CPU time (all threads) since it was made."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def read(self) -> dict[str, float]:
        return {"elapsed": time.perf_counter() - self.wall, "cpu": time.process_time() - self.cpu}


def _ok(sent: int, timing: dict[str, float]) -> Result:
    return {"status": "ok", "sent": sent, **timing}


def _split(total: int, parts: int) -> list[int]:
    """``total`` messages shared by ``parts`` workers as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# -- standard library: smtplib + email ----------------------------------------------------------
def _email_message(to: list[str]) -> Any:
    """What an smtplib user builds: an EmailMessage with the usual headers (default policy)."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = ", ".join(to)
    msg["Subject"] = SUBJECT
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain=CLIENT_HOSTNAME)
    msg.set_content(BODY)
    return msg


def _smtplib_session(spec: Spec, count: int) -> int:
    import smtplib

    to = recipients(spec["recipients"])
    with smtplib.SMTP(spec["host"], spec["port"], local_hostname=CLIENT_HOSTNAME, timeout=TIMEOUT) as smtp:
        for _ in range(count):
            refused = smtp.send_message(_email_message(to))
            if refused:
                raise ClientError(f"smtplib: refused {refused}")
    return count


def smtplib_new_connection(spec: Spec) -> Result:
    """smtplib, a new connection (connect, EHLO, one message, QUIT) for every message."""
    import email.message  # noqa: F401 - imported before the clock starts, like every client's library
    import smtplib  # noqa: F401

    clock = _Clock()
    sent = sum(_smtplib_session(spec, 1) for _ in range(spec["messages"]))
    return _ok(sent, clock.read())


def smtplib_reused(spec: Spec) -> Result:
    """smtplib, every message on one connection."""
    import email.message  # noqa: F401
    import smtplib  # noqa: F401

    clock = _Clock()
    sent = _smtplib_session(spec, spec["messages"])
    return _ok(sent, clock.read())


def smtplib_threads(spec: Spec) -> Result:
    """smtplib, ``connections`` threads each with its own connection, sharing the messages."""
    import email.message  # noqa: F401
    import smtplib  # noqa: F401

    shares = _split(spec["messages"], spec["connections"])
    sent = [0] * len(shares)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            sent[index] = _smtplib_session(spec, shares[index])
        except BaseException as error:
            errors.append(error)

    clock = _Clock()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(shares))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    timing = clock.read()
    if errors:
        raise errors[0]
    return _ok(sum(sent), timing)


# -- aiosmtplib ----------------------------------------------------------------------------------
def aiosmtplib_connections(spec: Spec) -> Result:
    """aiosmtplib, ``connections`` concurrent connections (tasks) sharing the messages."""
    import asyncio
    import email.message  # noqa: F401

    import aiosmtplib

    to = recipients(spec["recipients"])

    async def session(count: int) -> int:
        smtp = aiosmtplib.SMTP(
            hostname=spec["host"],
            port=spec["port"],
            local_hostname=CLIENT_HOSTNAME,
            start_tls=False,
            use_tls=False,
            timeout=TIMEOUT,
        )
        await smtp.connect()
        for _ in range(count):
            refused, _ = await smtp.send_message(_email_message(to))
            if refused:
                raise ClientError(f"aiosmtplib: refused {refused}")
        await smtp.quit()
        return count

    async def main() -> int:
        counts = await asyncio.gather(*(session(n) for n in _split(spec["messages"], spec["connections"])))
        return sum(counts)

    clock = _Clock()
    sent = asyncio.run(main())
    return _ok(sent, clock.read())


# -- Django --------------------------------------------------------------------------------------
def django_send_messages(spec: Spec) -> Result:
    """Django's SMTP EmailBackend: build the EmailMessages, then one send_messages() call (one connection)."""
    from django.conf import settings

    settings.configure(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST=spec["host"],
        EMAIL_PORT=spec["port"],
        EMAIL_USE_TLS=False,
        EMAIL_USE_SSL=False,
        EMAIL_TIMEOUT=TIMEOUT,
        DEFAULT_CHARSET="utf-8",
    )
    from django.core.mail import EmailMessage, get_connection
    from django.core.mail.utils import DNS_NAME

    # Django asks socket.getfqdn() for its EHLO name and Message-ID domain; give it ours instead
    # (no system resolver query, and the same name every client uses).
    DNS_NAME._fqdn = CLIENT_HOSTNAME

    to = recipients(spec["recipients"])
    clock = _Clock()
    connection = get_connection()
    messages = [
        EmailMessage(SUBJECT, BODY, SENDER, to, connection=connection) for _ in range(spec["messages"])
    ]
    sent = connection.send_messages(messages)
    timing = clock.read()
    if sent != spec["messages"]:
        raise ClientError(f"django: send_messages() returned {sent}")
    return _ok(sent, timing)


# -- smtprelay: Transport -------------------------------------------------------------------------
def smtprelay_transport(spec: Spec) -> Result:
    """smtprelay's Transport: every message built as a Message and sent on one connection."""
    from smtprelay import Message, Status, Transport

    to = recipients(spec["recipients"])
    clock = _Clock()
    with Transport.connect(
        spec["host"], spec["port"], tls="none", local_hostname=CLIENT_HOSTNAME, timeout=TIMEOUT
    ) as transport:
        for _ in range(spec["messages"]):
            message = Message(sender=SENDER, to=to, subject=SUBJECT, text=BODY)
            results = transport.send(message)
            if any(result.status is not Status.DELIVERED for result in results):
                raise ClientError(f"smtprelay Transport: {results}")
    timing = clock.read()
    return _ok(spec["messages"], timing)


# -- smtprelay: Relay.send_many (n/a until it exists) ----------------------------------------------
def relay_send_many_available() -> bool:
    """True when this smtprelay has ``Relay.send_many`` (another issue adds it)."""
    import smtprelay

    relay = getattr(smtprelay, "Relay", None)
    return relay is not None and callable(getattr(relay, "send_many", None))


def _relay_messages(spec: Spec) -> Iterator[Any]:
    """The workload as a generator: messages are built while send_many consumes them (timed)."""
    from smtprelay import Message

    domains = spec.get("domains") or 0
    fixed = recipients(spec["recipients"])
    for index in range(spec["messages"]):
        to = recipients(spec["recipients"], domain_name(index % domains)) if domains else fixed
        yield Message(sender=SENDER, to=to, subject=SUBJECT, text=BODY)


def _relay_run(spec: Spec, *, max_connections_per_host: int | None, concurrency: int | None) -> Result:
    if not relay_send_many_available():
        return {"status": "n/a", "reason": "smtprelay.Relay.send_many is not implemented yet"}
    import dns.resolver

    import smtprelay

    if spec.get("dns") is None:
        raise ClientError("the Relay runs need the harness's DNS zone (spec['dns'])")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [spec["dns"][0]]
    resolver.port = spec["dns"][1]
    options: dict[str, Any] = {
        "resolver": resolver,
        "port": spec["port"],
        "tls": "none",
        "allow_private_mx": True,
        "local_hostname": CLIENT_HOSTNAME,
        "timeout": TIMEOUT,
    }
    if max_connections_per_host is not None:
        options["pool"] = smtprelay.PoolLimits(max_connections_per_host=max_connections_per_host)

    clock = _Clock()
    delivered = 0
    failed: list[Any] = []
    with smtprelay.Relay(**options) as relay:
        for report in relay.send_many(_relay_messages(spec), concurrency=concurrency):
            if report.ok:
                delivered += 1
            elif len(failed) < 3:
                failed.append(report)
    timing = clock.read()
    if delivered != spec["messages"]:
        raise ClientError(f"Relay.send_many delivered {delivered} of {spec['messages']}: {failed}")
    return _ok(delivered, timing)


def relay_send_many_default(spec: Spec) -> Result:
    """``Relay.send_many(messages)`` with default pool limits and concurrency."""
    return _relay_run(spec, max_connections_per_host=None, concurrency=None)


def relay_send_many_8(spec: Spec) -> Result:
    """``Relay.send_many(messages, concurrency=8)`` with ``PoolLimits(max_connections_per_host=8)``."""
    return _relay_run(spec, max_connections_per_host=8, concurrency=8)


#: Peer libraries from the ``bench`` extra: a run whose library is missing is reported as n/a.
OPTIONAL_PEERS = ("aiosmtplib", "django")

CLIENTS: dict[str, Callable[[Spec], Result]] = {
    "smtplib-new": smtplib_new_connection,
    "smtplib-reused": smtplib_reused,
    "smtplib-threads": smtplib_threads,
    "aiosmtplib": aiosmtplib_connections,
    "django": django_send_messages,
    "smtprelay-transport": smtprelay_transport,
    "relay-default": relay_send_many_default,
    "relay-8": relay_send_many_8,
}


def main() -> int:
    name, spec_text = sys.argv[1], sys.argv[2]
    spec: Spec = json.loads(spec_text)
    try:
        result = CLIENTS[name](spec)
    except ModuleNotFoundError as error:
        if error.name not in OPTIONAL_PEERS:
            raise
        result = {"status": "n/a", "reason": f"{error.name} is not installed (pip install -e '.[bench]')"}
    result["vm_hwm_kib"] = vm_hwm_kib()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
