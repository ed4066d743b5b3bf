"""Peak RSS of ``Relay.send_many`` over 100,000 generated messages, against ``import smtprelay``.

    .venv/bin/python benchmarks/memory.py                   # 100,000 messages (about a minute)
    .venv/bin/python benchmarks/memory.py --messages 5000   # shorter

Issue 5's goal: the send_many process peaks within 15 MiB of a process that has only imported
smtprelay. Both figures are VmHWM (peak resident set) from /proc/self/status, read by each child
process at its end; each runs in a fresh process. The messages come from a generator, so a
streaming send_many holds only the messages in flight. They go to Postfix's smtp-sink on loopback
through a DNSZone (MX for bench.test -> 127.0.0.1), at 0 ms RTT, and smtp-sink must count every one.

Until ``Relay.send_many`` exists the send_many figure is reported as n/a; the baseline works now.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOAL_MIB = 15.0


def _hwm_kib() -> int:
    # Inline (not peers.vm_hwm_kib): the children import nothing but smtprelay and the workload.
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1])
    return 0


def child_import_only() -> dict[str, object]:
    import smtprelay  # noqa: F401

    return {"status": "ok", "vm_hwm_kib": _hwm_kib()}


def child_send_many(
    port: int, dns_host: str, dns_port: int, messages: int, concurrency: int | None
) -> dict[str, object]:
    import dns.resolver
    from workload import BODY, CLIENT_HOSTNAME, SENDER, SUBJECT, recipients

    import smtprelay

    if not callable(getattr(getattr(smtprelay, "Relay", None), "send_many", None)):
        return {
            "status": "n/a",
            "reason": "smtprelay.Relay.send_many is not implemented yet",
            "vm_hwm_kib": _hwm_kib(),
        }
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns_host]
    resolver.port = dns_port
    to = recipients(1)

    def generate():  # type: ignore[no-untyped-def]
        for _ in range(messages):
            yield smtprelay.Message(sender=SENDER, to=to, subject=SUBJECT, text=BODY)

    delivered = 0
    started = time.perf_counter()
    with smtprelay.Relay(
        resolver=resolver,
        port=port,
        tls="none",
        allow_private_mx=True,
        local_hostname=CLIENT_HOSTNAME,
        timeout=60.0,
    ) as relay:
        for report in relay.send_many(generate(), concurrency=concurrency):
            delivered += report.ok
    elapsed = time.perf_counter() - started
    return {"status": "ok", "sent": delivered, "elapsed": elapsed, "vm_hwm_kib": _hwm_kib()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="send_many(concurrency=...); default None"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child.split(":")
        if kind == "import":
            result = child_import_only()
        else:
            port, dns_host, dns_port = int(rest[0]), rest[1], int(rest[2])
            result = child_send_many(port, dns_host, dns_port, args.messages, args.concurrency)
        print(json.dumps(result), flush=True)
        return 0

    from peers import SmtpSink, run_child

    from smtprelay.testing import DNSZone

    me = [sys.executable, str(Path(__file__).resolve())]
    try:
        baseline = json.loads(run_child([*me, "--child", "import"], timeout=60).stdout)
        print(f"import smtprelay only: peak RSS {baseline['vm_hwm_kib'] / 1024:.1f} MiB")
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(SmtpSink("127.0.0.1"))
            zone = stack.enter_context(DNSZone(host="127.0.0.1"))
            zone.mx("bench.test", [(10, "mx.bench.test")])
            zone.a("mx.bench.test", "127.0.0.1")
            argv = [
                *me,
                "--messages",
                str(args.messages),
                "--child",
                f"send-many:{sink.port}:{zone.host}:{zone.port}",
            ]
            if args.concurrency:
                argv += ["--concurrency", str(args.concurrency)]
            child = run_child(argv, timeout=args.messages / 50 + 120)
            try:
                result = json.loads(child.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                print(f"send_many run failed (exit {child.returncode}): {child.stderr.strip()[-800:]}")
                return 1
            if result["status"] != "ok":
                print(f"send_many over {args.messages:,} messages: n/a ({result.get('reason')})")
                return 0
            counted = sink.wait_for_messages(args.messages, timeout=30)
    except KeyboardInterrupt:
        print("interrupted: everything this run started has been stopped")
        return 130
    hwm = result["vm_hwm_kib"] / 1024
    delta = hwm - baseline["vm_hwm_kib"] / 1024
    rate = result["sent"] / result["elapsed"]
    print(
        f"send_many over {args.messages:,} messages: peak RSS {hwm:.1f} MiB "
        f"({result['sent']:,} delivered, smtp-sink counted {counted:,}, {rate:,.0f} msg/s)"
    )
    verdict = "met" if delta <= GOAL_MIB else "NOT met"
    print(f"difference: {delta:+.1f} MiB (goal: within {GOAL_MIB:.0f} MiB) - {verdict}")
    if result["sent"] != args.messages or counted != args.messages:
        print("FAILED: not every message was delivered and counted")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
