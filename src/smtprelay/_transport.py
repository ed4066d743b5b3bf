"""Transport: one SMTP session over one socket, driving the sans-I/O core.

Strategy: the protocol core decides everything (what to send, what a reply means); this module
only moves bytes and keeps time. Every wait is a deadline for the whole phase (a server that
trickles one byte at a time still runs out of time, Postfix's smtp_per_record_deadline), writes
go out in chunks with a timeout each (RFC 5321 §4.5.3.2.5), and while a long write is under way
whatever the server already answered is read into the session, so a pipelined group can never
deadlock against a server that stops reading until its replies are read (RELIABILITY 54).

Any timeout, I/O error or protocol error closes the socket at once: a connection that lost its
place in the conversation is never used again, and a late reply can never be paired with a later
command (RELIABILITY 3).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Final, NoReturn

from ._address import Address
from ._errors import (
    AddressError,
    AuthenticationError,
    ConnectionFailed,
    MessageError,
    ProtocolError,
    ReplyError,
    SMTPRelayError,
    SMTPTimeout,
    TLSError,
)
from ._policies import Timeouts, TLSPolicy
from ._protocol import (
    CLOSED,
    Auth,
    Authenticator,
    AuthResponse,
    Bdat,
    Capabilities,
    ClientSession,
    Command,
    Ehlo,
    Envelope,
    Helo,
    MailTransaction,
    MessageData,
    Noop,
    Phase,
    Quit,
    Reply,
    Response,
    Rset,
    StartTLS,
    check_hostname,
    choose_mechanism,
)
from ._results import RecipientResult

if TYPE_CHECKING:
    from ._message import Message

__all__ = ["Transport", "Delivery", "TRACE", "default_local_hostname"]

log = logging.getLogger("smtprelay")
#: The protocol trace: every command and reply, AUTH redacted, message data summarised. It is logged
#: at level TRACE (5, below DEBUG) on "smtprelay.trace", so it appears only when asked for:
#: ``logging.getLogger("smtprelay.trace").setLevel(smtprelay.TRACE)``.
trace_log = logging.getLogger("smtprelay.trace")
TRACE: Final = 5
logging.addLevelName(TRACE, "TRACE")

#: Message data is written in pieces of this size, each with the data_block timeout.
WRITE_CHUNK = 64 * 1024
READ_SIZE = 64 * 1024

Secret = str | Callable[[], str]

_local_hostname: str | None = None


def default_local_hostname() -> str:
    """The EHLO name used when none is given: the fully qualified host name, if it is a valid one.

    ``socket.getfqdn()`` may be slow (it can ask the system resolver) so it is computed once.
    A name that cannot be used in EHLO falls back to ``localhost.localdomain``.
    """
    global _local_hostname  # noqa: PLW0603 - computed once per process, like Postfix's myhostname
    if _local_hostname is None:
        name = socket.getfqdn()
        try:
            check_hostname(name)
        except AddressError:
            name = "localhost.localdomain"
        _local_hostname = name
    return _local_hostname


@dataclass(frozen=True, slots=True)
class Delivery:
    """What :meth:`Transport.deliver` found out.

    Attributes:
        results: one result per envelope recipient, in order.
        mail_refusal: the reply that refused MAIL (or a 421 before it), when that settled everyone:
            no recipient was judged, so another server may take the message.
    """

    results: tuple[RecipientResult, ...]
    mail_refusal: Reply | None = None


class _Interrupted(Exception):
    """Internal: a transaction's I/O failed; carries the error and whether the end of data was written."""

    def __init__(self, error: SMTPRelayError, data_written: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.data_written = data_written


class _TLSFallback(Exception):
    """Internal: an opportunistic TLS handshake failed; reconnect in plaintext."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def _default_context(policy: TLSPolicy) -> ssl.SSLContext:
    if policy is TLSPolicy.VERIFY:
        context = ssl.create_default_context()
    else:
        # Opportunistic and required TLS encrypt against passive eavesdropping without checking
        # who is at the other end, as every MTA does by default (Postfix "may"/"encrypt").
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Transport:
    """One SMTP session to one server. Create it with :meth:`connect`; use it as a context manager.

    ``send()`` runs mail transactions and returns one :class:`RecipientResult` per recipient
    whenever the server's replies classify them; it raises an :class:`SMTPRelayError` subclass
    (with ``phase``, ``data_sent`` and the ``results`` settled before the failure) only when the
    outcome is unknown, and then the connection is closed.
    """

    __slots__ = (
        "_closed",
        "_session",
        "_sock",
        "_timeouts",
        "host",
        "local_hostname",
        "messages_sent",
        "peer",
        "port",
        "server_name",
    )

    def __init__(
        self,
        sock: socket.socket,
        session: ClientSession,
        *,
        host: str,
        port: int,
        server_name: str,
        local_hostname: str,
        timeouts: Timeouts,
    ) -> None:
        self._sock = sock
        self._session = session
        self._timeouts = timeouts
        self._closed = False
        #: The host asked for, the name shown in results (``tls_hostname`` when given), and the port.
        self.host = host
        self.server_name = server_name
        self.port = port
        #: The EHLO name this client uses.
        self.local_hostname = local_hostname
        #: (address, port) of the server actually connected to.
        self.peer: tuple[str, int] = sock.getpeername()[:2]
        #: Transactions completed on this connection (the pool's reuse limit counts them).
        self.messages_sent = 0

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def connect(
        cls,
        host: str,
        port: int = 25,
        *,
        tls: TLSPolicy | str = TLSPolicy.VERIFY,
        implicit_tls: bool | None = None,
        tls_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        username: str | None = None,
        password: Secret | None = None,
        allow_plaintext_auth: bool = False,
        timeout: float | Timeouts = 30.0,
        source_address: str | tuple[str, int] | None = None,
    ) -> Transport:
        """Open a session ready for mail: greeting, EHLO, STARTTLS and AUTH done.

        Args:
            host: host name (resolved with ``socket.getaddrinfo``, every address tried) or IP literal.
            port: 25 for MX delivery, 587 for submission, 465 for implicit TLS.
            tls: a :class:`TLSPolicy` or its value: none, opportunistic, required, verify.
            implicit_tls: TLS from the first byte (port 465); None means True exactly on port 465.
            tls_hostname: the name the certificate must carry (default: ``host``).
            ssl_context: the context for the handshake (e.g. one that trusts a private CA).
            local_hostname: the EHLO name (default: :func:`default_local_hostname`).
            username, password: credentials for AUTH; ``password`` may be a callable returning a
                fresh OAuth2 token, which selects XOAUTH2.
            allow_plaintext_auth: permit AUTH on a connection that is not encrypted.
            timeout: seconds for every phase but the end of data (600 s), or a :class:`Timeouts`.
            source_address: local address (or (address, port)) to connect from.

        Raises:
            ValueError: bad arguments (before any connection is made).
            ConnectionFailed, SMTPTimeout, TLSError, AuthenticationError, ReplyError, ProtocolError.
        """
        policy = TLSPolicy.parse(tls)
        timeouts = Timeouts.coerce(timeout)
        if not isinstance(host, str) or not host or any(ord(c) < 33 or ord(c) == 127 for c in host):
            raise ValueError(f"host must be a host name or IP address, not {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be 1-65535, not {port!r}")
        implicit = port == 465 if implicit_tls is None else implicit_tls
        if implicit and policy is TLSPolicy.NONE:
            raise ValueError("implicit_tls needs a TLS policy other than 'none'")
        helo_name = check_hostname(local_hostname if local_hostname is not None else default_local_hostname())
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        if username is not None and password is not None:
            if not isinstance(username, str) or not (isinstance(password, str) or callable(password)):
                raise TypeError("username must be a str, password a str or a callable returning a token")
            if policy is TLSPolicy.NONE and not allow_plaintext_auth:
                raise ValueError(
                    "AUTH with tls='none' would send the password in plaintext: use tls='verify' "
                    "(or 'required'), or pass allow_plaintext_auth=True for a trusted local relay"
                )
        if isinstance(source_address, str):
            source_address = (source_address, 0)
        server_name = tls_hostname or host
        context = ssl_context or (None if policy is TLSPolicy.NONE else _default_context(policy))
        options = {
            "host": host,
            "port": port,
            "policy": policy,
            "implicit": implicit,
            "server_name": server_name,
            "context": context,
            "helo_name": helo_name,
            "credentials": (username, password) if username is not None and password is not None else None,
            "allow_plaintext_auth": allow_plaintext_auth,
            "timeouts": timeouts,
            "source_address": source_address,
        }
        try:
            return cls._open(starttls=True, **options)  # type: ignore[arg-type]
        except _TLSFallback as fallback:
            # Postfix "may": a failed handshake is followed by one plaintext attempt on a new connection.
            log.info("TLS handshake with %s failed (%s); retrying once without TLS", host, fallback.cause)
            return cls._open(starttls=False, **options)  # type: ignore[arg-type]

    @classmethod
    def _open(
        cls,
        *,
        host: str,
        port: int,
        policy: TLSPolicy,
        implicit: bool,
        server_name: str,
        context: ssl.SSLContext | None,
        helo_name: str,
        credentials: tuple[str, Secret] | None,
        allow_plaintext_auth: bool,
        timeouts: Timeouts,
        source_address: tuple[str, int] | None,
        starttls: bool,
    ) -> Transport:
        sni = None if _is_ip(server_name) and policy is not TLSPolicy.VERIFY else server_name
        sock = _dial(host, port, timeouts.connect, source_address)
        if implicit:
            assert context is not None
            sock = _handshake(sock, context, sni, timeouts.starttls, host=host, enforced=True)
        transport = cls(
            sock,
            ClientSession(),
            host=host,
            port=port,
            server_name=server_name,
            local_hostname=helo_name,
            timeouts=timeouts,
        )
        log.debug(
            "connected to %s port %d (%s)%s", host, port, transport.peer[0], " with TLS" if implicit else ""
        )
        try:
            transport._greet()
            if starttls and not implicit and policy is not TLSPolicy.NONE:
                assert context is not None
                transport._starttls(policy, context, sni)
            if credentials is not None:
                transport._authenticate(*credentials, allow_plaintext=allow_plaintext_auth)
        except BaseException:
            transport._abort()
            raise
        return transport

    def _greet(self) -> None:
        greeting = self._next_response()
        if greeting.reply.code != 220:
            self._refused(greeting, "greeting")
        self._ehlo()

    def _ehlo(self) -> None:
        response = self._command(Ehlo(self.local_hostname))
        if response.reply.is_positive:
            return
        if response.reply.is_permanent and not self._session.tls_active:
            # RFC 5321 §3.2: a server that does not know EHLO gets HELO.
            response = self._command(Helo(self.local_hostname))
            if response.reply.is_positive:
                return
        self._refused(response, "EHLO")

    def _refused(self, response: Response, what: str) -> NoReturn:
        reply = response.reply
        if not reply.is_closing:
            self._quit_quietly()
        raise ReplyError(
            f"server refused the {what}: {reply}",
            code=reply.code,
            enhanced_status=reply.enhanced_status,
            text=reply.text,
            host=self.server_name,
            phase=response.command.phase,
        )

    def _starttls(self, policy: TLSPolicy, context: ssl.SSLContext, sni: str | None) -> None:
        if not self._session.capabilities.starttls:
            if policy.enforced:
                self._quit_quietly()
                raise TLSError(
                    f"TLS is {policy.value} but the server does not offer STARTTLS",
                    phase=Phase.STARTTLS,
                    host=self.server_name,
                )
            return
        response = self._command(StartTLS())
        if response.reply.code != 220:
            if response.reply.is_closing:
                self._refused(response, "STARTTLS")
            if policy.enforced:
                self._quit_quietly()
                raise TLSError(
                    f"TLS is {policy.value} but the server refused STARTTLS: {response.reply}",
                    phase=Phase.STARTTLS,
                    host=self.server_name,
                )
            log.info("%s refused STARTTLS (%s); continuing without TLS", self.server_name, response.reply)
            return
        self._sock = _handshake(
            self._sock, context, sni, self._timeouts.starttls, host=self.server_name, enforced=policy.enforced
        )
        discarded = self._session.start_tls()
        if discarded:
            log.warning(
                "%s sent %d bytes after its 220 to STARTTLS; discarded (possible response injection)",
                self.server_name,
                discarded,
            )
        log.debug("%s: TLS established (%s, %s)", self.server_name, self.tls_version, self.cipher)
        self._ehlo()

    def _authenticate(self, username: str, password: Secret, *, allow_plaintext: bool) -> None:
        encrypted = self._session.tls_active or isinstance(self._sock, ssl.SSLSocket)
        if not encrypted and not allow_plaintext:
            self._quit_quietly()
            raise AuthenticationError(
                "refusing to send credentials over a connection that is not encrypted "
                "(the server did not offer STARTTLS or TLS failed)",
                phase=Phase.AUTH,
                host=self.server_name,
            )
        offered = self._session.capabilities.auth_mechanisms
        token = callable(password)
        mechanism = choose_mechanism(offered, encrypted=encrypted, token=token)
        if mechanism is None:
            self._quit_quietly()
            wanted = "XOAUTH2" if token else "PLAIN, LOGIN or CRAM-MD5"
            raise AuthenticationError(
                f"the server offers no usable AUTH mechanism (offered: {' '.join(sorted(offered)) or 'none'};"
                f" supported: {wanted})",
                phase=Phase.AUTH,
                host=self.server_name,
            )
        secret = password() if callable(password) else password
        authenticator = Authenticator(mechanism, username, secret)
        response = self._command(authenticator.start())
        while response.reply.code == 334:
            try:
                answer = authenticator.respond(response.reply)
            except AuthenticationError as error:
                error.host = self.server_name
                self._abort()
                raise
            response = self._command(answer)
        reply = response.reply
        if reply.code != 235:
            if not reply.is_closing:
                self._quit_quietly()
            else:
                self._abort()
            raise AuthenticationError(
                f"authentication with {mechanism} failed: {reply}",
                code=reply.code,
                enhanced_status=reply.enhanced_status,
                phase=Phase.AUTH,
                host=self.server_name,
            )
        log.debug("%s: authenticated as %r with %s", self.server_name, username, mechanism)

    # -- state ---------------------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        """The server's EHLO extensions (case-insensitive mapping), as advertised after STARTTLS."""
        return self._session.capabilities

    @property
    def tls_version(self) -> str | None:
        """The negotiated TLS version (``"TLSv1.3"``) or None for plaintext."""
        if isinstance(self._sock, ssl.SSLSocket):
            return self._sock.version()
        return None

    @property
    def cipher(self) -> str | None:
        """The negotiated cipher suite name, or None for plaintext."""
        if isinstance(self._sock, ssl.SSLSocket):
            cipher = self._sock.cipher()
            return cipher[0] if cipher else None
        return None

    @property
    def usable(self) -> bool:
        """False once the session is closed or broken (never reuse it then)."""
        return not self._closed and self._session.usable

    def __repr__(self) -> str:
        state = "closed" if self._closed else self._session.state.name.lower()
        tls = self.tls_version or "plaintext"
        return f"<Transport {self.server_name}:{self.port} {state} {tls} sent={self.messages_sent}>"

    # -- mail ----------------------------------------------------------------------------------
    def send(
        self, message: Message, *, recipients: Sequence[str] | None = None
    ) -> tuple[RecipientResult, ...]:
        """Send ``message`` in one transaction (more only if the server limits recipients per transaction).

        Args:
            message: the :class:`~smtprelay.Message`.
            recipients: a subset of ``message.recipients`` to send to (default: all of them).

        Returns:
            One :class:`RecipientResult` per recipient, in order.

        Raises:
            MessageError, AddressError: bad input, before anything is written.
            ConnectionFailed, SMTPTimeout, ProtocolError: the outcome is unknown; see ``data_sent``.
        """
        if recipients is None:
            targets = tuple(message.recipients)
        else:
            targets = tuple(dict.fromkeys(recipients))
            unknown = [r for r in targets if r not in message.recipients]
            if unknown:
                raise MessageError(
                    f"not recipients of this message: {', '.join(unknown)}", field="recipients"
                )
        if not targets:
            raise MessageError("no recipients to send to", field="recipients")
        envelope = Envelope(
            message.envelope_from,
            targets,
            smtputf8=message.requires_smtputf8,
            eight_bit=message.requires_8bitmime,
        )
        return self._transact(envelope, message.as_bytes())

    def send_raw(
        self, envelope_from: str, recipients: Sequence[str], data: bytes
    ) -> tuple[RecipientResult, ...]:
        """Relay bytes an application already has (an RFC 5322 message) to bare envelope addresses.

        Line endings are normalised to CRLF on the wire. SMTPUTF8 is requested when an address or a
        header is not ASCII; 8BITMIME when the data has 8-bit octets.

        Raises:
            AddressError, MessageError: bad addresses or data, before anything is written.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MessageError(f"data must be bytes, not {type(data).__name__}", field="data")
        data = bytes(data)
        if isinstance(recipients, str):
            raise MessageError(
                "recipients must be a sequence of addresses, not one string", field="recipients"
            )
        sender = _envelope_address(envelope_from, "envelope_from", allow_empty=True)
        targets = tuple(dict.fromkeys(_envelope_address(r, "recipients") for r in recipients))
        if not targets:
            raise MessageError("no recipients to send to", field="recipients")
        header_end = data.find(b"\r\n\r\n")
        headers = data if header_end < 0 else data[:header_end]
        smtputf8 = not (sender.isascii() and all(r.isascii() for r in targets) and headers.isascii())
        envelope = Envelope(sender, targets, smtputf8=smtputf8, eight_bit=not data.isascii())
        return self._transact(envelope, data)

    def _transact(self, envelope: Envelope, content: bytes) -> tuple[RecipientResult, ...]:
        return self.deliver(envelope, content).results

    def deliver(
        self,
        envelope: Envelope,
        content: bytes,
        *,
        on_data_sent: Callable[[tuple[str, ...]], None] | None = None,
    ) -> Delivery:
        """Run the transaction(s) for an :class:`Envelope` (the layer below ``send``; the Relay uses it).

        Args:
            envelope: sender, recipients and what the content needs (SMTPUTF8, 8BITMIME).
            content: the message bytes.
            on_data_sent: called with the recipients that may now receive the message, once the end
                of data has been written and before its reply is awaited (a durable queue records
                "possibly delivered" there). Called once per transaction.

        Returns:
            A :class:`Delivery`: per-recipient results and whether MAIL itself was refused.
        """
        self._check_open()
        self._drain()
        if not self._session.usable:
            self._abort()
            raise ConnectionFailed(
                "the server closed the connection while it was idle", phase=Phase.MAIL, host=self.server_name
            )
        settled: dict[str, RecipientResult] = {}
        mail_refusal: Reply | None = None
        pending = envelope
        while True:
            tx = MailTransaction(self._session, pending, content)
            try:
                self._run(tx, on_data_sent)
            except _Interrupted as interrupted:
                error = interrupted.error
                error.data_sent = interrupted.data_written
                error.results = self._finish(tuple(settled.values()) + tx.results)
                raise error from error.__cause__
            for result in self._finish(tx.results):
                settled[result.recipient] = result
            mail_refusal = mail_refusal or tx.mail_refusal
            if not tx.overflow:
                break
            pending = replace(envelope, recipients=tx.overflow)
        self.messages_sent += 1
        return Delivery(tuple(settled[r] for r in envelope.recipients), mail_refusal)

    def _finish(self, results: Sequence[RecipientResult]) -> tuple[RecipientResult, ...]:
        tls = self.tls_version
        return tuple(replace(r, host=self.server_name, tls=tls) for r in results)

    def _run(
        self, tx: MailTransaction, on_data_sent: Callable[[tuple[str, ...]], None] | None = None
    ) -> None:
        """Drive ``tx`` to completion; an I/O failure comes out as _Interrupted with what was written."""
        data_written = False
        try:
            out = tx.start()
            while True:
                if out:
                    self._write(out)
                    # Only a completed write of the end of data can have delivered the message.
                    if tx.data_sent and not data_written:
                        data_written = True
                        if on_data_sent is not None:
                            on_data_sent(tx.in_flight)
                if tx.done:
                    if not self._session.usable:
                        self._abort()
                    return
                try:
                    response = self._next_response()
                except ConnectionFailed:
                    if tx.settled:
                        # The server hung up after replies that settled everyone (e.g. 550 to MAIL):
                        # the outcome is known, only the connection is gone (RELIABILITY 16).
                        return
                    raise
                out = tx.receive(response)
        except (ConnectionFailed, SMTPTimeout, ProtocolError, TLSError) as error:
            raise _Interrupted(error, data_written) from error

    def noop(self) -> Reply:
        """Send NOOP and return the reply (ReplyError unless positive)."""
        return self._simple(Noop())

    def reset(self) -> Reply:
        """Send RSET (abandon any transaction) and return the reply (ReplyError unless positive)."""
        return self._simple(Rset())

    def _simple(self, command: Command) -> Reply:
        self._check_open()
        self._drain()
        response = self._command(command)
        if not response.reply.is_positive:
            if response.reply.is_closing:
                self._abort()
            raise ReplyError(
                f"{type(command).__name__.upper()} refused: {response.reply}",
                code=response.reply.code,
                enhanced_status=response.reply.enhanced_status,
                text=response.reply.text,
                host=self.server_name,
                phase=command.phase,
            )
        return response.reply

    # -- closing -------------------------------------------------------------------------------
    def close(self, *, timeout: float | None = None) -> None:
        """End the session politely (QUIT when possible) and close the socket. Idempotent.

        Args:
            timeout: seconds to wait for the reply to QUIT (default: the ``quit`` timeout, 5 s).

        A server that drops the connection after (or instead of) answering QUIT is not an error.
        """
        if self._closed:
            return
        if timeout is not None:
            self._timeouts = self._timeouts.replace(quit=max(timeout, 0.001))
        self._quit_quietly()
        self._abort()

    def is_alive(self) -> bool:
        """Whether the connection can be reused, judged without a round trip.

        False once closed or out of step, and when the server has sent anything unasked: a server
        that gives up on an idle client sends EOF (or a 421 first), so readable means finished.
        A connection found dead is closed.
        """
        if self._closed or not self._session.usable or self._session.pending:
            return False
        sock = self._sock
        try:
            if isinstance(sock, ssl.SSLSocket) and sock.pending() > 0:
                readable = True
            else:
                readable = bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            readable = True
        if readable:
            log.debug("%s closed or spoke while idle; not reusing the connection", self.server_name)
            self._abort()
            return False
        return True

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _quit_quietly(self) -> None:
        if self._closed or not self._session.usable or self._session.pending:
            return
        if not self._session.can_send(Quit()):
            return
        with contextlib.suppress(SMTPRelayError):
            self._command(Quit())

    def abort(self) -> None:
        """Close the connection at once, without QUIT. Safe to call from another thread: a thread
        blocked reading or writing on this connection gets a ConnectionFailed promptly."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._abort()

    def _abort(self) -> None:
        """Close the socket without a word; the session can never be used again."""
        if self._closed:
            return
        self._closed = True
        self._session.close()
        with contextlib.suppress(OSError):
            self._sock.close()
        log.debug("closed connection to %s", self.server_name)

    def _check_open(self) -> None:
        if self._closed or not self._session.usable:
            raise ConnectionFailed("the connection is closed", host=self.server_name)

    # -- I/O -----------------------------------------------------------------------------------
    def _command(self, command: Command) -> Response:
        self._write(self._session.send(command))
        return self._next_response()

    def _write(self, data: bytes) -> None:
        pending = self._session.pending
        last = pending[-1] if pending else None
        bulk = isinstance(last, MessageData | Bdat)
        phase = Phase.DATA_BLOCK if bulk else (last.phase if last is not None else Phase.MAIL)
        if trace_log.isEnabledFor(TRACE):
            self._trace_out(data, pending)
        timeout = self._timeouts.for_phase(phase)
        with self._io_errors(phase):
            if len(data) <= WRITE_CHUNK:
                self._sock.settimeout(timeout)
                self._sock.sendall(data)
                return
            view = memoryview(data)
            for start in range(0, len(data), WRITE_CHUNK):
                if start:
                    self._drain_socket()
                self._sock.settimeout(timeout)
                self._sock.sendall(view[start : start + WRITE_CHUNK])

    def _next_response(self) -> Response:
        session = self._session
        deadline: float | None = None
        while True:
            event = session.next_event()
            if isinstance(event, Response):
                if trace_log.isEnabledFor(TRACE):
                    trace_log.log(TRACE, "%s S: %s", self.server_name, event.reply)
                return event
            phase = session.pending[0].phase if session.pending else Phase.MAIL
            if event is CLOSED:
                self._abort()
                raise ConnectionFailed("the server closed the connection", phase=phase, host=self.server_name)
            if deadline is None:
                deadline = time.monotonic() + self._timeouts.for_phase(phase)
            remaining = deadline - time.monotonic()
            with self._io_errors(phase):
                if remaining <= 0:
                    raise TimeoutError
                self._sock.settimeout(remaining)
                data = self._sock.recv(READ_SIZE)
            session.receive_data(data)

    def _drain(self) -> None:
        """Read whatever the server sent unasked, without waiting (it is discarded, never paired)."""
        with self._io_errors(Phase.MAIL):
            self._drain_socket()

    def _drain_socket(self) -> None:
        sock = self._sock
        while True:
            pending_tls = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not pending_tls:
                readable, _, _ = select.select([sock], [], [], 0)
                if not readable:
                    return
            sock.settimeout(0.0)
            try:
                data = sock.recv(READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            self._session.receive_data(data)
            if not data:
                return

    @contextlib.contextmanager
    def _io_errors(self, phase: Phase) -> Iterator[None]:
        """Translate socket and TLS errors at the I/O edge; any failure closes the connection."""
        try:
            yield
        except ProtocolError as error:
            error.host = error.host or self.server_name
            self._abort()
            raise
        except TimeoutError as error:
            self._abort()
            seconds = self._timeouts.for_phase(phase)
            raise SMTPTimeout(
                f"no complete reply within {seconds:g} s", phase=phase, host=self.server_name
            ) from error
        except ssl.SSLError as error:
            self._abort()
            raise ConnectionFailed(f"TLS failure: {error}", phase=phase, host=self.server_name) from error
        except OSError as error:
            self._abort()
            raise ConnectionFailed(
                f"connection lost: {error.strerror or error}", phase=phase, host=self.server_name
            ) from error

    def _trace_out(self, data: bytes, pending: tuple[Command, ...]) -> None:
        """Log what is written: command lines verbatim, AUTH redacted, message data as a size."""
        name = self.server_name
        last = pending[-1] if pending else None
        if isinstance(last, Auth | AuthResponse):
            trace_log.log(
                TRACE, "%s C: %s", name, "AUTH <redacted>" if isinstance(last, Auth) else "<redacted>"
            )
            return
        if isinstance(last, MessageData):
            trace_log.log(TRACE, "%s C: <%d bytes of message data>", name, len(data))
            return
        rest = data
        while rest:
            line, _, rest = rest.partition(b"\r\n")
            trace_log.log(TRACE, "%s C: %s", name, line.decode("utf-8", "replace"))
            if line.startswith(b"BDAT "):
                size = int(line.split()[1])
                trace_log.log(TRACE, "%s C: <%d bytes of message data>", name, size)
                rest = rest[size:]


def _envelope_address(value: object, field: str, *, allow_empty: bool = False) -> str:
    """Validate a bare envelope address (syntax only); "" is the null sender where allowed."""
    if not isinstance(value, str):
        raise AddressError(f"{field}: an address must be a str, not {type(value).__name__}", field=field)
    if value == "" and allow_empty:
        return ""
    try:
        return Address(value).addr_spec
    except AddressError as error:
        raise AddressError(f"{field}: {error.message}", field=field, address=value) from None


def _dial(host: str, port: int, timeout: float, source_address: tuple[str, int] | None) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout, source_address=source_address)
    except socket.gaierror as error:
        raise ConnectionFailed(
            f"cannot resolve {host}: {error.strerror}", phase=Phase.CONNECT, host=host
        ) from error
    except TimeoutError as error:
        raise SMTPTimeout(f"no connection within {timeout:g} s", phase=Phase.CONNECT, host=host) from error
    except OSError as error:
        raise ConnectionFailed(
            f"cannot connect to port {port}: {error.strerror or error}", phase=Phase.CONNECT, host=host
        ) from error
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    server_hostname: str | None,
    timeout: float,
    *,
    host: str,
    enforced: bool,
) -> ssl.SSLSocket:
    """TLS handshake with a deadline. Failure closes ``sock``; unenforced failures ask for a fallback."""
    sock.settimeout(timeout)
    try:
        return context.wrap_socket(sock, server_hostname=server_hostname)
    except ssl.SSLCertVerificationError as error:
        sock.close()
        if not enforced:
            raise _TLSFallback(error) from error
        raise TLSError(
            f"certificate verification failed: {error.verify_message or error.reason}",
            phase=Phase.TLS_HANDSHAKE,
            host=host,
        ) from error
    except (ssl.SSLError, TimeoutError, OSError) as error:
        sock.close()
        if not enforced:
            raise _TLSFallback(error) from error
        if isinstance(error, TimeoutError):
            raise TLSError(
                f"TLS handshake timed out after {timeout:g} s", phase=Phase.TLS_HANDSHAKE, host=host
            ) from error
        raise TLSError(f"TLS handshake failed: {error}", phase=Phase.TLS_HANDSHAKE, host=host) from error
