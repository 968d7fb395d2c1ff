"""`inspector validate`: run a labelled recording through the real daemon path and report.

    inspector validate --recording FILE (--engine FILE [--calibration FILE] [--backend B] | --config FILE)
                       [--config FILE2 | --config2 FILE2 | --calibration2 FILE2 | --engine2 FILE2]
                       [--json FILE] [--report DIR] [--speed X | --max] [--deadline-ms D]
                       [--timeout S] [--start-timeout S]

For each configuration (A, and B when a second one is given) this module

1. writes a daemon config into a temporary folder: the given config's engine, batching, defaults,
   per-camera profiles and overload settings, or one generated from ``--engine`` +
   ``--calibration``; the sockets are always fresh TCP ports on 127.0.0.1 (tap and health off), so
   a validation never collides with a daemon running on the line; checks it like
   ``serve --check-config`` (engine hash, every profile against the engine) and fails with the
   problems before starting anything;
2. starts ``inspector serve`` as a subprocess, SUBscribes to its verdict PUB and waits (bounded)
   for a heartbeat with ``ready = true``;
3. replays the recording into the daemon's frame endpoint with :func:`inspector.recordings.replay.replay`
   in-process (as fast as the daemon takes frames by default, or at ``speed`` x the recorded
   timing) and collects verdicts until every replayed frame has one, or ``timeout_s`` after the
   last frame was sent, or the daemon died;
4. sends SIGTERM, keeps collecting while the daemon drains (verdicts it publishes then still
   count), and reads its summary.

Frames are matched to verdicts by (camera_id, seq), in recording order for repeated keys.
``sequence_gap`` verdicts (a recording with holes in ``seq``) are counted apart, never matched to a
frame. A frame without a verdict is ``missing`` and makes the exit status 1.

The metrics (:func:`summarise`) are pure functions of the recording's frames and the verdicts;
see docs/recordings.md ("Validation") for every key. No torch here (unless a config asks the
daemon for the torch backend, and then only in the daemon process).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import zmq

from inspector.core.stats import percentile
from inspector.judge.reasons import DECISIONS
from inspector.line import transport, wire
from inspector.line.config import ConfigError, check_config, config_from_dict, engine_manifest, load_config
from inspector.evaluation.metrics import image_auroc
from inspector.recordings.recording import RecordingError, open_recording

log = logging.getLogger(__name__)

FORMAT = "inspector.validation/1"
DEFAULT_DEADLINE_MS = 5000.0     # generated configs: deadline of frames that carry none
DEFAULT_TIMEOUT_S = 60.0         # longest wait for verdicts after the last frame was sent
DEFAULT_START_TIMEOUT_S = 120.0  # longest wait for the daemon's first ready heartbeat
GENERATED_MAX_QUEUE = 4096       # generated configs: frames waiting for the engine before overload drops
HEARTBEAT_MS = 100               # heartbeat period of validation daemons (readiness is seen fast)
SCORES_ONLY_THRESHOLD = 1e30     # --engine without --calibration: a threshold no score reaches
STOP_GRACE_S = 15.0              # after drain_ms + linger_ms: how long SIGTERM may take before SIGKILL
POLL_MS = 50
REPLAY_SEND_TIMEOUT_S = 10.0     # a frame the daemon does not take within this long fails the replay
REPLAY_ERROR_WAIT_S = 2.0        # a replay that failed: how long to wait for verdicts of what it sent
BIND_ATTEMPTS = 3                # fresh ports when a daemon could not bind (a port taken meanwhile)
MAX_REPORT_ROWS = 200            # changed frames listed in report.md / on stdout (all are in the JSON)
GOOD_LABEL = "good"


class ValidationError(RuntimeError):
    """Validation could not run: bad arguments, an unusable config, a daemon that did not start."""


# ------------------------------------------------------------------------------------------------
# The recording's frames
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedFrame:
    """One frame of the recording, in file order (``index`` 0..n-1): who it is and its label."""

    index: int
    camera_id: str
    seq: int
    part_id: str
    label: str | None
    source: str | None

    @property
    def key(self) -> tuple[str, int]:
        return self.camera_id, self.seq

    @property
    def label_class(self) -> str:
        return label_class(self.label)


def label_class(label: str | None) -> str:
    """"good" for label "good", "unlabelled" for no label (None or ""), else "defect"."""
    if not label:
        return "unlabelled"
    return "good" if label == GOOD_LABEL else "defect"


def read_frames(recording: str | Path) -> tuple[list[ExpectedFrame], dict[str, Any]]:
    """Every frame of ``recording`` (headers checked, images not decoded) and a description of the
    recording (path, n_frames, cameras, labels, truncated, truncation). A truncated file yields
    the frames before the cut. Raises RecordingError for a missing, foreign or damaged file and
    ValidationError when it holds no frame."""
    rec = open_recording(recording)
    frames: list[ExpectedFrame] = []
    for f in rec.iter_frames(decode_images=False):
        h = f.header
        frames.append(ExpectedFrame(len(frames), h.camera_id, h.seq, h.part_id, h.label, h.source))
    truncation = rec.info()["truncation"] if rec.truncated else ""
    if not frames:
        raise ValidationError(f"{recording}: the recording holds no (complete) frame to validate")
    description = {
        "path": str(recording),
        "n_frames": len(frames),
        "cameras": dict(sorted(Counter(f.camera_id for f in frames).items())),
        "labels": dict(sorted(Counter(f.label or "(none)" for f in frames).items())),
        "truncated": rec.truncated,
        "truncation": truncation,
    }
    return frames, description


# ------------------------------------------------------------------------------------------------
# Daemon configurations
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """What one validation run judges with. ``config``: a daemon config as a dict (absolute paths;
    the sockets are replaced for the run). ``scores_only``: the profile is a placeholder that
    rejects nothing (``--engine`` without ``--calibration``): decisions and rates mean nothing,
    scores and AUROC do. ``description``: for reports."""

    config: dict[str, Any]
    description: str
    scores_only: bool = False


def free_tcp_endpoint(host: str = "127.0.0.1") -> str:
    """``tcp://HOST:PORT`` with a port that was free a moment ago (bound to port 0, released)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return f"tcp://{host}:{s.getsockname()[1]}"


def spec_from_config_file(path: str | Path) -> RunSpec:
    """The config at ``path`` (schema-checked, relative paths resolved) as a RunSpec. Raises
    ConfigError."""
    config = load_config(path)
    return RunSpec(config.model_dump(), f"config {path}")


def spec_from_engine(engine: str | Path, calibration: str | Path | None = None, *, backend: str = "onnxruntime",
                     deadline_ms: float = DEFAULT_DEADLINE_MS) -> RunSpec:
    """A generated config for ``engine`` judged with ``calibration`` as the default profile (every
    camera). Without a calibration the run is scores-only (see RunSpec); the placeholder profile is
    written when the run starts. ``deadline_ms``: deadline of frames that carry none."""
    engine = Path(engine).resolve()
    config = {
        "daemon": {"id": "inspector-validate", "frames": "tcp://127.0.0.1:1", "verdicts": "tcp://127.0.0.1:2"},
        "engine": {"path": str(engine), "backend": backend},
        "defaults": {"deadline_ms": float(deadline_ms),
                     "calibration": str(Path(calibration).resolve()) if calibration else ""},
        "overload": {"max_queue": GENERATED_MAX_QUEUE},
    }
    what = f"engine {engine.name} ({backend})" + (f" + calibration {Path(calibration).name}" if calibration
                                                   else " without calibration (scores only)")
    return RunSpec(config, what, scores_only=calibration is None)


def spec_variant(base: RunSpec, *, engine: str | Path | None = None, calibration: str | Path | None = None) -> RunSpec:
    """``base`` with another engine file and/or every profile (default and per camera) replaced by
    ``calibration``. A scores-only base given a calibration becomes a calibrated run."""
    config = json.loads(json.dumps(base.config))
    parts = []
    if engine is not None:
        config["engine"]["path"] = str(Path(engine).resolve())
        parts.append(f"engine {Path(engine).name}")
    scores_only = base.scores_only
    if calibration is not None:
        path = str(Path(calibration).resolve())
        config.setdefault("defaults", {})["calibration"] = path
        for section in config.get("cameras", {}).values():
            section["calibration"] = path
        parts.append(f"calibration {Path(calibration).name}")
        scores_only = False
    return RunSpec(config, f"A with {' and '.join(parts)}", scores_only=scores_only)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} to TOML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    raise ValueError(f"cannot write a {type(value).__name__} to the daemon config")


def dump_toml(config: dict[str, Any]) -> str:
    """A daemon config dict (sections of scalars, ``cameras`` of sections) as TOML text."""
    lines: list[str] = []
    for name, body in config.items():
        if name == "cameras":
            continue
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in body.items())
        lines.append("")
    for camera, body in config.get("cameras", {}).items():
        lines.append(f"[cameras.{json.dumps(camera)}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in body.items())
        lines.append("")
    return "\n".join(lines)


def _scores_only_profile(config: dict[str, Any], out: Path) -> Path:
    """Write a profile for the configured engine whose threshold no score reaches."""
    from inspector.judge.profile import engine_block, new_profile, save_profile

    manifest = engine_manifest(config_from_dict(config))
    backend = config["engine"].get("backend", "onnxruntime")
    data = new_profile(engine_block(manifest, backend),
                       {"image": SCORES_ONLY_THRESHOLD, "pixel": None, "min_defect_area": None},
                       note="written by inspector validate: scores only, rejects nothing")
    return save_profile(out, data)


def _run_config(spec: RunSpec, name: str, workdir: Path) -> dict[str, Any]:
    """The config a run's daemon gets: ``spec.config`` with fresh loopback sockets, no tap, no
    health server, fast heartbeats (and the placeholder profile when scores-only)."""
    config = json.loads(json.dumps(spec.config))
    daemon = config.setdefault("daemon", {})
    daemon.update({"id": f"inspector-validate-{name}", "frames": free_tcp_endpoint(), "verdicts": free_tcp_endpoint(),
                   "tap": "", "health": "", "heartbeat_ms": HEARTBEAT_MS, "log_format": "json"})
    if spec.scores_only:
        placeholder = _scores_only_profile(config, workdir / f"{name}-scores-only.json")
        config.setdefault("defaults", {})["calibration"] = str(placeholder)
    return config


# ------------------------------------------------------------------------------------------------
# One run: daemon process, replay, verdict collection
# ------------------------------------------------------------------------------------------------


class _DaemonProcess:
    """``inspector serve --config PATH`` as a child process; stdout (the summary) and stderr (the
    logs) go to files in the run's folder. Always terminated by :meth:`close`."""

    def __init__(self, config_path: Path, log_path: Path, out_path: Path) -> None:
        self.log_path, self.out_path = log_path, out_path
        with open(log_path, "wb") as err, open(out_path, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "inspector.cli", "serve", "--config", str(config_path)],
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def summary(self) -> dict[str, Any] | None:
        """The summary JSON the daemon printed at exit, or None."""
        try:
            text = self.out_path.read_text(errors="replace").strip().splitlines()
            return json.loads(text[-1]) if text else None
        except (OSError, ValueError):
            return None

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def close(self, timeout_s: float = 5.0) -> None:
        """Make sure the process is gone: SIGTERM, then SIGKILL after ``timeout_s``."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class _BindFailed(Exception):
    pass


class _Collector:
    """Matches verdicts to the recording's frames: (camera_id, seq), first come first matched for
    repeated keys. ``sequence_gap`` verdicts are counted apart; a verdict for no known frame is
    ``unexpected``; more verdicts than frames for a key are ``duplicates``."""

    def __init__(self, frames: list[ExpectedFrame]) -> None:
        self.waiting: dict[tuple[str, int], deque[int]] = {}
        for f in frames:
            self.waiting.setdefault(f.key, deque()).append(f.index)
        self.matched: set[tuple[str, int]] = set()
        self.verdicts: dict[int, wire.Verdict] = {}
        self.gap_verdicts = 0
        self.unexpected = 0
        self.duplicates = 0
        self.last_ready: bool | None = None

    def on_message(self, message: wire.Verdict | wire.Heartbeat) -> None:
        if isinstance(message, wire.Heartbeat):
            self.last_ready = message.ready
            return
        if message.reason == "sequence_gap":
            self.gap_verdicts += 1
            return
        key = (message.camera_id, message.seq)
        queue = self.waiting.get(key)
        if queue:
            self.verdicts[queue.popleft()] = message
            self.matched.add(key)
        elif key in self.matched:
            self.duplicates += 1
        else:
            self.unexpected += 1

    def complete(self, frames: Iterable[ExpectedFrame]) -> bool:
        return all(f.index in self.verdicts for f in frames)


def _drain(sub: zmq.Socket, collector: _Collector, wait_ms: int) -> int:
    """Take every message waiting on ``sub`` (waiting up to ``wait_ms`` for the first one)."""
    taken = 0
    if not sub.poll(wait_ms):
        return 0
    while True:
        try:
            parts = sub.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return taken
        taken += 1
        try:
            collector.on_message(wire.decode_message(parts))
        except wire.WireError as exc:
            log.warning("skipping a malformed message from the daemon: %s", exc)


def _wait_ready(daemon: _DaemonProcess, sub: zmq.Socket, collector: _Collector, timeout_s: float) -> None:
    """Until a heartbeat says ready. Raises _BindFailed (ports taken: retry) or ValidationError."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        _drain(sub, collector, POLL_MS)
        if collector.last_ready:
            return
        if not daemon.alive():
            tail = daemon.log_tail()
            if "cannot bind" in tail:
                raise _BindFailed(tail)
            raise ValidationError(f"the daemon exited with status {daemon.proc.returncode} before it was ready; "
                                  f"its log ends:\n{tail}")
    state = "no heartbeat at all" if collector.last_ready is None else "heartbeats say ready = false"
    raise ValidationError(f"the daemon was not ready within {timeout_s:g} s ({state}); its log ends:\n{daemon.log_tail()}")


@dataclass
class RunOutcome:
    """What one run produced (input of :func:`summarise`)."""

    verdicts: dict[int, wire.Verdict]
    sent: int | None                  # None: the replay failed after an unknown number of frames
    replay: dict[str, Any] | None
    replay_error: str
    daemon: dict[str, Any] | None
    gap_verdicts: int = 0
    unexpected_verdicts: int = 0
    duplicate_verdicts: int = 0
    daemon_log: str = ""
    timed_out: bool = False
    daemon_died: bool = False


def _replay_in_thread(recording: Path, endpoint: str, box: dict[str, Any], stop: threading.Event,
                      **kwargs: Any) -> threading.Thread:
    """Run :func:`inspector.recordings.replay.replay` in a thread; its summary (or error text) lands in ``box``."""
    from inspector.recordings.replay import replay

    def target() -> None:
        try:
            box["summary"] = replay(recording, endpoint, stop=stop, **kwargs)
        except BaseException as exc:  # reported, never lost in the thread
            box["error"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=target, name="validate-replay", daemon=True)
    thread.start()
    return thread


def _collect(daemon: _DaemonProcess, sub: zmq.Socket, collector: _Collector, frames: list[ExpectedFrame],
             thread: threading.Thread, box: dict[str, Any], timeout_s: float) -> tuple[bool, bool]:
    """Collect until every sent frame has a verdict, ``timeout_s`` after the replay ended, or the
    daemon died. Returns (timed out, daemon died)."""
    wait_until: float | None = None
    sent: int | None = None
    next_progress = time.monotonic() + 5.0
    while True:
        _drain(sub, collector, POLL_MS)
        now = time.monotonic()
        if now >= next_progress:
            log.info("%d of %d frames have a verdict", len(collector.verdicts), len(frames))
            next_progress = now + 5.0
        if not daemon.alive():
            _drain(sub, collector, POLL_MS)
            return False, True
        if wait_until is None and not thread.is_alive():
            # a failed replay sent an unknown number of frames: wait briefly for their verdicts
            sent = box["summary"]["sent"] if "summary" in box else None
            wait_until = now + (timeout_s if sent is not None else min(timeout_s, REPLAY_ERROR_WAIT_S))
        if wait_until is not None:
            if sent is not None and collector.complete(frames[:sent]):
                return False, False
            if now >= wait_until:
                return sent is not None, False


def _stop_daemon(daemon: _DaemonProcess, sub: zmq.Socket, collector: _Collector, config: dict[str, Any]) -> None:
    """SIGTERM, keep collecting what the drain publishes, until the process exits (bounded)."""
    section = config.get("daemon", {})
    limit = (section.get("drain_ms", 2000) + section.get("linger_ms", 1000)) / 1000.0 + STOP_GRACE_S
    daemon.terminate()
    end = time.monotonic() + limit
    while daemon.alive() and time.monotonic() < end:
        _drain(sub, collector, POLL_MS)
    _drain(sub, collector, 0)
    if daemon.alive():
        log.error("the daemon did not stop within %.0f s after SIGTERM; killing it", limit)
    daemon.close(timeout_s=0.1)


def run_once(recording: str | Path, frames: list[ExpectedFrame], spec: RunSpec, *, name: str = "A",
             workdir: str | Path, speed: float | None = None, max_rate: bool = True, deadline_ms: float | None = None,
             timeout_s: float = DEFAULT_TIMEOUT_S, start_timeout_s: float = DEFAULT_START_TIMEOUT_S) -> RunOutcome:
    """Start a daemon for ``spec``, replay ``recording`` into it, collect the verdicts, stop it.
    ``frames``: the recording's frames (:func:`read_frames`). Files (config, logs) go to
    ``workdir``. Raises ValidationError when the config is unusable or the daemon does not start."""
    workdir = Path(workdir)
    for attempt in range(1, BIND_ATTEMPTS + 1):
        config = _run_config(spec, name, workdir)
        config_path = workdir / f"daemon-{name}.toml"
        config_path.write_text(dump_toml(config))
        problems = [p.replace(str(config_path), f"(config {name})") for p in check_config(config_path)]
        if problems:
            raise ValidationError(f"configuration {name} ({spec.description}) is not usable:\n  " + "\n  ".join(problems))
        try:
            return _run_daemon(recording, frames, config, config_path, name, workdir, speed=speed, max_rate=max_rate,
                               deadline_ms=deadline_ms, timeout_s=timeout_s, start_timeout_s=start_timeout_s)
        except _BindFailed as exc:
            if attempt == BIND_ATTEMPTS:
                raise ValidationError(f"the daemon could not bind its sockets {BIND_ATTEMPTS} times:\n{exc}") from None
            log.warning("daemon %s could not bind (port taken meanwhile); retrying with fresh ports", name)
    raise AssertionError("unreachable")


def _run_daemon(recording: str | Path, frames: list[ExpectedFrame], config: dict[str, Any], config_path: Path, name: str,
                workdir: Path, *, speed: float | None, max_rate: bool, deadline_ms: float | None, timeout_s: float,
                start_timeout_s: float) -> RunOutcome:
    context = zmq.Context()
    sub = transport.verdict_subscriber(context, config["daemon"]["verdicts"])
    daemon = _DaemonProcess(config_path, workdir / f"daemon-{name}.log", workdir / f"daemon-{name}.out")
    stop_replay = threading.Event()
    try:
        collector = _Collector(frames)
        started = time.monotonic()
        _wait_ready(daemon, sub, collector, start_timeout_s)
        log.info("daemon %s ready after %.1f s; replaying %d frames", name, time.monotonic() - started, len(frames))
        box: dict[str, Any] = {}
        thread = _replay_in_thread(Path(recording), config["daemon"]["frames"], box, stop_replay,
                                   speed=1.0 if speed is None else speed, max_rate=max_rate, deadline_ms=deadline_ms,
                                   send_timeout_s=REPLAY_SEND_TIMEOUT_S)
        timed_out, died = _collect(daemon, sub, collector, frames, thread, box, timeout_s)
        stop_replay.set()  # a replay still running (the daemon died) stops at its next frame
        thread.join(REPLAY_SEND_TIMEOUT_S + 5.0)
        _stop_daemon(daemon, sub, collector, config)
    finally:
        stop_replay.set()
        daemon.close()
        sub.close(0)
        context.term()
    summary = box.get("summary")
    return RunOutcome(
        verdicts=collector.verdicts, sent=None if summary is None else summary["sent"], replay=summary,
        replay_error=box.get("error", ""),
        daemon=daemon.summary(), gap_verdicts=collector.gap_verdicts, unexpected_verdicts=collector.unexpected,
        duplicate_verdicts=collector.duplicates, daemon_log=str(daemon.log_path), timed_out=timed_out,
        daemon_died=died,
    )


# ------------------------------------------------------------------------------------------------
# Metrics (pure)
# ------------------------------------------------------------------------------------------------


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def frame_record(frame: ExpectedFrame, verdict: wire.Verdict | None) -> dict[str, Any]:
    """One frame and its verdict (decision None = missing). ``latency_ms``: capture (as replayed)
    to the verdict's decided_ns."""
    record: dict[str, Any] = {"index": frame.index, "camera_id": frame.camera_id, "seq": frame.seq,
                              "part_id": frame.part_id, "label": frame.label, "source": frame.source,
                              "decision": None, "reason": None, "score": None, "threshold": None,
                              "defect_area_px": None, "latency_ms": None}
    if verdict is not None:
        record.update(decision=verdict.decision, reason=verdict.reason, score=verdict.score,
                      threshold=verdict.threshold, defect_area_px=verdict.defect_area_px,
                      latency_ms=(verdict.decided_ns - verdict.capture_ns) / 1e6)
    return record


def _counts(records: list[dict[str, Any]]) -> dict[str, int]:
    decisions = Counter(r["decision"] for r in records)
    return {"n": len(records), "ok": decisions["OK"], "reject": decisions["REJECT"], "fault": decisions["FAULT"],
            "missing": decisions[None]}


def _latency_p99(records: list[dict[str, Any]]) -> float | None:
    return percentile([r["latency_ms"] for r in records if r["latency_ms"] is not None], 99)


def _confusion_row(records: list[dict[str, Any]]) -> dict[str, int]:
    decisions = Counter(r["decision"] for r in records)
    return {"OK": decisions["OK"], "REJECT": decisions["REJECT"], "FAULT": decisions["FAULT"], "missing": decisions[None]}


def _score_stats(records: list[dict[str, Any]]) -> dict[str, float | None]:
    scores = [r["score"] for r in records if r["score"] is not None]
    if not scores:
        return {"score_min": None, "score_median": None, "score_max": None}
    return {"score_min": float(min(scores)), "score_median": float(np.median(scores)), "score_max": float(max(scores))}


def summarise(frames: list[ExpectedFrame], verdicts: dict[int, wire.Verdict], *, scores_only: bool = False) -> dict[str, Any]:
    """Metrics of one run. ``frames``: the recording's frames; ``verdicts``: frame index -> its
    verdict (absent = missing).

    Keys: n (frames), ok, reject, fault, missing (n = ok + reject + fault + missing); confusion
    {good|defect|unlabelled: {OK, REJECT, FAULT, missing}}; false_reject_rate = good frames not OK
    / good frames with a verdict; escape_rate = defect frames OK / defect frames with a verdict
    (None without such frames, or when ``scores_only``); image_auroc from the verdict scores of
    labelled frames (None with one class only; ``auroc_frames`` used, ``unscored`` labelled frames
    with a verdict but no score, excluded); latency_ms_p50 / p99 / max (capture -> decided);
    per_camera, per_label (counts and score statistics); reasons {reason or "ok": count};
    thresholds {camera: [distinct thresholds]}; frames (one record per frame)."""
    records = [frame_record(f, verdicts.get(f.index)) for f in frames]
    classes: dict[str, list[dict[str, Any]]] = {"good": [], "defect": [], "unlabelled": []}
    for frame, record in zip(frames, records):
        classes[frame.label_class].append(record)
    confusion = {name: _confusion_row(rs) for name, rs in classes.items() if rs or name != "unlabelled"}
    good, defect = confusion["good"], confusion["defect"]
    good_judged = sum(good[d] for d in DECISIONS)
    defect_judged = sum(defect[d] for d in DECISIONS)
    scored = [(frame.label_class == "defect", r["score"]) for frame, r in zip(frames, records)
              if frame.label_class != "unlabelled" and r["score"] is not None]
    unscored = sum(1 for frame, r in zip(frames, records)
                   if frame.label_class != "unlabelled" and r["decision"] is not None and r["score"] is None)
    auroc = image_auroc([s[0] for s in scored], [s[1] for s in scored]) if scored else None
    latencies = [r["latency_ms"] for r in records if r["latency_ms"] is not None]
    thresholds: dict[str, set[float]] = {}
    for r in records:
        if r["threshold"] is not None:
            thresholds.setdefault(r["camera_id"], set()).add(r["threshold"])
    by_camera: dict[str, list[dict[str, Any]]] = {}
    by_label: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_camera.setdefault(r["camera_id"], []).append(r)
        by_label.setdefault(r["label"] or "(none)", []).append(r)
    return {
        **_counts(records),
        "scores_only": scores_only,
        "false_reject_rate": None if scores_only else _rate(good_judged - good["OK"], good_judged),
        "escape_rate": None if scores_only else _rate(defect["OK"], defect_judged),
        "image_auroc": auroc,
        "auroc_frames": len(scored),
        "unscored": unscored,
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p99": percentile(latencies, 99),
        "latency_ms_max": max(latencies) if latencies else None,
        "confusion": confusion,
        "per_camera": {cam: {**_counts(rs), "latency_ms_p99": _latency_p99(rs)} for cam, rs in sorted(by_camera.items())},
        "per_label": {label: {**_counts(rs), **_score_stats(rs)} for label, rs in sorted(by_label.items())},
        "reasons": dict(sorted(Counter(r["reason"] or "ok" for r in records if r["decision"] is not None).items())),
        "thresholds": {cam: sorted(values) for cam, values in sorted(thresholds.items())},
        "frames": records,
    }


def run_result(frames: list[ExpectedFrame], outcome: RunOutcome, spec: RunSpec, name: str) -> dict[str, Any]:
    """:func:`summarise` plus what the run itself reported (replay, daemon summary, anomalies)."""
    return {
        "name": name,
        "configuration": spec.description,
        **summarise(frames, outcome.verdicts, scores_only=spec.scores_only),
        "sent": outcome.sent,
        "not_sent": None if outcome.sent is None else len(frames) - outcome.sent,
        "gap_verdicts": outcome.gap_verdicts,
        "unexpected_verdicts": outcome.unexpected_verdicts,
        "duplicate_verdicts": outcome.duplicate_verdicts,
        "timed_out": outcome.timed_out,
        "daemon_died": outcome.daemon_died,
        "replay_error": outcome.replay_error,
        "replay": outcome.replay,
        "daemon": outcome.daemon,
        "daemon_log": outcome.daemon_log,
    }


def changed_frames(result_a: dict[str, Any], result_b: dict[str, Any]) -> list[dict[str, Any]]:
    """Frames that have a verdict in both runs with different decisions, in recording order."""
    changed = []
    for a, b in zip(result_a["frames"], result_b["frames"]):
        if a["decision"] is None or b["decision"] is None or a["decision"] == b["decision"]:
            continue
        changed.append({
            "index": a["index"], "camera_id": a["camera_id"], "seq": a["seq"], "part_id": a["part_id"],
            "label": a["label"], "source": a["source"], "decision_a": a["decision"], "decision_b": b["decision"],
            "reason_a": a["reason"], "reason_b": b["reason"], "score_a": a["score"], "score_b": b["score"],
            "threshold_a": a["threshold"], "threshold_b": b["threshold"],
        })
    return changed


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------


def _as_spec(config: str | Path | RunSpec | dict[str, Any]) -> RunSpec:
    if isinstance(config, RunSpec):
        return config
    if isinstance(config, dict):
        return RunSpec(config, "config (dict)")
    return spec_from_config_file(config)


def validate_runs(recording: str | Path, specs: list[RunSpec], *, speed: float | None = None, max_rate: bool = True,
                  deadline_ms: float | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                  start_timeout_s: float = DEFAULT_START_TIMEOUT_S, log_dir: str | Path | None = None) -> dict[str, Any]:
    """Validate ``recording`` with one (A) or two (A, B) configurations, one after the other.

    Returns run A's result at the top level (see :func:`summarise` and :func:`run_result`) plus
    ``format``, ``recording`` and ``complete`` (every frame of every run has a verdict, the
    replays ran through, no run timed out and no daemon died); with B also ``b`` (B's result,
    same keys) and ``changed`` (see :func:`changed_frames`) with ``n_changed``. ``log_dir``: keep the daemons' logs there
    (``daemon-A.log``...). Raises RecordingError (bad recording), ValidationError / ConfigError
    (unusable configuration, daemon did not start), ValueError (bad arguments)."""
    if not 1 <= len(specs) <= 2:
        raise ValueError(f"validate one or two configurations, got {len(specs)}")
    if not max_rate and speed is not None and not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed!r}")
    if not timeout_s > 0 or not start_timeout_s > 0:
        raise ValueError("timeouts must be > 0")
    frames, description = read_frames(recording)
    results = []
    with tempfile.TemporaryDirectory(prefix="inspector-validate-") as tmp:
        for name, spec in zip("AB", specs):
            outcome = run_once(recording, frames, spec, name=name, workdir=Path(tmp), speed=speed, max_rate=max_rate,
                               deadline_ms=deadline_ms, timeout_s=timeout_s, start_timeout_s=start_timeout_s)
            outcome.daemon_log = _keep_log(Path(outcome.daemon_log), log_dir)
            results.append(run_result(frames, outcome, spec, name))
    result = {"format": FORMAT, "recording": description, **results[0]}
    if len(results) == 2:
        result["b"] = results[1]
        result["changed"] = changed_frames(results[0], results[1])
        result["n_changed"] = len(result["changed"])
    result["complete"] = all(r["missing"] == 0 and not (r["replay_error"] or r["timed_out"] or r["daemon_died"])
                             for r in results)
    return result


def _keep_log(path: Path, log_dir: str | Path | None) -> str:
    if log_dir is None:
        return ""
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    kept = Path(log_dir) / path.name
    try:
        shutil.copyfile(path, kept)
    except OSError as exc:
        log.warning("could not keep the daemon log %s: %s", path, exc)
        return ""
    return str(kept)


def validate(recording: str | Path, config_path: str | Path | RunSpec | dict[str, Any], *, speed: float | None = None,
             max_rate: bool = True, timeout_s: float = DEFAULT_TIMEOUT_S, deadline_ms: float | None = None,
             start_timeout_s: float = DEFAULT_START_TIMEOUT_S, log_dir: str | Path | None = None) -> dict[str, Any]:
    """Validate ``recording`` with one configuration: a daemon config file (its sockets are
    replaced by free loopback ports), a config dict, or a RunSpec (:func:`spec_from_engine`).
    ``speed``: replay at that multiple of the recorded timing (default: as fast as the daemon takes
    frames). ``deadline_ms``: override every frame's deadline (capture + D ms). ``timeout_s``:
    longest wait for verdicts after the last frame was sent. See :func:`validate_runs`."""
    return validate_runs(recording, [_as_spec(config_path)], speed=speed, max_rate=max_rate and speed is None,
                         deadline_ms=deadline_ms, timeout_s=timeout_s, start_timeout_s=start_timeout_s, log_dir=log_dir)


def exit_status(result: dict[str, Any]) -> int:
    """0 when every frame of every run got a verdict in time (no timeout, no replay failure, no
    daemon death), 1 otherwise."""
    return 0 if result.get("complete") else 1


# ------------------------------------------------------------------------------------------------
# Reports: stdout table, markdown, histogram
# ------------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [result, result["b"]] if "b" in result else [result]


def _summary_rows(result: dict[str, Any]) -> list[tuple[str, list[str]]]:
    runs = _runs(result)
    def row(name: str, fn) -> tuple[str, list[str]]:
        return name, [fn(r) for r in runs]
    return [
        row("configuration", lambda r: r["configuration"]),
        row("frames (n)", lambda r: str(r["n"])),
        row("OK", lambda r: str(r["ok"])),
        row("REJECT", lambda r: str(r["reject"])),
        row("FAULT", lambda r: str(r["fault"])),
        row("missing", lambda r: str(r["missing"])),
        row("false reject rate", lambda r: _pct(r["false_reject_rate"])),
        row("escape rate", lambda r: _pct(r["escape_rate"])),
        row("image AUROC", lambda r: _fmt(r["image_auroc"])),
        row("latency p50 / p99 ms", lambda r: f"{_fmt(r['latency_ms_p50'], 3)} / {_fmt(r['latency_ms_p99'], 3)}"),
        row("thresholds", lambda r: "none (scores only)" if r["scores_only"] else
            ", ".join(f"{cam} {'/'.join(_fmt(t) for t in ts)}" for cam, ts in r["thresholds"].items()) or "-"),
        row("reasons", lambda r: ", ".join(f"{k} {v}" for k, v in r["reasons"].items()) or "-"),
    ]


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(x).replace("|", "\\|") for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _confusion_rows(run: dict[str, Any]) -> list[list[str]]:
    return [[name, *(str(counts[k]) for k in (*DECISIONS, "missing"))] for name, counts in run["confusion"].items()]


def _changed_rows(changed: list[dict[str, Any]]) -> list[list[str]]:
    return [[c["camera_id"], str(c["seq"]), c["part_id"], c["label"] or "-", c["source"] or "-",
             f"{c['decision_a']} -> {c['decision_b']}", f"{_fmt(c['score_a'])} / {_fmt(c['score_b'])}"]
            for c in changed[:MAX_REPORT_ROWS]]


CHANGED_HEADER = ["camera", "seq", "part", "label", "source", "decision A -> B", "score A / B"]
CONFUSION_HEADER = ["label \\ decision", *DECISIONS, "missing"]


def format_table(result: dict[str, Any]) -> str:
    """The stdout summary: headline metrics per run, confusion matrices, changed frames."""
    rec = result["recording"]
    runs = _runs(result)
    out = [f"validation of {rec['path']}: {rec['n_frames']} frames, cameras {', '.join(rec['cameras'])}"
           + (f" (truncated: {rec['truncation']})" if rec["truncated"] else ""), ""]
    rows = _summary_rows(result)
    out.append(_text_table(["", *(r["name"] for r in runs)], [[name, *values] for name, values in rows]))
    for run in runs:
        out += ["", f"confusion matrix {run['name']}:", _text_table(CONFUSION_HEADER, _confusion_rows(run))]
    if "changed" in result:
        out += ["", f"decisions changed A -> B: {result['n_changed']}"]
        if result["changed"]:
            out.append(_text_table(CHANGED_HEADER, _changed_rows(result["changed"])))
    for run in runs:
        problems = _problems(run)
        if problems:
            out += ["", f"run {run['name']}: " + "; ".join(problems)]
    return "\n".join(out)


def _problems(run: dict[str, Any]) -> list[str]:
    problems = []
    if run["missing"]:
        problems.append(f"{run['missing']} frame(s) without a verdict")
    if run["not_sent"]:  # None (unknown) after a failed replay: the replay error says it
        problems.append(f"{run['not_sent']} frame(s) not replayed")
    if run["replay_error"]:
        problems.append(f"replay failed: {run['replay_error']}")
    if run["daemon_died"]:
        problems.append("the daemon died")
    if run["timed_out"]:
        problems.append("timed out waiting for verdicts")
    if run["duplicate_verdicts"] or run["unexpected_verdicts"]:
        problems.append(f"{run['duplicate_verdicts']} duplicate / {run['unexpected_verdicts']} unexpected verdict(s)")
    return problems


def format_markdown(result: dict[str, Any]) -> str:
    """report.md: the same tables in markdown, plus per-label and per-camera breakdowns."""
    rec = result["recording"]
    runs = _runs(result)
    out = [f"# Validation of `{rec['path']}`", "",
           f"{rec['n_frames']} frames; cameras {rec['cameras']}; labels {rec['labels']}"
           + (f"; **truncated** ({rec['truncation']})" if rec["truncated"] else ""), "",
           "![scores](scores.png)", "", "## Summary", "",
           _md_table(["", *(r["name"] for r in runs)], [[name, *values] for name, values in _summary_rows(result)])]
    for run in runs:
        out += ["", f"## Run {run['name']}: {run['configuration']}", "", "### Confusion matrix", "",
                _md_table(CONFUSION_HEADER, _confusion_rows(run)), "", "### Per label", "",
                _md_table(["label", "n", "OK", "REJECT", "FAULT", "missing", "score min", "median", "max"],
                          [[label, str(s["n"]), str(s["ok"]), str(s["reject"]), str(s["fault"]), str(s["missing"]),
                            _fmt(s["score_min"]), _fmt(s["score_median"]), _fmt(s["score_max"])]
                           for label, s in run["per_label"].items()]), "", "### Per camera", "",
                _md_table(["camera", "n", "OK", "REJECT", "FAULT", "missing", "latency p99 ms"],
                          [[cam, str(s["n"]), str(s["ok"]), str(s["reject"]), str(s["fault"]), str(s["missing"]),
                            _fmt(s["latency_ms_p99"], 3)] for cam, s in run["per_camera"].items()])]
        problems = _problems(run)
        if problems:
            out += ["", "**Problems:** " + "; ".join(problems)]
    if "changed" in result:
        out += ["", f"## Decisions changed A -> B ({result['n_changed']})", ""]
        if result["changed"]:
            out.append(_md_table(CHANGED_HEADER, _changed_rows(result["changed"])))
            if result["n_changed"] > MAX_REPORT_ROWS:
                out += ["", f"(first {MAX_REPORT_ROWS}; all are in validation.json)"]
        else:
            out.append("none")
    return "\n".join(out) + "\n"


def plot_scores(result: dict[str, Any], path: str | Path) -> Path:
    """scores.png: per run, histograms of the verdict scores per label, with the thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _runs(result)
    fig, axes = plt.subplots(1, len(runs), figsize=(7 * len(runs), 4.5), squeeze=False)
    for ax, run in zip(axes[0], runs):
        by_label: dict[str, list[float]] = {}
        for r in run["frames"]:
            if r["score"] is not None:
                by_label.setdefault(r["label"] or "(none)", []).append(r["score"])
        all_scores = [s for scores in by_label.values() for s in scores]
        bins = np.histogram_bin_edges(all_scores, bins=30) if all_scores else 10
        for label in sorted(by_label, key=lambda name: (name != GOOD_LABEL, name)):
            ax.hist(by_label[label], bins=bins, alpha=0.55, label=f"{label} ({len(by_label[label])})")
        if not run["scores_only"]:
            for cam, values in run["thresholds"].items():
                for t in values:
                    ax.axvline(t, color="black", linestyle="--", linewidth=1.2, label=f"threshold {cam} {t:.4g}")
        ax.set_title(f"{run['name']}: {run['configuration']}"[:90], fontsize=9)
        ax.set_xlabel("image score")
        ax.set_ylabel("frames")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """validation.json, report.md and scores.png in ``out_dir`` (created)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "validation.json", "markdown": out_dir / "report.md", "plot": out_dir / "scores.png"}
    write_json(result, paths["json"])
    paths["markdown"].write_text(format_markdown(result))
    plot_scores(result, paths["plot"])
    return paths


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str, allow_nan=False) + "\n")
    return path


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", required=True, metavar="FILE", help="labelled MCAP recording (inspector record)")
    parser.add_argument("--engine", metavar="FILE", help="engine to validate (a config is generated; see docs/recordings.md)")
    parser.add_argument("--calibration", metavar="FILE", help="calibration profile for --engine (without it: scores only)")
    parser.add_argument("--backend", help="backend for --engine (default onnxruntime)")
    parser.add_argument("--config", action="append", metavar="FILE",
                        help="daemon config (sockets are replaced by free loopback ports); give it twice for A/B")
    second = parser.add_argument_group("second configuration (A/B)")
    second.add_argument("--config2", metavar="FILE", help="config B")
    second.add_argument("--calibration2", metavar="FILE", help="B = A with this profile for every camera")
    second.add_argument("--engine2", metavar="FILE", help="B = A with this engine (usually with --calibration2)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--report", metavar="DIR", help="write validation.json, report.md, scores.png and daemon logs")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=_positive_float, help="replay at X times the recorded timing")
    pace.add_argument("--max", action="store_true", help="replay as fast as the daemon takes frames (default)")
    parser.add_argument("--deadline-ms", type=_positive_float, metavar="D",
                        help="deadline of every frame = replayed capture + D ms (default: the recorded deadlines)")
    parser.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help=f"longest wait for verdicts after the last frame was sent (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--start-timeout", type=_positive_float, default=DEFAULT_START_TIMEOUT_S, metavar="S",
                        help=f"longest wait for the daemon to be ready (default {DEFAULT_START_TIMEOUT_S:g})")


def specs_from_args(args: argparse.Namespace) -> list[RunSpec]:
    """Run A (and B) from the command line. Raises ValidationError for contradictory options."""
    configs = list(args.config or [])
    if bool(args.engine) == bool(configs):
        raise ValidationError("give either --engine (with --calibration) or --config")
    if len(configs) > 2 or (len(configs) == 2 and args.config2):
        raise ValidationError("at most two configurations (A and B)")
    if (args.calibration or args.backend) and not args.engine:
        raise ValidationError("--calibration and --backend go with --engine; a --config names its own")
    b_options = [name for name, value in (("a second --config", configs[1:] or args.config2),
                                          ("--calibration2", args.calibration2), ("--engine2", args.engine2)) if value]
    if len(b_options) > 1 and not (set(b_options) == {"--calibration2", "--engine2"}):
        raise ValidationError(f"{' and '.join(b_options)}: give config B either as a config or as changes to A")
    try:
        if args.engine:
            a = spec_from_engine(args.engine, args.calibration, backend=args.backend or "onnxruntime")
        else:
            a = spec_from_config_file(configs[0])
        b_config = configs[1] if len(configs) == 2 else args.config2
        if b_config:
            return [a, spec_from_config_file(b_config)]
    except ConfigError as exc:
        raise ValidationError(str(exc)) from None
    if args.calibration2 or args.engine2:
        return [a, spec_variant(a, engine=args.engine2, calibration=args.calibration2)]
    return [a]


def run(args: argparse.Namespace) -> int:
    specs = specs_from_args(args)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # the finally blocks stop the daemon
    try:
        result = validate_runs(args.recording, specs, speed=args.speed, max_rate=args.speed is None,
                               deadline_ms=args.deadline_ms, timeout_s=args.timeout, start_timeout_s=args.start_timeout,
                               log_dir=args.report)
    except RecordingError as exc:
        raise ValidationError(f"unusable recording: {exc}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
    if args.report:
        paths = write_report(result, args.report)
        print(f"\nreport: {paths['markdown']}")
    return exit_status(result)


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
