"""Profile smtprelay's Transport at 0 ms RTT: where does a one-connection run spend its time?

    .venv/bin/python benchmarks/profile_transport.py                    # 2,000 messages, 1 recipient
    .venv/bin/python benchmarks/profile_transport.py --recipients 10 --sort tottime --top 25

Runs the same loop as the benchmark's "smtprelay Transport" client (build a Message, send it, on
one connection to Postfix's smtp-sink on loopback) under cProfile, in this process, and prints the
top entries. cProfile slows Python code down by roughly 1.5-2x, so read it for proportions.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

from peers import SmtpSink
from workload import BODY, CLIENT_HOSTNAME, SENDER, SUBJECT, recipients

from smtprelay import Message, Status, Transport


def send(host: str, port: int, messages: int, to: list[str]) -> None:
    with Transport.connect(host, port, tls="none", local_hostname=CLIENT_HOSTNAME, timeout=60.0) as transport:
        for _ in range(messages):
            results = transport.send(Message(sender=SENDER, to=to, subject=SUBJECT, text=BODY))
            if any(r.status is not Status.DELIVERED for r in results):
                raise RuntimeError(f"not delivered: {results}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--recipients", type=int, default=1)
    parser.add_argument("--sort", default="cumulative", help="pstats sort key (cumulative, tottime, ...)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    to = recipients(args.recipients)
    with SmtpSink("127.0.0.1") as sink:
        started = time.perf_counter()
        send(*sink.address, args.messages, to)
        plain = time.perf_counter() - started
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.runcall(send, *sink.address, args.messages, to)
        profiled = time.perf_counter() - started
        counted = sink.wait_for_messages(2 * args.messages)
    print(
        f"{args.messages} messages, {args.recipients} recipient(s): {args.messages / plain:,.0f} msg/s "
        f"without the profiler, {args.messages / profiled:,.0f} msg/s with it; smtp-sink counted {counted}"
    )
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(args.sort).print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
