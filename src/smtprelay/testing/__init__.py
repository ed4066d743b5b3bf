"""Test kit: a local DNS zone server and a local MX, both on loopback, for end-to-end tests.

:class:`DNSZone` is an authoritative DNS server speaking real DNS over UDP and TCP; it needs only
dnspython. :class:`LocalMX` is a recording, scriptable SMTP server built on aiosmtpd, which comes
with the ``testing`` extra (``pip install 'smtprelay[testing]'``); without it, creating a
LocalMX raises ImportError saying so, and everything else here still works.

Both run in a background thread, are context managers, and leave no thread or socket behind after
``stop()``. Nothing here imports the rest of smtprelay: it is test infrastructure beside the library.
"""

from __future__ import annotations

from ._dns import DNSQuery, DNSZone
from ._mx import Action, LocalMX, ReceivedMessage, SessionRecord

__all__ = [
    # DNS
    "DNSZone",
    "DNSQuery",
    # SMTP
    "LocalMX",
    "ReceivedMessage",
    "SessionRecord",
    "Action",
]
