"""Helpers shared by the daemon tests (test_daemon.py, test_daemon_failures.py): configs and
profiles, a verdict listener, frame senders, HTTP and metrics readers, a fake systemd notify socket,
and `inspector serve` as a process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import zmq

from inspector.engine import EngineResult
from inspector.line import wire
from inspector.line.config import config_from_dict
from inspector.line.daemon import Daemon
from inspector.judge.profile import inspection_identity, save_profile
from conftest import SITE_PUBLIC, site_key, wait_until

REPO = Path(__file__).resolve().parents[2]
PROFILE_FORMAT = "inspector.calibration/1"


# ------------------------------------------------------------------------------------------ helpers
def profile_dict(manifest: dict, image: float, *, camera=None, pixel=None, area=None, backend="onnxruntime") -> dict:
    return {"format": PROFILE_FORMAT, "camera": camera,
            "engine": {"sha256": manifest["engine_sha256"], "backend": backend, "precision": manifest["precision"],
                       "image_size": list(manifest["image_size"]),
                       "inspection": inspection_identity(manifest)},
            "thresholds": {"image": image, "pixel": pixel, "min_defect_area": area}}


def save_signed(path: Path, data: dict) -> Path:
    """``save_profile`` signed with the run's site key (what ``inspector calibrate`` does)."""
    return save_profile(path, data, signing_key=site_key())


TRUST = {"keys": [str(SITE_PUBLIC)]}   # [trust] of the test daemons: the run's site key


def toml_value(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return repr(value)


def write_toml(path: Path, sections: dict[str, dict]) -> Path:
    """A daemon config; one with a ``daemon`` section and no ``trust`` gets :data:`TRUST`."""
    if "daemon" in sections and "trust" not in sections:
        sections = {**sections, "trust": TRUST}
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
         deadline_s: float | None = 10.0, deadline_ns: int | None = None, session: int = 0) -> None:
    now = time.time_ns()
    if deadline_ns is None:
        deadline_ns = 0 if deadline_s is None else now + int(deadline_s * 1e9)
    header = wire.FrameHeader(camera_id=camera, seq=seq, part_id=f"P{seq}", capture_ns=now, deadline_ns=deadline_ns,
                              shape=(), pixel_format="bgr8", label=label, session=session)
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


def close_all(proc: subprocess.Popen, push: zmq.Socket, listener: "Listener", context: zmq.Context) -> None:
    """A test's cleanup: kill the daemon if it still runs, close the test's sockets and context."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    push.close(0)
    listener.close()
    context.term()


# ------------------------------------------------------------------------------------------ in process
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
        save_signed(tmp_path / "p.json", profile_dict(manifest, 0.5))
        name = f"d{time.monotonic_ns()}"
        sections = {
            "daemon": {"frames": f"inproc://{name}-frames", "verdicts": f"inproc://{name}-verdicts", "heartbeat_ms": 50,
                       "drain_ms": 300, "log_format": "text"},
            "engine": {"path": "engine.onnx", "max_batch": 4, "max_wait_ms": 200.0},
            "defaults": {"calibration": "p.json", "deadline_ms": 60000.0},
            "overload": {"max_queue": 64, "policy": "reject_oldest"}, "trust": TRUST}
        for section, values in overrides.items():
            sections[section] = {**sections.get(section, {}), **values}
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


def extreme_images(tiny_dataset: Path, tiny_engine: Path) -> dict:
    """The tiny engine's highest- and lowest-scoring test images (``defect``, ``good``), a
    ``threshold`` between their scores, and the engine's ``manifest``."""
    import cv2

    from inspector.engine import open_engine

    files = sorted((tiny_dataset / "test").glob("*/*.png"))
    pictures = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]
    engine = open_engine("onnxruntime", str(tiny_engine), threads=1)
    scores = engine.infer(pictures, ["bgr8"] * len(pictures)).scores
    manifest = engine.manifest
    engine.close()
    high, low = int(np.argmax(scores)), int(np.argmin(scores))
    assert scores[high] - scores[low] > 1e-3
    return {"defect": pictures[high], "good": pictures[low], "threshold": float(scores[high] + scores[low]) / 2,
            "manifest": manifest}
