"""Quickstart: deliver a few messages to a local mail server and print what happened.

Runs entirely on loopback: it starts a local MX (smtprelay.testing.LocalMX, an aiosmtpd server)
that refuses one mailbox and greylists another, then sends through a real SMTP session.

    make demo            # or: python examples/quickstart.py
"""

from __future__ import annotations

from smtprelay import Attachment, Message, Transport
from smtprelay.testing import LocalMX


def main() -> None:
    with LocalMX("127.0.0.1", hostname="mx.example.test") as mx:
        mx.script_rcpt("nobody@example.test", 550, "5.1.1 <nobody@example.test>: no such user")
        mx.script_rcpt("carol@example.test", [(451, "4.7.1 Greylisted, try again later")])

        messages = [
            Message(
                sender="Alice <alice@example.com>",
                to=["bob@example.test", "nobody@example.test"],
                cc=["carol@example.test"],
                subject="Quarterly report",
                text="Hi all,\nthe report is attached.\n",
                html="<p>Hi all,</p><p>the report is <b>attached</b>.</p>",
                attachments=[Attachment(b"id,total\n1,42\n", "report.csv")],
            ),
            Message(
                sender="J\u00f6rg <joerg@example.com>",
                to=["bj\u00f6rk@example.test"],
                subject="Gr\u00fc\u00dfe aus K\u00f6ln",
                text="Unicode everywhere, even in the address.",
            ),
        ]

        print(f"Local MX listening on {mx.host}:{mx.port}\n")
        with Transport.connect(
            mx.host, mx.port, tls="opportunistic", local_hostname="client.example.com"
        ) as t:
            print(f"Connected: {t!r}")
            print(f"Server offers: {', '.join(sorted(t.capabilities))}\n")
            for message in messages:
                print(f"{message.message_id}  {message.subject!r}")
                for result in t.send(message):
                    print(f"  {result}")
                print()

        print(f"The server received {len(mx.messages)} message(s):")
        for received in mx.messages:
            size = len(received.data)
            print(f"  from {received.mail_from} to {', '.join(received.rcpt_tos)} ({size} bytes)")


if __name__ == "__main__":
    main()
