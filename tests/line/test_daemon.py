"""The daemon end to end: `inspector serve` as a real process on real sockets with the tiny ONNX
engine. (The failure paths a real model cannot be made to produce on demand are in
test_daemon_failures.py.)

Expected decisions are computed here from the engine's own scores on the same images (and the
documented rule: REJECT when score >= threshold), not assumed from the tiny model's accuracy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from inspector.line import wire
from inspector.line.config import load_config
from inspector.engine import open_engine

from inspector.judge.regions import largest_region_areas
from conftest import free_port, wait_until
from daemon_helpers import (REPO, Listener, NotifySocket, by_key, close_all, http_get, make_push, metric_value,
                            profile_dict, save_signed, send, serve, stop, threshold_between_scores, write_toml)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def scored(tiny_dataset, tiny_engine):
    """The tiny test images (BGR) with labels, and the engine's own scores and maps for them."""
    files = sorted((tiny_dataset / "test").glob("*/*.png"))
    images = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]
    labels = [f.parent.name for f in files]
    engine = open_engine("onnxruntime", str(tiny_engine), threads=1)
    result = engine.infer(images, ["bgr8"] * len(images), want_maps=True)
    return {"images": images, "labels": labels, "scores": result.scores.astype(np.float64), "maps": result.maps,
            "manifest": engine.manifest}



# ------------------------------------------------------------------------------------------ tests
def test_daemon_modules_never_import_torch_or_scipy():
    code = ("import sys, inspector.line.daemon, inspector.line.serve, inspector.line.config, "
            "inspector.line.batching, "
            "inspector.judge.verdict, inspector.line.health; "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "assert 'scipy' not in sys.modules, 'scipy was imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_example_config_is_valid_and_paths_resolve_against_its_folder():
    config = load_config(REPO / "examples" / "inspector.toml")
    assert config.engine.path == str(REPO / "engines" / "model.onnx")
    assert config.calibration_for("cam0")[0] == str(REPO / "calibration" / "cam0.json")
    assert config.calibration_for("cam7")[0] == str(REPO / "calibration" / "default.json")
    assert (config.engine.backend, config.overload.policy, config.daemon.heartbeat_ms) == ("onnxruntime", "reject_oldest", 250)


def test_check_config_reports_every_problem_with_its_location(tmp_path, scored, tiny_engine):
    manifest = scored["manifest"]
    save_signed(tmp_path / "good.json", profile_dict(manifest, 1.0))
    other = profile_dict(manifest, 1.0, camera="cam0")
    other["engine"]["sha256"] = "0" * 64                           # calibrated on another engine
    save_signed(tmp_path / "other.json", other)
    daemon = {"frames": f"tcp://127.0.0.1:{free_port()}", "verdicts": f"tcp://127.0.0.1:{free_port()}"}
    engine = {"path": os.path.relpath(tiny_engine, tmp_path), "threads": 1}   # relative to the config's folder

    good = write_toml(tmp_path / "good.toml", {"daemon": daemon, "engine": engine, "defaults": {"calibration": "good.json"}})
    proc = subprocess.run([sys.executable, "-m", "inspector.cli", "serve", "--config", str(good), "--check-config"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    mismatched = write_toml(tmp_path / "mismatch.toml", {
        "daemon": daemon, "engine": engine, "defaults": {"calibration": "good.json"},
        "cameras.cam0": {"calibration": "other.json"}, "cameras.cam1": {"calibration": "missing.json"}})
    proc = subprocess.run([sys.executable, "-m", "inspector.cli", "serve", "--config", str(mismatched), "--check-config"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = [line for line in proc.stdout.splitlines() if "[cameras." in line]
    assert any("[cameras.cam0] calibration" in line and "engine sha256" in line for line in lines), proc.stdout
    assert any("[cameras.cam1] calibration" in line and "not found" in line for line in lines), proc.stdout

    no_engine = write_toml(tmp_path / "noengine.toml", {"daemon": daemon, "engine": {"path": "missing.onnx"},
                                                         "defaults": {"calibration": "good.json"}})
    for extra, expected in ((["--check-config"], r"\[engine\] path: engine file not found"), ([], r"cannot start")):
        proc = subprocess.run([sys.executable, "-m", "inspector.cli", "serve", "--config", str(no_engine), *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and re.search(expected, proc.stdout + proc.stderr), proc.stdout + proc.stderr

    bad = write_toml(tmp_path / "bad.toml", {"daemon": {**daemon, "heartbeat_ms": "fast"},
                                              "engine": {**engine, "max_batchh": 8}})
    for extra in (["--check-config"], []):   # serve itself refuses too, before loading anything
        proc = subprocess.run([sys.executable, "-m", "inspector.cli", "serve", "--config", str(bad), *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        text = proc.stdout + proc.stderr
        assert re.search(r"bad\.toml:\d+ \[engine\] max_batchh: unknown key", text), text
        assert re.search(r"bad\.toml:\d+ \[daemon\] heartbeat_ms: .*integer", text), text


def test_serve_end_to_end(tmp_path, scored, tiny_engine):
    images, labels, scores, maps, manifest = (scored[k] for k in ("images", "labels", "scores", "maps", "manifest"))
    n = len(images)
    # cam0: image rule only, threshold between the engine's own scores.
    threshold = threshold_between_scores(scores)
    save_signed(tmp_path / "cam0.json", profile_dict(manifest, threshold, camera="cam0"))
    # cam1: region rule only (image threshold out of reach), min area from the engine's own maps.
    pixel = float(np.percentile(maps, 97))
    areas = largest_region_areas(maps, pixel)
    min_area = int(np.sort(areas[areas > 0])[len(areas[areas > 0]) // 2])
    assert 0 < (areas >= min_area).sum() < n
    save_signed(tmp_path / "cam1.json", profile_dict(manifest, float(scores.max()) + 1.0, camera="cam1",
                                                       pixel=pixel, area=min_area))
    ports = {name: free_port() for name in ("frames", "verdicts", "tap", "health")}
    endpoints = {name: f"tcp://127.0.0.1:{port}" for name, port in ports.items() if name != "health"}
    config = write_toml(tmp_path / "inspector.toml", {
        "daemon": {"id": "test-daemon", **endpoints, "health": f"127.0.0.1:{ports['health']}", "heartbeat_ms": 50,
                   "tap_hwm": 1000},
        "engine": {"path": str(tiny_engine), "threads": 1, "max_batch": 4, "max_wait_ms": 2},
        "defaults": {"deadline_ms": 10000},
        "cameras.cam0": {"calibration": "cam0.json"},
        "cameras.cam1": {"calibration": "cam1.json"},
        "overload": {"max_queue": 256}})
    context = zmq.Context()
    listener = Listener(context, endpoints["verdicts"], endpoints["tap"])
    notify = NotifySocket(Path(tempfile.mkdtemp(prefix="nfy", dir="/tmp")))
    proc = serve(config, tmp_path, {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"})
    push = make_push(context, endpoints["frames"])
    try:
        listener.wait_ready_heartbeat()
        # PUB/SUB slow joiner: probe (camX is not a declared camera) until the tap subscription carries frames
        probes = 0
        while not any(h.camera_id == "camX" for h, _ in listener.taps):
            assert probes < 20, "the tap never delivered a frame"
            send(push, "camX", probes, images[0])
            probes += 1
            time.sleep(0.25)
        # ---- phase 1: labelled frames on two cameras, and every kind of bad frame
        for i in range(n):
            send(push, "cam0", i, images[i], label=labels[i])
            send(push, "cam1", i, images[i], label=labels[i])
        send(push, "cam0", n, images[0], deadline_ns=time.time_ns() - 1_000_000)        # deadline already past
        send(push, "cam0", n + 4, images[0], deadline_s=None)                              # gap n+1..n+3; default deadline
        bad_header = wire.encode_header(wire.FrameHeader("cam0", n + 5, "Pbad", time.time_ns(), 0, (64, 64, 3)))
        push.send_multipart([bad_header, b"\x00" * 100])                                   # payload length wrong
        push.send_multipart([b"\xc1 not msgpack", b"x"])                                   # nothing readable
        expected = 2 * n + 1 + 3 + 1 + 1 + 1 + probes
        verdicts = by_key(listener.wait_verdicts(expected))
        assert len(verdicts) == expected

        for i in range(n):
            v0, v1 = verdicts[("cam0", i)], verdicts[("cam1", i)]
            assert (v0.label, v0.part_id) == (labels[i], f"P{i}")
            assert v0.score == pytest.approx(scores[i], abs=1e-4) and v0.threshold == pytest.approx(threshold)
            assert (v0.decision, v0.reason) == (("REJECT", "score_above_threshold") if scores[i] >= threshold else ("OK", ""))
            assert v1.defect_area_px is not None and abs(v1.defect_area_px - int(areas[i])) <= 3
            assert (v1.decision, v1.reason) == (("REJECT", "defect_area") if v1.defect_area_px >= min_area else ("OK", ""))
        assert sum(verdicts[("cam1", i)].defect_area_px == areas[i] for i in range(n)) >= 0.9 * n
        decisions = Counter(verdicts[("cam0", i)].decision for i in range(n))
        assert decisions["OK"] >= 6 and decisions["REJECT"] >= 6
        late = verdicts[("cam0", n)]
        assert (late.decision, late.reason, late.score) == ("FAULT", "deadline_missed", None)
        for seq in (n + 1, n + 2, n + 3):
            assert (verdicts[("cam0", seq)].decision, verdicts[("cam0", seq)].reason) == ("FAULT", "sequence_gap")
        assert verdicts[("cam0", n + 4)].reason in ("", "score_above_threshold")        # judged normally
        corrupt = verdicts[("cam0", n + 5)]
        assert (corrupt.decision, corrupt.reason, corrupt.part_id) == ("FAULT", "decode_error", "Pbad")
        assert (verdicts[("unknown", 0)].decision, verdicts[("unknown", 0)].reason) == ("FAULT", "decode_error")
        assert all((verdicts[("camX", i)].decision, verdicts[("camX", i)].reason) == ("FAULT", "unknown_camera")
                   for i in range(probes))   # a camera the config does not declare: refused, one verdict each

        # ---- health and metrics
        assert http_get(ports["health"], "/healthz") == (200, "ok\n")
        assert http_get(ports["health"], "/readyz") == (200, "ready\n")
        assert http_get(ports["health"], "/nope")[0] == 404
        status, metrics = http_get(ports["health"], "/metrics")
        assert status == 200
        assert metric_value(metrics, "inspector_daemon_frames_received_total", camera="cam0") == n + 3
        assert metric_value(metrics, "inspector_daemon_verdicts_total", decision="FAULT", reason="sequence_gap") == 3
        assert metric_value(metrics, "inspector_daemon_decode_errors_total", reason="size_mismatch") == 1
        assert metric_value(metrics, "inspector_daemon_engine_batch_seconds_count") >= (2 * n + 1) / 4
        assert metric_value(metrics, "inspector_daemon_capture_to_verdict_seconds_count") >= 2 * n

        # ---- phase 2: SIGHUP with a new cam0 threshold and a broken cam1 profile (old one kept)
        new_threshold = float(scores.min()) - 0.5
        save_signed(tmp_path / "cam0.json", profile_dict(manifest, new_threshold, camera="cam0"))
        (tmp_path / "cam1.json").write_text("{ not json")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: metric_value(http_get(ports["health"], "/metrics")[1],
                                        "inspector_daemon_profile_reloads_total") == 1, 10, "the reload")
        metrics = http_get(ports["health"], "/metrics")[1]
        assert metric_value(metrics, "inspector_daemon_profile_reload_errors_total") == 1
        before = len(listener.snapshot()[0])
        for i in range(8):
            send(push, "cam0", n + 6 + i, images[i])
            send(push, "cam1", n + i, images[i])
        verdicts = by_key(listener.wait_verdicts(before + 16))
        for i in range(8):
            v0, v1 = verdicts[("cam0", n + 6 + i)], verdicts[("cam1", n + i)]
            assert (v0.decision, v0.reason, v0.threshold) == ("REJECT", "score_above_threshold", pytest.approx(new_threshold))
            assert v1.defect_area_px is not None                                     # cam1 still has its region rule
            assert (v1.decision == "REJECT") == (v1.defect_area_px >= min_area)

        # ---- phase 3: SIGTERM drains; the tap mirrored the frames
        for i in range(8):
            send(push, "cam0", n + 14 + i, images[i])
        summary = stop(proc)
        assert summary["exit"] == "drained" and summary["frames_without_verdict"] == 0
        verdicts = by_key(listener.wait_verdicts(summary["verdicts"], timeout=5))
        assert len(verdicts) == summary["verdicts"] == summary["frame_verdicts"] + summary["gap_verdicts"]
        assert summary["frame_verdicts"] == summary["messages_received"]
        assert summary["by_decision"] == dict(Counter(v.decision for v in verdicts.values()))
        assert summary["decode_errors"] == 2 and summary["unattributed_decode_errors"] == 1
        assert summary["missing_frames"] == 3 and summary["profile_reload_errors"] == 1
        _, heartbeats = listener.snapshot()
        counters = [h.counter for h in heartbeats]
        assert counters == list(range(counters[0], counters[0] + len(counters)))     # +1 each, none lost locally
        assert heartbeats[-1].ready is False and all(h.daemon_id == "test-daemon" for h in heartbeats)
        taps = {(h.camera_id, h.seq): image for h, image in listener.taps}
        assert summary["tap_sent"] == summary["messages_received"]
        # every frame since the subscription took effect, mirrored unchanged (the two malformed ones too)
        assert len(taps) == summary["messages_received"] - 2 - (probes - 1) and listener.malformed_taps == 2
        assert all(np.array_equal(taps[("cam0", i)], images[i]) and np.array_equal(taps[("cam1", i)], images[i])
                   for i in range(n))
        wait_until(lambda: "STOPPING=1" in notify.messages, 5, "STOPPING=1")
        assert notify.messages[0] == "READY=1" and "WATCHDOG=1" in notify.messages
        assert notify.messages.index("STOPPING=1") > notify.messages.index("WATCHDOG=1")
        log_lines = [json.loads(line) for line in (tmp_path / "daemon.log").read_text().splitlines() if line.startswith("{")]
        assert any(entry["msg"] == "calibration reloaded" for entry in log_lines)
    finally:
        notify.close()
        close_all(proc, push, listener, context)


def test_overload_burst_every_frame_gets_exactly_one_verdict(tmp_path, scored, tiny_engine):
    manifest, image = scored["manifest"], scored["images"][0]
    save_signed(tmp_path / "default.json", profile_dict(manifest, float(scored["scores"].max()) + 1.0))
    folder = Path(tempfile.mkdtemp(prefix="ovl", dir="/tmp"))   # ipc paths must be short
    try:
        endpoints = {"frames": f"ipc://{folder}/frames", "verdicts": f"ipc://{folder}/verdicts"}
        config = write_toml(tmp_path / "inspector.toml", {
            "daemon": {**endpoints, "heartbeat_ms": 50, "log_format": "text"},
            "engine": {"path": str(tiny_engine), "threads": 1, "max_batch": 1, "max_wait_ms": 0},
            "defaults": {"calibration": "default.json", "deadline_ms": 30000},
            "overload": {"max_queue": 2, "policy": "reject_oldest"}})
        context = zmq.Context()
        listener = Listener(context, endpoints["verdicts"])
        proc = serve(config, tmp_path)
        push = make_push(context, endpoints["frames"])
        try:
            listener.wait_ready_heartbeat()
            burst = 150
            for seq in range(burst):
                send(push, "cam0", seq, image, deadline_s=30.0)
            verdicts = by_key(listener.wait_verdicts(burst))
            assert set(verdicts) == {("cam0", seq) for seq in range(burst)}
            dropped = [v for v in verdicts.values() if v.reason == "overload_dropped"]
            judged = [v for v in verdicts.values() if v.reason != "overload_dropped"]
            assert dropped, "a 150-frame burst into a queue of 2 must overflow"
            assert all(v.decision == "FAULT" and v.score is None for v in dropped)
            assert all(v.decision == "OK" and v.score is not None for v in judged)
            assert verdicts[("cam0", burst - 1)].reason != "overload_dropped"   # reject_oldest keeps the newest
            summary = stop(proc)
            assert summary["overload_dropped"] == len(dropped) and summary["frames_without_verdict"] == 0
            assert summary["frames_judged"] == len(judged)
        finally:
            close_all(proc, push, listener, context)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
