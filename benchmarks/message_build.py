"""Micro-benchmark: building and serializing one message, smtprelay against the standard library.

Each shape is built the way an application builds a message for every send: a new object each
iteration, then its wire bytes. smtprelay's time is ``Message(...)`` + ``as_bytes()`` (validation
of every address and header included); the baseline is what an smtplib user writes: an
``EmailMessage`` filled with the usual headers and serialized with ``policy.SMTP`` (no validation
beyond the library's own). Prints microseconds per message and smtprelay's speed relative to the
baseline (> 1.00x: smtprelay is faster).

Usage::

    python benchmarks/message_build.py                 # every shape, best of 5 runs
    python benchmarks/message_build.py --profile text-1 # cProfile of smtprelay's path for one shape
    python benchmarks/message_build.py --reference      # smtprelay forced onto its stdlib path

Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import cProfile
import email.policy
import itertools
import pstats
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from workload import BODY, SENDER, SENDER_ADDRESS, SUBJECT  # the same message as the peer benchmarks

from smtprelay import Attachment, Message

SENDER_DOMAIN = SENDER_ADDRESS.rpartition("@")[2]
TEXT = BODY
HTML = "<html><body>\n" + "".join(f"<p>{line}</p>\n" for line in TEXT.splitlines()) + "</body></html>\n"
ATTACHMENT = bytes((i * 131 + 7) % 256 for i in range(20 * 1024))  # 20 KB, not compressible text
UNICODE_SENDER = "Jörg Müller <joerg@client.bench.test>"
UNICODE_SUBJECT = "Grüße aus Köln \u2013 Ihre Bestellung № 42 ist unterwegs ✓"
UNICODE_TEXT = TEXT.replace("delivery", "Zustellung ✓ für Jörg")


def _recipients(count: int, *, unicode: bool = False, start: int = 0) -> list[str]:
    if unicode:
        return [f"Zoë Ørsted {i} <rcpt{i}@bench.test>" for i in range(start, start + count)]
    return [f"rcpt{i}@bench.test" for i in range(start, start + count)]


_serial = itertools.count(1_000_000)


def _to(shape: dict[str, Any]) -> list[str]:
    """The shape's recipients; for a "fresh" shape, addresses no message had before (cold caches)."""
    fresh = shape.get("fresh")
    if fresh is None:
        return list(shape["to"])
    count, unicode = fresh
    return _recipients(count, unicode=unicode, start=next(_serial) * 100)


# name -> keyword arguments shared by both builders
SHAPES: dict[str, dict[str, Any]] = {
    "text-1": {"to": _recipients(1), "text": TEXT},
    "text-10": {"to": _recipients(10), "text": TEXT},
    "text+html-1": {"to": _recipients(1), "text": TEXT, "html": HTML},
    "text+html-10": {"to": _recipients(10), "text": TEXT, "html": HTML},
    "attach20k-1": {"to": _recipients(1), "text": TEXT, "attachment": ATTACHMENT},
    "attach20k-10": {"to": _recipients(10), "text": TEXT, "attachment": ATTACHMENT},
    "unicode-1": {
        "sender": UNICODE_SENDER,
        "subject": UNICODE_SUBJECT,
        "to": _recipients(1, unicode=True),
        "text": UNICODE_TEXT,
    },
    "unicode-10": {
        "sender": UNICODE_SENDER,
        "subject": UNICODE_SUBJECT,
        "to": _recipients(10, unicode=True),
        "text": UNICODE_TEXT,
    },
    # Every message to recipients never seen before: no cache helps with their addresses.
    "fresh-text-1": {"fresh": (1, False), "text": TEXT},
    "fresh-text-10": {"fresh": (10, False), "text": TEXT},
    "fresh-unicode-1": {
        "fresh": (1, True),
        "sender": UNICODE_SENDER,
        "subject": UNICODE_SUBJECT,
        "text": TEXT,
    },
    "fresh-unicode-10": {
        "fresh": (10, True),
        "sender": UNICODE_SENDER,
        "subject": UNICODE_SUBJECT,
        "text": TEXT,
    },
}


# Message, or Message._reference (the standard library's writer only) with --reference.
build: Callable[..., Message] = Message


def build_smtprelay(shape: dict[str, Any]) -> bytes:
    attachment = shape.get("attachment")
    msg = build(
        sender=shape.get("sender", SENDER),
        to=_to(shape),
        subject=shape.get("subject", SUBJECT),
        text=shape.get("text"),
        html=shape.get("html"),
        attachments=[Attachment(attachment, "data.bin")] if attachment is not None else (),
    )
    return msg.as_bytes()


def build_stdlib(shape: dict[str, Any]) -> bytes:
    msg = EmailMessage()
    msg["From"] = shape.get("sender", SENDER)
    msg["To"] = ", ".join(_to(shape))
    msg["Subject"] = shape.get("subject", SUBJECT)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=SENDER_DOMAIN)
    msg.set_content(shape["text"])
    if shape.get("html") is not None:
        msg.add_alternative(shape["html"], subtype="html")
    if shape.get("attachment") is not None:
        msg.add_attachment(shape["attachment"], "application", "octet-stream", filename="data.bin")
    return msg.as_bytes(policy=email.policy.SMTP)


def per_message_us(build: Callable[[dict[str, Any]], bytes], shape: dict[str, Any], repeat: int) -> float:
    """Best of ``repeat`` runs of a loop sized to last about 0.2 s, in microseconds per message."""
    build(shape)  # warm caches and imports, as a long-running sender would have them
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            build(shape)
        elapsed = time.perf_counter() - start
        if elapsed >= 0.2:
            break
        loops *= 2
    best = elapsed / loops
    for _ in range(repeat - 1):
        start = time.perf_counter()
        for _ in range(loops):
            build(shape)
        best = min(best, (time.perf_counter() - start) / loops)
    return best * 1e6


def run(names: list[str], repeat: int) -> None:
    print(f"{'shape':<17} {'bytes':>7} {'smtprelay µs':>13} {'stdlib µs':>10} {'ratio':>7}")
    for name in names:
        shape = SHAPES[name]
        ours = per_message_us(build_smtprelay, shape, repeat)
        theirs = per_message_us(build_stdlib, shape, repeat)
        size = len(build_smtprelay(shape))
        print(f"{name:<17} {size:>7} {ours:>13.1f} {theirs:>10.1f} {theirs / ours:>6.2f}x")


def profile(name: str, count: int) -> None:
    shape = SHAPES[name]
    build_smtprelay(shape)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        build_smtprelay(shape)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shapes", nargs="*", help=f"shapes to run (default: all of {', '.join(SHAPES)})")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; the best counts")
    parser.add_argument("--profile", metavar="SHAPE", help="profile smtprelay's path for one shape")
    parser.add_argument("--count", type=int, default=2000, help="messages built under the profiler")
    parser.add_argument(
        "--reference", action="store_true", help="force smtprelay's standard-library serializer"
    )
    args = parser.parse_args()
    if args.reference:
        _force_reference()
    if args.profile:
        profile(args.profile, args.count)
        return
    unknown = [n for n in args.shapes if n not in SHAPES]
    if unknown:
        parser.error(f"unknown shapes {unknown}; choose from {list(SHAPES)}")
    run(args.shapes or list(SHAPES), args.repeat)


def _force_reference() -> None:
    global build  # noqa: PLW0603 - a command-line switch of this script
    reference = getattr(Message, "_reference", None)
    if reference is None:
        raise SystemExit("this version of smtprelay has no reference writer")
    build = reference


if __name__ == "__main__":
    main()
