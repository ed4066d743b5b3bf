"""smtprelay against its peers, side by side, in one run.

    .venv/bin/python benchmarks/run.py            # full run: median of 3, about 10 minutes
    .venv/bin/python benchmarks/run.py --quick    # smoke run: small N, 1 repetition, < 1 minute

Starts Postfix's ``smtp-sink`` on loopback (a free port), a latency proxy per RTT (latency_proxy.py)
and a DNS zone (smtprelay.testing.DNSZone); then delivers the same workloads (~2 KB messages, 1 and 10
recipients, at 0 ms and 20 ms RTT, and 100 recipient domains for the Relay) with every client, each
run in a fresh process (clients.py, or smtp-source itself), and prints a markdown table: messages
per second, round trips per message (counted at the proxy), wire bytes per message, the run's peak
RSS, and smtprelay's ratio to each peer, followed by the targets of issue 5.

What is timed: in each client process, from just before the first message is built to after the
goodbye (QUIT) -- message building and serialisation, connecting, EHLO, sending -- but not the
interpreter's start or the imports. smtp-source (C) is timed from its start to its exit.

At 0 ms the timed runs go straight to smtp-sink (a proxy in Python would take CPU from the client);
the round trips are counted in one extra, shorter run per client through a 0 ms proxy. At 20 ms
every run goes through the proxy, which counts them as it goes.

After every run smtp-sink's own message counter must have grown by exactly what the client says it
sent (and that must be what it was asked to send); otherwise the run is reported as failed and the
script exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from latency_proxy import LatencyProxy, ProxyStats, selftest
from peers import SmtpSink, run_child, which_postfix_tool
from workload import CLIENT_HOSTNAME, RECIPIENT_DOMAIN, SENDER_ADDRESS, SUBJECT, domain_name

HERE = Path(__file__).resolve().parent
#: Size of the headers smtp-source writes (From, To, Date, Message-Id, Subject) with our values;
#: its -l payload is the Python clients' message size minus this, so all messages weigh the same.
SMTP_SOURCE_HEADER_BYTES = 200
MANY_DOMAINS = 100
MANY_TITLE = f"20 ms RTT, {MANY_DOMAINS} domains, 1 recipient each"


# -- what runs -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Client:
    key: str
    label: str
    connections: str  # as shown in the table
    parallel: bool  # uses 8 connections (takes the workload's larger N)
    kind: str = "python"  # or "smtp-source"
    python_name: str = ""  # the clients.py entry (default: the key)
    sessions: int = 1  # smtp-source -s / python concurrency
    n_scale: float = 1.0  # this client's N relative to the workload's (see messages_for)
    relay: bool = False  # a Relay.send_many run (n/a until implemented)

    @property
    def entry(self) -> str:
        return self.python_name or self.key


CLIENTS: tuple[Client, ...] = (
    Client("source-1", "smtp-source -s1 -d (C)", "1", parallel=False, kind="smtp-source"),
    Client("source-8", "smtp-source -s8 -d (C)", "8", parallel=True, kind="smtp-source", sessions=8),
    Client("smtplib-new", "smtplib, new connection per message", "1 per msg", parallel=False, n_scale=0.5),
    Client("smtplib-reused", "smtplib, one reused connection", "1", parallel=False),
    Client("smtplib-threads", "smtplib, 8 threads", "8", parallel=True, sessions=8),
    Client("aiosmtplib-1", "aiosmtplib, 1 connection", "1", parallel=False, python_name="aiosmtplib"),
    Client(
        "aiosmtplib-8", "aiosmtplib, 8 concurrent", "8", parallel=True, python_name="aiosmtplib", sessions=8
    ),
    Client("django", "Django SMTP backend send_messages", "1", parallel=False),
    Client("transport", "**smtprelay Transport**", "1", parallel=False, python_name="smtprelay-transport"),
    Client(
        "relay-default", "**smtprelay Relay.send_many (defaults)**", "pool default", parallel=True, relay=True
    ),
    Client(
        "relay-8",
        "**smtprelay Relay.send_many (8 conns, concurrency=8)**",
        "8",
        parallel=True,
        sessions=8,
        relay=True,
    ),
)
PEERS_8 = ("source-8", "smtplib-threads", "aiosmtplib-8")


@dataclasses.dataclass(frozen=True)
class Workload:
    key: str
    title: str
    rtt_ms: float
    recipients: int
    n_single: int  # messages for a one-connection run
    n_parallel: int  # messages for an 8-connection run
    domains: int = 0
    relay_only: bool = False


def workloads(quick: bool) -> tuple[Workload, ...]:
    if quick:
        return (
            Workload("0ms-1", "0 ms RTT, 1 recipient", 0, 1, 100, 200),
            Workload("0ms-10", "0 ms RTT, 10 recipients", 0, 10, 50, 100),
            Workload("20ms-1", "20 ms RTT, 1 recipient", 20, 1, 4, 16),
            Workload("20ms-10", "20 ms RTT, 10 recipients", 20, 10, 2, 16),
            Workload("domains", MANY_TITLE, 20, 1, 100, 100, domains=MANY_DOMAINS, relay_only=True),
        )
    return (
        Workload("0ms-1", "0 ms RTT, 1 recipient", 0, 1, 2000, 4000),
        Workload("0ms-10", "0 ms RTT, 10 recipients", 0, 10, 1000, 2000),
        Workload("20ms-1", "20 ms RTT, 1 recipient", 20, 1, 100, 400),
        Workload("20ms-10", "20 ms RTT, 10 recipients", 20, 10, 30, 160),
        Workload("domains", MANY_TITLE, 20, 1, 1000, 1000, domains=MANY_DOMAINS, relay_only=True),
    )


def messages_for(workload: Workload, client: Client) -> int:
    """N for this client in this workload: the workload's N, scaled so that each run takes seconds.

    smtp-source is ~10x faster than anything in Python at 0 ms, so it sends 15x more there (a run
    of under a second is at the mercy of the scheduler); a new connection per message costs ~2x
    more round trips, so that client sends half.
    """
    n = workload.n_parallel if client.parallel else workload.n_single
    scale = client.n_scale
    if client.kind == "smtp-source" and workload.rtt_ms == 0:
        scale *= 15
    return max(1, round(n * scale))


# -- results -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """One client run."""

    status: str  # ok | n/a | failed
    messages: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0  # the client's CPU seconds in the timed region (smtp-source: its whole life)
    rss_kib: int = 0
    proxy: ProxyStats | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.elapsed if self.elapsed > 0 else 0.0


@dataclasses.dataclass
class Cell:
    """All runs of one client in one workload, and the round-trip count."""

    workload: Workload
    client: Client
    runs: list[Run] = dataclasses.field(default_factory=list)
    counted: Run | None = None  # the run whose proxy counters are reported

    @property
    def status(self) -> str:
        if any(r.status == "failed" for r in self.runs):
            return "failed"
        if any(r.status == "n/a" for r in self.runs) or not self.runs:
            return "n/a"
        return "ok"

    @property
    def rate(self) -> float | None:
        ok = [r.rate for r in self.runs if r.status == "ok"]
        return statistics.median(ok) if ok and self.status == "ok" else None

    @property
    def cpu_per_message(self) -> float | None:
        """Median CPU microseconds the client spent per message."""
        ok = [r.cpu / r.messages * 1e6 for r in self.runs if r.status == "ok" and r.messages]
        return statistics.median(ok) if ok and self.status == "ok" else None

    @property
    def spread(self) -> str:
        """The lowest and highest rate of the runs, when there were several."""
        ok = [r.rate for r in self.runs if r.status == "ok"]
        if len(ok) < 2 or self.status != "ok":
            return ""
        return f"{rate_text(min(ok))}-{rate_text(max(ok))}"

    @property
    def rss_mib(self) -> float | None:
        ok = [r.rss_kib for r in self.runs if r.status == "ok"]
        return statistics.median(ok) / 1024 if ok and self.status == "ok" else None

    def _per_message(self, value: str) -> float | None:
        run = self.counted
        if run is None or run.proxy is None or run.status != "ok" or not run.messages:
            return None
        return float(getattr(run.proxy, value)) / run.messages

    @property
    def round_trips(self) -> float | None:
        return self._per_message("round_trips")

    @property
    def client_bytes(self) -> float | None:
        return self._per_message("client_bytes")

    @property
    def note(self) -> str:
        notes = [r.note for r in self.runs if r.note]
        return notes[0] if notes else ""


# -- the environment the runs share ---------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        self.args = args
        self.smtp_source = which_postfix_tool("smtp-source")
        if which_postfix_tool("smtp-sink") is None or self.smtp_source is None:
            raise SystemExit("smtp-sink and smtp-source are needed: apt-get install postfix")
        self.sink = stack.enter_context(SmtpSink("127.0.0.1"))
        self.sink_deaths: list[str] = []
        self.proxies: dict[float, LatencyProxy] = {}
        for rtt in sorted({0.0, *(w.rtt_ms for w in args.workloads)}):
            self.proxies[rtt] = stack.enter_context(LatencyProxy(self.sink.address, rtt=rtt / 1000))
        self.pin_sink()
        self.zone = self._zone(stack)
        self.payload = self._smtp_source_payload()

    def pin_sink(self) -> None:
        """With --pin, smtp-sink runs on CPU 0 only (clients on CPU 0 too, or on CPU 1: see cpu_prefix)."""
        if self.args.pin != "none" and self.sink.pid is not None:
            os.sched_setaffinity(self.sink.pid, {0})

    def cpu_prefix(self) -> list[str]:
        if self.args.pin == "same":
            return ["taskset", "-c", "0"]
        if self.args.pin == "split":
            return ["taskset", "-c", "1"]
        return []

    @staticmethod
    def _zone(stack: contextlib.ExitStack) -> Any:
        """MX records for the Relay runs: bench.test and d000..d099.bench.test, every MX on 127.0.0.1.

        Each domain has its own MX host name (mx.<domain>), all with the sink's address, so a Relay
        sees 100 destinations; the port (sink or proxy) is the Relay's ``port=``.
        """
        from smtprelay.testing import DNSZone

        zone = stack.enter_context(DNSZone(host="127.0.0.1"))
        for domain in [RECIPIENT_DOMAIN, *(domain_name(i) for i in range(MANY_DOMAINS))]:
            zone.mx(domain, [(10, f"mx.{domain}")])
            zone.a(f"mx.{domain}", "127.0.0.1")
        return zone

    @staticmethod
    def _smtp_source_payload() -> int:
        from workload import BODY, SENDER

        from smtprelay import Message

        size = len(Message(sender=SENDER, to=["rcpt0@bench.test"], subject=SUBJECT, text=BODY).as_bytes())
        return max(100, size - SMTP_SOURCE_HEADER_BYTES)

    def target(self, workload: Workload, *, counting: bool) -> tuple[str, int, LatencyProxy | None]:
        """Where a run connects: through the workload's proxy, or straight to the sink at 0 ms."""
        if workload.rtt_ms == 0 and not counting and not self.args.proxy_at_0ms:
            return (*self.sink.address, None)
        proxy = self.proxies[workload.rtt_ms]
        return (*proxy.address, proxy)

    def argv(self, workload: Workload, client: Client, host: str, port: int, messages: int) -> list[str]:
        if client.kind == "smtp-source":
            assert self.smtp_source is not None
            return [
                self.smtp_source,
                "-s",
                str(client.sessions),
                "-d",
                "-m",
                str(messages),
                "-l",
                str(self.payload),
                "-S",
                SUBJECT,
                "-f",
                SENDER_ADDRESS,
                "-t",
                f"rcpt@{RECIPIENT_DOMAIN}",
                "-r",
                str(workload.recipients),
                "-M",
                CLIENT_HOSTNAME,
                f"{host}:{port}",
            ]
        spec = {
            "host": host,
            "port": port,
            "messages": messages,
            "recipients": workload.recipients,
            "connections": client.sessions,
            "domains": workload.domains,
            "dns": [self.zone.host, self.zone.port],
        }
        return [sys.executable, str(HERE / "clients.py"), client.entry, json.dumps(spec)]

    def run(self, workload: Workload, client: Client, *, counting: bool = False) -> Run:
        """One client run; if smtp-sink died meanwhile, it is restarted and the run made once more."""
        for attempt in (1, 2):
            death = self.sink.died()
            if death is not None:
                self._recover(death)
            run = self._run_once(workload, client, counting=counting)
            death = self.sink.died()
            if death is None:
                return run
            self._recover(death)
            if attempt == 2:
                return Run("failed", note=f"{death} during the run, twice")
        raise AssertionError("unreachable")

    def _recover(self, death: str) -> None:
        self.sink_deaths.append(death)
        progress(f"{death}; restarting it")
        self.sink.restart()
        self.pin_sink()
        for proxy in self.proxies.values():
            proxy.upstream_port = self.sink.port

    def _run_once(self, workload: Workload, client: Client, *, counting: bool) -> Run:
        messages = messages_for(workload, client)
        if counting:
            messages = min(messages, self.args.count_messages)
        host, port, proxy = self.target(workload, counting=counting)
        if proxy is not None:
            if not proxy.wait_idle(10):
                return Run("failed", note="the proxy still had open connections before the run")
            proxy.reset_stats()
        before = self.sink.counters()["mesg"]
        expected_time = messages * workload.rtt_ms / 1000 * 40 + 60
        argv = self.cpu_prefix() + self.argv(workload, client, host, port, messages)
        child = run_child(argv, timeout=expected_time)
        if child.timed_out:
            return Run("failed", note=f"timed out after {expected_time:.0f} s")
        if client.kind == "smtp-source":
            if child.returncode != 0:
                return Run(
                    "failed", note=f"smtp-source exit {child.returncode}: {child.stderr.strip()[-300:]}"
                )
            result: dict[str, Any] = {
                "status": "ok",
                "sent": messages,
                "elapsed": child.wall,
                "cpu": child.cpu,
            }
        else:
            try:
                result = json.loads(child.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                tail = (child.stderr.strip() or child.stdout.strip())[-400:]
                return Run("failed", note=f"exit {child.returncode}: {tail}")
        if result["status"] == "n/a":
            return Run("n/a", note=result.get("reason", ""))
        stats = None
        if proxy is not None:
            if not proxy.wait_idle(10):
                return Run("failed", note="connections still open at the proxy 10 s after the client exited")
            stats = proxy.stats()
        sent = int(result["sent"])
        counted = self.sink.wait_for_messages(before + sent) - before
        rss = max(child.sampled_hwm_kib, int(result.get("vm_hwm_kib", 0)))
        run = Run(
            "ok",
            messages=sent,
            elapsed=float(result["elapsed"]),
            cpu=float(result["cpu"]),
            rss_kib=rss,
            proxy=stats,
        )
        if sent != messages or counted != sent:
            run.status = "failed"
            run.note = f"asked {messages}, client says {sent}, smtp-sink counted {counted}"
        return run


# -- running --------------------------------------------------------------------------------------
def selected(args: argparse.Namespace) -> Iterator[tuple[Workload, Client]]:
    for workload in args.workloads:
        for client in CLIENTS:
            if workload.relay_only and not client.relay:
                continue
            if args.only and not any(word in client.key for word in args.only):
                continue
            yield workload, client


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def describe(run: Run) -> str:
    if run.status != "ok":
        return f"{run.status} {run.note}"
    extra = f", {run.cpu / run.messages * 1e6:,.0f} µs CPU/msg" if run.messages else ""
    if run.proxy is not None:
        extra += (
            f", {run.proxy.round_trips / run.messages:.2f} round trips/msg over "
            f"{len(run.proxy.connections)} connection(s)"
        )
    return (
        f"{run.rate:,.1f} msg/s ({run.messages} in {run.elapsed:.2f} s), {run.rss_kib / 1024:.1f} MiB{extra}"
    )


def run_all(bench: Bench, args: argparse.Namespace) -> list[Cell]:
    cells = {(w.key, c.key): Cell(w, c) for w, c in selected(args)}
    # 0 ms: one shorter run per client through a 0 ms proxy, only to count round trips.
    if not args.proxy_at_0ms:
        for workload, client in selected(args):
            if workload.rtt_ms != 0:
                continue
            run = bench.run(workload, client, counting=True)
            cells[workload.key, client.key].counted = run
            progress(f"[{workload.title}] {client.label} (round-trip count): {describe(run)}")
    for repetition in range(args.repeat):
        for workload, client in selected(args):
            cell = cells[workload.key, client.key]
            if cell.status == "n/a" and cell.runs:
                continue  # a client that cannot run yet is asked once
            if cell.counted is not None and cell.counted.status == "n/a":
                cell.runs.append(cell.counted)
                continue
            run = bench.run(workload, client)
            cell.runs.append(run)
            progress(f"[{workload.title}] {client.label} ({repetition + 1}/{args.repeat}): {describe(run)}")
    for cell in cells.values():
        if cell.counted is None:
            ok = [r for r in cell.runs if r.status == "ok"]
            # The run with the median rate supplies the round trips (they hardly vary between runs).
            cell.counted = sorted(ok, key=lambda r: r.rate)[len(ok) // 2] if ok else None
    return list(cells.values())


# -- report ---------------------------------------------------------------------------------------
def fmt(value: float | None, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def rate_text(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def report(cells: list[Cell], bench: Bench, args: argparse.Namespace, started: datetime.datetime) -> str:
    by = {(c.workload.key, c.client.key): c for c in cells}
    out: list[str] = [f"## Benchmark run of {started:%Y-%m-%d %H:%M} UTC", ""]
    out += [f"- {line}" for line in environment(bench, args)]
    out.append("")
    for workload in args.workloads:
        rows = [c for c in cells if c.workload.key == workload.key]
        if not rows:
            continue
        transport = by.get((workload.key, "transport"))
        relay8 = by.get((workload.key, "relay-8"))
        out.append(f"### {workload.title} (median of {args.repeat})")
        out.append("")
        out.append(
            "| client | connections | messages | msg/s | (range) | client CPU µs/msg | round trips/msg "
            "| client bytes/msg | peak RSS MiB | Transport ÷ this | send_many(8) ÷ this |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for cell in rows:
            client = cell.client
            if cell.status == "n/a":
                reason = " (not implemented yet)" if client.relay else f" ({cell.note})"
                out.append(f"| {client.label} | {client.connections} | | n/a{reason} | | | | | | | |")
                continue
            if cell.status == "failed":
                out.append(f"| {client.label} | {client.connections} | | FAILED: {cell.note} | | | | | | | |")
                continue
            out.append(
                f"| {client.label} | {connections(cell)} | {messages_for(workload, client):,} "
                f"| {rate_text(cell.rate)} | {cell.spread} | {fmt(cell.cpu_per_message, ',.0f')} "
                f"| {fmt(cell.round_trips, '.2f')} | {fmt(cell.client_bytes, ',.0f')} "
                f"| {fmt(cell.rss_mib, '.1f')} "
                f"| {ratio(transport.rate if transport else None, cell.rate)} "
                f"| {ratio(relay8.rate if relay8 else None, cell.rate)} |"
            )
        out.append("")
        targets = target_lines(workload, by)
        if targets:
            out += ["Targets (issue 5):", ""]
            out += [f"- {line}" for line in targets]
            out.append("")
    return "\n".join(out)


def connections(cell: Cell) -> str:
    """The client's connection setting; for the Relay, also how many it opened (seen at the proxy)."""
    run = cell.counted
    if cell.client.relay and run is not None and run.proxy is not None:
        return f"{cell.client.connections} ({len(run.proxy.connections)} opened)"
    return cell.client.connections


def target_lines(workload: Workload, by: dict[tuple[str, str], Cell]) -> list[str]:
    def rate(key: str) -> float | None:
        cell = by.get((workload.key, key))
        return cell.rate if cell is not None else None

    def check(label: str, value: float | None, goal: float, *, at_most: bool = False, unit: str = "x") -> str:
        if value is None:
            return f"{label}: n/a (goal {'<=' if at_most else '>='} {goal}{unit})"
        met = value <= goal if at_most else value >= goal
        verdict = "met" if met else "**not met**"
        return f"{label}: {value:.2f}{unit} (goal {'<=' if at_most else '>='} {goal}{unit}) - {verdict}"

    def div(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    best8_key = max(PEERS_8, key=lambda k: rate(k) or 0.0)
    best8 = rate(best8_key)
    transport = by.get((workload.key, "transport"))
    lines: list[str] = []
    if workload.relay_only:
        return lines
    if workload.rtt_ms == 0:
        lines.append(check("Transport ÷ smtplib reused", div(rate("transport"), rate("smtplib-reused")), 2.0))
        lines.append(check("Transport ÷ smtp-source -s1 -d", div(rate("transport"), rate("source-1")), 0.8))
        source = by.get((workload.key, "source-1"))
        mine = transport.cpu_per_message if transport else None
        theirs = source.cpu_per_message if source else None
        if mine is not None and theirs is not None:
            lines.append(
                f"(context) client CPU per message: Transport {mine:,.0f} µs, "
                f"smtp-source -s1 -d {theirs:,.0f} µs ({theirs / mine:.2f}x); a ping-pong client's rate "
                "also depends on where the scheduler puts it and smtp-sink (one CPU or two)"
            )
        return lines
    goal = 1.9 if workload.recipients == 1 else 5.0
    lines.append(check("Transport ÷ smtplib reused", div(rate("transport"), rate("smtplib-reused")), goal))
    lines.append(
        check(
            "Transport round trips per message",
            transport.round_trips if transport else None,
            2.1,
            at_most=True,
            unit="",
        )
    )
    many_goal = 1.0 if workload.recipients == 1 else 1.9
    lines.append(
        check(
            f"send_many (defaults) ÷ best 8-connection peer ({best8_key})",
            div(rate("relay-default"), best8),
            many_goal,
        )
    )
    lines.append(
        check(
            f"send_many (8 connections) ÷ best 8-connection peer ({best8_key})",
            div(rate("relay-8"), best8),
            1.5,
        )
    )
    return lines


def environment(bench: Bench, args: argparse.Namespace) -> list[str]:
    def version(module: str) -> str:
        from importlib import metadata

        try:
            return metadata.version(module)
        except metadata.PackageNotFoundError:
            return "not installed"

    try:
        postfix = (
            subprocess.run(
                ["postconf", "-d", "mail_version"],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin"},
            )
            .stdout.split("=")[-1]
            .strip()
        )
    except OSError:
        postfix = "?"
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "?")
    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    lines = [
        f"machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}",
        f"smtprelay {version('smtprelay')} (git {commit or '?'}), smtplib (stdlib), "
        f"aiosmtplib {version('aiosmtplib')}, "
        f"Django {version('django')}, Postfix smtp-source/smtp-sink {postfix}",
        f"message: ~{bench.payload + SMTP_SOURCE_HEADER_BYTES:,} bytes (25 lines of text + headers); "
        f"smtp-source -l {bench.payload}",
        "timed: building every message + connect + EHLO + sending + QUIT, in a fresh process per run "
        "(imports excluded); peak RSS = that process's VmHWM (Python: read at its end; smtp-source: "
        "sampled every 10 ms)",
        "round trips: client->server chunks that follow a server->client chunk, counted at the proxy "
        "(at 0 ms in a separate run of up to "
        f"{args.count_messages} messages through a 0 ms proxy; timed 0 ms runs go straight to smtp-sink)",
    ]
    load_start = " / ".join(f"{v:.2f}" for v in args.load_start)
    load_end = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    lines.append(
        f"load average (1/5/15 min) at the start: {load_start}; at the end: {load_end} "
        "(other work on the machine shows up in the 0 ms figures, smtp-source's most)"
    )
    pinning = {
        "none": "none (the scheduler places smtp-sink and the client)",
        "same": "smtp-sink and every client on CPU 0 (taskset)",
        "split": "smtp-sink on CPU 0, every client on CPU 1 (taskset)",
    }
    lines.append(f"CPU pinning: {pinning[args.pin]}")
    if bench.sink_deaths:
        lines.append(
            f"smtp-sink died {len(bench.sink_deaths)} time(s) and was restarted (the broken run made again); "
            f"first: {bench.sink_deaths[0]}"
        )
    if args.proxy_capacity is not None:
        lines.append(
            f"latency proxy capacity at 0 ms: {args.proxy_capacity:,.0f} small chunks/s (need > 20,000)"
        )
    return lines


def write_json(path: Path, cells: list[Cell]) -> None:
    data = []
    for cell in cells:
        counted = cell.counted
        data.append(
            {
                "workload": cell.workload.key,
                "client": cell.client.key,
                "status": cell.status,
                "note": cell.note,
                "messages_per_second": cell.rate,
                "round_trips_per_message": cell.round_trips,
                "client_bytes_per_message": cell.client_bytes,
                "peak_rss_mib": cell.rss_mib,
                "cpu_us_per_message": cell.cpu_per_message,
                "runs": [
                    {
                        "status": r.status,
                        "messages": r.messages,
                        "elapsed": r.elapsed,
                        "cpu": r.cpu,
                        "rss_kib": r.rss_kib,
                        "note": r.note,
                    }
                    for r in cell.runs
                ],
                "round_trips_per_connection": (
                    counted.proxy.round_trips_per_connection() if counted and counted.proxy else None
                ),
                "round_trip_messages": counted.messages if counted else None,
            }
        )
    path.write_text(json.dumps(data, indent=2) + "\n")


# -- main -----------------------------------------------------------------------------------------
def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="smtprelay against its peers (see docs/performance.md)")
    parser.add_argument("--quick", action="store_true", help="small N, 1 repetition: a smoke run")
    parser.add_argument("--repeat", type=int, help="repetitions per cell, the median is reported (default 3)")
    parser.add_argument("--only", nargs="*", default=[], help="clients whose key contains one of these words")
    parser.add_argument(
        "--workload",
        nargs="*",
        default=[],
        help="workload keys: 0ms-1 0ms-10 20ms-1 20ms-10 domains (default: all)",
    )
    parser.add_argument(
        "--proxy-at-0ms",
        action="store_true",
        help="time the 0 ms runs through a 0 ms proxy too (default: straight to smtp-sink)",
    )
    parser.add_argument(
        "--pin",
        choices=("none", "same", "split"),
        default="none",
        help="CPU placement: smtp-sink on CPU 0 and each client on CPU 0 (same) or CPU 1 (split); "
        "default: wherever the scheduler puts them",
    )
    parser.add_argument("--count-messages", type=int, help="messages in a 0 ms round-trip counting run")
    parser.add_argument("--output", type=Path, help="also write the markdown report to this file")
    parser.add_argument("--json", type=Path, help="write every run's figures to this JSON file")
    parser.add_argument("--list", action="store_true", help="list the clients and workloads, and exit")
    args = parser.parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.count_messages = args.count_messages or (20 if args.quick else 200)
    every = workloads(args.quick)
    unknown = set(args.workload) - {w.key for w in every}
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    args.workloads = tuple(w for w in every if not args.workload or w.key in args.workload)
    args.proxy_capacity = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for client in CLIENTS:
            print(f"{client.key:16} {client.label}")
        for workload in args.workloads:
            print(f"{workload.key:16} {workload.title}")
        return 0
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    started = datetime.datetime.now(datetime.UTC)
    args.load_start = os.getloadavg()
    clock = time.monotonic()
    try:
        args.proxy_capacity = selftest(seconds=0.5 if args.quick else 2.0)["chunks_per_second"]
        progress(f"latency proxy at 0 ms forwards {args.proxy_capacity:,.0f} small chunks/s")
        with contextlib.ExitStack() as stack:
            bench = Bench(args, stack)
            progress(
                f"smtp-sink on {bench.sink.host}:{bench.sink.port}; "
                + ", ".join(f"{rtt:g} ms proxy on :{p.port}" for rtt, p in bench.proxies.items())
            )
            cells = run_all(bench, args)
            text = report(cells, bench, args, started)
    except KeyboardInterrupt:
        progress("interrupted: everything this run started has been stopped")
        return 130
    print(text)
    progress(f"done in {time.monotonic() - clock:.0f} s")
    if args.output:
        args.output.write_text(text + "\n")
    if args.json:
        write_json(args.json, cells)
    failed = [c for c in cells if c.status == "failed"]
    for cell in failed:
        progress(f"FAILED: [{cell.workload.title}] {cell.client.label}: {cell.note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
