"""Quickstart: deliver a small batch through the real Relay and print what happened.

Everything runs on loopback, in this process: a DNS server (smtprelay.testing.DNSZone) publishes
the MX records of a few made-up domains, and two mail servers (smtprelay.testing.LocalMX, built on
aiosmtpd) stand in for their MX hosts. The Relay looks up each recipient's MX hosts in that zone,
connects, speaks SMTP, fails over, retries, and reports per recipient.

    make demo            # or: python examples/quickstart.py

The domains and what each one shows:

    example.test    MX 10 mx1.mail.test       normal delivery; mx1 refuses nobody@ (550 5.1.1)
                                              and greylists carol@ (451 once, accepted on the retry)
    failover.test   MX 10 dead.mail.test      nothing listens there: the Relay moves on, within
                    MX 20 mx2.mail.test       the same attempt, to the preference-20 host
    nomail.test     MX 0 .                    a null MX (RFC 7505): bounced without any connection
"""

from __future__ import annotations

from smtprelay import Attachment, Message, Relay, RetryPolicy, events
from smtprelay.testing import DNSZone, LocalMX


def show_event(event: events.Event) -> None:
    """Print the two events that explain the reports below: a failover and a retry."""
    if isinstance(event, events.ConnectFailed):
        print(f"  .. {event.host} ({event.address}) failed: {event.error}; trying the next MX")
    elif isinstance(event, events.Attempt) and event.attempt > 1:
        print(f"  .. attempt {event.attempt} for {', '.join(event.recipients)}")


def main() -> None:
    # Two MX hosts on two loopback addresses, sharing one port: a Relay uses one port for every MX.
    # ENHANCEDSTATUSCODES lets the Relay read the "5.1.1" of the scripted reply as a status code.
    with (
        LocalMX("127.0.0.2", hostname="mx1.mail.test", extensions=["ENHANCEDSTATUSCODES"]) as mx1,
        LocalMX("127.0.0.3", mx1.port, hostname="mx2.mail.test") as mx2,
        DNSZone() as zone,
    ):
        mx1.script_rcpt("nobody@example.test", 550, "5.1.1 <nobody@example.test>: no such user")
        mx1.script_rcpt("carol@example.test", [(451, "4.7.1 Greylisted, try again later")])  # once

        zone.a("mx1.mail.test", mx1.host)
        zone.a("mx2.mail.test", mx2.host)
        zone.a("dead.mail.test", "127.0.0.4")  # same port, but no server: connection refused
        zone.mx("example.test", [(10, "mx1.mail.test")])
        zone.mx("failover.test", [(10, "dead.mail.test"), (20, "mx2.mail.test")])
        zone.null_mx("nomail.test")

        messages = [
            Message(
                sender="Alice <alice@example.com>",
                to=["bob@example.test", "dave@failover.test", "eve@nomail.test"],
                cc=["nobody@example.test"],
                subject="Quarterly report",
                text="Hi all,\nthe report is attached.\n",
                html="<p>Hi all,</p><p>the report is <b>attached</b>.</p>",
                attachments=[Attachment(b"id,total\n1,42\n", "report.csv")],
            ),
            Message(
                sender="alice@example.com",
                to=["carol@example.test"],
                subject="Welcome aboard",
                text="Hi Carol, welcome!",
            ),
            Message(
                sender="J\u00f6rg <joerg@example.com>",
                to=["bj\u00f6rk@failover.test"],
                subject="Gr\u00fc\u00dfe aus K\u00f6ln",
                text="Unicode everywhere, even in the address (SMTPUTF8).",
            ),
        ]

        print(f"DNS zone on {zone.host}:{zone.port}; MX hosts on {mx1.host}, {mx2.host} port {mx1.port}\n")
        with Relay(
            resolver=zone.resolver(),  # ask the demo zone, never the system's DNS
            port=mx1.port,  # the port of every MX host (25 in real life)
            allow_private_mx=True,  # these MX hosts live on loopback, normally refused
            local_hostname="demo.example",  # the EHLO name
            retry=RetryPolicy(attempts=2, initial_delay=0.5, jitter=0),  # quick retries for a demo
            on_event=show_event,
        ) as relay:
            for message in messages:
                print(f"Sending {message.subject!r}")
                report = relay.send(message)  # never raises for a delivery outcome
                print(report)  # a summary line, then one line per recipient
                for result in report.results:
                    if result.attempts > 1:
                        print(f"  ({result.recipient} took {result.attempts} attempts)")
                print()

        print("What each MX received:")
        for name, mx in (("mx1.mail.test", mx1), ("mx2.mail.test", mx2)):
            print(f"  {name} ({mx.host}): {len(mx.messages)} message(s)")
            for received in mx.messages:
                subject = received.message()["Subject"]
                print(f"    {subject!r} for {', '.join(received.rcpt_tos)}")


if __name__ == "__main__":
    main()
