"""`inspector demo`: the whole line on this machine, with embedded defaults.

1. Model: generates a labelled synthetic sample set (machined washers with scratches, holes, stains
   and missing pieces), trains a quick model on it, exports the ONNX engine and calibrates its
   threshold on separate good parts. All of it is cached in ``.cache/demo`` (and ``engines/demo.*``,
   ``calibration/demo.json``) and reused when present and consistent.
2. Line: a simulated PLC (pymodbus Modbus TCP server), ``inspector serve`` (the daemon),
   ``inspector gateway`` (verdicts -> Modbus) and two ``inspector grab`` processes replaying the
   labelled test images as cameras cam0 and cam1, all as real processes on loopback.
3. Live progress once a second (frames/s, verdict counts, latency), then a summary checked against
   the PLC's own registers: every frame sent must have exactly one verdict at the PLC.

JSON summary keys (``--json FILE``): frames_sent, verdicts, verdicts_at_plc, ok, reject, fault,
false_rejects, escapes, latency_ms_p50, latency_ms_p99 (capture -> PLC write, from the gateway),
plus per-camera counts, throughput and the artifacts used.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import zmq

from .core.stats import percentile
from .line import transport
from .line.wire import Heartbeat, Verdict, WireError, decode_message
from .core.ports import free_port

CAMERAS = ("cam0", "cam1")
DEMO_SIZE = "160"          # model input 160x160, the sample images' own size: quick on 2 cores
DEMO_EPOCHS = 60
DEMO_TRAIN_IMAGES = 150
DEMO_TARGET_FRR = 0.01


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=200, help="frames per camera (default 200)")
    p.add_argument("--fps", type=float, default=10.0, help="frames per second per camera (default 10)")
    p.add_argument("--json", help="write the summary JSON here")
    p.add_argument("--workdir", default=".cache/demo", help="cache for sample data and model")
    p.add_argument("--engines-dir", default="engines")
    p.add_argument("--calibration-dir", default="calibration")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    p.add_argument("--rebuild", action="store_true", help="regenerate data and retrain the model")
    p.add_argument("--deadline-ms", type=float, default=1000.0, help="per-frame verdict deadline")
    p.add_argument("--quiet", action="store_true", help="no live progress lines")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "inspector.cli", *args]


def step(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def run_step(*args: str) -> None:
    proc = subprocess.run(cli(*args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"inspector {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


# --------------------------------------------------------------------------- model preparation
def prepare_model(args) -> dict:
    """Sample data, model, engine and calibration profile (cached). Returns their paths."""
    from .model.synthetic import generate_dataset

    work = Path(args.workdir)
    data, calib = work / "data", work / "calib"
    model = work / "model.pt"
    engine = Path(args.engines_dir) / "demo.onnx"
    profile = Path(args.calibration_dir) / "demo.json"
    if args.rebuild:
        for p in (model, engine, engine.with_suffix(".json"), profile):
            p.unlink(missing_ok=True)
    if not (data / "test").is_dir() or args.rebuild:
        step(f"generating labelled sample data in {data}")
        generate_dataset(data, product="part", n_train=DEMO_TRAIN_IMAGES, n_test_good=40, n_test_defect_per_kind=10,
                         size=(160, 160), color=True, seed=7, overwrite=True)
    if not (calib / "test" / "good").is_dir() or args.rebuild:  # good parts the model never saw
        generate_dataset(calib, product="part", n_train=1, n_test_good=80, n_test_defect_per_kind=1,
                         size=(160, 160), color=True, seed=8, overwrite=True)
    if not model.is_file():
        step(f"training a quick model ({args.epochs} epochs, {DEMO_SIZE}px) -> {model}")
        t0 = time.time()
        run_step("train", "--data", str(data), "--out", str(model), "--epochs", str(args.epochs),
                 "--image-size", DEMO_SIZE, "--no-progress")
        step(f"trained in {time.time() - t0:.0f} s")
    if not _engine_matches(engine, model):
        step(f"exporting the ONNX engine -> {engine}")
        run_step("export", "--model", str(model), "--out", str(engine))
        profile.unlink(missing_ok=True)
    if not profile.is_file():
        step(f"calibrating on {calib / 'test' / 'good'} (target FRR {DEMO_TARGET_FRR}) -> {profile}")
        run_step("calibrate", "--engine", str(engine), "--good", str(calib / "test" / "good"),
                 "--target-frr", str(DEMO_TARGET_FRR), "--out", str(profile))
    return {"data": data, "model": model, "engine": engine, "profile": profile}


def _engine_matches(engine: Path, model: Path) -> bool:
    from .engine.manifest import ManifestError, read_manifest, sha256_file
    try:
        return read_manifest(engine)["model_sha256"] == sha256_file(model)
    except (ManifestError, KeyError, OSError):
        return False


# --------------------------------------------------------------------------- the line
def write_config(path: Path, artifacts: dict, frames_ep: str, verdicts_ep: str, health: str) -> None:
    path.write_text(f"""# written by inspector demo
[daemon]
id = "demo"
frames = "{frames_ep}"
verdicts = "{verdicts_ep}"
health = "{health}"
heartbeat_ms = 200
log_format = "text"

[engine]
path = "{Path(artifacts['engine']).resolve()}"
backend = "onnxruntime"
threads = 0
max_batch = 8
max_wait_ms = 4

[defaults]
deadline_ms = 1000
calibration = "{Path(artifacts['profile']).resolve()}"

[overload]
max_queue = 64
policy = "reject_oldest"
""")


class VerdictTap:
    """Subscribes to the daemon's verdicts, as the demo's own view of the line."""

    def __init__(self, ctx: zmq.Context, endpoint: str):
        self.sock = transport.verdict_subscriber(ctx, endpoint)
        self.verdicts: list[Verdict] = []
        self.ready = False
        self.malformed = 0

    def poll(self, timeout_ms: int) -> None:
        if not self.sock.poll(timeout_ms):
            return
        while True:
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = decode_message(parts)
            except WireError:
                self.malformed += 1
                continue
            if isinstance(msg, Heartbeat):
                self.ready = msg.ready
            else:
                self.verdicts.append(msg)


def start(args_list: list[str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen(cli(*args_list), stdout=subprocess.PIPE, stderr=log, text=True)


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def last_json_line(text: str | None) -> dict:
    """The last line of a process's output that is a JSON object (its summary), or {}."""
    for line in reversed((text or "").strip().splitlines()):
        try:
            obj = json.loads(line)
            if isinstance(obj, dict):
                return obj
        except ValueError:
            continue
    return {}


def plc_counts(sim) -> dict:
    """Per-camera OK/REJECT/FAULT counters read back from the PLC's registers."""
    from .plc.modbus_map import CameraHeader, camera_base
    out = {}
    for i, cam in enumerate(CAMERAS):
        h = CameraHeader.from_registers(sim.read_holding(camera_base(i), CameraHeader.SIZE))
        out[cam] = {"ok": h.ok_count, "reject": h.reject_count, "fault": h.fault_count,
                    "total": h.ok_count + h.reject_count + h.fault_count}
    return out


def run_line(args, artifacts: dict) -> dict:
    from .plc.plc_sim import start_sim_in_thread

    work = Path(args.workdir)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    frames_ep, verdicts_ep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    health = f"127.0.0.1:{free_port()}"
    config = work / "inspector.toml"
    write_config(config, artifacts, frames_ep, verdicts_ep, health)

    sim = start_sim_in_thread("127.0.0.1", 0)
    step(f"simulated PLC (Modbus TCP) on 127.0.0.1:{sim.port}")
    ctx = zmq.Context()
    tap = VerdictTap(ctx, verdicts_ep)
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["daemon"] = start(["serve", "--config", str(config)], logs / "daemon.log")
        gateway_stats = work / "gateway_stats.json"
        gateway_stats.unlink(missing_ok=True)
        procs["gateway"] = start(["gateway", "--connect", verdicts_ep, "--plc", f"modbus://127.0.0.1:{sim.port}",
                                  "--cameras", ",".join(CAMERAS), "--stats", str(gateway_stats)],
                                 logs / "gateway.log")
        t_wait = time.time()
        while not tap.ready:
            tap.poll(200)
            if procs["daemon"].poll() is not None:
                raise RuntimeError(f"the daemon exited early; see {logs / 'daemon.log'}")
            if time.time() - t_wait > 60:
                raise RuntimeError(f"the daemon did not become ready in 60 s; see {logs / 'daemon.log'}")
        step(f"daemon ready (config {config}); starting 2 grabbers at {args.fps:g} fps, {args.frames} frames each")
        time.sleep(0.5)  # let the gateway see a heartbeat before parts arrive
        for k, cam in enumerate(CAMERAS):
            procs[cam] = start(["grab", "--source", f"mvtec:{artifacts['data']}", "--camera", cam,
                                "--connect", frames_ep, "--fps", str(args.fps), "--loop", "--seed", str(k),
                                "--max-frames", str(args.frames), "--deadline-ms", str(args.deadline_ms)],
                               logs / f"grab_{cam}.log")
        t0 = time.time()
        last_print, grab_summaries = t0, {}
        expected = None
        while True:
            tap.poll(100)
            now = time.time()
            for cam in CAMERAS:
                if cam not in grab_summaries and procs[cam].poll() is not None:
                    grab_summaries[cam] = last_json_line(procs[cam].communicate()[0])
            if len(grab_summaries) == len(CAMERAS) and expected is None:
                expected = sum(int(s.get("frames_sent", 0)) for s in grab_summaries.values())
            if not args.quiet and now - last_print >= 1.0:
                last_print = now
                print(progress_line(tap.verdicts, now - t0), flush=True)
            if expected is not None and len(tap.verdicts) >= expected:
                break
            if now - t0 > args.frames / args.fps * 3 + 60:
                step("timed out waiting for verdicts")
                break
        elapsed = time.time() - t0
        # the gateway writes asynchronously: wait until the PLC holds every verdict (bounded)
        t_plc = time.time()
        while sum(c["total"] for c in plc_counts(sim).values()) < len(tap.verdicts) and time.time() - t_plc < 10:
            time.sleep(0.1)
        at_plc = plc_counts(sim)
        stop(procs.pop("gateway"))
        daemon_summary = last_json_line(stop(procs.pop("daemon")))
        gw = json.loads(gateway_stats.read_text()) if gateway_stats.is_file() else {}
        return summarize(tap.verdicts, grab_summaries, at_plc, gw, daemon_summary, elapsed, artifacts)
    finally:
        for proc in procs.values():
            stop(proc, timeout=5)
        sim.stop()
        ctx.destroy(linger=0)


def progress_line(verdicts: list[Verdict], elapsed: float) -> str:
    c = Counter(v.decision for v in verdicts)
    lat = [(v.decided_ns - v.capture_ns) / 1e6 for v in verdicts[-200:]]
    p50 = f"{percentile(lat, 50):6.1f}" if lat else "   -  "
    return (f"[line] {elapsed:5.1f} s  {len(verdicts) / max(elapsed, 1e-9):5.1f} frames/s  "
            f"OK {c['OK']:4d}  REJECT {c['REJECT']:4d}  FAULT {c['FAULT']:3d}  capture->verdict p50 {p50} ms")


def summarize(verdicts, grab_summaries, at_plc, gw, daemon_summary, elapsed, artifacts) -> dict:
    c = Counter(v.decision for v in verdicts)
    keys = Counter((v.camera_id, v.seq) for v in verdicts)
    labelled = [v for v in verdicts if v.label is not None]
    false_rejects = sum(1 for v in labelled if v.label == "good" and v.decision != "OK")
    escapes = sum(1 for v in labelled if v.label != "good" and v.decision == "OK")
    lat = gw.get("latency_ms", {})
    frames_sent = sum(int(s.get("frames_sent", 0)) for s in grab_summaries.values())
    return {
        "frames_sent": frames_sent,
        "verdicts": len(verdicts),
        "duplicate_verdicts": sum(n - 1 for n in keys.values() if n > 1),
        "verdicts_at_plc": sum(v["total"] for v in at_plc.values()),
        "ok": c["OK"], "reject": c["REJECT"], "fault": c["FAULT"],
        "good_frames": sum(1 for v in labelled if v.label == "good"),
        "defect_frames": sum(1 for v in labelled if v.label != "good"),
        "false_rejects": false_rejects, "escapes": escapes,
        "reasons": dict(Counter(v.reason for v in verdicts if v.reason)),
        "latency_ms_p50": lat.get("p50"), "latency_ms_p99": lat.get("p99"),
        "frames_per_s": len(verdicts) / elapsed if elapsed > 0 else None,
        "plc": at_plc, "gateway": {k: gw.get(k) for k in ("verdicts_written", "latency_ms") if k in gw},
        "daemon": daemon_summary,
        "artifacts": {k: str(v) for k, v in artifacts.items()},
    }


def print_summary(s: dict) -> None:
    ok = s["verdicts"] == s["frames_sent"] == s["verdicts_at_plc"] and not s["duplicate_verdicts"]
    print("\n=== inspector demo summary ===")
    print(f"frames sent {s['frames_sent']}, verdicts {s['verdicts']}, at the PLC {s['verdicts_at_plc']}"
          f"  -> {'every frame got exactly one verdict' if ok else 'MISMATCH'}")
    print(f"OK {s['ok']}  REJECT {s['reject']}  FAULT {s['fault']}  (reasons: {s['reasons']})")
    print(f"good frames {s['good_frames']}: false rejects {s['false_rejects']};  "
          f"defect frames {s['defect_frames']}: escapes {s['escapes']}")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"
    print(f"capture -> PLC write latency p50 {fmt(s['latency_ms_p50'])} ms, p99 {fmt(s['latency_ms_p99'])} ms; "
          f"{fmt(s['frames_per_s'])} frames/s")


def run(args) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    artifacts = prepare_model(args)
    summary = run_line(args, artifacts)
    print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str))
    ok = (summary["verdicts"] == summary["frames_sent"] == summary["verdicts_at_plc"]
          and not summary["duplicate_verdicts"])
    return 0 if ok else 1
