"""The reference PLC routine of docs/plc.md as pure logic: what a PLC program must do with the
gateway's registers to fail closed. The simulated PLC runs it every scan (:mod:`inspector.plc.plc_sim`),
so the demo and the tests check the whole loop, PLC included.

One :meth:`PlcProgram.scan` per PLC scan, fed what the PLC reads from its own memory:

1. **Gateway watch**: ``gateway_heartbeat`` (register 6) must change at least every
   ``watch_s`` (default 2 s, four gateway periods); otherwise the gateway is dead or cut off
   and the PLC stops the line itself (a dead gateway cannot set the line-stop coil).
2. **Line stop**: while the ``line_stop`` coil is 1 or the gateway is lost, every part is
   rejected.
3. **Ring**: per camera, entries are read from the PLC's own read index ``R`` up to
   ``write_count`` (tag checked: an overwritten entry is an overrun); ``R`` starts at
   ``write_count`` (history is skipped). An entry whose decision is not OK rejects its part.
4. **No verdict, no pass**: seqs skipped between two entries of a camera are parts without a
   verdict: rejected. A ``sequence_gap`` FAULT entry stands for every seq after the previous
   entry up to its own. A ``sequence_replayed`` FAULT entry rejects its part and leaves the
   camera's position where it was. Overwritten entries (overrun) reject the parts they held.

A real PLC knows its parts from a sensor and also rejects a part whose entry is not in the ring
when it reaches the reject station; the simulation knows parts only by their seq, so rule 4 is
how it sees them. :meth:`scan` returns records for the simulator's log:
``{"kind": "plc", "event": ...}`` (``gateway_lost``, ``gateway_back``, ``line_stop``,
``line_run``, ``overrun``) and ``{"kind": "parts", "camera", "first", "last", "fate": "pass" |
"reject", "why"}`` (``why``: ``ok``, ``reject``, ``fault``, ``line_stop``, ``no_verdict``,
``overrun``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from inspector.plc import modbus_map as mm

GATEWAY_WATCH_S = 2.0
HALF_RANGE = 1 << 31
_GAP_REASON = mm.REASON_CODES["sequence_gap"]
_REPLAYED_REASON = mm.REASON_CODES["sequence_replayed"]
_OK = mm.DECISION_CODES["OK"]

EntryReader = Callable[[int, int], mm.RingEntry]   # (camera, slot) -> entry
HeaderReader = Callable[[int], mm.CameraHeader]    # camera -> header


@dataclass
class _Camera:
    read_index: int
    last_seq: int | None


@dataclass
class PlcProgram:
    """The routine's state between scans (see the module doc)."""

    watch_s: float = GATEWAY_WATCH_S
    heartbeat: int | None = None
    heartbeat_changed_at: float = -math.inf
    gateway_lost: bool = True        # nothing seen yet counts as lost
    stopped: bool = True
    cameras: dict[int, _Camera] = field(default_factory=dict)
    passed: int = 0
    rejected: int = 0

    def scan(self, now_s: float, block: mm.GlobalBlock, line_stop_coil: bool, header: HeaderReader,
             entry: EntryReader) -> list[dict]:
        """One scan at ``now_s`` (monotonic s); returns the log records of what it decided."""
        records = self._watch_gateway(now_s, block)
        stopped = line_stop_coil or self.gateway_lost or block.map_version != mm.MAP_VERSION
        if stopped != self.stopped:
            self.stopped = stopped
            records.append({"kind": "plc", "event": "line_stop" if stopped else "line_run"})
        for camera in range(min(block.camera_count, mm.MAX_CAMERAS)):
            records.extend(self._read_ring(camera, header(camera), entry))
        return records

    def _watch_gateway(self, now_s: float, block: mm.GlobalBlock) -> list[dict]:
        if self.heartbeat is None:  # the first value read is no sign of life; its first change is
            self.heartbeat = block.gateway_heartbeat
        elif block.gateway_heartbeat != self.heartbeat:
            self.heartbeat, self.heartbeat_changed_at = block.gateway_heartbeat, now_s
        lost = now_s - self.heartbeat_changed_at > self.watch_s
        if lost == self.gateway_lost:
            return []
        self.gateway_lost = lost
        return [{"kind": "plc", "event": "gateway_lost" if lost else "gateway_back"}]

    def _read_ring(self, camera: int, head: mm.CameraHeader, entry: EntryReader) -> list[dict]:
        state = self.cameras.get(camera)
        if state is None:  # PLC start: skip history
            self.cameras[camera] = _Camera(head.write_count, head.last_seq if head.write_count else None)
            return []
        records: list[dict] = []
        while state.read_index != head.write_count:
            pending = (head.write_count - state.read_index) % mm.WRITE_COUNT_MODULUS
            e = entry(camera, mm.ring_slot(state.read_index)) if pending <= mm.RING_SIZE else None
            if e is None or e.tag != (state.read_index + 1) % mm.WRITE_COUNT_MODULUS:
                records.append({"kind": "plc", "event": "overrun", "camera": camera})
                records.extend(self._skipped(camera, state, head.last_seq, "overrun", inclusive=True))
                state.read_index, state.last_seq = head.write_count, head.last_seq
                break
            records.extend(self._on_entry(camera, state, e))
            state.read_index = (state.read_index + 1) % mm.WRITE_COUNT_MODULUS
        return records

    def _on_entry(self, camera: int, state: _Camera, e: mm.RingEntry) -> list[dict]:
        if e.decision != _OK and e.reason == _GAP_REASON:   # stands for every seq since the previous entry
            records = self._skipped(camera, state, e.seq, "fault", inclusive=True)
            if records:
                state.last_seq = e.seq
                return records
        replayed = e.reason == _REPLAYED_REASON
        records = [] if replayed else self._skipped(camera, state, e.seq, "no_verdict", inclusive=False)
        fate_ok = e.decision == _OK and not self.stopped
        why = "line_stop" if e.decision == _OK and self.stopped else (
            "ok" if e.decision == _OK else "fault" if e.decision == mm.DECISION_CODES["FAULT"] else "reject")
        records.append(self._parts(camera, e.seq, e.seq, fate_ok, why))
        if not replayed:  # a replayed seq is rejected and does not move the camera's position
            state.last_seq = e.seq
        return records

    def _skipped(self, camera: int, state: _Camera, seq: int, why: str, *, inclusive: bool) -> list[dict]:
        """Parts between the previous entry and ``seq`` (and ``seq`` itself when ``inclusive``)."""
        if state.last_seq is None:
            return [self._parts(camera, seq, seq, False, why)] if inclusive else []
        step = (seq - state.last_seq) & mm.U32_MAX
        if step == 0 or step >= HALF_RANGE or (step == 1 and not inclusive):
            return []  # nothing skipped (a restart or a repeat is judged by its own entry)
        last = seq if inclusive else (seq - 1) & mm.U32_MAX
        return [self._parts(camera, (state.last_seq + 1) & mm.U32_MAX, last, False, why)]

    def _parts(self, camera: int, first: int, last: int, passed: bool, why: str) -> dict:
        count = ((last - first) & mm.U32_MAX) + 1
        if passed:
            self.passed += count
        else:
            self.rejected += count
        return {"kind": "parts", "camera": camera, "first": first, "last": last,
                "fate": "pass" if passed else "reject", "why": why}
