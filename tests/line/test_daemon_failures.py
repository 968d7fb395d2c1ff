"""The daemon's failure paths, in process: `Daemon` with a scripted engine double (engine errors, NaN
scores, late verdicts, a stuck engine at shutdown, ROIs) that a real model cannot be made to
produce on demand, on inproc sockets."""

from __future__ import annotations

import time

import numpy as np
import pytest

from daemon_helpers import InProcess, ScriptedEngine, by_key, coded, profile_dict, save_signed, send

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

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
        assert (late.decision, late.reason) == ("FAULT", "deadline_missed")   # at the deadline, or judged late
        assert late.score in (None, pytest.approx(0.1))
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
        send(line.push, "cam1", 0, coded(10), deadline_s=1.0)       # can never be judged in time
        send(line.push, "cam2", 0, coded(10))                       # queue full: refused (reject_newest)
        send(line.push, "cam2", 1, coded(10))
        verdicts = by_key(line.listener.wait_verdicts(2))
        assert {k: v.reason for k, v in verdicts.items()} == {("cam2", 0): "overload_dropped",
                                                               ("cam2", 1): "overload_dropped"}
        verdicts = by_key(line.listener.wait_verdicts(3, timeout=5))  # answered at its deadline, engine still stuck
        missed = verdicts[("cam1", 0)]
        assert (missed.decision, missed.reason) == ("FAULT", "deadline_missed")
        assert missed.capture_ns + 1_000_000_000 - 50_000_000 <= missed.decided_ns <= missed.capture_ns + 1_300_000_000
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


def test_verdicts_of_a_camera_are_published_in_seq_order(tmp_path):
    """A gap's FAULT, a frame swept at its deadline and a repeated seq are known before the frames
    ahead of them are judged: they wait, so the camera's verdicts leave in seq order."""
    line = InProcess(tmp_path, engine={"max_batch": 1, "max_wait_ms": 0.0})
    try:
        send(line.push, "cam0", 0, coded(253))                      # judged only when the gate opens
        assert line.engine.entered.wait(5)
        send(line.push, "cam0", 1, coded(10))
        send(line.push, "cam0", 3, coded(20))                       # seq 2 never sent: its FAULT is known now
        send(line.push, "cam0", 4, coded(10), deadline_s=0.05)      # swept at its deadline, engine still stuck
        send(line.push, "cam0", 4, coded(70))                       # the same seq again: FAULT sequence_replayed
        time.sleep(0.4)
        assert line.listener.snapshot()[0] == []                    # everything waits for seq 0
        line.engine.gate.set()
        verdicts = line.listener.wait_verdicts(6)
        assert [v.seq for v in verdicts] == [0, 1, 2, 3, 4, 4]
        assert sorted((v.seq, v.reason) for v in verdicts) == [(0, "score_above_threshold"), (1, ""), (2, "sequence_gap"),
                                                               (3, ""), (4, "deadline_missed"), (4, "sequence_replayed")]
        assert len({v.epoch for v in verdicts}) == 1 and verdicts[0].epoch == line.daemon.epoch
        summary = line.stop()
        assert summary["frames_without_verdict"] == 0 and summary["replayed_frames"] == 1
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
