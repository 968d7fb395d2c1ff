"""Gateway + simulated PLC, end to end: real ZeroMQ sockets, real processes, a real Modbus server.

The test plays the daemon (a PUB socket sending wire-encoded verdicts/heartbeats) and the PLC
programmer (a pymodbus client reading registers/coils); `inspector gateway` runs as a subprocess.
Expected register values are computed here from the documented encodings (docs/plc.md), not with
the gateway's own helpers.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import pytest
import zmq

from inspector.plc import modbus_map as mm
from inspector.plc.gateway import parse_cameras, parse_plc_target
from inspector.plc.plc_sim import start_sim_in_thread
from inspector.line.wire import Heartbeat, Verdict, encode_heartbeat, encode_verdict
from conftest import free_port, wait_until
from conftest import PlcClient as Plc

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

DECISION = {"OK": 1, "REJECT": 2, "FAULT": 3}
REASON = {"": 0, "score_above_threshold": 1, "defect_area": 2, "deadline_missed": 3, "decode_error": 4,
          "engine_error": 5, "sequence_gap": 6, "no_calibration": 7, "overload_dropped": 8, "shutdown": 9,
          "sequence_replayed": 10, "unknown_camera": 11}
ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ helpers
class Daemon:
    """The daemon's PUB socket, with a background heartbeat (every 50 ms while enabled)."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.port = self.pub.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.heartbeats = threading.Event()
        self.ready = True
        self.counter = 0
        self.last_beat_at = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        while not self.done.wait(0.05):
            if self.heartbeats.is_set():
                self.send(encode_heartbeat(Heartbeat("test-daemon", self.counter, time.time_ns(), self.ready)))
                self.last_beat_at = time.monotonic()
                self.counter += 1

    def send(self, parts: list[bytes]) -> None:
        with self.lock:
            self.pub.send_multipart(parts)

    def verdict(self, camera: str, seq: int, decision: str = "OK", reason: str = "", part_id: str | None = None,
                score: float | None = 0.25, threshold: float | None = 0.5, capture_ns: int | None = None) -> Verdict:
        now = time.time_ns()
        v = Verdict(camera_id=camera, seq=seq, part_id=str(1000 + seq) if part_id is None else part_id,
                    capture_ns=now - 2_000_000 if capture_ns is None else capture_ns, decision=decision,
                    reason=reason, score=score, threshold=threshold, decided_ns=now)
        self.send(encode_verdict(v))
        return v

    def close(self) -> None:
        self.done.set()
        self.thread.join(1)
        self.pub.close(0)
        self.context.term()


def expected_entry(v: Verdict, tag: int) -> mm.RingEntry:
    """The documented encoding, written out independently of inspector.plc.gateway."""
    numeric = v.part_id.isascii() and v.part_id.isdigit() and 0 < len(v.part_id) <= 10 and int(v.part_id) < 2**32
    part = int(v.part_id) if numeric else zlib.crc32(v.part_id.encode())
    flags = 0 if numeric else 1

    def milli(x, flag):
        nonlocal flags
        if x is None:
            return 65535
        if x * 1000 > 65534:
            flags |= flag
            return 65534
        return round(x * 1000)

    score, threshold = milli(v.score, 2), milli(v.threshold, 4)
    return mm.RingEntry(seq=v.seq, part_code=part, decision=DECISION[v.decision], reason=REASON[v.reason],
                        score_milli=score, threshold_milli=threshold, capture_ms=(v.capture_ns // 10**6) % 2**32,
                        flags=flags, tag=tag)


def start_gateway(tmp_path: Path, endpoint: str, plc: str, *extra: str, name: str = "gateway") -> subprocess.Popen:
    command = [sys.executable, "-m", "inspector.cli", "gateway", "--connect", endpoint, "--plc", plc, *extra]
    with open(tmp_path / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def stop_process(process: subprocess.Popen, timeout: float = 10) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        raise


def wait_alive(daemon: Daemon, plc: Plc, timeout: float = 15) -> None:
    """Heartbeats on until the gateway is subscribed and says so in the PLC (slow-joiner safe)."""
    daemon.heartbeats.set()
    wait_until(lambda: plc.status() == {"alive": True, "stop": False, "ready": True}, timeout, "daemon-alive coil")


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{")]
    return sum(values)


@pytest.fixture
def daemon():
    d = Daemon()
    yield d
    d.close()


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def sim(tmp_path):
    handle = start_sim_in_thread("127.0.0.1", 0, tmp_path / "plc.jsonl")
    plc = Plc(handle.port)
    yield handle, plc
    plc.close()
    handle.stop()


# ------------------------------------------------------------------------------------ unit checks
def test_map_encodings_and_argument_parsing():
    assert mm.u32_words(0x12345678) == [0x1234, 0x5678] and mm.words_u32(0x1234, 0x5678) == 0x12345678
    assert mm.part_code("4294967295") == (2**32 - 1, False)
    assert mm.part_code("4294967296") == (zlib.crc32(b"4294967296"), True)
    assert mm.part_code("A-17") == (zlib.crc32(b"A-17"), True)
    assert mm.milli_u16(None) == (65535, False) and mm.milli_u16(-0.5) == (0, True) and mm.milli_u16(70.0) == (65534, True)
    entry = mm.RingEntry(70000, 5, 2, 1, 500, 400, 2**32 - 1, 1, 9)
    registers = entry.to_registers()
    assert len(registers) == mm.ENTRY_SIZE and registers[:2] == [1, 70000 - 65536]
    assert mm.RingEntry.from_registers(registers) == entry
    assert mm.locate_registers(mm.entry_address(3, 31), mm.ENTRY_SIZE) == ("entry", 3, 31)
    assert mm.locate_registers(mm.camera_base(2), mm.CAMERA_HEADER_SIZE) == ("header", 2, -1)
    assert mm.entry_address(15, 31) + mm.ENTRY_SIZE == mm.HOLDING_REGISTER_COUNT
    assert parse_plc_target("modbus://10.0.0.5:1502").port == 1502 and parse_plc_target("modbus://plc").port == 502
    assert parse_plc_target("sim").kind == "sim"
    for bad in ("tcp://x:1", "modbus://", "modbus://h:99999", "plc"):
        with pytest.raises(ValueError):
            parse_plc_target(bad)
    assert parse_cameras("cam0, cam1") == ("cam0", "cam1")
    for bad in ("", "a,,b", "a,a", ",".join(f"c{i}" for i in range(17))):
        with pytest.raises(ValueError):
            parse_cameras(bad)


def test_sim_rejects_addresses_outside_the_map(sim):
    _, plc = sim
    assert plc.client.read_holding_registers(mm.HOLDING_REGISTER_COUNT - 1, count=1, device_id=1).registers == [0]
    assert plc.client.read_holding_registers(mm.HOLDING_REGISTER_COUNT, count=1, device_id=1).isError()
    assert plc.client.write_coil(mm.COIL_COUNT, True, device_id=1).isError()


# ---------------------------------------------------------------------------------- end to end
def test_burst_larger_than_ring_lands_in_entries_counters_coils_and_log(tmp_path, daemon, sim, processes):
    handle, plc = sim
    gateway = start_gateway(tmp_path, daemon.endpoint, f"modbus://127.0.0.1:{handle.port}", "--cameras", "cam0,cam1", "--pulse-ms", "2")
    processes.append(gateway)
    wait_alive(daemon, plc)
    decisions = ["OK", "REJECT", "OK", "FAULT", "OK"]
    reasons = {"OK": "", "REJECT": "score_above_threshold", "FAULT": "deadline_missed"}
    sent0 = []
    for seq in range(75):  # more than twice the ring
        decision = decisions[seq % len(decisions)]
        part = "SN-%d" % seq if seq % 7 == 0 else None
        score = None if seq % 11 == 0 else (99.0 if seq % 13 == 0 else seq / 40)
        sent0.append(daemon.verdict("cam0", seq, decision, reasons[decision], part_id=part, score=score))
    sent1 = [daemon.verdict("cam1", seq, "REJECT", "defect_area") for seq in (0, 1, 2, 5, 6)]  # 3, 4 lost

    wait_until(lambda: plc.globals().verdicts_written == 82, 10, "80 verdicts + 2 gap FAULTs written")
    wanted_pulses = sum(v.decision != "OK" for v in sent0)
    wait_until(lambda: sum(r["kind"] == "coil" and r["name"] == "reject:0" and r["value"] for r in read_log(tmp_path / "plc.jsonl")) == wanted_pulses,
               10, "reject pulses")
    time.sleep(0.05)

    head0, head1 = plc.header(0), plc.header(1)
    assert head0 == mm.CameraHeader(write_count=75, last_decision=DECISION[sent0[-1].decision],
                                    ok_count=sum(v.decision == "OK" for v in sent0),
                                    reject_count=sum(v.decision == "REJECT" for v in sent0),
                                    fault_count=sum(v.decision == "FAULT" for v in sent0), lost_count=0, last_seq=74)
    # the seqs that never arrived (3, 4) are FAULT sequence_gap entries in their place, counted as lost
    assert head1 == mm.CameraHeader(write_count=7, last_decision=2, ok_count=0, reject_count=5, fault_count=2, lost_count=2, last_seq=6)
    g = plc.globals()
    assert (g.camera_count, g.verdicts_written, g.lost_verdicts, g.fault_causes, g.malformed_messages) == (2, 82, 2, 0, 0)
    for n in range(75 - mm.RING_SIZE, 75):  # the ring holds the newest 32
        assert plc.entry(0, n % mm.RING_SIZE) == expected_entry(sent0[n], tag=n + 1), n
    ring1 = [plc.entry(1, n) for n in range(7)]
    assert [(e.seq, e.decision, e.reason, e.tag) for e in ring1] == [
        (0, 2, 2, 1), (1, 2, 2, 2), (2, 2, 2, 3), (3, 3, 6, 4), (4, 3, 6, 5), (5, 2, 2, 6), (6, 2, 2, 7)]
    for n, v in zip((0, 1, 2, 5, 6), sent1):
        assert ring1[n] == expected_entry(v, tag=n + 1)
    assert plc.coils(mm.reject_coil(0), 2) == [False, False]  # every pulse ended

    records = read_log(tmp_path / "plc.jsonl")
    entries0 = [r for r in records if r["kind"] == "entry" and r["camera"] == 0]
    assert [r["seq"] for r in entries0] == list(range(75))  # exactly one write per verdict, in order
    assert [r["tag"] for r in entries0] == list(range(1, 76))
    assert [r["slot"] for r in entries0] == [n % mm.RING_SIZE for n in range(75)]
    # handshake: each entry is in the PLC before the header that counts it
    position = {id(r): i for i, r in enumerate(records)}
    for r in entries0:
        header_at = next(i for i, h in enumerate(records) if h["kind"] == "header" and h["camera"] == 0 and h["write_count"] == r["tag"])
        assert header_at > position[id(r)]
    rejects1 = [r["value"] for r in records if r["kind"] == "coil" and r["name"] == "reject:1"]
    assert rejects1[rejects1.index(True):] == [True, False] * 7  # after the reset-at-connect: 5 REJECT + 2 FAULT pulses

    assert stop_process(gateway) == 0
    assert plc.status() == {"alive": False, "stop": True, "ready": False}  # a stopped gateway fails closed
    assert plc.globals().fault_causes & mm.FAULT_GATEWAY_STOPPED

    # a restarted gateway continues the write counts it finds in the PLC
    again = start_gateway(tmp_path, daemon.endpoint, f"modbus://127.0.0.1:{handle.port}", "--cameras", "cam0,cam1", name="again")
    processes.append(again)
    wait_alive(daemon, plc)
    daemon.verdict("cam0", 75, "OK")
    wait_until(lambda: plc.header(0).write_count == 76, 5, "write count 76")
    assert plc.entry(0, 75 % mm.RING_SIZE).tag == 76 and plc.header(0).ok_count == head0.ok_count + 1
    assert stop_process(again) == 0


def test_heartbeat_loss_sets_line_stop_and_return_clears_it(tmp_path, daemon, sim, processes):
    handle, plc = sim
    processes.append(start_gateway(tmp_path, daemon.endpoint, f"modbus://127.0.0.1:{handle.port}", "--heartbeat-timeout", "0.4"))
    wait_alive(daemon, plc)
    beat_before = plc.globals().gateway_heartbeat
    daemon.heartbeats.clear()
    time.sleep(0.15)
    assert plc.status()["stop"] is False  # not before the timeout
    wait_until(lambda: plc.status() == {"alive": False, "stop": True, "ready": False}, 5, "line stop after heartbeat loss")
    assert time.monotonic() - daemon.last_beat_at > 0.4
    assert plc.globals().fault_causes == mm.FAULT_HEARTBEAT_LOST
    wait_until(lambda: plc.globals().gateway_heartbeat != beat_before, 2, "gateway heartbeat (gateway itself alive)")

    daemon.heartbeats.set()
    wait_until(lambda: plc.status() == {"alive": True, "stop": False, "ready": True}, 5, "line stop cleared")
    assert plc.globals().fault_causes == 0

    daemon.ready = False  # alive but not ready: still fail closed
    wait_until(lambda: plc.status() == {"alive": True, "stop": True, "ready": False}, 5, "not-ready line stop")
    assert plc.globals().fault_causes == mm.FAULT_DAEMON_NOT_READY


def test_malformed_messages_are_counted_and_gateway_keeps_working(tmp_path, daemon, sim, processes):
    handle, plc = sim
    metrics_port = free_port()
    gateway = start_gateway(tmp_path, daemon.endpoint, f"modbus://127.0.0.1:{handle.port}", "--metrics-port", str(metrics_port))
    processes.append(gateway)
    wait_alive(daemon, plc)
    good = encode_verdict(Verdict("cam0", 1, "1", 1, "OK", "", 0.1, 0.5, 2))
    bad = [
        [b"verdict", b"\xc1not msgpack"],
        [b"verdict"],
        [b"verdict", good[1], b"extra part"],
        [b"heartbeat", good[1]],  # a verdict body under the heartbeat topic
        [b"verdict", encode_heartbeat(Heartbeat("d", 1, 1, True))[1]],
    ]
    for parts in bad:
        daemon.send(parts)
    daemon.verdict("cam0", 7, "REJECT", "defect_area")
    wait_until(lambda: plc.header(0).write_count == 1, 5, "the good verdict")
    wait_until(lambda: plc.globals().malformed_messages == len(bad), 5, "malformed counter in the PLC")
    assert plc.entry(0, 0).seq == 7 and gateway.poll() is None
    assert metric(metrics_port, "inspector_gateway_malformed_messages_total") == len(bad)
    assert metric(metrics_port, "inspector_gateway_verdicts_written_total") == 1


def test_unknown_camera_is_counted_without_a_line_stop_and_a_cleared_line_stop_is_reasserted(tmp_path, daemon, sim, processes):
    handle, plc = sim
    processes.append(start_gateway(tmp_path, daemon.endpoint, f"modbus://127.0.0.1:{handle.port}", "--cameras", "cam0",
                                   "--heartbeat-timeout", "0.4"))
    wait_alive(daemon, plc)
    daemon.verdict("cam9", 0, "OK")                         # a camera this gateway does not write
    daemon.verdict("cam0", 0, "OK")
    wait_until(lambda: plc.header(0).write_count == 1 and plc.globals().unknown_camera_verdicts == 1, 5, "counted")
    time.sleep(0.6)
    assert plc.status() == {"alive": True, "stop": False, "ready": True} and plc.globals().fault_causes == 0
    daemon.heartbeats.clear()                               # a real cause: the daemon is gone
    wait_until(lambda: plc.status()["stop"], 5, "line stop after heartbeat loss")
    plc.write_coil(mm.COIL_LINE_STOP, False)                # another Modbus client clears it
    assert plc.status()["stop"] is False
    wait_until(lambda: plc.status()["stop"], 2, "line stop re-asserted while its cause holds")


def _replays(daemon: Daemon, done: threading.Event, seq: int) -> None:
    while not done.wait(0.2):
        daemon.verdict("cam0", seq, "OK")


def test_replayed_seq_is_written_as_fault_latches_a_line_stop_and_a_reset_waits_for_the_cause_to_stop(
        tmp_path, daemon, sim, processes):
    """Verdict substitution: an injected good frame with the next seq is judged OK first; the real
    part's REJECT for the same seq must not be dropped as a duplicate."""
    handle, plc = sim
    processes.append(start_gateway(tmp_path, daemon.endpoint, f"modbus://127.0.0.1:{handle.port}", "--cameras", "cam0",
                                   "--pulse-ms", "5"))
    wait_alive(daemon, plc)
    daemon.verdict("cam0", 0, "OK")
    daemon.verdict("cam0", 1, "OK")                                          # the injected frame, judged first
    daemon.verdict("cam0", 1, "REJECT", "score_above_threshold")            # the real part
    wait_until(lambda: plc.header(0).write_count == 3, 5, "all three written")
    e = plc.entry(0, 2)
    assert (e.seq, e.decision, e.reason) == (1, DECISION["FAULT"], REASON["sequence_replayed"])
    wait_until(lambda: plc.status()["stop"], 5, "line stop latched")
    assert plc.globals().fault_causes == mm.FAULT_SEQUENCE_REPLAYED
    wait_until(lambda: sum(r["kind"] == "coil" and r["name"] == "reject:0" and r["value"]
                           for r in read_log(tmp_path / "plc.jsonl")) == 1, 5, "a reject pulse for it")
    done = threading.Event()
    replayer = threading.Thread(target=_replays, args=(daemon, done, 1), daemon=True)
    replayer.start()                                                         # the cause persists
    try:
        plc.write_coil(mm.COIL_FAULT_RESET, True)
        wait_until(lambda: plc.coils(mm.COIL_FAULT_RESET, 1) == [False], 5, "reset acknowledged")
        time.sleep(0.6)
        assert plc.status()["stop"] and plc.globals().fault_causes == mm.FAULT_SEQUENCE_REPLAYED
    finally:
        done.set()
        replayer.join(2)
    time.sleep(2.5)                                                          # quiet for longer than LATCH_QUIET_S
    plc.write_coil(mm.COIL_FAULT_RESET, True)
    wait_until(lambda: not plc.status()["stop"], 5, "line stop cleared once the cause stopped")
    daemon.verdict("cam0", 0, "REJECT", "defect_area", capture_ns=time.time_ns())   # backwards: also a replay
    wait_until(lambda: plc.status()["stop"], 5, "latched again")


def test_out_of_order_arrival_never_over_reports_lost_verdicts(tmp_path, daemon, sim, processes):
    handle, plc = sim
    processes.append(start_gateway(tmp_path, daemon.endpoint, f"modbus://127.0.0.1:{handle.port}", "--cameras", "cam0"))
    wait_alive(daemon, plc)
    for seq in (0, 1, 3, 2, 4, 5):                           # 2 arrives after 3
        daemon.verdict("cam0", seq, "OK")
    wait_until(lambda: plc.header(0).last_seq == 5, 5, "all written")
    entries = [r for r in read_log(tmp_path / "plc.jsonl") if r["kind"] == "entry"]
    assert [(r["seq"], r["reason"]) for r in entries] == [(0, 0), (1, 0), (2, REASON["sequence_gap"]), (3, 0),
                                                          (2, REASON["sequence_replayed"]), (4, 0), (5, 0)]
    assert plc.header(0).lost_count == 1 == plc.globals().lost_verdicts   # one seq was late, not two lost


def test_gateway_killed_for_3_s_recovers_its_last_seq_from_the_plc(tmp_path, daemon, sim, processes):
    handle, plc = sim
    target = f"modbus://127.0.0.1:{handle.port}"
    gateway = start_gateway(tmp_path, daemon.endpoint, target, "--cameras", "cam0", "--pulse-ms", "5")
    wait_alive(daemon, plc)
    for seq in range(5):
        daemon.verdict("cam0", seq, "OK")
    wait_until(lambda: plc.header(0).write_count == 5, 5, "first five")

    def plc_events() -> list[str]:
        return [r["event"] for r in read_log(tmp_path / "plc.jsonl") if r["kind"] == "plc"]

    wait_until(lambda: not handle.program.gateway_lost, 5, "the PLC program sees the gateway's heartbeat")
    before = len(plc_events())
    gateway.kill()                                            # kill -9: no last words
    gateway.wait(5)
    for seq in range(5, 10):                                  # published while no gateway listens
        daemon.verdict("cam0", seq, "REJECT", "score_above_threshold")
    wait_until(lambda: "gateway_lost" in plc_events()[before:], 5, "the PLC program's gateway watch")
    time.sleep(0.5)
    processes.append(start_gateway(tmp_path, daemon.endpoint, target, "--cameras", "cam0", "--pulse-ms", "5", name="again"))
    wait_until(lambda: all(line in (tmp_path / "again.log").read_text() for line in
                           ("ready: the daemon's heartbeats reach", "connected to PLC")), 30, "subscribed and connected")
    events = wait_until(lambda: (e := plc_events()[before:]) and "line_run" in e and e, 5, "the gateway back at the PLC")
    assert events[:2] == ["gateway_lost", "line_stop"] and "gateway_back" in events   # the PLC stopped the line itself
    daemon.verdict("cam0", 10, "OK")
    wait_until(lambda: plc.header(0).write_count == 11, 5, "the gap and seq 10 written")
    records = read_log(tmp_path / "plc.jsonl")
    entries = [r for r in records if r["kind"] == "entry"]
    assert [(r["seq"], r["decision"], r["reason"]) for r in entries[5:]] == [
        (seq, DECISION["FAULT"], REASON["sequence_gap"]) for seq in range(5, 10)] + [(10, DECISION["OK"], 0)]
    assert plc.header(0).lost_count == 5
    wait_until(lambda: sum(r["kind"] == "coil" and r["name"] == "reject:0" and r["value"]
                           for r in read_log(tmp_path / "plc.jsonl")) == 5, 5, "a reject pulse per lost verdict")
    parts = [r for r in read_log(tmp_path / "plc.jsonl") if r["kind"] == "parts" and r["first"] >= 5]
    assert [(p["first"], p["last"], p["fate"]) for p in parts] == [(s, s, "reject") for s in range(5, 10)] + [(10, 10, "pass")]


def test_plc_outage_backlog_is_written_in_order_after_reconnect(tmp_path, daemon, processes):
    port, log = free_port(), tmp_path / "plc.jsonl"
    sim_command = [sys.executable, "-m", "inspector.cli", "plc-sim", "--port", str(port), "--log", str(log)]
    simulator = subprocess.Popen(sim_command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    processes.append(simulator)
    assert b"listening" in simulator.stdout.readline()
    metrics_port = free_port()
    processes.append(start_gateway(tmp_path, daemon.endpoint, f"modbus://127.0.0.1:{port}", "--backlog", "10",
                                   "--reconnect-max", "0.2", "--metrics-port", str(metrics_port)))
    plc = Plc(port)
    wait_alive(daemon, plc)
    for seq in range(5):
        daemon.verdict("cam0", seq, "OK")
    wait_until(lambda: plc.header(0).write_count == 5, 5, "first five verdicts")
    plc.close()

    assert stop_process(simulator) == 0  # the PLC goes away
    wait_until(lambda: metric(metrics_port, "inspector_gateway_plc_write_errors_total") >= 1, 5, "gateway noticing the outage", 0.05)
    sent = [daemon.verdict("cam0", seq, "REJECT" if seq % 2 else "OK", "defect_area" if seq % 2 else "") for seq in range(5, 25)]
    time.sleep(0.3)

    simulator = subprocess.Popen(sim_command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    processes.append(simulator)
    assert b"listening" in simulator.stdout.readline()
    plc = Plc(port)
    try:
        wait_until(lambda: plc.header(0).write_count == 16, 10, "backlog written after reconnect")
        g = wait_until(lambda: (b := plc.globals()).verdicts_written == 16 and b, 5, "global block after the backlog")
        # 20 verdicts met a backlog of 10: the 10 oldest were dropped, counted, latched a line stop, and
        # their seqs are one FAULT sequence_gap entry (at seq 14) that stands for all of them
        assert (g.verdicts_written, g.backlog_dropped, g.plc_reconnects, g.lost_verdicts) == (16, 10, 1, 10)
        assert g.fault_causes == mm.FAULT_BACKLOG_OVERFLOW and plc.status()["stop"] is True
        for v in sent[10:]:
            n = v.seq - 9  # write index of this verdict
            assert plc.entry(0, n % mm.RING_SIZE) == expected_entry(v, tag=n + 1)
        header = plc.header(0)
        assert (header.ok_count, header.reject_count, header.fault_count, header.last_seq) == (5 + 5, 5, 1, 24)
    finally:
        plc.close()
    records = read_log(log)
    assert [r["seq"] for r in records if r["kind"] == "entry"] == list(range(5)) + list(range(14, 25))
    assert not any(r["kind"] == "coil" and r["name"].startswith("reject") and r["value"] for r in records)  # no late pulses


def test_sigterm_writes_stats_json(tmp_path, daemon, processes):
    port, stats_path = free_port(), tmp_path / "out" / "stats.json"
    gateway = start_gateway(tmp_path, daemon.endpoint, f"sim://127.0.0.1:{port}", "--cameras", "a,b", "--stats", str(stats_path))
    processes.append(gateway)
    plc = Plc(port)
    try:
        wait_until(lambda: plc.client.connect(), 10, "embedded simulated PLC")
        wait_alive(daemon, plc)
        sent_at = time.time_ns()
        for seq in range(6):
            daemon.verdict("a", seq, "OK" if seq < 4 else "REJECT", "" if seq < 4 else "defect_area", capture_ns=sent_at - 10_000_000)
        daemon.verdict("b", 0, "FAULT", "engine_error", capture_ns=sent_at - 10_000_000)
        wait_until(lambda: plc.globals().verdicts_written == 7, 5, "7 verdicts")
    finally:
        plc.close()
    assert stop_process(gateway) == 0
    stats = json.loads(stats_path.read_text())
    assert stats["verdicts_received"] == stats["verdicts_written"] == 7
    assert stats["written_by_decision"] == {"OK": 4, "REJECT": 2, "FAULT": 1}
    assert stats["malformed_messages"] == stats["backlog_dropped"] == stats["backlog_left"] == 0
    latency = stats["latency_ms"]
    assert latency["count"] == 7 and 10.0 <= latency["p50"] <= latency["p99"] <= latency["max"] < 5000
    assert stats["cameras"] == ["a", "b"] and stats["heartbeats_received"] > 0
