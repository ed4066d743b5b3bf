"""An in-memory, scriptable SMTP server and a client loop to pair with it (test tier a).

The server parses what the client sends exactly as a real one would — command lines, pipelined
groups, DATA content up to CRLF.CRLF with dot-unstuffing, BDAT chunks by length — and answers from
a script. Nothing touches a socket, so transactions run in microseconds and every byte is visible.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from smtprelay._protocol import (
    CLOSED,
    NEED_DATA,
    ClientSession,
    Ehlo,
    Envelope,
    MailTransaction,
    Response,
)
from smtprelay._results import RecipientResult

ReplySpec = tuple[int, str]
Script = Callable[[str], ReplySpec] | ReplySpec


@dataclass
class Received:
    sender: str
    recipients: list[str]
    content: bytes


@dataclass
class MemoryServer:
    """A scripted SMTP server. Each ``*_reply`` is a (code, text) pair or a callable of the argument."""

    extensions: Sequence[str] = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN")
    greeting: ReplySpec = (220, "mx.test ESMTP")
    ehlo_reply: ReplySpec | None = None  # replaces the EHLO reply entirely (e.g. 502 to force HELO)
    mail_reply: Script = (250, "2.1.0 Ok")
    rcpt_reply: Script = (250, "2.1.5 Ok")
    data_reply: Script = (354, "End data with <CR><LF>.<CR><LF>")
    eod_reply: Script = (250, "2.0.0 Ok: queued")
    rset_reply: ReplySpec = (250, "2.0.0 Ok")
    close_after: set[str] = field(default_factory=set)  # verbs after whose reply the server closes
    #: Commands in arrival order, verbatim (without CRLF); message content is recorded in ``received``.
    log: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        self._buffer = b""
        self._mode = "command"
        self._bdat_left = 0
        self._bdat_last = False
        self._content = b""
        self._sender: str | None = None
        self._recipients: list[str] = []
        self._accepted: list[str] = []

    # -- wire ----------------------------------------------------------------------------------
    def connect(self) -> bytes:
        return self._reply(*self.greeting)

    def receive(self, data: bytes) -> bytes:
        """Process client bytes; return every reply the server sends in response."""
        if self.closed:
            return b""
        self._buffer += data
        out = b""
        while not self.closed:
            produced = self._step()
            if produced is None:
                break
            out += produced
        return out

    def _step(self) -> bytes | None:
        if self._mode == "data":
            end = self._buffer.find(b"\r\n.\r\n")
            if self._buffer.startswith(b".\r\n"):
                end, body = 0, b""
                self._buffer = self._buffer[3:]
            elif end < 0:
                return None
            else:
                body = self._buffer[: end + 2]
                self._buffer = self._buffer[end + 5 :]
            lines = body.split(b"\r\n")
            body = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
            self._mode = "command"
            return self._end_of_data(body)
        if self._mode == "bdat":
            if len(self._buffer) < self._bdat_left:
                return None
            chunk, self._buffer = self._buffer[: self._bdat_left], self._buffer[self._bdat_left :]
            self._content += chunk
            self._mode = "command"
            if not self._accepted:
                return self._reply(554, "5.5.1 Error: no valid recipients")
            if self._bdat_last:
                content, self._content = self._content, b""
                return self._end_of_data(content)
            return self._reply(250, f"2.0.0 {len(chunk)} bytes received")
        end = self._buffer.find(b"\r\n")
        if end < 0:
            return None
        line, self._buffer = self._buffer[:end].decode("utf-8"), self._buffer[end + 2 :]
        self.log.append(line)
        return self._command(line)

    def _reply(self, code: int, text: str, *, extra: Sequence[str] = ()) -> bytes:
        lines = [text, *extra]
        out = b""
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            out += f"{code}{sep}{line}\r\n".encode()
        return out

    @staticmethod
    def _script(script: Script, argument: str) -> ReplySpec:
        return script(argument) if callable(script) else script

    def _command(self, line: str) -> bytes:
        verb = line.split(" ", 1)[0].upper()
        out = self._dispatch(verb, line)
        if verb in self.close_after or out.startswith(b"421"):
            self.closed = True
        return out

    def _dispatch(self, verb: str, line: str) -> bytes:
        if verb == "EHLO":
            if self.ehlo_reply is not None:
                return self._reply(*self.ehlo_reply)
            return self._reply(250, "mx.test", extra=self.extensions)
        if verb == "HELO":
            return self._reply(250, "mx.test")
        if verb == "MAIL":
            match = re.match(r"MAIL FROM:<([^>]*)>", line, re.I)
            code, text = self._script(self.mail_reply, match.group(1) if match else "")
            if code // 100 == 2:
                self._sender = match.group(1) if match else ""
                self._recipients, self._accepted = [], []
            return self._reply(code, text)
        if verb == "RCPT":
            if self._sender is None:
                return self._reply(503, "5.5.1 Error: need MAIL command")
            match = re.match(r"RCPT TO:<([^>]*)>", line, re.I)
            address = match.group(1) if match else ""
            code, text = self._script(self.rcpt_reply, address)
            self._recipients.append(address)
            if code // 100 == 2:
                self._accepted.append(address)
            return self._reply(code, text)
        if verb == "DATA":
            if self._sender is None:
                return self._reply(503, "5.5.1 Error: need MAIL command")
            code, text = self._script(self.data_reply, "")
            if code == 354:
                self._mode = "data"
            return self._reply(code, text)
        if verb == "BDAT":
            parts = line.split()
            self._bdat_left = int(parts[1])
            self._bdat_last = len(parts) > 2 and parts[2].upper() == "LAST"
            self._mode = "bdat"
            return b""
        if verb == "RSET":
            self._sender, self._recipients, self._accepted, self._content = None, [], [], b""
            return self._reply(*self.rset_reply)
        if verb == "NOOP":
            return self._reply(250, "2.0.0 Ok")
        if verb == "QUIT":
            self.closed = True
            return self._reply(221, "2.0.0 Bye")
        return self._reply(502, "5.5.2 Error: command not recognized")

    def _end_of_data(self, content: bytes) -> bytes:
        code, text = self._script(self.eod_reply, "")
        if self._accepted and code // 100 == 2:
            self.received.append(Received(self._sender or "", list(self._accepted), content))
        self._sender, self._recipients, self._accepted = None, [], []
        return self._reply(code, text)


@dataclass
class Exchange:
    """What the client loop observed."""

    results: tuple[RecipientResult, ...]
    overflow: tuple[str, ...]
    round_trips: int
    data_sent: bool
    closed: bool
    transaction: MailTransaction


class MemoryClient:
    """Runs a ClientSession against a MemoryServer, counting round trips (writes followed by a wait)."""

    def __init__(self, server: MemoryServer, hostname: str = "client.test") -> None:
        self.server = server
        self.session = ClientSession()
        self._inbox = server.connect()
        self.round_trips = 0
        self._waiting = False
        greeting = self.next_response()
        assert greeting.reply.code == 220, greeting
        self.ehlo = self.command(Ehlo(hostname))

    def write(self, data: bytes) -> None:
        if data:
            self._inbox += self.server.receive(data)
            self._waiting = True

    def next_response(self) -> Response:
        while True:
            event = self.session.next_event()
            if isinstance(event, Response):
                return event
            if event is CLOSED:
                raise ConnectionResetError("server closed the connection")
            assert event is NEED_DATA
            self._feed()

    def _feed(self) -> None:
        if self._waiting:
            self.round_trips += 1
            self._waiting = False
        if self._inbox:
            data, self._inbox = self._inbox, b""
        else:
            data = b""  # nothing more will come: the server closed, or is waiting for us (a bug)
            if not self.server.closed:
                raise AssertionError(
                    f"deadlock: client waits but the server has nothing to say ({self.session})"
                )
        self.session.receive_data(data)

    def command(self, command: object) -> Response:
        from smtprelay._protocol import Command

        assert isinstance(command, Command)
        self.write(self.session.send(command))
        return self.next_response()

    def transact(self, envelope: Envelope, content: bytes, **options: int) -> Exchange:
        start = self.round_trips
        tx = MailTransaction(self.session, envelope, content, **options)
        out = tx.start()
        closed = False
        while True:
            self.write(out)
            if tx.done:
                break
            event = self.session.next_event()
            if event is NEED_DATA:
                self._feed()
                out = b""
                continue
            if event is CLOSED:
                closed = True
                break
            assert isinstance(event, Response)
            out = tx.receive(event)
        return Exchange(tx.results, tx.overflow, self.round_trips - start, tx.data_sent, closed, tx)
