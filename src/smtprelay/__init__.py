"""smtprelay: deliver email in-process.

Build a :class:`Message`, hand it to a ``Relay`` (direct MX delivery or a smarthost), and read
per-recipient results. The public names are re-exported here; everything else lives in private
modules and may change.
"""

from __future__ import annotations

from . import events
from ._address import Address
from ._errors import (
    AddressError,
    AuthenticationError,
    ConnectionFailed,
    DeliveryError,
    LocalProtocolError,
    MessageError,
    ProtocolError,
    ReplyError,
    SMTPRelayError,
    SMTPTimeout,
    TLSError,
)
from ._message import Attachment, Message
from ._policies import PoolLimits, RetryPolicy, Timeouts, TLSPolicy
from ._protocol._phase import Phase
from ._relay import Relay
from ._report import DeliveryReport
from ._results import RecipientResult, Status
from ._routing import Smarthost
from ._transport import TRACE, Transport

__version__ = "0.1.0.dev0"

__all__ = [
    # messages
    "Message",
    "Attachment",
    "Address",
    # sending
    "Relay",
    "Smarthost",
    "RetryPolicy",
    "PoolLimits",
    "DeliveryReport",
    "events",
    "Transport",
    "TLSPolicy",
    "Timeouts",
    "TRACE",
    # results
    "RecipientResult",
    "Status",
    "Phase",
    # errors
    "SMTPRelayError",
    "AddressError",
    "MessageError",
    "ProtocolError",
    "LocalProtocolError",
    "SMTPTimeout",
    "ConnectionFailed",
    "TLSError",
    "AuthenticationError",
    "ReplyError",
    "DeliveryError",
]
