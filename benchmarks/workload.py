"""The message every benchmark client sends: same sender, subject, body and recipients for all.

About 2 KB on the wire: a plain-text body of 25 lines of 72 characters plus the headers each
client adds (From, To, Subject, Date, Message-ID, MIME headers). ``smtp-source`` cannot build a
message; it is given a payload length that makes its messages the same size (see run.py).
"""

from __future__ import annotations

__all__ = [
    "BODY",
    "CLIENT_HOSTNAME",
    "RECIPIENT_DOMAIN",
    "SENDER",
    "SENDER_ADDRESS",
    "SUBJECT",
    "domain_name",
    "recipients",
]

#: EHLO name and Message-ID domain of every client (given explicitly: no client asks the system
#: resolver for its own name, so no packet leaves loopback).
CLIENT_HOSTNAME = "client.bench.test"
SENDER_ADDRESS = "sender@client.bench.test"
SENDER = f"Bench Sender <{SENDER_ADDRESS}>"
SUBJECT = "Benchmark message: the same subject for every client"
RECIPIENT_DOMAIN = "bench.test"

_WORDS = [
    "delivery",
    "pipelining",
    "transaction",
    "envelope",
    "recipient",
    "mailbox",
    "relay",
    "queue",
    "greeting",
    "session",
    "message",
    "header",
    "body",
    "chunk",
    "reply",
    "status",
    "deferred",
    "bounced",
    "delivered",
    "connection",
    "latency",
]


def _body() -> str:
    lines = []
    for number in range(25):
        words = [f"{number + 1:02d}"]
        index = number
        while len(" ".join(words)) < 72:
            words.append(_WORDS[index % len(_WORDS)])
            index += 7
        lines.append(" ".join(words)[:72])
    return "\n".join(lines) + "\n"


#: 25 lines of 72 ASCII characters (no line starts with a dot): 1,850 bytes with CRLF line ends.
BODY = _body()


def recipients(count: int, domain: str = RECIPIENT_DOMAIN) -> list[str]:
    """``count`` distinct recipient addresses at ``domain``."""
    return [f"rcpt{i}@{domain}" for i in range(count)]


def domain_name(index: int) -> str:
    """The many-domains workload's domain number ``index`` (d000.bench.test ... d099.bench.test)."""
    return f"d{index:03d}.{RECIPIENT_DOMAIN}"
