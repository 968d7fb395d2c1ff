"""The reference PLC routine (inspector.plc.plc_program, run by the simulated PLC) and the soak's
outcome check built on the same rules (tools/soak_check.py), on register states written here."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO
from inspector.plc import modbus_map as mm
from inspector.plc.plc_program import PlcProgram

sys.path.insert(0, str(REPO / "tools"))
from soak_check import Captured, check  # noqa: E402

pytestmark = pytest.mark.unit

OK, REJECT, FAULT = (mm.DECISION_CODES[d] for d in ("OK", "REJECT", "FAULT"))
GAP, REPLAYED = mm.REASON_CODES["sequence_gap"], mm.REASON_CODES["sequence_replayed"]


class Memory:
    """One camera's header and ring as the PLC holds them; ``write`` commits like the gateway."""

    def __init__(self) -> None:
        self.head = mm.CameraHeader()
        self.ring = [mm.RingEntry(0, 0, 0, 0, 0, 0, 0, 0, 0)] * mm.RING_SIZE
        self.block = mm.GlobalBlock(camera_count=1)

    def write(self, seq: int, decision: int = OK, reason: int = 0) -> None:
        n = self.head.write_count
        self.ring[n % mm.RING_SIZE] = mm.RingEntry(seq, seq, decision, reason, 0, 0, 0, 0, (n + 1) % 65536)
        self.head = mm.CameraHeader(write_count=(n + 1) % 65536, ok_count=self.head.ok_count + 1, last_seq=seq)

    def beat(self) -> None:
        self.block = mm.GlobalBlock(camera_count=1, gateway_heartbeat=self.block.gateway_heartbeat + 1)


def scan(program: PlcProgram, memory: Memory, now: float, line_stop: bool = False) -> list[dict]:
    return program.scan(now, memory.block, line_stop, lambda camera: memory.head, lambda camera, slot: memory.ring[slot])


def fates(records: list[dict]) -> list[tuple]:
    return [(r["first"], r["last"], r["fate"], r["why"]) for r in records if r["kind"] == "parts"]


def test_the_routine_rejects_parts_without_a_verdict_and_while_the_gateway_is_silent():
    program, memory = PlcProgram(watch_s=2.0), Memory()
    memory.write(0)
    assert scan(program, memory, 0.0) == []                              # start: history skipped, gateway unseen
    memory.beat()
    assert [r["event"] for r in scan(program, memory, 0.1)] == ["gateway_back", "line_run"]
    for seq, decision, reason in ((1, OK, 0), (4, OK, 0), (5, REJECT, 1), (8, FAULT, GAP), (7, FAULT, REPLAYED), (9, OK, 0)):
        memory.write(seq, decision, reason)
    assert fates(scan(program, memory, 0.2)) == [
        (1, 1, "pass", "ok"), (2, 3, "reject", "no_verdict"), (4, 4, "pass", "ok"), (5, 5, "reject", "reject"),
        (6, 8, "reject", "fault"),                                           # a gap FAULT stands for 6..8
        (7, 7, "reject", "fault"),                                           # a replay: rejected, position kept
        (9, 9, "pass", "ok")]
    memory.write(10)
    records = scan(program, memory, 2.5)                                 # no heartbeat change for 2.4 s
    assert [r.get("event") for r in records[:2]] == ["gateway_lost", "line_stop"]
    assert fates(records) == [(10, 10, "reject", "line_stop")]
    for seq in range(11, 11 + mm.RING_SIZE + 1):                         # more than the ring between two scans
        memory.write(seq)
    memory.beat()
    records = scan(program, memory, 2.6, line_stop=True)
    assert {"event": "overrun", "kind": "plc", "camera": 0} in records
    assert fates(records) == [(11, 11 + mm.RING_SIZE, "reject", "overrun")]
    assert program.passed == 3 and program.rejected == 2 + 1 + 3 + 1 + 1 + mm.RING_SIZE + 1


def test_the_soak_check_tells_verdicts_gap_faults_line_stops_and_silent_passes_apart():
    s = 1_000_000_000
    frames = [Captured(0, 7, seq, 100 + seq, seq * s) for seq in range(8)]
    entry = {"kind": "entry", "camera": 0, "flags": 0, "decision": OK, "reason": 0}
    records = [
        {**entry, "seq": 0, "part_code": 100, "t_ns": 0},
        {**entry, "seq": 3, "part_code": 0, "flags": mm.FLAG_PART_ID_CRC32, "decision": FAULT, "reason": GAP, "t_ns": 4 * s},
        {**entry, "seq": 4, "part_code": 104, "t_ns": 4 * s},
        {**entry, "seq": 4, "part_code": 104, "decision": FAULT, "reason": REPLAYED, "t_ns": 4 * s},
        {**entry, "seq": 9, "part_code": 555, "t_ns": 9 * s},                         # an OK nobody captured
        {"kind": "plc", "event": "line_run", "t_ns": 0}, {"kind": "plc", "event": "line_stop", "t_ns": 5 * s + 1},
        {"kind": "plc", "event": "line_run", "t_ns": 5 * s + 2}]
    result = check(frames, records, window_s=0.5, outages=[], start_ns=0, end_ns=20 * s)
    # 0, 4: own entries (4 twice); 1-3: the gap FAULT; 5: the line stop; 6, 7: nothing, and nothing after them
    assert (result["frames_captured"], result["verdicts_at_plc"], result["covered_by_gap_fault"]) == (8, 2, 3)
    assert (result["covered_by_line_stop"], result["uncovered"], result["duplicate_outcomes"]) == (1, 2, 1)
    assert result["silent_passes"] == 2 + 1 and result["unmatched_ok_entries"] == 1
