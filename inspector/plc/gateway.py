"""Gateway: the daemon's verdicts (ZeroMQ SUB) -> a PLC over Modbus TCP.

``inspector gateway --connect ENDPOINT --plc modbus://HOST:PORT|sim [--cameras cam0,cam1] ...``

Two threads, one job each:

* the **receive loop** (main thread, ``Gateway``) subscribes to the daemon's PUB socket (topics
  verdict + heartbeat), decodes with ``wire.decode_message`` (malformed messages are counted and
  logged, never fatal), maps camera ids to camera blocks, tracks per-camera sequence gaps and the
  daemon heartbeat watchdog, and hands verdicts to the writer;
* the **writer thread** (``PlcWriter``) owns the only Modbus connection and does all PLC I/O.

The register map and the handshake are in ``inspector/plc/modbus_map.py`` and ``docs/plc.md``.
Fail-closed rules: the line-stop coil is set while the daemon is not alive or not ready, after
verdicts were dropped (backlog overflow) or came from an unknown camera (both latched until the
PLC acknowledges with the fault-reset coil), and as the last write of a gateway that stops.
Never imports torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import zmq
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from inspector.plc import modbus_map as mm
from inspector.core.stats import summarize_ms
from inspector.line import transport
from inspector.line.sequence import SequenceTracker
from inspector.line.wire import Heartbeat, Verdict, WireError, decode_message

log = logging.getLogger(__name__)

DEFAULT_MODBUS_PORT = 502
GATEWAY_HEARTBEAT_PERIOD_S = 0.5
MAX_LATENCY_SAMPLES = 1_000_000  # stats keep at most this many per-verdict latencies (8 MB)


# ------------------------------------------------------------------------------------------------
# Configuration parsing
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlcTarget:
    """Where the PLC is. kind "modbus": a real server; kind "sim": start an in-process simulator
    on host:port (port 0 = any free port)."""

    kind: str
    host: str
    port: int


def parse_plc_target(text: str) -> PlcTarget:
    """``modbus://HOST[:PORT]`` (PORT defaults to 502), ``sim`` or ``sim://HOST:PORT``.

    Raises ValueError with the accepted forms for anything else.
    """
    if text == "sim":
        return PlcTarget("sim", "127.0.0.1", 0)
    parts = urlsplit(text)
    if parts.scheme not in ("modbus", "sim") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"--plc {text!r}: expected modbus://HOST:PORT, sim or sim://HOST:PORT")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"--plc {text!r}: bad port ({exc})") from None
    if port is None:
        port = DEFAULT_MODBUS_PORT if parts.scheme == "modbus" else 0
    return PlcTarget(parts.scheme, parts.hostname, port)


def parse_cameras(text: str) -> tuple[str, ...]:
    """``cam0,cam1`` -> ("cam0", "cam1"); index in the tuple = camera block in the PLC.

    Raises ValueError for an empty list, empty or duplicate names, or more than MAX_CAMERAS.
    """
    names = tuple(name.strip() for name in text.split(","))
    if not names or any(not name for name in names):
        raise ValueError(f"--cameras {text!r}: expected a comma-separated list of camera ids")
    if len(set(names)) != len(names):
        raise ValueError(f"--cameras {text!r}: duplicate camera id")
    if len(names) > mm.MAX_CAMERAS:
        raise ValueError(f"--cameras: {len(names)} cameras, the register map holds {mm.MAX_CAMERAS}")
    return names


# ------------------------------------------------------------------------------------------------
# What travels from the receive loop to the writer
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingVerdict:
    """A verdict translated to register values, waiting to be written.

    ``entry`` has tag 0; the writer sets the tag when it knows the write count. ``lost_before``:
    sequence numbers this camera skipped just before this verdict. ``pulse``: pulse the reject
    coil when written (False for verdicts that waited out a PLC outage: a late pulse could
    reject the wrong part; the ring entry still carries the result).
    """

    camera: int
    entry: mm.RingEntry
    decision: str
    capture_ns: int
    lost_before: int
    pulse: bool = True


def ring_entry_for(verdict: Verdict) -> mm.RingEntry:
    """Verdict -> ring entry register values (tag 0), per the encodings in modbus_map."""
    code, is_crc = mm.part_code(verdict.part_id)
    score, score_clamped = mm.milli_u16(verdict.score)
    threshold, threshold_clamped = mm.milli_u16(verdict.threshold)
    reason, reason_unknown = mm.reason_code(verdict.reason)
    flags = (
        (mm.FLAG_PART_ID_CRC32 if is_crc else 0)
        | (mm.FLAG_SCORE_CLAMPED if score_clamped else 0)
        | (mm.FLAG_THRESHOLD_CLAMPED if threshold_clamped else 0)
        | (mm.FLAG_REASON_UNKNOWN if reason_unknown else 0)
    )
    return mm.RingEntry(
        seq=verdict.seq & mm.U32_MAX,
        part_code=code,
        decision=mm.decision_code(verdict.decision),
        reason=reason,
        score_milli=score,
        threshold_milli=threshold,
        capture_ms=(verdict.capture_ns // 1_000_000) & mm.U32_MAX,
        flags=flags,
        tag=0,
    )


# ------------------------------------------------------------------------------------------------
# Metrics and statistics
# ------------------------------------------------------------------------------------------------


class GatewayMetrics:
    """Prometheus metrics in a private registry; ``serve(port, host)`` exposes them over HTTP."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter as PCounter, Gauge, Histogram

        self.registry = CollectorRegistry()
        prefix = "inspector_gateway_"
        self.verdicts_written = PCounter(prefix + "verdicts_written", "verdicts written to the PLC", ["decision"], registry=self.registry)
        self.malformed = PCounter(prefix + "malformed_messages", "undecodable messages from the daemon", registry=self.registry)
        self.unknown_camera = PCounter(prefix + "unknown_camera_verdicts", "verdicts from cameras not in --cameras", registry=self.registry)
        self.lost = PCounter(prefix + "lost_verdicts", "camera sequence numbers never seen by the gateway", registry=self.registry)
        self.backlog_dropped = PCounter(prefix + "plc_backlog_dropped", "verdicts dropped because the PLC backlog was full", registry=self.registry)
        self.reconnects = PCounter(prefix + "plc_reconnects", "successful PLC reconnections", registry=self.registry)
        self.write_errors = PCounter(prefix + "plc_write_errors", "failed PLC requests", registry=self.registry)
        self.backlog = Gauge(prefix + "plc_backlog", "verdicts waiting to be written", registry=self.registry)
        self.line_stop = Gauge(prefix + "line_stop", "1 while the line-stop / fault coil is requested", registry=self.registry)
        self.daemon_alive = Gauge(prefix + "daemon_alive", "1 while daemon heartbeats arrive", registry=self.registry)
        buckets = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
        self.write_seconds = Histogram(prefix + "plc_write_seconds", "entry + header write round trip", buckets=buckets, registry=self.registry)
        self.capture_to_plc = Histogram(prefix + "capture_to_plc_seconds", "capture time to PLC write completed", buckets=buckets, registry=self.registry)

    def serve(self, port: int, host: str) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)


# ------------------------------------------------------------------------------------------------
# The writer: all Modbus I/O
# ------------------------------------------------------------------------------------------------


class PlcWriteError(Exception):
    """The PLC answered a request with a Modbus exception (e.g. ILLEGAL_ADDRESS)."""


@dataclass
class _PulseState:
    """Reject-pulse train of one camera: each pulse is ON for pulse_s then OFF for >= pulse_s."""

    pending: int = 0
    on: bool = False
    next_change: float = 0.0  # monotonic s


class PlcWriter:
    """Owns the Modbus TCP connection; writes verdicts, counters, coils and the heartbeat.

    Why the synchronous ``ModbusTcpClient`` in one thread of its own (not the asyncio client):
    Modbus TCP to a PLC is one request at a time anyway, and blocking calls with an explicit
    timeout in a single thread make the write order (ring entry, then header with the new write
    count, then pulse coil) hold by construction; a slow or dead PLC blocks only this thread,
    never the ZeroMQ receive loop, whose verdicts wait in the bounded backlog meanwhile. The
    asyncio client would bring its own reconnect machinery, which we want under our control
    (backoff, full-state rewrite on reconnect).

    Thread safety: the public methods (submit, set_daemon_state, note_*, stop, stats) may be
    called from any thread; everything else runs in the writer thread.

    Connection policy: on any failed request the connection is closed and reopened with
    exponential backoff (reconnect_min_s doubling up to reconnect_max_s). After every (re)connect
    the writer rewrites its whole state (global block, status coils, reject coils off, every camera
    header): the PLC may have restarted. At the first connect it adopts the camera headers
    already in the PLC when the PLC's global block describes this map, so a restarted gateway
    continues the write counts instead of jumping back to 0. A verdict whose write failed is
    rewritten in full (all writes are absolute, so repeating them is harmless). Verdicts that
    arrive while the backlog holds ``backlog_limit`` entries push out the oldest one (counted,
    and latches FAULT_BACKLOG_OVERFLOW).
    """

    def __init__(
        self,
        host: str,
        port: int,
        camera_count: int,
        *,
        device_id: int = 1,
        pulse_s: float = 0.05,
        backlog_limit: int = 1024,
        timeout_s: float = 1.0,
        reconnect_min_s: float = 0.05,
        reconnect_max_s: float = 5.0,
        heartbeat_period_s: float = GATEWAY_HEARTBEAT_PERIOD_S,
        stop_flush_s: float = 2.0,
        metrics: GatewayMetrics | None = None,
        client_factory: Callable[..., ModbusTcpClient] = ModbusTcpClient,
    ) -> None:
        if not 1 <= camera_count <= mm.MAX_CAMERAS:
            raise ValueError(f"camera_count must be 1..{mm.MAX_CAMERAS}, got {camera_count}")
        if backlog_limit < 1 or pulse_s <= 0 or timeout_s <= 0 or not 0 < reconnect_min_s <= reconnect_max_s:
            raise ValueError("backlog_limit >= 1, pulse_s > 0, timeout_s > 0, 0 < reconnect_min_s <= reconnect_max_s")
        self.host, self.port, self.device_id = host, port, device_id
        self.camera_count = camera_count
        self.pulse_s, self.backlog_limit = pulse_s, backlog_limit
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.heartbeat_period_s, self.stop_flush_s = heartbeat_period_s, stop_flush_s
        self.metrics = metrics
        self._client = client_factory(host, port=port, timeout=timeout_s, retries=0)
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="plc-writer", daemon=True)
        # --- shared with other threads (guarded by _cond) ---
        self._backlog: deque[PendingVerdict] = deque()
        self._connected = False
        self._daemon_alive = False
        self._daemon_ready = False
        self._daemon_counter = 0
        self._latched_faults = 0
        self._malformed = 0
        self._unknown_camera = 0
        self._backlog_dropped = 0
        self._stopping = False
        self._stop_deadline = math.inf
        # --- writer thread only ---
        self._in_flight: PendingVerdict | None = None
        self._headers = [mm.CameraHeader() for _ in range(camera_count)]
        self._pulses = [_PulseState() for _ in range(camera_count)]
        self._written_status: tuple[bool, bool, bool] | None = None
        self._written_global: mm.GlobalBlock | None = None
        self._heartbeat = 0
        self._next_tick = 0.0
        self._backoff = reconnect_min_s
        self._next_connect_at = 0.0
        self._ever_connected = False
        self._reconnects = 0
        self._write_errors = 0
        self._verdicts_written = 0
        self._lost_total = 0
        self._by_decision: Counter[str] = Counter()
        self._pulses_sent = 0
        self._pulses_dropped = 0
        self._latencies_ms: list[float] = []
        self._write_ms: list[float] = []
        self._final_state_written = False

    # ---------------------------------------------------------------- public, any thread
    def start(self) -> None:
        self._thread.start()

    def submit(self, item: PendingVerdict) -> None:
        """Queue a verdict for writing (never blocks on the PLC)."""
        with self._cond:
            if not self._connected:
                item = replace(item, pulse=False)
            if len(self._backlog) >= self.backlog_limit:
                dropped = self._backlog.popleft()
                self._backlog_dropped += 1
                self._latched_faults |= mm.FAULT_BACKLOG_OVERFLOW
                if self._backlog_dropped == 1 or self._backlog_dropped % 100 == 0:
                    log.error("PLC backlog full (%d): dropped verdict camera=%d seq=%d (%d dropped so far)",
                              self.backlog_limit, dropped.camera, dropped.entry.seq, self._backlog_dropped)
                if self.metrics:
                    self.metrics.backlog_dropped.inc()
            self._backlog.append(item)
            if self.metrics:
                self.metrics.backlog.set(len(self._backlog))
            self._cond.notify()

    def set_daemon_state(self, alive: bool, ready: bool, counter: int) -> None:
        """Latest daemon liveness as judged by the receive loop."""
        with self._cond:
            changed = (alive, ready) != (self._daemon_alive, self._daemon_ready)
            self._daemon_alive, self._daemon_ready = alive, ready
            self._daemon_counter = counter
            if changed:
                self._cond.notify()

    def note_malformed(self) -> None:
        with self._cond:
            self._malformed += 1

    def note_unknown_camera(self) -> None:
        """Count a verdict from an unknown camera and latch FAULT_UNKNOWN_CAMERA."""
        with self._cond:
            self._unknown_camera += 1
            self._latched_faults |= mm.FAULT_UNKNOWN_CAMERA
            self._cond.notify()

    def stop(self) -> None:
        """Flush the backlog (for at most stop_flush_s), write the stopped state, close."""
        with self._cond:
            self._stopping = True
            self._stop_deadline = time.monotonic() + self.stop_flush_s
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(self.stop_flush_s + 4 * self._client.comm_params.timeout_connect + 1.0)
        if self._thread.is_alive():
            log.error("PLC writer did not stop in time")

    def fault_causes(self) -> int:
        with self._cond:
            return self._fault_causes_locked()

    def stats(self) -> dict[str, Any]:
        """Counters and latency summaries (consistent once the writer has stopped)."""
        with self._cond:
            shared = {
                "malformed_messages": self._malformed,
                "unknown_camera_verdicts": self._unknown_camera,
                "backlog_dropped": self._backlog_dropped,
                "backlog_left": len(self._backlog) + (1 if self._in_flight else 0),
                "fault_causes": self._fault_causes_locked(),
            }
        return {
            "verdicts_written": self._verdicts_written,
            "written_by_decision": {name: self._by_decision.get(name, 0) for name in mm.DECISION_CODES},
            "lost_verdicts": self._lost_total,
            "plc_reconnects": self._reconnects,
            "plc_write_errors": self._write_errors,
            "reject_pulses": self._pulses_sent,
            "reject_pulses_dropped": self._pulses_dropped,
            "gateway_heartbeat": self._heartbeat,
            **shared,
            "latency_ms": summarize_ms(self._latencies_ms),
            "plc_write_ms": summarize_ms(self._write_ms),
        }

    # ---------------------------------------------------------------- shared-state helpers
    def _fault_causes_locked(self) -> int:
        causes = self._latched_faults
        if not self._daemon_alive:
            causes |= mm.FAULT_HEARTBEAT_LOST
        elif not self._daemon_ready:
            causes |= mm.FAULT_DAEMON_NOT_READY
        if self._final_state_written:
            causes |= mm.FAULT_GATEWAY_STOPPED
        return causes

    def _desired_status_locked(self) -> tuple[bool, bool, bool]:
        """(daemon_alive, line_stop, daemon_ready) coil values."""
        alive = self._daemon_alive
        return (alive, self._fault_causes_locked() != 0, alive and self._daemon_ready)

    def _global_block_locked(self) -> mm.GlobalBlock:
        return mm.GlobalBlock(
            camera_count=self.camera_count,
            gateway_heartbeat=self._heartbeat & mm.U16_MAX,
            fault_causes=self._fault_causes_locked(),
            verdicts_written=self._verdicts_written,
            lost_verdicts=self._lost_total,
            unknown_camera_verdicts=self._unknown_camera,
            backlog_dropped=self._backlog_dropped,
            malformed_messages=self._malformed,
            plc_reconnects=self._reconnects,
            daemon_heartbeat_counter=self._daemon_counter,
        )

    # ---------------------------------------------------------------- writer thread
    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._should_exit_locked():
                        break
                    timeout = self._idle_timeout_locked()
                    if timeout > 0:
                        self._cond.wait(timeout)
                        continue
                if not self._client_is_connected():
                    self._try_connect()
                    continue
                try:
                    self._do_one_thing()
                except (ModbusException, OSError, PlcWriteError) as exc:
                    self._on_io_error(exc)
        except Exception:  # a bug here must not leave the line running without a gateway
            log.exception("PLC writer crashed")
        finally:
            self._finish()

    def _client_is_connected(self) -> bool:
        with self._cond:
            return self._connected

    def _should_exit_locked(self) -> bool:
        if not self._stopping:
            return False
        nothing_left = not self._backlog and self._in_flight is None
        return nothing_left or time.monotonic() >= self._stop_deadline

    def _idle_timeout_locked(self) -> float:
        """Seconds to sleep before there is something to do (0 = work now)."""
        now = time.monotonic()
        if not self._connected:
            wait = self._next_connect_at - now
            return min(wait, self._stop_deadline - now) if wait > 0 else 0.0
        if self._backlog or self._in_flight is not None or self._stopping:
            return 0.0
        if self._desired_status_locked() != self._written_status:
            return 0.0
        if self._global_block_locked() != self._written_global:
            return 0.0
        deadlines = [self._next_tick] + [p.next_change for p in self._pulses if p.on or p.pending]
        return max(0.0, min(deadlines) - now)

    def _try_connect(self) -> None:
        now = time.monotonic()
        if now < self._next_connect_at:
            return
        try:
            if not self._client.connect():
                raise ConnectionError(f"cannot connect to PLC {self.host}:{self.port}")
            if not self._ever_connected:
                self._adopt_plc_state()
            else:
                self._reconnects += 1
                if self.metrics:
                    self.metrics.reconnects.inc()
            self._write_full_state()
        except (ModbusException, OSError, PlcWriteError) as exc:
            self._client.close()
            self._schedule_reconnect(exc)
            return
        with self._cond:
            self._connected = True
        self._backoff = self.reconnect_min_s
        log.info("%s PLC %s:%d (device id %d)", "reconnected to" if self._ever_connected else "connected to",
                 self.host, self.port, self.device_id)
        self._ever_connected = True

    def _schedule_reconnect(self, exc: BaseException) -> None:
        self._next_connect_at = time.monotonic() + self._backoff
        log.warning("PLC %s:%d unavailable (%s); retrying in %.2f s", self.host, self.port, exc, self._backoff)
        self._backoff = min(self._backoff * 2, self.reconnect_max_s)

    def _on_io_error(self, exc: BaseException) -> None:
        self._write_errors += 1
        if self.metrics:
            self.metrics.write_errors.inc()
        self._client.close()
        with self._cond:
            self._connected = False
        self._written_status = None
        self._written_global = None
        self._schedule_reconnect(exc)

    # ---- Modbus primitives (every request of the gateway goes through these three)
    def _check(self, response, what: str):
        if response is None or response.isError():
            raise PlcWriteError(f"PLC refused {what}: {response}")
        return response

    def _write_registers(self, address: int, values: list[int], what: str) -> None:
        self._check(self._client.write_registers(address, values, device_id=self.device_id), what)

    def _write_coils(self, address: int, values: list[bool], what: str) -> None:
        self._check(self._client.write_coils(address, values, device_id=self.device_id), what)

    def _read_registers(self, address: int, count: int, what: str) -> list[int]:
        response = self._client.read_holding_registers(address, count=count, device_id=self.device_id)
        return list(self._check(response, what).registers)

    def _read_coils(self, address: int, count: int, what: str) -> list[bool]:
        response = self._client.read_coils(address, count=count, device_id=self.device_id)
        return list(self._check(response, what).bits[:count])

    # ---- state writes
    def _adopt_plc_state(self) -> None:
        """First connect: continue the camera write counts/counters found in the PLC, if its
        global block describes this very map (else start from zero)."""
        found = mm.GlobalBlock.from_registers(self._read_registers(0, mm.GLOBAL_BLOCK_SIZE, "global block read"))
        layout = (found.map_version, found.ring_size, found.entry_size, found.camera_area_base, found.camera_block_size)
        expected = mm.GlobalBlock()
        if layout != (expected.map_version, expected.ring_size, expected.entry_size, expected.camera_area_base, expected.camera_block_size):
            return
        for camera in range(self.camera_count):
            registers = self._read_registers(mm.camera_base(camera), mm.CAMERA_HEADER_SIZE, "camera header read")
            self._headers[camera] = mm.CameraHeader.from_registers(registers)
        log.info("continuing camera write counts found in the PLC: %s", [h.write_count for h in self._headers])

    def _write_full_state(self) -> None:
        with self._cond:
            status = self._desired_status_locked()
        self._write_global()
        self._write_status(status)
        self._write_coils(mm.REJECT_COIL_BASE, [False] * self.camera_count, "reject coils")
        self._pulses = [_PulseState() for _ in range(self.camera_count)]
        for camera, header in enumerate(self._headers):
            self._write_registers(mm.camera_base(camera), header.to_registers(), "camera header")
        self._next_tick = time.monotonic() + self.heartbeat_period_s

    def _write_status(self, status: tuple[bool, bool, bool]) -> None:
        """Coils DAEMON_ALIVE, LINE_STOP, DAEMON_READY in one request (never FAULT_RESET)."""
        self._write_coils(mm.COIL_DAEMON_ALIVE, list(status), "status coils")
        if status[1] and (self._written_status is None or not self._written_status[1]):
            log.warning("line-stop coil set (fault causes 0x%x)", self.fault_causes())
        elif not status[1] and self._written_status is not None and self._written_status[1]:
            log.info("line-stop coil cleared")
        self._written_status = status
        if self.metrics:
            self.metrics.line_stop.set(int(status[1]))
            self.metrics.daemon_alive.set(int(status[0]))

    def _write_global(self) -> None:
        with self._cond:
            block = self._global_block_locked()
        self._write_registers(0, block.to_registers(), "global block")
        self._written_global = block

    def _do_one_thing(self) -> None:
        """One step, most urgent first: status (global block + coils), heartbeat tick, pulses, a
        verdict, globals."""
        now = time.monotonic()
        with self._cond:
            status = self._desired_status_locked()
        if status != self._written_status:
            self._write_global()  # fault_causes first, so the PLC finds the cause when the coil changes
            self._write_status(status)
            return
        if now >= self._next_tick:
            self._tick(now)
            return
        for camera, pulse in enumerate(self._pulses):
            if (pulse.on or pulse.pending) and now >= pulse.next_change:
                self._step_pulse(camera, pulse, now)
                return
        item = self._next_verdict()
        if item is not None:
            self._write_verdict(item)
            return
        with self._cond:
            block = self._global_block_locked()
        if block != self._written_global:
            self._write_global()

    def _tick(self, now: float) -> None:
        """Gateway heartbeat (+1 per period), fault-reset acknowledgement, global block."""
        self._next_tick += self.heartbeat_period_s
        if self._next_tick <= now:  # fell behind (slow PLC): no catch-up burst
            self._next_tick = now + self.heartbeat_period_s
        if self._read_coils(mm.COIL_FAULT_RESET, 1, "fault-reset coil read")[0]:
            with self._cond:
                cleared, self._latched_faults = self._latched_faults, 0
            self._write_coils(mm.COIL_FAULT_RESET, [False], "fault-reset coil clear")
            log.warning("PLC acknowledged latched faults 0x%x; cleared", cleared)
        self._heartbeat = (self._heartbeat + 1) & mm.U16_MAX
        self._write_global()

    def _step_pulse(self, camera: int, pulse: _PulseState, now: float) -> None:
        if pulse.on:
            self._write_coils(mm.reject_coil(camera), [False], "reject coil off")
            pulse.on = False
        else:
            self._write_coils(mm.reject_coil(camera), [True], "reject coil on")
            pulse.on, pulse.pending = True, pulse.pending - 1
            self._pulses_sent += 1
        pulse.next_change = now + self.pulse_s

    def _next_verdict(self) -> PendingVerdict | None:
        if self._in_flight is None:
            with self._cond:
                if self._backlog:
                    self._in_flight = self._backlog.popleft()
                    if self.metrics:
                        self.metrics.backlog.set(len(self._backlog))
        return self._in_flight

    def _write_verdict(self, item: PendingVerdict) -> None:
        """Ring entry first, then the header that commits it (see modbus_map)."""
        header = self._headers[item.camera]
        write_count = (header.write_count + 1) % mm.WRITE_COUNT_MODULUS
        entry = replace(item.entry, tag=write_count)
        started = time.perf_counter()
        self._write_registers(mm.entry_address(item.camera, mm.ring_slot(header.write_count)), entry.to_registers(), "ring entry")
        new_header = mm.CameraHeader(
            write_count=write_count,
            last_decision=entry.decision,
            ok_count=(header.ok_count + (entry.decision == mm.DECISION_CODES["OK"])) & mm.U32_MAX,
            reject_count=(header.reject_count + (entry.decision == mm.DECISION_CODES["REJECT"])) & mm.U32_MAX,
            fault_count=(header.fault_count + (entry.decision == mm.DECISION_CODES["FAULT"])) & mm.U32_MAX,
            lost_count=(header.lost_count + item.lost_before) & mm.U32_MAX,
            last_seq=entry.seq,
        )
        self._write_registers(mm.camera_base(item.camera), new_header.to_registers(), "camera header")
        done_ns = time.time_ns()
        write_s = time.perf_counter() - started
        self._commit(item, new_header, entry, write_s, done_ns)

    def _commit(self, item: PendingVerdict, header: mm.CameraHeader, entry: mm.RingEntry, write_s: float, done_ns: int) -> None:
        self._headers[item.camera] = header
        self._in_flight = None
        self._verdicts_written += 1
        self._lost_total += item.lost_before
        decision = {code: name for name, code in mm.DECISION_CODES.items()}[entry.decision]
        self._by_decision[decision] += 1
        latency_ms = (done_ns - item.capture_ns) / 1e6
        if len(self._latencies_ms) < MAX_LATENCY_SAMPLES:
            self._latencies_ms.append(latency_ms)
            self._write_ms.append(write_s * 1e3)
        if entry.decision != mm.DECISION_CODES["OK"] and item.pulse:
            pulse = self._pulses[item.camera]
            if pulse.pending < mm.RING_SIZE:
                pulse.pending += 1
            else:
                self._pulses_dropped += 1
        if self.metrics:
            self.metrics.verdicts_written.labels(decision=decision).inc()
            self.metrics.write_seconds.observe(write_s)
            self.metrics.capture_to_plc.observe(max(0.0, latency_ms / 1e3))
            if item.lost_before:
                self.metrics.lost.inc(item.lost_before)

    def _finish(self) -> None:
        """Last words to the PLC (best effort): line stop on, daemon coils off, pulses off."""
        with self._cond:
            self._final_state_written = True
            self._daemon_alive = self._daemon_ready = False
            connected = self._connected
        if connected:
            try:
                self._write_coils(mm.COIL_DAEMON_ALIVE, [False, True, False], "final status coils")
                self._write_coils(mm.REJECT_COIL_BASE, [False] * self.camera_count, "final reject coils")
                self._write_global()
            except (ModbusException, OSError, PlcWriteError) as exc:
                log.warning("could not write the stopped state to the PLC: %s", exc)
        self._client.close()
        with self._cond:
            self._connected = False
            if self._backlog or self._in_flight:
                log.error("stopping with %d verdicts not written to the PLC",
                          len(self._backlog) + (1 if self._in_flight else 0))


# ------------------------------------------------------------------------------------------------
# The receive loop
# ------------------------------------------------------------------------------------------------


class Gateway:
    """Decodes daemon messages and feeds the writer; judges daemon liveness.

    Not thread safe: one thread calls ``handle`` and ``check_heartbeat``.
    """

    MAX_REPORTED_UNKNOWN = 64  # distinct unknown camera ids logged at WARNING

    def __init__(self, cameras: tuple[str, ...], writer: PlcWriter, heartbeat_timeout_s: float,
                 metrics: GatewayMetrics | None = None) -> None:
        if heartbeat_timeout_s <= 0:
            raise ValueError("heartbeat timeout must be > 0")
        self.camera_index = {name: i for i, name in enumerate(cameras)}
        self.writer = writer
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.metrics = metrics
        self.sequences = SequenceTracker(max_cameras=max(1, len(cameras)))
        self.last_heartbeat_at: float | None = None
        self.daemon_id: str | None = None
        self.daemon_ready = False
        self.daemon_counter = 0
        self.alive = False
        self.counts: Counter[str] = Counter()
        self.unknown_ids: set[str] = set()

    def handle(self, parts: list[bytes], now: float) -> None:
        """One ZeroMQ message; never raises for bad input (counted as malformed)."""
        try:
            message = decode_message(parts)
        except WireError as exc:
            self._malformed(exc)
            return
        except Exception as exc:  # decode_message promises WireError only; fail safe anyway
            self._malformed(exc)
            return
        if isinstance(message, Heartbeat):
            self._on_heartbeat(message, now)
        else:
            self._on_verdict(message)

    def check_heartbeat(self, now: float) -> None:
        """Declare the daemon lost when its last heartbeat is older than the timeout."""
        if self.alive and self.last_heartbeat_at is not None and now - self.last_heartbeat_at > self.heartbeat_timeout_s:
            self.alive = False
            self.counts["heartbeat_lost_events"] += 1
            log.error("daemon heartbeat lost for > %.2f s: line stop (fail closed)", self.heartbeat_timeout_s)
            self.writer.set_daemon_state(False, False, self.daemon_counter)

    def _malformed(self, exc: Exception) -> None:
        self.counts["malformed_messages"] += 1
        self.writer.note_malformed()
        if self.metrics:
            self.metrics.malformed.inc()
        count = self.counts["malformed_messages"]
        if count <= 10 or count % 1000 == 0:
            log.warning("malformed message #%d ignored: %s", count, exc)

    def _on_heartbeat(self, beat: Heartbeat, now: float) -> None:
        self.counts["heartbeats_received"] += 1
        if self.daemon_id != beat.daemon_id:
            log.info("daemon %r is publishing (counter %d, ready=%s)", beat.daemon_id, beat.counter, beat.ready)
            self.daemon_id = beat.daemon_id
        if not self.alive:
            log.info("daemon heartbeat present")
        self.last_heartbeat_at = now
        self.alive = True
        self.daemon_ready = beat.ready
        self.daemon_counter = beat.counter & mm.U32_MAX
        self.writer.set_daemon_state(True, beat.ready, self.daemon_counter)

    def _on_verdict(self, verdict: Verdict) -> None:
        self.counts["verdicts_received"] += 1
        camera = self.camera_index.get(verdict.camera_id)
        if camera is None:
            self._unknown_camera(verdict)
            return
        lost = self._sequence_gap(verdict)
        if lost is None:
            return
        self.writer.submit(PendingVerdict(camera, ring_entry_for(verdict), verdict.decision, verdict.capture_ns, lost))

    def _unknown_camera(self, verdict: Verdict) -> None:
        self.counts["unknown_camera_verdicts"] += 1
        self.writer.note_unknown_camera()
        if self.metrics:
            self.metrics.unknown_camera.inc()
        if verdict.camera_id not in self.unknown_ids and len(self.unknown_ids) < self.MAX_REPORTED_UNKNOWN:
            self.unknown_ids.add(verdict.camera_id)
            log.error("verdict from unknown camera %r (not in --cameras %s): not written; line-stop latched",
                      verdict.camera_id, list(self.camera_index))
        else:
            log.debug("verdict from unknown camera %r", verdict.camera_id)

    def _sequence_gap(self, verdict: Verdict) -> int | None:
        """Sequence numbers skipped before this verdict (0 normally); None = duplicate, skip it."""
        event = self.sequences.observe(verdict.camera_id, verdict.seq)
        if event.duplicate:
            self.counts["duplicate_verdicts"] += 1
            log.warning("duplicate verdict camera=%s seq=%d ignored", verdict.camera_id, verdict.seq)
            return None
        if event.restarted:
            self.counts["sequence_restarts"] += 1
            log.warning("camera %s sequence went back from %d to %d (camera restarted?)", verdict.camera_id,
                        event.previous, verdict.seq)
        elif event.missing:
            self.counts["lost_verdicts"] += event.missing
            log.warning("camera %s: %d verdicts never arrived (seq %d -> %d)", verdict.camera_id, event.missing,
                        event.previous, verdict.seq)
        return event.missing


# ------------------------------------------------------------------------------------------------
# Command
# ------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connect", required=True, metavar="ENDPOINT", help="daemon PUB endpoint, e.g. tcp://127.0.0.1:5556")
    parser.add_argument("--plc", required=True, help="modbus://HOST:PORT, or sim / sim://HOST:PORT for an in-process simulated PLC")
    parser.add_argument("--cameras", default="cam0", help="comma-separated camera ids; position = camera block (default cam0)")
    parser.add_argument("--device-id", type=int, default=1, help="Modbus device (unit) id (default 1)")
    parser.add_argument("--heartbeat-timeout", type=float, default=2.0, help="s without daemon heartbeat before line stop (default 2.0)")
    parser.add_argument("--pulse-ms", type=float, default=50.0, help="reject coil pulse width and minimum gap, ms (default 50)")
    parser.add_argument("--backlog", type=int, default=1024, help="verdicts kept while the PLC is unreachable (default 1024)")
    parser.add_argument("--timeout", type=float, default=1.0, help="Modbus connect/response timeout, s (default 1.0)")
    parser.add_argument("--reconnect-max", type=float, default=5.0, help="longest reconnect backoff, s (default 5.0)")
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    parser.add_argument("--metrics-host", default="0.0.0.0", help="address for the metrics server (default 0.0.0.0)")
    parser.add_argument("--stats", type=Path, default=None, help="write counts and latency percentiles as JSON to FILE on exit")


def _validate(args: argparse.Namespace) -> tuple[PlcTarget, tuple[str, ...]]:
    target = parse_plc_target(args.plc)
    cameras = parse_cameras(args.cameras)
    if not 0 <= args.device_id <= 255:
        raise ValueError(f"--device-id {args.device_id}: expected 0..255")
    for name in ("heartbeat_timeout", "pulse_ms", "timeout", "reconnect_max"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0")
    if args.backlog < 1:
        raise ValueError("--backlog must be >= 1")
    return target, cameras


def _write_stats(path: Path, stats: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _receive_loop(socket: zmq.Socket, gateway: Gateway, stop: threading.Event) -> None:
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    while not stop.is_set():
        if poller.poll(50):
            for _ in range(1000):  # drain, but come back to the watchdog regularly
                try:
                    parts = socket.recv_multipart(zmq.NOBLOCK, copy=True)
                except zmq.Again:
                    break
                gateway.handle(parts, time.monotonic())
        gateway.check_heartbeat(time.monotonic())


def run(args: argparse.Namespace) -> int:
    target, cameras = _validate(args)
    if not getattr(args, "verbose", False):
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # we log connection trouble ourselves
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    sim = None
    if target.kind == "sim":
        from inspector.plc.plc_sim import start_sim_in_thread

        sim = start_sim_in_thread(target.host, target.port)
        target = PlcTarget("modbus", sim.host, sim.port)
        log.info("simulated PLC on %s:%d", sim.host, sim.port)
    metrics = GatewayMetrics()
    if args.metrics_port is not None:
        metrics.serve(args.metrics_port, args.metrics_host)
    writer = PlcWriter(
        target.host, target.port, len(cameras), device_id=args.device_id, pulse_s=args.pulse_ms / 1e3,
        backlog_limit=args.backlog, timeout_s=args.timeout, reconnect_max_s=args.reconnect_max, metrics=metrics,
    )
    gateway = Gateway(cameras, writer, args.heartbeat_timeout, metrics)
    context = zmq.Context()
    try:
        socket = transport.verdict_subscriber(context, args.connect)
    except zmq.ZMQError as exc:
        context.term()
        if sim is not None:
            sim.stop()
        raise ValueError(f"--connect {args.connect!r}: {exc}") from None
    started_ns = time.time_ns()
    try:
        writer.start()
        log.info("gateway: %s -> PLC %s:%d, cameras %s", args.connect, target.host, target.port, list(cameras))
        _receive_loop(socket, gateway, stop)
        log.info("gateway stopping")
    finally:
        socket.close(0)
        context.term()
        writer.stop()
        if sim is not None:
            sim.stop()
    if args.stats is not None:
        stats = {
            "started_ns": started_ns,
            "stopped_ns": time.time_ns(),
            "cameras": list(cameras),
            "plc": f"{target.host}:{target.port}",
            "verdicts_received": gateway.counts["verdicts_received"],
            "heartbeats_received": gateway.counts["heartbeats_received"],
            "heartbeat_lost_events": gateway.counts["heartbeat_lost_events"],
            "duplicate_verdicts": gateway.counts["duplicate_verdicts"],
            "sequence_restarts": gateway.counts["sequence_restarts"],
            **writer.stats(),
        }
        _write_stats(args.stats, stats)
        log.info("stats written to %s", args.stats)
    return 0
