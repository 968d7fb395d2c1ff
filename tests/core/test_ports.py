"""Loopback ports for the demo, validation, benchmarks and tests (inspector.core.ports)."""

from __future__ import annotations

import socket

import pytest

from inspector.core import ports

pytestmark = pytest.mark.unit


def test_a_port_is_not_handed_out_twice_even_when_the_os_offers_it_again(monkeypatch):
    offered = iter([5001, 5001, 5001, 5002, 5001, 5003])   # an OS that reuses the port it just released
    monkeypatch.setattr(ports, "_bound_port", lambda host: next(offered))
    monkeypatch.setattr(ports, "_recent", ports.deque(maxlen=ports.RECENT_PORTS))
    assert [ports.free_port(), ports.free_port(), ports.free_port()] == [5001, 5002, 5003]


def test_free_ports_are_distinct_and_bindable():
    picked = ports.free_ports(20)
    assert len(set(picked)) == 20
    for port in picked:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
