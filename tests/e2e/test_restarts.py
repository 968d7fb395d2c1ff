"""Fail closed across restarts, on the real processes: the daemon is killed with frames inside it and
restarted at once (as systemd would), and every frame still ends in an outcome at the PLC.

    test's PUSH (cam0, one grabber session) --> inspector serve --> inspector gateway --> inspector plc-sim

The daemon is stopped (SIGSTOP) while three frames reach its socket, then killed (SIGKILL) and
started again; the new daemon knows nothing of them. The gateway checks each verdict against the
last seq the PLC holds for the camera, so the three frames become FAULT ``sequence_gap`` entries
with reject pulses, counted in ``lost_count``, and the simulated PLC program rejects their parts.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import cv2
import pytest
import zmq

from conftest import REPO, SITE_PUBLIC, PlcClient, free_port, wait_until
from inspector.line import wire
from inspector.line.harness import Processes
from inspector.plc import modbus_map as mm
from line_helpers import calibrate, render_good_parts

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]   # the first to build the tiny model pays for it

GAP, OK_CODE, FAULT = mm.REASON_CODES["sequence_gap"], mm.DECISION_CODES["OK"], mm.DECISION_CODES["FAULT"]


@pytest.fixture(scope="module")
def profile(tiny_engine, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("restart_calibration")
    return calibrate(tiny_engine, render_good_parts(folder / "good"), folder / "profile.json")


@pytest.fixture
def procs(tmp_path):
    group = Processes(tmp_path, cwd=REPO)
    yield group
    group.stop_all()


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_daemon_killed_with_frames_inside_and_restarted_at_once_leaves_no_frame_without_an_outcome(
        tmp_path, procs, tiny_engine, tiny_dataset, profile):
    frames_ep, verdicts_ep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    config = tmp_path / "inspector.toml"
    config.write_text(f'[daemon]\nframes = "{frames_ep}"\nverdicts = "{verdicts_ep}"\nheartbeat_ms = 100\n'
                      f'[engine]\npath = "{tiny_engine}"\nthreads = 1\n'
                      f'[defaults]\ndeadline_ms = 5000\ncalibration = "{profile}"\n'
                      f'[trust]\nkeys = ["{SITE_PUBLIC}"]\n')
    plc_log = tmp_path / "plc.jsonl"
    procs.start("plc", "plc-sim", "--port", "0", "--log", str(plc_log))
    daemon = procs.start("daemon", "serve", "--config", str(config))
    plc_port = int(procs.wait_line("plc", "plc-sim listening on ", 30).rsplit(":", 1)[1])
    procs.start("gateway", "gateway", "--connect", verdicts_ep, "--plc", f"modbus://127.0.0.1:{plc_port}",
                "--cameras", "cam0", "--pulse-ms", "5")
    plc = PlcClient(plc_port)
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.setsockopt(zmq.SNDTIMEO, 5000)
    push.connect(frames_ep)
    image = cv2.imread(str(next((tiny_dataset / "test" / "good").iterdir())), cv2.IMREAD_COLOR)
    session = wire.new_session()

    def send(seq: int) -> None:
        now = time.time_ns()
        wire.send_frame(push, wire.FrameHeader(camera_id="cam0", seq=seq, part_id=str(seq), capture_ns=now,
                                               deadline_ns=now + 5_000_000_000, shape=(), session=session), image)

    try:
        wait_until(lambda: plc.status() == {"alive": True, "stop": False, "ready": True}, 60, "line ready")
        for seq in range(5):
            send(seq)
        wait_until(lambda: plc.header(0).write_count == 5, 20, "five verdicts at the PLC")
        daemon.signal(signal.SIGSTOP)
        for seq in (5, 6, 7):                                      # into the stopped daemon's socket
            send(seq)
        time.sleep(0.3)
        daemon.signal(signal.SIGKILL)
        daemon.wait(10)
        procs.start("daemon", "serve", "--config", str(config))   # at once, as systemd would
        wait_until(lambda: plc.status() == {"alive": True, "stop": False, "ready": True}, 60, "new daemon ready")
        for seq in (8, 9):
            send(seq)
        wait_until(lambda: plc.header(0).write_count == 10, 20, "every seq at the PLC")
        header = plc.header(0)
        ring = [plc.entry(0, slot) for slot in range(10)]
        wait_until(lambda: sum(r["kind"] == "coil" and r["name"] == "reject:0" and r["value"]
                               for r in read_log(plc_log)) >= 3, 5, "reject pulses for the lost frames")
        parts = wait_until(lambda: [r for r in read_log(plc_log) if r["kind"] == "parts" and r["first"] >= 5 and
                                    r["last"] >= 9] and [r for r in read_log(plc_log) if r["kind"] == "parts"], 5,
                           "the PLC program's decisions")
    finally:
        push.close(0)
        context.term()
        plc.close()
    assert [e.seq for e in ring] == list(range(10))                           # exactly one entry per frame
    assert [(e.decision, e.reason) for e in ring[5:8]] == [(FAULT, GAP)] * 3
    assert all(e.decision != FAULT for e in ring[:5] + ring[8:])
    assert header.lost_count == 3 and header.last_session == session & mm.U32_MAX
    fates = {seq: p["fate"] for p in parts for seq in range(p["first"], p["last"] + 1)}
    assert [fates[seq] for seq in (5, 6, 7)] == ["reject"] * 3                 # the PLC rejects those parts
