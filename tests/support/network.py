"""Loopback-only networking for tests.

Every test runs under :func:`loopback_guard`: a connection (TCP connect, UDP sendto) to any address
outside 127.0.0.0/8 and ::1 fails the test at once, so nothing here can ever reach a real MX or a
real DNS server by accident.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import socket
import threading
from collections.abc import Iterator
from typing import Any

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_sendto = socket.socket.sendto


class NonLoopbackConnection(AssertionError):
    """A test tried to talk to an address outside loopback."""


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # AF_UNIX and friends are local by construction
    host = address[0]
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise NonLoopbackConnection(f"test connected to a host name, not an IP: {host!r}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_loopback:
        raise NonLoopbackConnection(f"test tried to reach {host} outside loopback")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)


def _guarded_sendto(self: socket.socket, data: Any, *args: Any) -> int:
    address = args[-1]
    _check_address(self, address)
    return _real_sendto(self, data, *args)


@contextlib.contextmanager
def loopback_guard() -> Iterator[None]:
    """Refuse, for the duration, any socket connection or datagram outside loopback."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = _guarded_sendto  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        socket.socket.connect = _real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
        socket.socket.sendto = _real_sendto  # type: ignore[method-assign]


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port that was free on ``host`` a moment ago (bind to 0, read it back, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_next_address = itertools.count(2)
_address_lock = threading.Lock()


def loopback_address() -> str:
    """A loopback address (127.0.0.N, N >= 2) no other test in this process has been given.

    Linux routes all of 127.0.0.0/8 to the loopback interface, so several "hosts" can listen on
    the same port at once, as several MX hosts of one domain would.
    """
    with _address_lock:
        n = next(_next_address)
    if n > 250 * 250:
        raise RuntimeError("ran out of loopback addresses")
    return f"127.0.{n // 250}.{n % 250 + 2}" if n >= 250 else f"127.0.0.{n}"
