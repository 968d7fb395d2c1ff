"""Loopback port helper shared by the demo, validation, benchmarks and tests."""

from __future__ import annotations

import socket
import threading
from collections import deque

RECENT_PORTS = 512       # ports handed out lately in this process: never handed out again meanwhile
_ATTEMPTS = 64
_recent: deque[int] = deque(maxlen=RECENT_PORTS)
_lock = threading.Lock()


def _bound_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it). The OS may hand out a
    port it just released again, so two calls in a row could return the same port (a config with
    equal endpoints, or a bind that fails): a port this process was given among the last
    :data:`RECENT_PORTS` is never returned again. Another process may still take the port before
    it is bound; binding then fails loudly."""
    with _lock:
        for _ in range(_ATTEMPTS):
            port = _bound_port(host)
            if port not in _recent:
                break
        _recent.append(port)
        return port


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports, each as :func:`free_port` picks it."""
    return [free_port(host) for _ in range(count)]
