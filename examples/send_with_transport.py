"""Send one message through a smarthost with a Transport.

    python examples/send_with_transport.py --host smtp.example.com --port 587 \
        --user alice@example.com --from alice@example.com --to bob@example.org \
        --subject "Hello" --text "Sent with smtprelay"

The password is read from the SMTPRELAY_PASSWORD environment variable (never from the command
line, where other users could see it). TLS is verified by default; use --tls to change the policy.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import smtprelay
from smtprelay import Message, SMTPRelayError, Transport


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True, help="smarthost name or IP")
    parser.add_argument("--port", type=int, default=587, help="587 (STARTTLS) or 465 (implicit TLS)")
    parser.add_argument("--tls", default="verify", choices=["none", "opportunistic", "required", "verify"])
    parser.add_argument("--user", help="AUTH user name (password from $SMTPRELAY_PASSWORD)")
    parser.add_argument("--from", dest="sender", required=True)
    parser.add_argument("--to", action="append", required=True, help="recipient (repeatable)")
    parser.add_argument("--subject", default="Test from smtprelay")
    parser.add_argument("--text", default="This message was sent with smtprelay.")
    parser.add_argument("--trace", action="store_true", help="log the SMTP conversation (AUTH redacted)")
    args = parser.parse_args(argv)

    if args.trace:
        logging.basicConfig(level=smtprelay.TRACE, format="%(message)s")
        logging.getLogger("smtprelay.trace").setLevel(smtprelay.TRACE)

    password = os.environ.get("SMTPRELAY_PASSWORD") if args.user else None
    if args.user and password is None:
        parser.error("--user needs the password in $SMTPRELAY_PASSWORD")

    message = Message(sender=args.sender, to=args.to, subject=args.subject, text=args.text)
    try:
        with Transport.connect(
            args.host, args.port, tls=args.tls, username=args.user, password=password
        ) as t:
            results = t.send(message)
    except SMTPRelayError as error:
        print(f"failed: {error}", file=sys.stderr)
        return 2
    for result in results:
        print(result)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
