"""The gateway on a Siemens S7 PLC: snap7's own server (pure Python, in this process) is the PLC,
``inspector gateway --plc s7://...`` runs as a subprocess, the test plays the daemon (ZeroMQ PUB).

Everything is checked from the data block's bytes, decoded with the layout documented in
docs/plc.md ("Siemens S7": coil c = byte c, register N = big-endian word at byte 32 + 2N), and
the ring entries are compared with the documented encoding (``expected_entry``), not with the
gateway's own helpers.
"""

from __future__ import annotations

import json
import struct
import time

import pytest

from inspector.plc import modbus_map as mm
from inspector.plc import s7_map
from inspector.plc.s7_device import S7Sim, parse_s7_target
from conftest import free_port, wait_until
from test_gateway import Daemon, expected_entry, start_gateway, stop_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


class DataBlock:
    """The PLC programmer's view of the DB: words and bytes at documented offsets."""

    def __init__(self, data: bytearray) -> None:
        self.data = data

    def word(self, register: int) -> int:
        return struct.unpack_from(">H", self.data, 32 + 2 * register)[0]

    def registers(self, register: int, count: int) -> list[int]:
        return list(struct.unpack_from(f">{count}H", self.data, 32 + 2 * register))

    def coil(self, coil: int) -> int:
        return self.data[coil]

    def header(self, camera: int) -> mm.CameraHeader:
        return mm.CameraHeader.from_registers(self.registers(100 + 400 * camera, 14))

    def entry(self, camera: int, slot: int) -> mm.RingEntry:
        return mm.RingEntry.from_registers(self.registers(100 + 400 * camera + 16 + 12 * slot, 12))

    def globals(self) -> mm.GlobalBlock:
        return mm.GlobalBlock.from_registers(self.registers(0, 22))

    def status(self) -> tuple[int, int, int]:
        return self.coil(0), self.coil(1), self.coil(2)


def pulses_quiet(db: DataBlock, seconds: float) -> bool:
    """True when both reject-pulse coils stay off for ``seconds`` (sampled every 5 ms): the pulse
    queue is empty (a pulse train has gaps of --pulse-ms only)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if db.coil(16) or db.coil(17):
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def daemon():
    d = Daemon()
    yield d
    d.close()


def test_the_s7_layout_is_the_modbus_map_in_one_data_block():
    assert s7_map.register_offset(0) == 32 and s7_map.register_offset(mm.camera_base(1)) == 32 + 2 * 500
    assert s7_map.coil_offset(mm.COIL_LINE_STOP) == 1 and s7_map.coil_offset(mm.reject_coil(15)) == 31
    assert s7_map.db_size(1) == 1032 and s7_map.db_size(16) == s7_map.DB_SIZE == 13032
    registers = [0, 1, 0x1234, 0xFFFF]
    assert s7_map.registers_to_bytes(registers) == b"\x00\x00\x00\x01\x12\x34\xff\xff"
    assert s7_map.bytes_to_registers(s7_map.registers_to_bytes(registers)) == registers
    # a 32-bit counter (two registers, high word first) is a big-endian UDINT in the DB
    assert struct.unpack(">I", s7_map.registers_to_bytes(mm.u32_words(70000)))[0] == 70000
    assert s7_map.coils_to_bytes([True, False]) == b"\x01\x00"
    target = parse_s7_target("s7://10.1.2.3?db=7&rack=0&slot=2")
    assert (target.kind, target.port, target.db, target.slot) == ("s7", 102, 7, 2)
    assert parse_s7_target("s7sim").kind == "s7sim"
    for bad in ("s7://", "s7://h?db=0", "s7://h?rack=9", "s7://h?dbx=1", "s7://h/x"):
        with pytest.raises(ValueError):
            parse_s7_target(bad)
    with pytest.raises(ValueError):
        s7_map.register_offset(mm.HOLDING_REGISTER_COUNT)


def test_s7_ring_round_trip_pulses_line_stop_and_clean_stop_from_the_db_bytes(tmp_path, daemon):
    plc = S7Sim(db=42)
    db = DataBlock(plc.data)
    stats = tmp_path / "stats.json"
    gateway = start_gateway(tmp_path, daemon.endpoint, f"s7://127.0.0.1:{plc.port}?db=42", "--cameras", "cam0,cam1",
                            "--pulse-ms", "2", "--heartbeat-timeout", "0.5", "--stats", str(stats))
    try:
        daemon.heartbeats.set()
        wait_until(lambda: db.status() == (1, 0, 1), 60, "daemon alive, no line stop, in the DB")
        assert db.registers(0, 6) == [mm.MAP_VERSION, 2, 32, 12, 100, 400]
        decisions = ["OK", "REJECT", "FAULT", "OK"]
        reasons = {"OK": "", "REJECT": "score_above_threshold", "FAULT": "engine_error"}
        sent0 = [daemon.verdict("cam0", seq, decisions[seq % 4], reasons[decisions[seq % 4]],
                                part_id="SN-%d" % seq if seq % 5 == 0 else None) for seq in range(40)]
        sent1 = [daemon.verdict("cam1", seq, "REJECT", "defect_area") for seq in (0, 1, 4)]   # 2, 3 lost
        wait_until(lambda: db.globals().verdicts_written == 45, 10, "43 verdicts + 2 gap FAULTs in the DB")

        head0, head1 = db.header(0), db.header(1)
        assert head0 == mm.CameraHeader(write_count=40, last_decision=1, ok_count=20, reject_count=10,
                                        fault_count=10, lost_count=0, last_seq=39)
        # the seqs that never arrived (2, 3) are FAULT sequence_gap entries in their place, counted as lost
        assert head1 == mm.CameraHeader(write_count=5, last_decision=2, reject_count=3, fault_count=2, lost_count=2,
                                        last_seq=4)
        for n in range(40 - mm.RING_SIZE, 40):   # the ring holds the newest 32, each tagged with its write count
            assert db.entry(0, n % mm.RING_SIZE) == expected_entry(sent0[n], tag=n + 1), n
        ring1 = [db.entry(1, n) for n in range(5)]
        assert [(e.seq, e.decision, e.reason) for e in ring1[2:4]] == [
            (2, mm.DECISION_CODES["FAULT"], mm.REASON_CODES["sequence_gap"]),
            (3, mm.DECISION_CODES["FAULT"], mm.REASON_CODES["sequence_gap"])]
        for n, v in zip((0, 1, 4), sent1):
            assert ring1[n] == expected_entry(v, tag=n + 1)
        assert db.globals().lost_verdicts == 2 and db.globals().fault_causes == 0

        daemon.heartbeats.clear()   # heartbeat lost: line stop, cause bit 0, in the DB
        wait_until(lambda: db.status() == (0, 1, 0), 5, "line stop after heartbeat loss")
        assert db.globals().fault_causes == mm.FAULT_HEARTBEAT_LOST
        daemon.heartbeats.set()
        wait_until(lambda: db.status() == (1, 0, 1), 5, "line stop cleared")
        wait_until(lambda: pulses_quiet(db, 1.0), 60, "every reject pulse sent (both pulse coils off for 1 s)")
    finally:
        code = stop_process(gateway)
        plc.stop()
    assert code == 0
    assert db.status() == (0, 1, 0) and db.globals().fault_causes & mm.FAULT_GATEWAY_STOPPED   # fails closed
    result = json.loads(stats.read_text())
    assert result["verdicts_written"] == 45 and result["gap_entries"] == 2 and result["plc"] == f"127.0.0.1:{plc.port}"
    assert result["reject_pulses"] == 20 + 3 + 2 and result["reject_pulses_dropped"] == 0   # a lost part is rejected too


def test_s7_plc_outage_backlog_is_written_in_order_after_the_plc_returns(tmp_path, daemon):
    port = free_port()
    plc = S7Sim(port=port)
    gateway = start_gateway(tmp_path, daemon.endpoint, f"s7://127.0.0.1:{port}", "--reconnect-max", "0.2",
                            "--timeout", "0.5")
    try:
        daemon.heartbeats.set()
        wait_until(lambda: DataBlock(plc.data).status() == (1, 0, 1), 60, "daemon alive in the DB")
        for seq in range(3):
            daemon.verdict("cam0", seq, "OK")
        wait_until(lambda: DataBlock(plc.data).header(0).write_count == 3, 5, "first three verdicts")
        plc.stop()                               # the PLC goes away (and comes back with its memory cleared)
        sent = [daemon.verdict("cam0", seq, "REJECT", "defect_area") for seq in range(3, 9)]
        time.sleep(0.5)
        plc = S7Sim(port=port)
        db = DataBlock(plc.data)
        wait_until(lambda: db.header(0).write_count == 9, 10, "the backlog written after the PLC returned")
        header = db.header(0)
        assert (header.ok_count, header.reject_count, header.last_seq) == (3, 6, 8)   # the gateway's counts, rewritten
        for n, v in enumerate(sent, start=3):
            assert db.entry(0, n) == expected_entry(v, tag=n + 1)
        assert db.globals().plc_reconnects >= 1
    finally:
        assert stop_process(gateway) == 0
        plc.stop()
