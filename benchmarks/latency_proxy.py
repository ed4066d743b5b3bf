"""A TCP forwarding proxy on loopback that adds latency and counts SMTP round trips.

There is no kernel delay module (netem) on the machines this project runs on, so latency is
simulated here: every chunk read from one side is written to the other side RTT/2 later, in each
direction, in order. Opening a connection costs what it costs on a real network too: the proxy
connects upstream 1.5 RTT after it accepted the client, so the server's greeting reaches the
client 2 RTT after ``connect()`` (TCP handshake: 1 RTT; the server's accept and its greeting: one
more), as it would over a link with that RTT.

Round trips are counted per connection, as seen at the proxy:

    A *round trip* is a client->server chunk that the proxy reads after it has written at least one
    server->client chunk to the client since the previous client->server chunk (or since the
    connection opened, for the first one).

So it counts direction turnarounds: every time the client had to wait for the server before
speaking again. The TCP handshake is not a turnaround (it is counted in ``connections``, and its
time is simulated as above). On a reused SMTP connection a client that does not pipeline makes
1 (EHLO after the greeting) + 4 per one-recipient message (MAIL, RCPT, DATA, the message) + 1
(QUIT); a pipelining client 1 + 2 per message + 1; with CHUNKING (BDAT LAST), 1 + 1 + 1.
A client that writes without waiting for a reply that is just then in flight can be counted once
too often (the proxy cannot see the client's intent); none of the clients benchmarked does that
on one connection.

The proxy is an asyncio event loop in one background thread (``LatencyProxy.start()``), so it can
run beside the code under test. With ``--selftest`` (``python benchmarks/latency_proxy.py
--selftest``) it measures how many small chunks per second it forwards at 0 ms through 8
ping-pong connections; the benchmark harness bypasses it for timed 0 ms runs anyway (it costs a
CPU the clients would compete for) and uses it there only to count round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["ConnectionStats", "LatencyProxy", "ProxyStats", "selftest"]

READ_SIZE = 256 * 1024
_EOF = None  # marker queued in a direction: the sender closed its side


@dataclasses.dataclass
class ConnectionStats:
    """What one proxied connection carried."""

    id: int
    client_chunks: int = 0
    server_chunks: int = 0
    client_bytes: int = 0
    server_bytes: int = 0
    round_trips: int = 0
    opened: float = 0.0
    closed: float | None = None


@dataclasses.dataclass(frozen=True)
class ProxyStats:
    """A snapshot of the proxy's counters since the last reset."""

    connections: tuple[ConnectionStats, ...]

    @property
    def round_trips(self) -> int:
        return sum(c.round_trips for c in self.connections)

    @property
    def client_bytes(self) -> int:
        return sum(c.client_bytes for c in self.connections)

    @property
    def server_bytes(self) -> int:
        return sum(c.server_bytes for c in self.connections)

    @property
    def chunks(self) -> int:
        return sum(c.client_chunks + c.server_chunks for c in self.connections)

    def round_trips_per_connection(self) -> list[int]:
        return [c.round_trips for c in self.connections]


class _Direction:
    """One direction of one connection: chunks waiting for their time, delivered in order.

    Strategy: a FIFO of (due time, chunk) and at most one timer for the head of the queue. Timers are
    never used per chunk (asyncio orders timers with equal deadlines arbitrarily, chunks must not be
    reordered), and with no delay a chunk is written at once when nothing is queued before it.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        delay: float,
        on_write: Callable[[], None],
        on_eof: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.delay = delay
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.target: asyncio.Transport | None = None  # set when the receiving side exists
        self.timer: asyncio.TimerHandle | None = None
        self.on_write = on_write  # called after each chunk is written (round-trip bookkeeping)
        self.on_eof = on_eof  # called once the EOF was passed on
        self.eof_written = False

    def push(self, chunk: bytes | None) -> None:
        if self.delay <= 0 and not self.queue and self.target is not None:
            self._write(chunk)
            return
        self.queue.append((self.loop.time() + self.delay, chunk))
        self._schedule()

    def attach(self, target: asyncio.Transport) -> None:
        self.target = target
        self._flush()

    def _schedule(self) -> None:
        if self.timer is None and self.queue and self.target is not None:
            self.timer = self.loop.call_at(self.queue[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        if self.target is None:
            return
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, chunk = self.queue.popleft()
            self._write(chunk)
        self._schedule()

    def _write(self, chunk: bytes | None) -> None:
        target = self.target
        assert target is not None
        if chunk is _EOF:
            if self.eof_written:
                return
            self.eof_written = True
            try:
                if target.can_write_eof() and not target.is_closing():
                    target.write_eof()
                else:
                    target.close()
            except OSError:  # the receiver is gone already (ENOTCONN)
                target.close()
            self.on_eof()
            return
        if not target.is_closing():
            target.write(chunk)
            self.on_write()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()


class _Side(asyncio.Protocol):
    """The protocol of one socket of a proxied connection (the client's or the upstream one)."""

    def __init__(self, pair: _Pair, is_client: bool) -> None:
        self.pair = pair
        self.is_client = is_client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Data for this side can flow now (the client's side is ready at once; the server's side once
        # the delayed upstream connect completed).
        (self.pair.to_client if self.is_client else self.pair.to_server).attach(transport)

    def data_received(self, data: bytes) -> None:
        if self.is_client:
            self.pair.from_client(data)
        else:
            self.pair.from_server(data)

    def eof_received(self) -> bool:
        self.pair.eof(self.is_client)
        return True  # keep our side open for writing until the other side's EOF arrives

    def connection_lost(self, exc: Exception | None) -> None:
        self.pair.lost(self.is_client)

    # Flow control: when one side cannot take more, stop reading from the other.
    def pause_writing(self) -> None:
        self.pair.pause_reading(from_client=not self.is_client)

    def resume_writing(self) -> None:
        self.pair.resume_reading(from_client=not self.is_client)


class _Pair:
    """One proxied connection: the client's socket, the upstream socket and their counters."""

    def __init__(self, proxy: LatencyProxy, stats: ConnectionStats) -> None:
        self.proxy = proxy
        self.stats = stats
        loop = proxy.loop
        assert loop is not None
        self.to_server = _Direction(loop, proxy.one_way, lambda: None, self._close_if_done)
        self.to_client = _Direction(loop, proxy.one_way, self._server_chunk_delivered, self._close_if_done)
        self.client = _Side(self, is_client=True)
        self.server = _Side(self, is_client=False)
        self.server_spoke = False  # a server chunk was written to the client since its last chunk
        self.lost_sides: set[bool] = set()
        self.connect_task: asyncio.Task[None] | None = None
        self.finished = False

    def _server_chunk_delivered(self) -> None:
        self.server_spoke = True

    def from_client(self, data: bytes) -> None:
        stats = self.stats
        stats.client_chunks += 1
        stats.client_bytes += len(data)
        if self.server_spoke:
            stats.round_trips += 1
            self.server_spoke = False
        self.to_server.push(data)

    def from_server(self, data: bytes) -> None:
        self.stats.server_chunks += 1
        self.stats.server_bytes += len(data)
        self.to_client.push(data)

    def eof(self, from_client: bool) -> None:
        (self.to_server if from_client else self.to_client).push(_EOF)

    def _close_if_done(self) -> None:
        if self.to_server.eof_written and self.to_client.eof_written:
            self.close()

    def pause_reading(self, *, from_client: bool) -> None:
        side = self.client if from_client else self.server
        if side.transport is not None and not side.transport.is_closing():
            side.transport.pause_reading()

    def resume_reading(self, *, from_client: bool) -> None:
        side = self.client if from_client else self.server
        if side.transport is not None and not side.transport.is_closing():
            side.transport.resume_reading()

    def lost(self, is_client: bool) -> None:
        self.lost_sides.add(is_client)
        if is_client and self.server.transport is None:
            # The client gave up before the upstream connection was made.
            if self.connect_task is not None:
                self.connect_task.cancel()
            self.lost_sides.add(False)
        if self.lost_sides == {True, False}:
            self.finish()
            return
        # One side vanished (reset, or closed after its EOF): deliver what is queued, then close.
        other = self.server if is_client else self.client
        direction = self.to_server if is_client else self.to_client
        if other.transport is not None and not direction.eof_written:
            direction.push(_EOF)

    def close(self) -> None:
        for side in (self.client, self.server):
            if side.transport is not None:
                side.transport.close()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.to_server.cancel()
        self.to_client.cancel()
        if self.stats.closed is None:
            self.stats.closed = time.monotonic()
        self.proxy._connection_done(self)

    async def connect_upstream(self, delay: float) -> None:
        loop = self.proxy.loop
        assert loop is not None
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            proxy = self.proxy
            await loop.create_connection(lambda: self.server, proxy.upstream_host, proxy.upstream_port)
        except (OSError, asyncio.CancelledError):
            # Upstream unreachable (or the client left first): the client sees the connection reset.
            if self.client.transport is not None:
                self.client.transport.abort()
            self.lost_sides.add(False)
            if self.lost_sides == {True, False}:
                self.finish()


class LatencyProxy:
    """Forward ``listen_host:port`` to ``upstream`` with ``rtt`` seconds of round-trip delay.

    Use as a context manager (or ``start()``/``stop()``); ``port`` is chosen by the system unless
    given. ``stats()`` is a snapshot of the counters since ``reset_stats()``; ``wait_idle()`` waits
    until every proxied connection is closed (call it before reading the counters of a run).
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        rtt: float = 0.0,
        listen_host: str = "127.0.0.1",
        port: int = 0,
        simulate_handshake: bool = True,
    ) -> None:
        if not listen_host.startswith("127.") and listen_host not in ("::1", "localhost"):
            raise ValueError("the latency proxy listens on loopback only")
        self.upstream_host, self.upstream_port = upstream
        self.rtt = rtt
        self.one_way = rtt / 2
        self.connect_delay = 1.5 * rtt if simulate_handshake else 0.0
        self.listen_host = listen_host
        self.port = port
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._lock = threading.Lock()
        self._stats: list[ConnectionStats] = []
        self._active: set[_Pair] = set()
        self._next_id = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> LatencyProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(self._accept, self.listen_host, self.port, backlog=512)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as error:  # reported to start()'s caller
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                self._server.close()
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=run, name="latency-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = []
        for pair in list(self._active):
            for side in (pair.client, pair.server):
                if side.transport is not None:
                    side.transport.abort()
            if pair.connect_task is not None and not pair.connect_task.done():
                pair.connect_task.cancel()
                tasks.append(pair.connect_task)
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.01)  # let the aborted transports call connection_lost

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None or self.loop is None:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        thread.join(timeout=5)

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return (self.listen_host, self.port)

    # -- counters ------------------------------------------------------------------------------
    def reset_stats(self) -> None:
        with self._lock:
            self._stats = [pair.stats for pair in self._active]

    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(tuple(dataclasses.replace(s) for s in self._stats))

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._active)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no proxied connection is open; False if some still are after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.active_connections:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    # -- internals (event loop thread) ---------------------------------------------------------
    def _accept(self) -> _Side:
        with self._lock:
            self._next_id += 1
            stats = ConnectionStats(id=self._next_id, opened=time.monotonic())
            self._stats.append(stats)
            pair = _Pair(self, stats)
            self._active.add(pair)
        assert self.loop is not None
        pair.connect_task = self.loop.create_task(pair.connect_upstream(self.connect_delay))
        return pair.client

    def _connection_done(self, pair: _Pair) -> None:
        with self._lock:
            self._active.discard(pair)


# -- self test ---------------------------------------------------------------------------------
async def _echo_peer() -> None:
    """Child process of the self test: an echo server; prints its port, runs until stdin closes."""
    loop = asyncio.get_running_loop()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    server = await loop.create_server(Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


async def _client_peer(port: int, seconds: float, connections: int) -> None:
    """Child process of the self test: ping-pong clients; prints how many exchanges completed."""
    loop = asyncio.get_running_loop()
    payload = b"RCPT TO:<someone@example.test>\r\n"
    started = loop.time()
    deadline = started + seconds
    total = 0

    async def one() -> None:
        nonlocal total
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while loop.time() < deadline:
            writer.write(payload)
            await reader.readexactly(len(payload))
            total += 1
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(one() for _ in range(connections)))
    print(total, loop.time() - started, flush=True)


def selftest(*, seconds: float = 2.0, connections: int = 8, host: str = "127.0.0.1") -> dict[str, float]:
    """Measure the proxy's forwarding rate at 0 ms: small chunks per second, both directions counted.

    An echo server and ``connections`` ping-pong clients (32-byte chunks, one outstanding each) run
    in two child processes, so they do not share this process's interpreter lock with the proxy.
    Returns ``{"chunks_per_second": ..., "exchanges": ..., "round_trips": ...}``.
    """
    me = [sys.executable, os.path.abspath(__file__)]
    echo = subprocess.Popen([*me, "--peer", "echo"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert echo.stdout is not None
        echo_port = int(echo.stdout.readline())
        with LatencyProxy((host, echo_port), rtt=0.0, listen_host=host) as proxy:
            out = subprocess.run(
                [*me, "--peer", f"clients:{proxy.port}:{seconds}:{connections}"],
                capture_output=True,
                text=True,
                check=True,
                timeout=seconds + 30,
            ).stdout
            proxy.wait_idle(5)
            stats = proxy.stats()
    finally:
        echo.communicate(timeout=5)  # closes its stdin: it exits
    exchanges, elapsed = out.split()
    return {
        # Each exchange is one chunk forwarded each way (the proxy's totals include connection setup).
        "chunks_per_second": 2 * int(exchanges) / float(elapsed),
        "exchanges": int(exchanges),
        "round_trips": stats.round_trips,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--selftest", action="store_true", help="measure the forwarding rate at 0 ms")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (loopback)")
    parser.add_argument("--upstream", help="HOST:PORT to forward to")
    parser.add_argument("--rtt", type=float, default=20.0, help="round-trip time to add, in ms")
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # the self test's child processes
    args = parser.parse_args()
    if args.peer == "echo":
        asyncio.run(_echo_peer())
        return
    if args.peer:
        _, port, seconds, connections = args.peer.split(":")
        asyncio.run(_client_peer(int(port), float(seconds), int(connections)))
        return
    if args.selftest:
        result = selftest()
        ok = "ok" if result["chunks_per_second"] > 20_000 else "TOO SLOW (< 20k/s)"
        print(f"latency proxy at 0 ms: {result['chunks_per_second']:,.0f} small chunks/s forwarded ({ok})")
        return
    if not args.upstream:
        parser.error("--upstream HOST:PORT is required (or --selftest)")
    listen_host, _, listen_port = args.listen.rpartition(":")
    up_host, _, up_port = args.upstream.rpartition(":")
    with LatencyProxy(
        (up_host, int(up_port)), rtt=args.rtt / 1000, listen_host=listen_host, port=int(listen_port)
    ) as proxy:
        print(
            f"forwarding {proxy.listen_host}:{proxy.port} -> {args.upstream}, {args.rtt} ms RTT; Ctrl-C stops"
        )
        try:
            while True:
                time.sleep(5)
                stats = proxy.stats()
                print(f"connections={len(stats.connections)} round_trips={stats.round_trips}")
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
