"""The phases of an SMTP session, as named in timeouts, errors and events."""

from __future__ import annotations

import enum

__all__ = ["Phase"]


class Phase(enum.StrEnum):
    """Where in the session something happened.

    The names follow RFC 5321 §4.5.3.2, which gives each phase its own minimum timeout.
    """

    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    TLS_HANDSHAKE = "tls_handshake"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # the DATA command, up to its 354
    DATA_BLOCK = "data_block"  # writing the message data
    END_OF_DATA = "end_of_data"  # waiting for the reply to "." or BDAT LAST
    RSET = "rset"
    NOOP = "noop"
    QUIT = "quit"
