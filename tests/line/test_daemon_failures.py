"""The daemon's failure paths, in process: `Daemon` with a scripted engine double (engine errors, NaN
scores, late verdicts, a stuck engine at shutdown, ROIs) that a real model cannot be made to
produce on demand, on inproc sockets."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from inspector.line.config import config_from_dict
from inspector.line.daemon import Daemon
from inspector.engine import EngineResult

from daemon_helpers import TRUST, Listener, by_key, make_push, profile_dict, save_signed, send

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

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


def test_the_cameras_roi_reaches_the_engine_and_a_profile_calibrated_without_it_is_refused(tmp_path):
    manifest = {**ScriptedEngine.manifest}
    save_signed(tmp_path / "roi.json", {**profile_dict(manifest, 0.5, camera="cam0"), "roi": {"rect": [1, 2, 3, 4]}})
    save_signed(tmp_path / "whole.json", profile_dict(manifest, 0.5, camera="cam1"))
    line = InProcess(tmp_path, cameras={"cam0": {"calibration": "roi.json", "roi": "1,2,3,4"},
                                        "cam1": {"calibration": "whole.json", "roi": "0,0,4,4"}})
    try:
        assert line.daemon.thresholds.cameras["cam1"] is None            # refused at start: calibrated without it
        send(line.push, "cam0", 0, coded(30))
        send(line.push, "cam1", 0, coded(30))
        verdicts = by_key(line.listener.wait_verdicts(2))
        assert (verdicts[("cam0", 0)].decision, verdicts[("cam0", 0)].score) == ("OK", pytest.approx(0.3))
        assert (verdicts[("cam1", 0)].decision, verdicts[("cam1", 0)].reason) == ("FAULT", "no_calibration")
        (mask,) = line.engine.rois[-1]                                     # only cam0's frame reached the engine
        expected = np.zeros((8, 8), bool)
        expected[2:6, 1:4] = True                                          # x=1, y=2, w=3, h=4
        assert np.array_equal(mask, expected)
        assert line.stop()["frames_without_verdict"] == 0
    finally:
        line.close()
