"""Loopback port helper shared by the demo, validation and benchmarks."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it; a race is possible but
    harmless for local demos and tests: binding then fails loudly)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
