"""The gateway's writer thread: all I/O to one PLC.

``PlcWriter`` owns the only PLC connection, a :class:`inspector.plc.device.RegisterDevice` (Modbus
TCP by default, S7 through :mod:`inspector.plc.s7_device`); the receive loop (:class:`inspector.plc.gateway.Gateway`)
hands it :class:`PendingVerdict` items (a verdict translated by :func:`ring_entry_for`) and the
daemon's state. Register map and handshake: :mod:`inspector.plc.modbus_map`, docs/plc.md.
Never imports torch.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import Any

from inspector.core.stats import summarize_ms
from inspector.plc import modbus_map as mm
from inspector.plc.device import ModbusDevice, PlcWriteError, RegisterDevice  # noqa: F401 (PlcWriteError: re-exported)
from inspector.plc.metrics import GatewayMetrics
from inspector.plc.sequencing import REPLAYED, PendingVerdict, Planned, has_history, plan_entries

log = logging.getLogger("inspector.plc.gateway")

GATEWAY_HEARTBEAT_PERIOD_S = 0.5
LATCH_QUIET_S = 2.0  # a latched fault clears on the PLC's reset only when its cause was quiet this long
LEFT_SESSIONS = 16   # grabber sessions remembered per camera after they were replaced
MAX_LATENCY_SAMPLES = 1_000_000  # stats keep at most this many per-verdict latencies (8 MB)


# ------------------------------------------------------------------------------------------------
# The writer: all Modbus I/O
# ------------------------------------------------------------------------------------------------


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
    continues the write counts, and checks the next verdicts against the last seq and session the
    PLC holds (:mod:`inspector.plc.sequencing`: lost verdicts become ``sequence_gap`` FAULT entries,
    a replayed seq a ``sequence_replayed`` FAULT that latches FAULT_SEQUENCE_REPLAYED). A verdict
    whose write failed is planned and rewritten from the committed header (all writes are absolute,
    so repeating them is harmless). Verdicts that arrive while the backlog holds ``backlog_limit``
    entries push out the oldest one (counted, and latches FAULT_BACKLOG_OVERFLOW). Every heartbeat
    tick reads the status coils back and rewrites them when someone else changed them; the PLC's
    fault reset clears only latched causes that have been quiet for LATCH_QUIET_S.
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
        device: RegisterDevice | None = None,
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
        # every request goes through the device (Modbus TCP unless another is given: S7, ...)
        self._client = device or ModbusDevice(host, port, device_id=device_id, timeout_s=timeout_s)
        self._io_errors = self._client.errors
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="plc-writer", daemon=True)
        # --- shared with other threads (guarded by _cond) ---
        self._backlog: deque[PendingVerdict] = deque()
        self._connected = False
        self._daemon_alive = False
        self._daemon_ready = False
        self._daemon_counter = 0
        self._latched_faults = 0
        self._latch_seen: dict[int, float] = {}  # latched fault bit -> when its cause last occurred
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
        self._left_sessions = [deque(maxlen=LEFT_SESSIONS) for _ in range(camera_count)]
        self._replayed = 0
        self._gap_entries = 0
        self._coil_overrides = 0
        self._resets_refused = 0
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
                self._latch_locked(mm.FAULT_BACKLOG_OVERFLOW)
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
        """Count a verdict from a camera this gateway does not write (no line stop: docs/plc.md)."""
        with self._cond:
            self._unknown_camera += 1

    def stop(self) -> None:
        """Flush the backlog (for at most stop_flush_s), write the stopped state, close."""
        with self._cond:
            self._stopping = True
            self._stop_deadline = time.monotonic() + self.stop_flush_s
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(self.stop_flush_s + 4 * self._client.timeout_s + 1.0)
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
            "replayed_verdicts": self._replayed,
            "gap_entries": self._gap_entries,
            "coil_overrides": self._coil_overrides,
            "resets_refused": self._resets_refused,
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

    def _latch_locked(self, bit: int) -> None:
        """Latch fault ``bit`` (its cause occurred now); the PLC's reset clears it once quiet."""
        self._latched_faults |= bit
        self._latch_seen[bit] = time.monotonic()
        self._cond.notify()

    def _reset_latched_locked(self) -> tuple[int, int]:
        """The PLC's fault reset: clear the latched faults whose cause has been quiet for
        LATCH_QUIET_S; a cause that persists stays latched. Returns (cleared, kept)."""
        now = time.monotonic()
        kept = 0
        for bit in (mm.FAULT_BACKLOG_OVERFLOW, mm.FAULT_SEQUENCE_REPLAYED):
            if self._latched_faults & bit and now - self._latch_seen.get(bit, -math.inf) < LATCH_QUIET_S:
                kept |= bit
        cleared = self._latched_faults & ~kept
        self._latched_faults = kept
        return cleared, kept

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
                except self._io_errors as exc:
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
        except self._io_errors as exc:
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

    # ---- the device's primitives (every request of the gateway goes through these four)
    def _write_registers(self, address: int, values: list[int], what: str) -> None:
        self._client.write_registers(address, values, what)

    def _write_coils(self, address: int, values: list[bool], what: str) -> None:
        self._client.write_coils(address, values, what)

    def _read_registers(self, address: int, count: int, what: str) -> list[int]:
        return self._client.read_registers(address, count, what)

    def _read_coils(self, address: int, count: int, what: str) -> list[bool]:
        return self._client.read_coils(address, count, what)

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
        """Gateway heartbeat (+1 per period), the status coils read back (re-asserted when another
        Modbus client changed them), the fault-reset acknowledgement, the global block."""
        self._next_tick += self.heartbeat_period_s
        if self._next_tick <= now:  # fell behind (slow PLC): no catch-up burst
            self._next_tick = now + self.heartbeat_period_s
        coils = self._read_coils(mm.COIL_DAEMON_ALIVE, mm.COIL_FAULT_RESET + 1, "status coils read")
        if self._written_status is not None and tuple(coils[:mm.GATEWAY_STATUS_COILS]) != self._written_status:
            self._coil_overrides += 1
            log.warning("status coils in the PLC are %s, not the %s written: re-asserting (another Modbus client?)",
                        coils[:mm.GATEWAY_STATUS_COILS], list(self._written_status))
            self._written_status = None  # rewritten by the next step, cause first
        if coils[mm.COIL_FAULT_RESET]:
            with self._cond:
                cleared, kept = self._reset_latched_locked()
            self._write_coils(mm.COIL_FAULT_RESET, [False], "fault-reset coil clear")
            if kept:
                self._resets_refused += 1
                log.warning("PLC fault reset: 0x%x cleared, 0x%x kept (its cause persists)", cleared, kept)
            else:
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
        """The next entry ``item`` needs (gap FAULTs first, then its own; see
        :mod:`inspector.plc.sequencing`): ring entry first, then the header that commits it. An
        interrupted item is planned again from the committed header, so nothing is written twice."""
        header = self._headers[item.camera]
        planned = plan_entries(header, item, set(self._left_sessions[item.camera]))[0]
        write_count = (header.write_count + 1) % mm.WRITE_COUNT_MODULUS
        entry = replace(planned.entry, tag=write_count)
        started = time.perf_counter()
        self._write_registers(mm.entry_address(item.camera, mm.ring_slot(header.write_count)), entry.to_registers(), "ring entry")
        new_header = mm.CameraHeader(
            write_count=write_count,
            last_decision=entry.decision,
            ok_count=(header.ok_count + (entry.decision == mm.DECISION_CODES["OK"])) & mm.U32_MAX,
            reject_count=(header.reject_count + (entry.decision == mm.DECISION_CODES["REJECT"])) & mm.U32_MAX,
            fault_count=(header.fault_count + (entry.decision == mm.DECISION_CODES["FAULT"])) & mm.U32_MAX,
            lost_count=(header.lost_count + planned.lost) & mm.U32_MAX,
            last_seq=header.last_seq if planned.replayed else entry.seq,          # a replay does not move
            last_session=header.last_session if planned.replayed else item.session,  # the session forward
        )
        self._write_registers(mm.camera_base(item.camera), new_header.to_registers(), "camera header")
        done_ns = time.time_ns()
        write_s = time.perf_counter() - started
        self._commit(item, planned, new_header, entry, write_s, done_ns)

    def _commit(self, item: PendingVerdict, planned: Planned, header: mm.CameraHeader, entry: mm.RingEntry,
                write_s: float, done_ns: int) -> None:
        previous = self._headers[item.camera]
        if has_history(previous) and previous.last_session != header.last_session:
            self._left_sessions[item.camera].append(previous.last_session)  # a grabber restart
        self._headers[item.camera] = header
        if planned.own:
            self._in_flight = None
        self._verdicts_written += 1
        self._lost_total += planned.lost
        self._gap_entries += not planned.own
        if planned.replayed or entry.reason == mm.reason_code(REPLAYED)[0]:
            self._replayed += 1
            with self._cond:
                self._latch_locked(mm.FAULT_SEQUENCE_REPLAYED)
            log.error("camera %d seq %d did not advance its grabber session: written as FAULT, line stop latched",
                      item.camera, entry.seq)
        decision = {code: name for name, code in mm.DECISION_CODES.items()}[entry.decision]
        self._by_decision[decision] += 1
        latency_ms = (done_ns - item.capture_ns) / 1e6
        if planned.own and len(self._latencies_ms) < MAX_LATENCY_SAMPLES:
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
            if planned.own:
                self.metrics.capture_to_plc.observe(max(0.0, latency_ms / 1e3))
            if planned.lost:
                self.metrics.lost.inc(planned.lost)

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
            except self._io_errors as exc:
                log.warning("could not write the stopped state to the PLC: %s", exc)
        self._client.close()
        with self._cond:
            self._connected = False
            if self._backlog or self._in_flight:
                log.error("stopping with %d verdicts not written to the PLC",
                          len(self._backlog) + (1 if self._in_flight else 0))
