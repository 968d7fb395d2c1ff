"""THE end-to-end test of the product: the whole line as real processes on loopback.

    inspector grab (cam0) --+                                   +--> inspector gateway --Modbus TCP--> inspector plc-sim
    inspector grab (cam1) --+--PUSH--> inspector serve --PUB----+
    test's own PUSH (cam2) -+   (tiny ONNX engine, calibrated)

Everything is checked where the line ends: in the PLC. A pymodbus client reads the holding
registers and coils (decoded with ``inspector.plc.modbus_map``) and the simulated PLC's write log is
read back. Checks:

* every frame sent (grabber summaries + the frames this test injects) has exactly one verdict at
  the PLC: per-camera ``write_count`` and OK + REJECT + FAULT counters equal the frames sent,
  ring entries and logged entry writes hold each (camera, seq) exactly once;
* decisions are consistent with the engine's own score for that image and the calibrated
  threshold (REJECT iff score >= threshold). The tiny model is not accurate, so the test checks
  consistency, not accuracy;
* faults come out as FAULT with their reason codes: a corrupt frame -> ``decode_error``, a frame
  whose deadline has passed -> ``deadline_missed``, a jump in ``seq`` -> ``sequence_gap`` for each
  missing frame; each REJECT/FAULT pulses the camera's reject coil once.

Threshold: ``inspector calibrate`` on 24 good images rendered with ``synthetic.make_normal``
(product texture, 64 x 64, seed 2, a different seed from the training set) with
``--target-frr 0.5 --no-region-rule``. A 50 % false-reject target is absurd for a real line, but
the tiny model scores good and defective parts alike; this target puts the threshold in the
middle of the score range so that both OK and REJECT occur and the consistency check has teeth.

A second test runs ``tools/bench_line.py --quick`` on the tiny engine (a smoke test: the JSON has
its keys and sane numbers; no timing assertions).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from inspector.plc import modbus_map as mm
from inspector.line import wire
from inspector.engine import open_engine
from inspector.judge.profile import load_profile
from inspector.line.sources import mvtec_source

from conftest import REPO, SITE_PUBLIC
from inspector.line.harness import Processes
from line_helpers import calibrate, render_good_parts
from conftest import free_port, wait_until
from conftest import PlcClient as PlcReader

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

GRAB_CAMERAS = ("cam0", "cam1")
INJECT_CAMERA = "cam2"             # frames this test sends itself (never collides with grabber seqs)
CAMERAS = GRAB_CAMERAS + (INJECT_CAMERA,)
GRAB_FPS = 30.0
SCORE_MARGIN = 1e-4                # scores this close to the threshold are not held to a decision
BENCH_TOOL = REPO / "tools" / "bench_line.py"
REASON = {"": 0, "score_above_threshold": 1, "defect_area": 2, "deadline_missed": 3, "decode_error": 4,
          "sequence_gap": 6}       # the codes of docs/plc.md this test expects
DECISION = {"OK": 1, "REJECT": 2, "FAULT": 3}


# ------------------------------------------------------------------------------------------ helpers
def summary_of(child) -> dict:
    """The JSON summary a finished ``inspector`` process printed last."""
    summary = child.last_json()
    assert summary is not None, f"no JSON summary line in {child.name}'s output:\n{child.output()[-2000:]}"
    return summary


def finished(procs: Processes, name: str, timeout: float) -> dict:
    """Wait for ``name`` to exit by itself with status 0; its summary."""
    child = procs.wait_exit(name, timeout)
    assert child.returncode == 0, f"{name} exited with {child.returncode}:\n{child.output()[-3000:]}"
    return summary_of(child)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_daemon_config(path: Path, engine: Path, profile: Path, frames: str, verdicts: str) -> Path:
    path.write_text(f"""
[daemon]
id = "line-test"
frames = "{frames}"
verdicts = "{verdicts}"
heartbeat_ms = 100
drain_ms = 3000
linger_ms = 1000

[engine]
path = "{engine}"
threads = 1
max_batch = 8
max_wait_ms = 4

[defaults]
deadline_ms = 5000
calibration = "{profile}"

[trust]
keys = ["{SITE_PUBLIC}"]
""")
    return path


def expected_decision(score: float, threshold: float) -> str | None:
    """REJECT when score >= threshold (docs/daemon.md); None when too close to call."""
    if abs(score - threshold) < SCORE_MARGIN:
        return None
    return "REJECT" if score >= threshold else "OK"


def rising_edges(log: list[dict], coil: int) -> int:
    """Number of OFF -> ON changes of ``coil`` in the PLC's write log (coils start OFF)."""
    edges, state = 0, False
    for record in log:
        if record["kind"] == "coil" and record["address"] == coil:
            edges += int(record["value"] and not state)
            state = record["value"]
    return edges


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def line_profile(tiny_engine, tmp_path_factory) -> Path:
    """A profile written by `inspector calibrate` on 24 freshly rendered good parts (see module doc)."""
    folder = tmp_path_factory.mktemp("line_calibration")
    return calibrate(tiny_engine, render_good_parts(folder / "good"), folder / "profile.json")


@pytest.fixture(scope="module")
def engine_scores(tiny_engine, tiny_dataset) -> dict[str, float]:
    """The engine's own score for every test image of the tiny set, by source name ("kind/file")."""
    engine = open_engine("onnxruntime", str(tiny_engine), threads=1)
    frames = list(mvtec_source(tiny_dataset))
    scores = engine.infer([f.image for f in frames], [f.pixel_format for f in frames]).scores
    engine.close()
    return {f.source: float(s) for f, s in zip(frames, scores)}


@pytest.fixture
def procs(tmp_path):
    group = Processes(tmp_path, cwd=REPO)
    yield group
    group.stop_all()


# ------------------------------------------------------------------------------------------ the line
def inject_frames(frames_endpoint: str, image: np.ndarray) -> dict[int, str]:
    """Send camera cam2's frames from a third PUSH socket; returns {seq: what the PLC must show}.

    seq 0: raw payload one byte short (header intact) -> FAULT decode_error;
    seq 1: deadline already past on arrival -> FAULT deadline_missed;
    seq 4: a valid frame (seq 2 and 3 never sent) -> FAULT sequence_gap for 2 and 3, then judged.
    """
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDTIMEO, 5000)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(frames_endpoint)
    try:
        now = time.time_ns()

        def header(seq: int, capture_ns: int, deadline_ns: int) -> wire.FrameHeader:
            return wire.FrameHeader(camera_id=INJECT_CAMERA, seq=seq, part_id=str(9000 + seq), capture_ns=capture_ns,
                                    deadline_ns=deadline_ns, shape=(), pixel_format="bgr8", label="injected")

        corrupt = wire.encode_frame(header(0, now, now + 5_000_000_000), image)
        corrupt[1] = bytes(corrupt[1])[:-1]
        push.send_multipart(corrupt)
        push.send_multipart(wire.encode_frame(header(1, now - 2_000_000_000, now - 1_000_000_000), image))
        push.send_multipart(wire.encode_frame(header(4, now, now + 5_000_000_000), image))
    finally:
        push.close()          # linger: delivered before close returns (bounded by LINGER)
        context.term()
    return {0: "decode_error", 1: "deadline_missed", 2: "sequence_gap", 3: "sequence_gap", 4: "judged"}


def test_whole_line_every_frame_gets_exactly_one_consistent_verdict_at_the_plc(
        tmp_path, procs, tiny_engine, tiny_dataset, line_profile, engine_scores):
    threshold = load_profile(line_profile).image_threshold
    expected_by_source = {src: expected_decision(s, threshold) for src, s in engine_scores.items()}
    assert {"OK", "REJECT"} <= set(expected_by_source.values()), (
        f"threshold {threshold} does not split the tiny set's scores {sorted(engine_scores.values())}")
    frames_ep, verdicts_ep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    config = write_daemon_config(tmp_path / "inspector.toml", tiny_engine, line_profile, frames_ep, verdicts_ep)
    plc_log, stats_path = tmp_path / "plc.jsonl", tmp_path / "gateway_stats.json"
    n_images = len(engine_scores)

    # PLC, daemon and gateway come up in parallel; the PLC prints its port first
    procs.start("plc", "plc-sim", "--port", "0", "--log", str(plc_log))
    procs.start("daemon", "serve", "--config", str(config))
    plc_port = int(procs.wait_line("plc", "plc-sim listening on ", 30).rsplit(":", 1)[1])
    procs.start("gateway", "gateway", "--connect", verdicts_ep, "--plc", f"modbus://127.0.0.1:{plc_port}",
                "--cameras", ",".join(CAMERAS), "--stats", str(stats_path), "--pulse-ms", "10")
    plc = PlcReader(plc_port)
    try:
        # daemon ready AND the gateway subscribed: the gateway sets daemon_ready once it sees a ready heartbeat
        wait_until(lambda: plc.status() == {"alive": True, "stop": False, "ready": True}, 60,
                   "daemon_ready coil (daemon loaded, gateway subscribed)")
        started_ms = time.time_ns() // 1_000_000
        for k, cam in enumerate(GRAB_CAMERAS):
            procs.start(f"grab_{cam}", "grab", "--source", f"mvtec:{tiny_dataset}", "--camera", cam, "--connect",
                        frames_ep, "--max-frames", str(n_images), "--fps", str(GRAB_FPS), "--seed", str(k),
                        "--deadline-ms", "10000")
        first_source = sorted(engine_scores)[0]
        injected_image = cv2.imread(str(tiny_dataset / "test" / first_source), cv2.IMREAD_COLOR)
        injected = inject_frames(frames_ep, injected_image)

        grabbed = {cam: finished(procs, f"grab_{cam}", 60) for cam in GRAB_CAMERAS}
        for cam, summary in grabbed.items():
            assert summary["frames_sent"] == n_images and summary["stopped_by"] == "max_frames", summary
        expected_counts = [grabbed[cam]["frames_sent"] for cam in GRAB_CAMERAS] + [len(injected)]
        wait_until(lambda: [plc.header(i).write_count for i in range(len(CAMERAS))] == expected_counts, 30,
                   f"write counts {expected_counts} at the PLC")
        headers = [plc.header(i) for i in range(len(CAMERAS))]
        rings = [plc.ring(i) for i in range(len(CAMERAS))]
        # one reject pulse per REJECT/FAULT: wait until the gateway has pulsed them all
        wait_until(lambda: all(rising_edges(read_log(plc_log), mm.reject_coil(i))
                               == h.reject_count + h.fault_count for i, h in enumerate(headers)), 20,
                   "one reject-coil pulse per REJECT/FAULT")
        running_globals, running_status = plc.globals(), plc.status()
        ended_ms = time.time_ns() // 1_000_000
    finally:
        gateway_out = procs.stop("gateway")
        daemon_out = procs.stop("daemon")
        final_status = plc.status() if procs.children["plc"].alive() else None
        final_globals = plc.globals() if final_status is not None else None
        plc.close()
        procs.stop("plc")

    # ---- camera headers: counters add up to the frames sent, nothing lost
    for i, header in enumerate(headers):
        assert header.ok_count + header.reject_count + header.fault_count == header.write_count, header
        assert header.lost_count == 0, (CAMERAS[i], header)
    # ---- ring entries (all verdicts fit in the 32-slot ring): each seq exactly once, committed in order
    entries: dict[tuple[str, int], mm.RingEntry] = {}
    for i, (header, ring) in enumerate(zip(headers, rings)):
        written = ring[:header.write_count]
        assert [e.tag for e in written] == list(range(1, header.write_count + 1)), CAMERAS[i]
        assert Counter(e.seq for e in written) == Counter(range(header.write_count)), (CAMERAS[i], written)
        assert header.last_seq == written[-1].seq
        for e in written:  # capture_ms: low 32 bits of ms since the epoch (wraps), within this run
            assert (e.capture_ms - (started_ms - 5_000)) % 2**32 <= ended_ms - started_ms + 5_000, e
            entries[(CAMERAS[i], e.seq)] = e
    # ---- the PLC's write log: the same entries, each (camera, seq) written exactly once
    log = read_log(plc_log)
    logged = [r for r in log if r["kind"] == "entry"]
    assert Counter((CAMERAS[r["camera"]], r["seq"]) for r in logged) == Counter(list(entries)), "log differs from ring"
    for r in logged:
        fields = {k: v for k, v in r.items() if k not in ("t_ns", "kind", "camera", "slot")}
        assert mm.RingEntry(**fields) == entries[(CAMERAS[r["camera"]], r["seq"])], r

    # ---- grabbed frames: decision consistent with the engine's score for the very image sent
    checked = 0
    for k, cam in enumerate(GRAB_CAMERAS):
        order = [f.source for f in mvtec_source(tiny_dataset, seed=k)]
        for seq in range(n_images):
            source, e = order[seq % len(order)], entries[(cam, seq)]
            score = engine_scores[source]
            assert e.part_code == seq and not e.flags & mm.FLAG_PART_ID_CRC32, e
            assert abs(e.score_milli - round(score * 1000)) <= 1, (cam, seq, source, e, score)
            assert e.threshold_milli == round(threshold * 1000), e
            want = expected_by_source[source]
            if want is None:
                continue
            assert e.decision == DECISION[want], (cam, seq, source, score, threshold, e)
            assert e.reason == REASON["score_above_threshold" if want == "REJECT" else ""], e
            checked += 1
    assert checked >= 0.9 * len(GRAB_CAMERAS) * n_images
    # defective parts with a score at or above the threshold were rejected: at least one such part ran
    assert any(e.decision == DECISION["REJECT"] for (cam, _), e in entries.items() if cam in GRAB_CAMERAS)

    # ---- injected faults reach the PLC as FAULT with their reason codes
    for seq, what in injected.items():
        e = entries[(INJECT_CAMERA, seq)]
        if what == "judged":
            want = expected_decision(engine_scores[first_source], threshold)
            assert e.decision in (DECISION["OK"], DECISION["REJECT"]), e
            assert want is None or e.decision == DECISION[want], (e, engine_scores[first_source])
            assert e.part_code == 9000 + seq
        else:
            assert (e.decision, e.reason) == (DECISION["FAULT"], REASON[what]), (seq, what, e)
            assert e.score_milli == mm.MILLI_NONE, e
    cam2 = headers[CAMERAS.index(INJECT_CAMERA)]
    assert cam2.fault_count == 4 and cam2.write_count == 5, cam2

    # ---- reject pulses: one rising edge per REJECT/FAULT of each camera
    for i, header in enumerate(headers):
        assert rising_edges(log, mm.reject_coil(i)) == header.reject_count + header.fault_count, CAMERAS[i]

    # ---- global block while running, and the stopped state the gateway leaves behind
    total = sum(h.write_count for h in headers)
    assert running_globals.verdicts_written == total
    assert (running_globals.lost_verdicts, running_globals.unknown_camera_verdicts,
            running_globals.malformed_messages, running_globals.fault_causes) == (0, 0, 0, 0), running_globals
    assert running_status == {"alive": True, "stop": False, "ready": True}
    assert final_status == {"alive": False, "stop": True, "ready": False}
    assert final_globals.fault_causes & mm.FAULT_GATEWAY_STOPPED

    # ---- the processes' own accounts agree with the PLC
    stats = json.loads(stats_path.read_text())
    assert stats["verdicts_written"] == total and stats["backlog_left"] == 0
    assert stats["written_by_decision"] == {
        "OK": sum(h.ok_count for h in headers), "REJECT": sum(h.reject_count for h in headers),
        "FAULT": sum(h.fault_count for h in headers)}
    assert stats["latency_ms"]["count"] == total and stats["reject_pulses"] == sum(
        h.reject_count + h.fault_count for h in headers)
    summary = summary_of(daemon_out)
    frames_sent = sum(g["frames_sent"] for g in grabbed.values()) + 3
    assert summary["messages_received"] == frames_sent and summary["frame_verdicts"] == frames_sent
    assert summary["frames_without_verdict"] == 0 and summary["gap_verdicts"] == 2
    assert summary["decode_errors"] == 1 and summary["by_reason"].get("deadline_missed") == 1, summary
    assert gateway_out is not None


# ------------------------------------------------------------------------------------------ benchmark smoke test
def _finite_non_negative(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def test_bench_line_quick_runs_every_case_and_reports_sane_numbers(tmp_path, tiny_engine, tiny_dataset, line_profile):
    out = tmp_path / "bench_line.json"
    proc = subprocess.run([sys.executable, str(BENCH_TOOL), "--quick", "--engine", str(tiny_engine),
                           "--calibration", str(line_profile), "--data", str(tiny_dataset), "--threads", "1",
                           "--workdir", str(tmp_path / "work"), "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    report = json.loads(out.read_text())
    assert {"cases", "engine", "summary", "daemon", "settings", "machine"} <= set(report)
    assert {"engine_images_per_s", "saturated_cases", "best_line_vs_engine", "within_10_percent_of_engine",
            "moderate_case", "moderate_added_p50_ms", "moderate_added_under_5_ms"} <= set(report["summary"])
    assert report["daemon"]["frames_without_verdict"] == 0

    engine = report["engine"]
    for key in ("images_per_s_max_batch", "batch1_latency_ms_p50", "max_batch", "threads"):
        assert _finite_non_negative(engine[key]) and engine[key] > 0, (key, engine)
    assert engine["image_size"] == [64, 64]

    cases = report["cases"]
    settings = report["settings"]
    assert [(c["cameras"], c["fps_per_camera"]) for c in cases] == [
        (n, f) for n in settings["cameras"] for f in settings["fps"]]
    for case in cases:
        assert case["offered_fps"] == pytest.approx(case["cameras"] * case["fps_per_camera"])
        assert case["frames_sent"] > 0
        # every frame got exactly one verdict, and each verdict reached the PLC
        assert case["verdicts"] == case["frames_sent"] == case["plc_verdicts"], case
        assert case["duplicate_verdicts"] == 0 and case["missing_verdicts"] == 0
        assert case["ok"] + case["reject"] + case["fault"] == case["verdicts"]
        assert case["judged"] <= case["verdicts"]
        for key in ("verdicts_per_s", "judged_per_s", "dropped", "deadline_missed"):
            assert _finite_non_negative(case[key]), (key, case)
        for key in ("capture_to_verdict_ms", "capture_to_plc_ms"):
            lat = case[key]
            assert 0 < lat["p50"] <= lat["p99"] < 60_000, (key, lat)
        assert case["capture_to_plc_ms"]["count"] == case["plc_verdicts"]      # one sample per PLC write
        assert case["capture_to_verdict_ms"]["count"] == case["judged"]
        assert case["plc_backlog_dropped"] == 0
    assert "| cameras |" in proc.stdout  # the markdown table
