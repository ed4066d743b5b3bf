"""The sans-I/O SMTP client core: no sockets, no clock, no DNS.

Drivers (the blocking :class:`~smtprelay.Transport`, later an asyncio one) feed it bytes and write
the bytes it returns. Nothing here imports socket, ssl, asyncio, selectors, time or dns.
"""

from ._auth import AUTH_PREFERENCE, Authenticator, choose_mechanism
from ._capabilities import Capabilities
from ._commands import (
    Auth,
    AuthResponse,
    Bdat,
    Command,
    Data,
    DSNRequest,
    Ehlo,
    Greeting,
    Helo,
    Mail,
    MessageData,
    Noop,
    Quit,
    Rcpt,
    Rset,
    StartTLS,
    check_hostname,
    xtext,
)
from ._data import DataEncoder, bdat_chunks, encode_data, normalize_line_endings
from ._phase import Phase
from ._reply import Reply, ReplyReader
from ._state import CLOSED, NEED_DATA, ClientSession, Response, State
from ._transaction import Envelope, MailTransaction, result_for

__all__ = [
    "AUTH_PREFERENCE",
    "Authenticator",
    "choose_mechanism",
    "Capabilities",
    "Auth",
    "AuthResponse",
    "Bdat",
    "Command",
    "Data",
    "DSNRequest",
    "Ehlo",
    "Greeting",
    "Helo",
    "Mail",
    "MessageData",
    "Noop",
    "Quit",
    "Rcpt",
    "Rset",
    "StartTLS",
    "check_hostname",
    "xtext",
    "DataEncoder",
    "bdat_chunks",
    "encode_data",
    "normalize_line_endings",
    "Phase",
    "Reply",
    "ReplyReader",
    "CLOSED",
    "NEED_DATA",
    "ClientSession",
    "Response",
    "State",
    "Envelope",
    "MailTransaction",
    "result_for",
]
