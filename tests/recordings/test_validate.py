"""`inspector validate` end to end: a labelled recording made with `inspector record`, a profile made
with `inspector calibrate`, and real `inspector serve` daemons started by validate itself.

Expected numbers are computed here from the recording and the engine's own scores of the same
images (opened in-test with onnxruntime), never assumed from the tiny model's accuracy. The live
round trip records a real daemon's tap with `inspector record --connect` and validates that file.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from conftest import REPO, SITE_PUBLIC, run_cli, site_key
import inspector.recordings.validation_run as validation_run
from inspector.line import wire
from inspector.line.config import config_from_dict
from inspector.engine import open_engine
from inspector.evaluation.metrics import image_auroc
from inspector.judge.profile import load_profile, save_profile
from inspector.recordings.recording import RecordingError, RecordingWriter, open_recording
from inspector.recordings.replay import replay
from inspector.model.synthetic import make_normal
from inspector.recordings.validate import (ExpectedFrame, ValidationError, _Collector, add_arguments, dump_toml, exit_status,
                                           format_table, spec_from_engine, specs_from_args, summarise, validate)
from conftest import free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LONG_DEADLINE_MS = "60000"  # a loaded 2-core CI box must not turn judgements into deadline FAULTs


# ------------------------------------------------------------------------------------------ helpers
def frames_of(path: Path, cameras=None) -> list:
    return list(open_recording(path).iter_frames(cameras))


def cli_process(*args: str, stdout=subprocess.PIPE, stderr=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inspector.cli", *args], cwd=REPO, stdout=stdout, stderr=stderr,
                            text=True)


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out or "", err or ""


def expected_decision(score: float, threshold: float) -> str:
    return "REJECT" if score >= threshold else "OK"  # the documented image rule (no region rule here)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_dataset, tiny_engine):
    """The labelled recording R (CLI), a profile P calibrated on separate good parts (CLI), a
    second profile P_low with a lower threshold, and the engine's own scores of R's frames."""
    work = tmp_path_factory.mktemp("validate")
    recording = work / "R.mcap"
    run_cli("record", "--from-folder", str(tiny_dataset), "--out", str(recording))
    good = work / "good"
    good.mkdir()
    rng = np.random.default_rng(11)  # not the fixture's seed 1: parts the model never saw
    for i in range(24):
        assert cv2.imwrite(str(good / f"{i:03d}.png"), make_normal(rng, "texture", (64, 64)))
    profile = work / "P.json"
    run_cli("calibrate", "--engine", str(tiny_engine), "--good", str(good), "--target-frr", "0.05",
            "--no-region-rule", "--out", str(profile))
    frames = frames_of(recording)
    engine = open_engine("onnxruntime", str(tiny_engine))
    try:
        scores = engine.infer([f.image for f in frames], [f.header.pixel_format for f in frames]).scores
    finally:
        engine.close()
    threshold_a = load_profile(profile).image_threshold
    below = np.sort(scores[scores < threshold_a - 1e-4])
    assert len(below) >= 4, "the tiny model's scores leave no room for a lower threshold"
    k = max(range(1, len(below) - 2), key=lambda i: below[i + 1] - below[i])
    threshold_b = float((below[k] + below[k + 1]) / 2)  # some frames flip OK -> REJECT, some stay OK
    low = json.loads(profile.read_text())
    low["thresholds"]["image"] = threshold_b
    profile_low = save_profile(work / "P_low.json", low, signing_key=site_key())   # as calibrate signs
    return argparse.Namespace(work=work, recording=recording, profile=profile, profile_low=profile_low,
                              frames=frames, scores=scores, threshold_a=threshold_a, threshold_b=threshold_b,
                              engine=tiny_engine)


def check_run(run: dict, frames: list, scores: np.ndarray, threshold: float) -> None:
    """Every frame exactly once, counts and rates consistent, decisions = score vs threshold."""
    n = len(frames)
    assert run["n"] == n and run["missing"] == 0 and run["sent"] == n
    assert run["duplicate_verdicts"] == 0 and run["unexpected_verdicts"] == 0 and run["gap_verdicts"] == 0
    assert run["ok"] + run["reject"] + run["fault"] == n and run["fault"] == 0
    assert run["daemon"]["frames_without_verdict"] == 0 and run["daemon"]["messages_received"] == n
    records = run["frames"]
    assert [(r["camera_id"], r["seq"], r["part_id"], r["label"], r["source"]) for r in records] == [
        (f.header.camera_id, f.header.seq, f.header.part_id, f.header.label, f.header.source) for f in frames]
    got = np.array([r["score"] for r in records])
    np.testing.assert_allclose(got, scores, rtol=1e-5, atol=1e-6)
    assert [r["decision"] for r in records] == [expected_decision(r["score"], threshold) for r in records]
    assert all(r["threshold"] == pytest.approx(threshold) for r in records)
    is_good = np.array([f.header.label == "good" for f in frames])
    ok = np.array([r["decision"] == "OK" for r in records])
    confusion = run["confusion"]
    assert confusion["good"] == {"OK": int((ok & is_good).sum()), "REJECT": int((~ok & is_good).sum()),
                                 "FAULT": 0, "missing": 0}
    assert confusion["defect"] == {"OK": int((ok & ~is_good).sum()), "REJECT": int((~ok & ~is_good).sum()),
                                   "FAULT": 0, "missing": 0}
    assert run["false_reject_rate"] == pytest.approx(confusion["good"]["REJECT"] / is_good.sum())
    assert run["escape_rate"] == pytest.approx(confusion["defect"]["OK"] / (~is_good).sum())
    engine_auroc = image_auroc(~is_good, scores)
    assert 0.0 <= run["image_auroc"] <= 1.0
    assert run["image_auroc"] == pytest.approx(engine_auroc, abs=1e-12)
    assert run["auroc_frames"] == n and run["unscored"] == 0
    assert 0 < run["latency_ms_p50"] <= run["latency_ms_p99"] <= run["latency_ms_max"]
    labels = {f.header.label for f in frames}
    assert set(run["per_label"]) == labels
    for label in labels:
        rows = [r for r in records if r["label"] == label]
        stats = run["per_label"][label]
        assert stats["n"] == len(rows) and stats["ok"] == sum(r["decision"] == "OK" for r in rows)
    assert run["per_camera"] == {"cam0": {"n": n, "ok": run["ok"], "reject": run["reject"], "fault": 0, "missing": 0,
                                          "latency_ms_p99": run["latency_ms_p99"]}}
    assert sum(run["reasons"].values()) == n and run["reasons"].get("ok", 0) == run["ok"]


# ------------------------------------------------------------------------------------------ tests
def test_validate_ab_through_real_daemons(setup, tmp_path):
    out_json, report = tmp_path / "v.json", tmp_path / "report"
    proc = run_cli("validate", "--recording", str(setup.recording), "--engine", str(setup.engine),
                   "--calibration", str(setup.profile), "--calibration2", str(setup.profile_low),
                   "--deadline-ms", LONG_DEADLINE_MS, "--json", str(out_json), "--report", str(report), timeout=120)
    result = json.loads(out_json.read_text())
    assert result["recording"]["n_frames"] == len(setup.frames) and result["recording"]["truncated"] is False
    check_run(result, setup.frames, setup.scores, setup.threshold_a)
    check_run(result["b"], setup.frames, setup.scores, setup.threshold_b)
    assert result["complete"] is True
    for run in (result, result["b"]):   # credit-based pacing: never more frames out than a batch + a waiting one
        assert run["replay"]["credit_window"] == 16 and 1 <= run["replay"]["max_outstanding"] <= 16

    # changed = exactly the frames whose decision differs between the two thresholds
    expected = [(f.header.seq, expected_decision(s, setup.threshold_a), expected_decision(s, setup.threshold_b))
                for f, s in zip(setup.frames, [r["score"] for r in result["frames"]])
                if expected_decision(s, setup.threshold_a) != expected_decision(s, setup.threshold_b)]
    assert expected, "the lower threshold must change some decisions"
    assert len(expected) < len(setup.frames)
    assert [(c["seq"], c["decision_a"], c["decision_b"]) for c in result["changed"]] == expected
    assert result["n_changed"] == len(expected)
    by_seq = {f.header.seq: f.header for f in setup.frames}
    for change in result["changed"]:
        header = by_seq[change["seq"]]
        assert (change["camera_id"], change["part_id"], change["label"], change["source"]) == (
            header.camera_id, header.part_id, header.label, header.source)
        assert setup.threshold_b <= change["score_b"] < setup.threshold_a

    # stdout table and report files
    assert "image AUROC" in proc.stdout and f"decisions changed A -> B: {len(expected)}" in proc.stdout
    assert json.loads((report / "validation.json").read_text())["n_changed"] == len(expected)
    markdown = (report / "report.md").read_text()
    assert "| good |" in markdown and "Decisions changed A -> B" in markdown
    assert cv2.imread(str(report / "scores.png")) is not None
    assert (report / "daemon-A.log").stat().st_size > 0 and (report / "daemon-B.log").is_file()


def test_live_record_then_validate_round_trip(setup, tmp_path):
    """daemon with a tap -> `inspector record --connect` -> replay R -> validate the live file R2."""
    frames_ep, verdicts_ep, tap_ep = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
    config = tmp_path / "live.toml"
    config.write_text(dump_toml({
        "daemon": {"frames": frames_ep, "verdicts": verdicts_ep, "tap": tap_ep, "heartbeat_ms": 100, "tap_hwm": 1000},
        "engine": {"path": str(setup.engine)},
        "defaults": {"deadline_ms": 60000.0, "calibration": str(setup.profile)},
        "trust": {"keys": [str(SITE_PUBLIC)]},
    }))
    live = tmp_path / "R2.mcap"
    context = zmq.Context()
    with open(tmp_path / "daemon.log", "w") as daemon_log:
        daemon = cli_process("serve", "--config", str(config), stderr=daemon_log)
    recorder = None
    try:
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_HEARTBEAT)
        sub.connect(verdicts_ep)
        wait_until(lambda: sub.poll(100) and wire.decode_message(sub.recv_multipart()).ready, 60, "daemon ready")
        recorder = cli_process("record", "--connect", tap_ep, "--verdicts", verdicts_ep, "--out", str(live))
        # PUB/SUB loses what is sent before the subscription arrives: send probe frames of another
        # camera until the recorder's file shows one, then replay the recording.
        push = context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.setsockopt(zmq.SNDTIMEO, 5000)
        push.connect(frames_ep)
        probe = np.zeros((64, 64, 3), np.uint8)
        probe_seq = iter(range(10_000))

        def probe_recorded() -> bool:
            now = time.time_ns()
            wire.send_frame(push, wire.FrameHeader("probe", next(probe_seq), "", now, now + 60_000_000_000, ()), probe)
            try:
                return bool(frames_of(live, ["probe"]))
            except RecordingError:
                return False  # not created yet
        wait_until(probe_recorded, 30, "the recorder to record a probe frame", interval=0.2)
        push.close()
        sent = replay(setup.recording, frames_ep, max_rate=True, deadline_ms=60000.0, context=context)
        assert sent["sent"] == len(setup.frames)
        wait_until(lambda: len(frames_of(live, ["cam0"])) == len(setup.frames), 30, "every frame in the live file")
        out, err = stop_process(recorder)
        assert recorder.returncode == 0, err
        assert json.loads(out)["stopped_by"] == "signal"
    finally:
        for proc in (recorder, daemon):
            if proc is not None and proc.poll() is None:
                stop_process(proc)
        context.destroy(linger=0)

    recorded = open_recording(live)
    assert recorded.truncated is False and recorded.metadata["source_kind"] == "live_tap"
    live_frames = frames_of(live)
    cam0 = [f for f in live_frames if f.header.camera_id == "cam0"]
    n_probe = len(live_frames) - len(cam0)
    assert n_probe >= 1 and all(f.header.camera_id == "probe" for f in live_frames[:n_probe])
    fields = lambda f: (f.header.seq, f.header.part_id, f.header.label, f.header.source, f.header.pixel_format, f.payload)
    assert [fields(f) for f in cam0] == [fields(f) for f in setup.frames]  # the same frames, bytes included

    result = validate(live, config, deadline_ms=60000.0, timeout_s=30)  # config file: validate replaces its sockets
    assert result["n"] == len(live_frames) and result["missing"] == 0 and result["complete"] is True
    assert exit_status(result) == 0
    assert result["per_camera"]["cam0"]["n"] == len(setup.frames)
    unlabelled = result["confusion"]["unlabelled"]  # the probes: judged, but not in the rates
    assert unlabelled["OK"] + unlabelled["REJECT"] == n_probe and unlabelled["FAULT"] == unlabelled["missing"] == 0
    labelled = [r for r in result["frames"] if r["camera_id"] == "cam0"]
    np.testing.assert_allclose([r["score"] for r in labelled], setup.scores, rtol=1e-5, atol=1e-6)
    assert [r["decision"] for r in labelled] == [expected_decision(r["score"], setup.threshold_a) for r in labelled]
    assert result["image_auroc"] == pytest.approx(image_auroc([f.header.label != "good" for f in setup.frames],
                                                              setup.scores), abs=1e-12)
    assert result["auroc_frames"] == len(setup.frames)  # the unlabelled probes are not in the AUROC


def _copy_one_chunk_per_frame(source: Path, out: Path, compression: str = "zstd") -> None:
    rec = open_recording(source)
    with RecordingWriter(out, metadata=rec.metadata, compression=compression, flush_interval_s=3600) as writer:
        for f in rec.iter_frames(decode_images=False):
            writer.write_frame(f.header, f.payload, log_time_ns=f.log_time_ns)
            writer.flush()  # one chunk per frame: a cut keeps the frames before it


def test_truncated_recording_validates_the_frames_before_the_cut(setup, tmp_path):
    chunked, cut = tmp_path / "chunked.mcap", tmp_path / "cut.mcap"
    _copy_one_chunk_per_frame(setup.recording, chunked)
    data = chunked.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    kept = frames_of(cut)
    assert 0 < len(kept) < len(setup.frames)
    result = validate(cut, spec_from_engine(setup.engine, setup.profile), deadline_ms=60000.0, timeout_s=30)
    assert result["recording"]["truncated"] is True and result["recording"]["truncation"]
    assert result["complete"] is False and exit_status(result) == 1        # frames are missing: never complete
    assert result["n"] == len(kept) and result["missing"] == 0 and result["sent"] == len(kept)
    assert [(r["seq"], r["part_id"]) for r in result["frames"]] == [(f.header.seq, f.header.part_id) for f in kept]
    np.testing.assert_allclose([r["score"] for r in result["frames"]], setup.scores[: len(kept)], rtol=1e-5, atol=1e-6)


def test_corrupt_or_foreign_recording_is_a_clear_error_with_status_2(setup, tmp_path):
    plain, corrupt = tmp_path / "plain.mcap", tmp_path / "corrupt.mcap"
    _copy_one_chunk_per_frame(setup.recording, plain, compression="none")
    data = bytearray(plain.read_bytes())
    middle = data.find(setup.frames[len(setup.frames) // 2].payload)  # raw pixels, stored verbatim
    assert middle > 0
    data[middle + 100] ^= 0xFF  # chunk CRC no longer matches
    corrupt.write_bytes(bytes(data))
    proc = run_cli("validate", "--recording", str(corrupt), "--engine", str(setup.engine),
                   "--calibration", str(setup.profile), check=False, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unusable recording" in proc.stderr and str(corrupt) in proc.stderr and "CRC" in proc.stderr
    assert "ready" not in proc.stderr  # failed before any daemon was started
    foreign = tmp_path / "foreign.mcap"
    foreign.write_bytes(b"this is not a recording at all")
    proc = run_cli("validate", "--recording", str(foreign), "--engine", str(setup.engine),
                   "--calibration", str(setup.profile), check=False, timeout=60)
    assert proc.returncode == 2 and "not an MCAP file" in proc.stderr


def test_a_daemon_that_dies_mid_run_leaves_missing_frames_and_status_1(setup, tmp_path, monkeypatch):
    """SIGKILL the daemon validate started while a paced replay (10 frames/s) is under way."""
    started: list = []

    class Recorded(validation_run._DaemonProcess):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(validation_run, "_DaemonProcess", Recorded)

    def kill_when_replaying() -> None:
        wait_until(lambda: started and "daemon ready" in started[0].log_path.read_text(errors="replace"), 60,
                   "the daemon to be ready")
        time.sleep(0.6)  # the replay (2.4 s at speed 1) is under way
        started[0].proc.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_when_replaying, daemon=True)
    killer.start()
    result = validate(setup.recording, spec_from_engine(setup.engine, setup.profile), speed=1.0,
                      deadline_ms=60000.0, timeout_s=30)
    killer.join(5)
    assert result["daemon_died"] is True and result["complete"] is False and exit_status(result) == 1
    judged = [r for r in result["frames"] if r["decision"] is not None]
    assert 0 < result["missing"] == len(setup.frames) - len(judged)
    assert result["n"] == len(setup.frames) == result["ok"] + result["reject"] + result["fault"] + result["missing"]
    assert result["confusion"]["good"]["missing"] + result["confusion"]["defect"]["missing"] == result["missing"]
    assert result["sent"] is not None and result["sent"] < len(setup.frames)  # the replay stopped too
    assert "frame(s) without a verdict" in format_table(result)


# ------------------------------------------------------------------------------------------ pure parts
def _frame(index: int, seq: int, label: str | None, camera: str = "c") -> ExpectedFrame:
    return ExpectedFrame(index, camera, seq, f"p{seq}", label, None)


def _verdict(frame: ExpectedFrame, decision: str, score: float | None, reason: str = "") -> wire.Verdict:
    reason = reason or {"OK": "", "REJECT": "score_above_threshold", "FAULT": "engine_error"}[decision]
    return wire.Verdict(frame.camera_id, frame.seq, frame.part_id, 1_000_000_000, decision, reason, score, 0.5,
                        1_000_000_000 + (frame.seq + 1) * 1_000_000, label=frame.label)


def test_summarise_counts_missing_faults_and_unscored_frames():
    frames = [_frame(0, 0, "good"), _frame(1, 1, "good"), _frame(2, 2, "crack"), _frame(3, 3, "crack"),
              _frame(4, 4, "good"), _frame(5, 5, None)]
    collector = _Collector(frames)
    for message in [_verdict(frames[0], "OK", 0.1), _verdict(frames[1], "REJECT", 0.7),
                    _verdict(frames[2], "OK", 0.3), _verdict(frames[3], "FAULT", None),
                    _verdict(frames[5], "OK", 0.2), _verdict(frames[0], "OK", 0.1),
                    wire.Verdict("c", 9, "", 0, "FAULT", "sequence_gap", None, None, 1),
                    wire.Verdict("other", 0, "", 0, "FAULT", "decode_error", None, None, 1)]:
        collector.on_message(message)
    assert (collector.duplicates, collector.gap_verdicts, collector.unexpected) == (1, 1, 1)
    result = summarise(frames, collector.verdicts)
    assert (result["n"], result["ok"], result["reject"], result["fault"], result["missing"]) == (6, 3, 1, 1, 1)
    assert result["confusion"]["good"] == {"OK": 1, "REJECT": 1, "FAULT": 0, "missing": 1}
    assert result["confusion"]["defect"] == {"OK": 1, "REJECT": 0, "FAULT": 1, "missing": 0}
    assert result["confusion"]["unlabelled"] == {"OK": 1, "REJECT": 0, "FAULT": 0, "missing": 0}
    assert result["false_reject_rate"] == pytest.approx(1 / 2)  # of the good frames with a verdict
    assert result["escape_rate"] == pytest.approx(1 / 2)
    assert result["unscored"] == 1 and result["auroc_frames"] == 3  # the FAULT has no score
    assert result["image_auroc"] == pytest.approx(image_auroc([0, 0, 1], [0.1, 0.7, 0.3]))
    assert result["reasons"] == {"ok": 3, "score_above_threshold": 1, "engine_error": 1}
    assert result["latency_ms_p50"] == pytest.approx(np.percentile([1, 2, 3, 4, 6], 50))
    assert exit_status({**result, "complete": False}) == 1 and exit_status({**result, "complete": True}) == 0
    only_good = summarise(frames[:2], collector.verdicts)
    assert only_good["image_auroc"] is None and only_good["escape_rate"] is None


def test_repeated_keys_match_in_order_and_toml_round_trips(tmp_path):
    frames = [_frame(0, 0, "good"), _frame(1, 0, "crack")]  # a grabber restart: the same (camera, seq) twice
    collector = _Collector(frames)
    collector.on_message(_verdict(frames[0], "OK", 0.1))
    collector.on_message(_verdict(frames[1], "REJECT", 0.9))
    assert [collector.verdicts[i].decision for i in (0, 1)] == ["OK", "REJECT"]
    config = {"daemon": {"frames": "tcp://127.0.0.1:5", "verdicts": "tcp://127.0.0.1:6", "heartbeat_ms": 100},
              "engine": {"path": "/x/e \"q\".onnx", "max_wait_ms": 2.5},
              "cameras": {"cam.0 west": {"calibration": "/c/p.json"}}}
    text = dump_toml(config)
    assert tomllib.loads(text) == config
    assert config_from_dict(tomllib.loads(text)).calibration_for("cam.0 west")[0] == "/c/p.json"


def test_contradictory_options_are_refused():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for argv in (["--recording", "r"], ["--recording", "r", "--engine", "e", "--config", "c"],
                 ["--recording", "r", "--config", "c", "--calibration", "p"],
                 ["--recording", "r", "--engine", "e", "--config2", "c", "--calibration2", "p"]):
        with pytest.raises(ValidationError):
            specs_from_args(parser.parse_args(argv))
    a, b = specs_from_args(parser.parse_args(["--recording", "r", "--engine", "e.onnx", "--calibration", "p.json",
                                              "--calibration2", "q.json"]))
    assert a.config["engine"] == b.config["engine"] and not a.scores_only and not b.scores_only
    assert Path(b.config["defaults"]["calibration"]).name == "q.json"
    (only,) = specs_from_args(parser.parse_args(["--recording", "r", "--engine", "e.onnx"]))
    assert only.scores_only
