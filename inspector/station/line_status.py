"""The line-stop state as the PLC holds it, for the operator page, and its acknowledgement.

Each ``[gateways.NAME]`` of the box config writes one PLC (docs/plc.md). :class:`LineStatus` reads
each one that can be reached from here (``modbus://HOST[:PORT]`` and ``sim://HOST:PORT``; a
gateway's private ``sim`` cannot) every ``interval_s`` in a thread of its own: the status coils
(daemon alive, line stop, daemon ready), the fault causes and the gateway heartbeat register, and the
per-camera counters of the ring's headers. A PLC that does not answer is reported as unreachable,
never as "no line stop".

Acknowledging a line stop is what the PLC's own operator does: write the fault-reset coil
(``COIL_FAULT_RESET``); the gateway then clears the *latched* causes (backlog overflow, unknown
camera) and writes the coil back to 0. Causes that are levels (heartbeat lost, not ready) stay
until the condition ends.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from inspector.line.config import Config
from inspector.plc import modbus_map as mm
from inspector.plc.client import PlcClient
from inspector.plc.gateway import parse_plc_target

log = logging.getLogger("inspector.ui")

CAUSES = {mm.FAULT_HEARTBEAT_LOST: "daemon heartbeat lost", mm.FAULT_DAEMON_NOT_READY: "daemon not ready",
          mm.FAULT_BACKLOG_OVERFLOW: "verdicts dropped while the PLC was unreachable (latched)",
          mm.FAULT_UNKNOWN_CAMERA: "verdict from an unknown camera (latched)",
          mm.FAULT_GATEWAY_STOPPED: "gateway stopped"}


def cause_names(bits: int) -> list[str]:
    return [name for bit, name in CAUSES.items() if bits & bit]


class LineStatus:
    """Reads every reachable gateway PLC of ``config`` every ``interval_s``; :meth:`snapshot`."""

    def __init__(self, config: Config, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.lock = threading.Lock()        # the state
        self.io_lock = threading.Lock()     # the Modbus clients (one request at a time)
        self.targets: dict[str, tuple[str, int] | None] = {}
        self.cameras: dict[str, list[str]] = {}
        for name, gateway in config.gateways.items():
            target = parse_plc_target(gateway.plc)
            self.targets[name] = None if target.kind == "sim" and target.port == 0 else (target.host, target.port)
            self.cameras[name] = list(gateway.cameras)
        self.clients = {name: PlcClient(t[1], t[0]) for name, t in self.targets.items() if t is not None}
        self.state: dict[str, dict[str, Any]] = {name: {"reachable": False, "readable": t is not None}
                                                 for name, t in self.targets.items()}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plc-status", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            for name in self.clients:
                state = self._read(name)
                with self.lock:
                    self.state[name] = state
            self._done.wait(self.interval_s)

    def _read(self, name: str) -> dict[str, Any]:
        client = self.clients[name]
        try:
            with self.io_lock:
                alive, stop, ready, reset = client.coils(mm.COIL_DAEMON_ALIVE, 4)
                block = client.global_block()
                headers = {camera: client.header(i) for i, camera in enumerate(self.cameras[name])}
        except Exception as exc:  # PlcClientError, a connection error, a timeout
            return {"reachable": False, "readable": True, "error": str(exc)[:200]}
        return {"reachable": True, "readable": True, "line_stop": stop, "daemon_alive": alive, "daemon_ready": ready,
                "fault_reset_pending": reset, "fault_causes": block.fault_causes,
                "causes": cause_names(block.fault_causes), "gateway_heartbeat": block.gateway_heartbeat,
                "cameras": {camera: {"OK": h.ok_count, "REJECT": h.reject_count, "FAULT": h.fault_count,
                                     "write_count": h.write_count} for camera, h in headers.items()}}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {name: dict(state) for name, state in self.state.items()}

    def line_stopped(self) -> bool | None:
        """True when any PLC holds a line stop, False when every readable one says no, None when
        none could be read."""
        states = [s for s in self.snapshot().values() if s.get("reachable")]
        return None if not states else any(s["line_stop"] for s in states)

    def acknowledge(self, name: str) -> None:
        """Write the fault-reset coil of gateway ``name``'s PLC. Raises KeyError (no such readable
        gateway) or PlcClientError / OSError (the PLC refused or cannot be reached)."""
        client = self.clients[name]
        with self.io_lock:
            client.write_coil(mm.COIL_FAULT_RESET, True)

    def close(self) -> None:
        self._done.set()
        self._thread.join(3)
        for client in self.clients.values():
            client.close()
