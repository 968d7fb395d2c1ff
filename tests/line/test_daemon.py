"""The daemon end to end: `inspector serve` as a real process on real sockets with the tiny ONNX
engine, plus in-process runs of `Daemon` with a scripted engine double for the failure paths
(engine errors, NaN scores, late verdicts, a stuck engine at shutdown) that a real model cannot be
made to produce on demand.

Expected decisions are computed here from the engine's own scores on the same images (and the
documented rule: REJECT when score >= threshold), not assumed from the tiny model's accuracy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from inspector.line import wire
from inspector.line.config import config_from_dict, load_config
from inspector.line.daemon import Daemon
from inspector.engine import EngineResult, open_engine
from inspector.judge.profile import inspection_identity, save_profile
from inspector.judge.regions import largest_region_areas
from conftest import free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

REPO = Path(__file__).resolve().parents[2]
PROFILE_FORMAT = "inspector.calibration/1"


# ------------------------------------------------------------------------------------------ helpers
def profile_dict(manifest: dict, image: float, *, camera=None, pixel=None, area=None, backend="onnxruntime") -> dict:
    return {"format": PROFILE_FORMAT, "camera": camera,
            "engine": {"sha256": manifest["engine_sha256"], "backend": backend, "precision": manifest["precision"],
                       "image_size": list(manifest["image_size"]),
                       "inspection": inspection_identity(manifest)},
            "thresholds": {"image": image, "pixel": pixel, "min_defect_area": area}}


def toml_value(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def write_toml(path: Path, sections: dict[str, dict]) -> Path:
    lines = []
    for name, body in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in body.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class Listener:
    """SUB on the daemon's verdict PUB (verdicts + heartbeats) and optionally its tap, collecting
    everything in a background thread (the sockets live in that thread)."""

    def __init__(self, context: zmq.Context, verdicts: str, tap: str | None = None) -> None:
        self.context, self.endpoints = context, (verdicts, tap)
        self.lock = threading.Lock()
        self.verdicts: list[wire.Verdict] = []
        self.heartbeats: list[wire.Heartbeat] = []
        self.taps: list[tuple[wire.FrameHeader, np.ndarray]] = []
        self.malformed = 0
        self.malformed_taps = 0
        self.done = threading.Event()
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.connected.wait(5)

    def _run(self) -> None:
        sub = self.context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 100_000)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self.endpoints[0])
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        tap = None
        if self.endpoints[1]:
            tap = self.context.socket(zmq.SUB)
            tap.setsockopt(zmq.LINGER, 0)
            tap.setsockopt(zmq.RCVHWM, 100_000)
            tap.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_FRAME)
            tap.connect(self.endpoints[1])
            poller.register(tap, zmq.POLLIN)
        self.connected.set()
        try:
            while not self.done.is_set():
                for sock, _ in poller.poll(20):
                    parts = sock.recv_multipart()
                    with self.lock:
                        if sock is tap:
                            try:
                                header, image = wire.decode_tap(parts)
                                self.taps.append((header, image.copy()))
                            except wire.WireError:  # the daemon mirrors malformed frames unchanged too
                                self.malformed_taps += 1
                            continue
                        try:
                            message = wire.decode_message(parts)
                        except wire.WireError:
                            self.malformed += 1
                            continue
                        (self.verdicts if isinstance(message, wire.Verdict) else self.heartbeats).append(message)
        finally:
            sub.close(0)
            if tap is not None:
                tap.close(0)

    def snapshot(self) -> tuple[list[wire.Verdict], list[wire.Heartbeat]]:
        with self.lock:
            return list(self.verdicts), list(self.heartbeats)

    def wait_verdicts(self, count: int, timeout: float = 20.0) -> list[wire.Verdict]:
        wait_until(lambda: len(self.snapshot()[0]) >= count, timeout, f"{count} verdicts (have {len(self.snapshot()[0])})")
        return self.snapshot()[0]

    def wait_ready_heartbeat(self, timeout: float = 30.0) -> wire.Heartbeat:
        return wait_until(lambda: next((h for h in self.snapshot()[1] if h.ready), None), timeout, "a ready heartbeat")

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)


def by_key(verdicts: list[wire.Verdict]) -> dict[tuple[str, int], wire.Verdict]:
    keys = Counter((v.camera_id, v.seq) for v in verdicts)
    duplicates = {key: n for key, n in keys.items() if n > 1}
    assert not duplicates, f"more than one verdict for {duplicates}"
    return {(v.camera_id, v.seq): v for v in verdicts}


def make_push(context: zmq.Context, endpoint: str) -> zmq.Socket:
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 10_000)
    push.setsockopt(zmq.LINGER, 2000)
    push.setsockopt(zmq.SNDTIMEO, 5000)
    push.connect(endpoint)
    return push


def send(push: zmq.Socket, camera: str, seq: int, image: np.ndarray, *, label: str | None = None,
         deadline_s: float | None = 10.0, deadline_ns: int | None = None) -> None:
    now = time.time_ns()
    if deadline_ns is None:
        deadline_ns = 0 if deadline_s is None else now + int(deadline_s * 1e9)
    header = wire.FrameHeader(camera_id=camera, seq=seq, part_id=f"P{seq}", capture_ns=now, deadline_ns=deadline_ns,
                              shape=(), pixel_format="bgr8", label=label)
    wire.send_frame(push, header, image)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric_value(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        metric, _, value = line.rpartition(" ")
        if metric.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', metric))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


class NotifySocket:
    """A stand-in for systemd's notification socket (AF_UNIX datagrams), collecting messages."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                continue

    def close(self) -> None:
        self.done.set()
        self.thread.join(2)
        self.sock.close()


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


def threshold_between_scores(scores: np.ndarray) -> float:
    """A threshold in the widest gap between sorted scores with >= 6 scores on each side, so that
    both decisions occur and float noise between batch sizes cannot flip one."""
    ordered = np.sort(scores)
    k = max(range(5, len(ordered) - 6), key=lambda i: ordered[i + 1] - ordered[i])
    assert ordered[k + 1] - ordered[k] > 1e-4
    return float((ordered[k] + ordered[k + 1]) / 2)


def serve(config: Path, tmp: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inspector.cli", "serve", "--config", str(config)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=open(tmp / "daemon.log", "w"), text=True,
                            env={**os.environ, **(env or {})})


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> dict:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


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
    save_profile(tmp_path / "good.json", profile_dict(manifest, 1.0))
    other = profile_dict(manifest, 1.0, camera="cam0")
    other["engine"]["sha256"] = "0" * 64                           # calibrated on another engine
    save_profile(tmp_path / "other.json", other)
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
    save_profile(tmp_path / "cam0.json", profile_dict(manifest, threshold, camera="cam0"))
    # cam1: region rule only (image threshold out of reach), min area from the engine's own maps.
    pixel = float(np.percentile(maps, 97))
    areas = largest_region_areas(maps, pixel)
    min_area = int(np.sort(areas[areas > 0])[len(areas[areas > 0]) // 2])
    assert 0 < (areas >= min_area).sum() < n
    save_profile(tmp_path / "cam1.json", profile_dict(manifest, float(scores.max()) + 1.0, camera="cam1",
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
        # PUB/SUB slow joiner: probe (camX has no profile) until the tap subscription carries frames
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
        assert all((verdicts[("camX", i)].decision, verdicts[("camX", i)].reason) == ("FAULT", "no_calibration")
                   for i in range(probes))

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
        save_profile(tmp_path / "cam0.json", profile_dict(manifest, new_threshold, camera="cam0"))
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
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        push.close(0)
        listener.close()
        notify.close()
        context.term()


def test_overload_burst_every_frame_gets_exactly_one_verdict(tmp_path, scored, tiny_engine):
    manifest, image = scored["manifest"], scored["images"][0]
    save_profile(tmp_path / "default.json", profile_dict(manifest, float(scored["scores"].max()) + 1.0))
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
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            push.close(0)
            listener.close()
            context.term()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------ in-process
FAKE_SHA = "a" * 64


class ScriptedEngine:
    """Engine double: pixel [0, 0, 0] of each image scripts the result. 255: the call raises;
    254: NaN score; 253: block until ``gate`` is set (``entered`` tells that it is blocked);
    252: sleep 0.3 s, score 0.1; anything else v: score v / 100."""

    backend = "onnxruntime"
    image_size = (8, 8)
    manifest = {"engine_sha256": FAKE_SHA, "image_size": [8, 8], "precision": "fp32"}

    def __init__(self) -> None:
        self.gate, self.entered = threading.Event(), threading.Event()
        self.calls: list[int] = []
        self.rois: list = []  # the rois argument of each call

    def infer(self, images, pixel_formats, want_maps=False, rois=None):
        codes = [int(image[0, 0, 0]) for image in images]
        self.calls.append(len(images))
        self.rois.append(rois)
        if 255 in codes:
            raise RuntimeError("scripted engine failure")
        if 253 in codes:
            self.entered.set()
            self.gate.wait(10)
        if 252 in codes:
            time.sleep(0.3)
        scores = np.array([np.nan if c == 254 else 0.1 if c == 252 else c / 100 for c in codes], np.float32)
        return EngineResult(scores, np.zeros((len(images), 8, 8), np.float32) if want_maps else None)

    def close(self) -> None:
        pass


def coded(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


class InProcess:
    """A Daemon with a ScriptedEngine in a thread, on inproc sockets of a shared context."""

    def __init__(self, tmp_path: Path, **overrides) -> None:
        manifest = {**ScriptedEngine.manifest}
        save_profile(tmp_path / "p.json", profile_dict(manifest, 0.5))
        name = f"d{time.monotonic_ns()}"
        sections = {
            "daemon": {"frames": f"inproc://{name}-frames", "verdicts": f"inproc://{name}-verdicts", "heartbeat_ms": 50,
                       "drain_ms": 300, "log_format": "text"},
            "engine": {"path": "engine.onnx", "max_batch": 4, "max_wait_ms": 200.0},
            "defaults": {"calibration": "p.json", "deadline_ms": 60000.0},
            "overload": {"max_queue": 64, "policy": "reject_oldest"}}
        for section, values in overrides.items():
            sections[section] = {**sections[section], **values}
        self.config = config_from_dict(sections, base_dir=tmp_path)
        self.engine = ScriptedEngine()
        self.context = zmq.Context()
        self.stop_event = threading.Event()
        self.daemon = Daemon(self.config, self.engine, stop_event=self.stop_event, context=self.context)
        self.summary: dict | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.listener = Listener(self.context, self.config.daemon.verdicts)
        self.thread.start()
        self.listener.wait_ready_heartbeat(10)
        self.push = make_push(self.context, self.config.daemon.frames)

    def _run(self) -> None:
        self.summary = self.daemon.serve()

    def stop(self) -> dict:
        self.stop_event.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.summary

    def close(self) -> None:
        self.engine.gate.set()
        self.stop_event.set()
        self.thread.join(10)
        self.push.close(0)
        self.listener.close()
        self.context.destroy(linger=0)


def test_engine_errors_nan_and_late_verdicts_fail_closed(tmp_path):
    line = InProcess(tmp_path)
    try:
        for seq, code in enumerate((30, 60, 255)):                  # one batch (max_wait 200 ms): the call fails
            send(line.push, "cam0", seq, coded(code))
        verdicts = by_key(line.listener.wait_verdicts(3))
        assert line.engine.calls[-1] == 3
        assert all((verdicts[("cam0", s)].decision, verdicts[("cam0", s)].reason) == ("FAULT", "engine_error")
                   for s in range(3))
        send(line.push, "cam0", 3, coded(30))                       # the daemon keeps going
        send(line.push, "cam0", 4, coded(254))                      # NaN score
        send(line.push, "cam0", 5, coded(70))
        verdicts = by_key(line.listener.wait_verdicts(6))
        assert (verdicts[("cam0", 3)].decision, verdicts[("cam0", 3)].score) == ("OK", pytest.approx(0.3))
        assert (verdicts[("cam0", 4)].decision, verdicts[("cam0", 4)].reason, verdicts[("cam0", 4)].score) == (
            "FAULT", "engine_error", None)
        assert (verdicts[("cam0", 5)].decision, verdicts[("cam0", 5)].reason) == ("REJECT", "score_above_threshold")
        send(line.push, "cam0", 6, coded(252), deadline_s=0.25)     # sent at 200 ms (max wait), judged 0.3 s later
        late = by_key(line.listener.wait_verdicts(7))[("cam0", 6)]
        assert (late.decision, late.reason, late.score) == ("FAULT", "deadline_missed", pytest.approx(0.1))
        assert late.decided_ns > late.capture_ns + 250_000_000
        summary = line.stop()
        assert summary["engine_errors"] == 1 and summary["frames_without_verdict"] == 0 and summary["exit"] == "drained"
    finally:
        line.close()


def test_stuck_engine_overload_newest_deadline_sweep_and_shutdown(tmp_path):
    line = InProcess(tmp_path, engine={"max_batch": 1, "max_wait_ms": 0.0},
                     overload={"max_queue": 3, "policy": "reject_newest"})
    try:
        send(line.push, "cam0", 0, coded(253))                      # the engine blocks on this one
        assert line.engine.entered.wait(5)
        send(line.push, "cam0", 1, coded(10))
        send(line.push, "cam0", 2, coded(10))
        send(line.push, "cam0", 3, coded(10), deadline_s=0.1)       # can never be judged in time
        send(line.push, "cam0", 4, coded(10))                       # queue full: refused (reject_newest)
        send(line.push, "cam0", 5, coded(10))
        verdicts = by_key(line.listener.wait_verdicts(2))
        assert {k[1]: v.reason for k, v in verdicts.items()} == {4: "overload_dropped", 5: "overload_dropped"}
        verdicts = by_key(line.listener.wait_verdicts(3, timeout=5))  # answered at its deadline, engine still stuck
        missed = verdicts[("cam0", 3)]
        assert (missed.decision, missed.reason) == ("FAULT", "deadline_missed")
        assert missed.decided_ns <= missed.capture_ns + 100_000_000 + 50_000_000
        summary = line.stop()                                       # drain times out after 300 ms
        verdicts = by_key(line.listener.wait_verdicts(6, timeout=5))
        assert {s: verdicts[("cam0", s)].reason for s in (0, 1, 2)} == {0: "shutdown", 1: "shutdown", 2: "shutdown"}
        assert summary["exit"] == "drain_timeout" and summary["shutdown_abandoned"] == 3
        assert summary["frames_without_verdict"] == 0 and summary["overload_dropped"] == 2
        line.engine.gate.set()                                      # the stuck call returns: nothing more is sent
        time.sleep(0.2)
        assert len(line.listener.snapshot()[0]) == 6
    finally:
        line.close()
