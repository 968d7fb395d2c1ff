#!/usr/bin/env python
"""Benchmark of the whole line on this machine: grabbers -> daemon -> gateway -> simulated PLC.

    python tools/bench_line.py [--engine FILE.onnx --calibration PROFILE.json] [--data DIR]
                               [--cameras 1,2,4] [--fps 5,10,20,40] [--seconds 6] [--quick]
                               [--threads 0] [--max-batch 8] [--max-wait-ms 4] [--deadline-ms 1000]
                               [--image-size 256] [--epochs 3] [--workdir .cache/bench_line] [--json FILE]

Every process is the real one, on loopback: ``inspector plc-sim`` (pymodbus server),
``inspector serve`` (the daemon, onnxruntime engine), and per case one ``inspector gateway`` and
N ``inspector grab`` processes (one per camera) replaying an MVTec-layout folder's test images in
a loop at ``--fps`` each. The benchmark process subscribes to the daemon's verdicts (SUB) and
stamps each verdict's arrival with ``time.time_ns()``.

Model: ``--engine`` (an exported .onnx with its manifest) needs ``--calibration`` (its profile,
from ``inspector calibrate``). Without ``--engine`` the script makes one in ``--workdir`` (cached
and reused): ``inspector synth --product part`` data at ``--image-size`` (40 train, 20 good + 5 per
defect kind test images), ``inspector train --epochs 3``, ``inspector export``, a separate set of
30 good parts (seed 1) and ``inspector calibrate --target-frr 0.01``. Grabber images: ``--data``
(MVTec layout, its test/ folder; or a plain image folder), else that synthetic set (synthesised
at the engine's image size when only ``--engine`` is given).

Measured per case (cameras x fps):

* ``offered_fps`` = cameras x fps; ``frames_sent`` (grabber summaries);
* ``verdicts_per_s`` / ``judged_per_s``: verdicts (all) / verdicts with a score (judged by the
  engine) arriving at the SUB per second, in the window where every camera of the case was
  sending (from the latest first capture to the earliest last capture);
* ``capture_to_verdict_ms`` p50/p99: SUB arrival - ``capture_ns``, over judged verdicts;
* ``capture_to_plc_ms`` p50/p99: the gateway's ``--stats`` ``latency_ms`` (capture to the PLC's
  acknowledgement of the camera-header write), over every verdict written;
* ``dropped`` (FAULT overload_dropped), ``deadline_missed``, ``other_faults``; ``mean_batch``
  (frames per engine call, from the daemon's /metrics); ``plc_verdicts`` (growth of the PLC's
  OK + REJECT + FAULT counters); ``missing_verdicts`` / ``duplicate_verdicts`` (should be 0);
  ``plc_backlog_dropped`` / ``reject_pulses_dropped`` (gateway stats: verdicts / pulses it could
  not write fast enough; a gateway that drops latches the line stop, docs/plc.md);
* ``line_vs_engine`` = judged_per_s / the engine's own images/s at ``--max-batch``;
* ``added_p50_ms`` = capture_to_verdict p50 - the engine's own batch-1 latency p50: what
  transport, queueing and batching add.

The engine's own figures are measured first, in this process, with the daemon's settings
(``open_engine`` + ``infer_prepared`` on the line's own images, prepared once; the same intra-op
threads; numpy's BLAS single-threaded as ``inspector`` sets it; maps computed only when the
profile has a region rule, as the daemon does), before the line starts.

Read-offs (``summary``): "line throughput within 10 % of the engine's own images/s" needs a
*saturated* case (offered fps >= 90 % of the engine's images/s at max batch; otherwise the line
can only judge what it is offered, reported as ``unsaturated_cases_keeping_up``): then
``best_line_vs_engine`` >= 0.9. "Transport + batching add < 5 ms to p50 at moderate load":
``moderate_added_p50_ms`` of the busiest case offering at most 25 % of the engine's batch-1
images/s. Up to ``--max-wait-ms`` of it is the batcher waiting for a fuller batch by design
(compare a run with ``--max-wait-ms 0``).

Output: a markdown table on stdout (progress on stderr) and ``--json FILE``:
``{"cases": [...], "engine": {...}, "summary": {...}, "daemon": {...}, "settings": {...},
"machine": {...}, "artifacts": {...}}``. Figures from a machine shared with other work are
slower and noisier than from an idle one: the load average is recorded at start and end.
Default total run time (12 cases of 6 s) is under 3 minutes plus model preparation; ``--quick``
runs 2 short cases (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

# As `inspector` (inspector/cli.py) does for the daemon: numpy's BLAS single-threaded, set before
# numpy loads, so that the engine measured here runs the map head the way the daemon runs it
# (a multi-threaded BLAS head measured 100-700 ms per batch of 8 on a loaded 2-core machine).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python tools/bench_line.py` from a checkout
    sys.path.insert(0, str(REPO))


from inspector.plc import modbus_map as mm  # noqa: E402
from inspector.core.ports import free_port  # noqa: E402
from inspector.core.stats import percentile  # noqa: E402
from inspector.artifacts import BuildError, Layout, Recipe, build, ensure_data  # noqa: E402
from inspector.line.harness import HarnessError, Processes, VerdictCollector, wait_until  # noqa: E402
from inspector.plc.client import PlcClient, PlcClientError  # noqa: E402

QUICK = {"cameras": [1, 2], "fps": [10.0], "seconds": 1.5, "engine_iters": 5}
READY_TIMEOUT_S = 120.0   # daemon engine load + warm-up on a busy machine
SETTLE_TIMEOUT_S = 30.0   # verdicts / PLC writes still in flight after the grabbers stop


# ------------------------------------------------------------------------------------------------
# arguments
# ------------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}") from None
    if not values or any(v < 1 or v > mm.MAX_CAMERAS for v in values):
        raise argparse.ArgumentTypeError(f"camera counts must be in 1..{mm.MAX_CAMERAS}, got {text!r}")
    return values


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of numbers, got {text!r}") from None
    if not values or any(not 0 < v <= 1000 for v in values):
        raise argparse.ArgumentTypeError(f"frame rates must be in (0, 1000], got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", type=Path, help="exported ONNX engine (manifest next to it); default: make one")
    p.add_argument("--calibration", type=Path, help="its calibration profile (required with --engine)")
    p.add_argument("--trusted-keys", type=Path, help="with --engine: the public key they are signed by "
                                                     "(default $INSPECTOR_TRUSTED_KEYS)")
    p.add_argument("--data", type=Path, help="grabber images: MVTec-layout folder (test/) or an image folder")
    p.add_argument("--cameras", type=_int_list, default=[1, 2, 4], help="camera counts (default 1,2,4)")
    p.add_argument("--fps", type=_float_list, default=[5.0, 10.0, 20.0, 40.0],
                   help="frame rates per camera (default 5,10,20,40)")
    p.add_argument("--seconds", type=float, default=6.0, help="sending time per case (default 6)")
    p.add_argument("--quick", action="store_true", help="smoke run: cameras 1,2 at 10 fps, 1.5 s each (overrides --cameras, --fps, --seconds)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = all cores)")
    p.add_argument("--max-batch", type=int, default=8, help="daemon max_batch (default 8)")
    p.add_argument("--max-wait-ms", type=float, default=4.0, help="daemon max_wait_ms (default 4)")
    p.add_argument("--deadline-ms", type=float, default=1000.0, help="per-frame deadline after capture (default 1000)")
    p.add_argument("--max-queue", type=int, default=64, help="daemon overload max_queue (default 64)")
    p.add_argument("--engine-iters", type=int, default=20, help="timed engine batches (default 20)")
    p.add_argument("--image-size", type=int, default=256, help="model size when the script trains one (default 256)")
    p.add_argument("--epochs", type=int, default=3, help="epochs when the script trains one (default 3)")
    p.add_argument("--workdir", type=Path, default=REPO / ".cache" / "bench_line", help="cache, configs and logs")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.cameras, args.fps = QUICK["cameras"], QUICK["fps"]
        args.seconds, args.engine_iters = QUICK["seconds"], min(args.engine_iters, QUICK["engine_iters"])
    if args.engine is not None and args.calibration is None:
        p.error("--engine needs --calibration (a profile made for that engine by `inspector calibrate`)")
    if args.seconds <= 0 or args.max_batch < 1 or args.engine_iters < 1 or args.threads < 0:
        p.error("--seconds, --max-batch, --engine-iters must be positive and --threads >= 0")
    if max(args.cameras) * len(args.cameras) * len(args.fps) > 10_000:
        p.error("too many cases")
    return args


def add_artifact_arguments(parser: argparse.ArgumentParser, workdir: Path, image_size: int) -> None:
    """The model options of the tools that run a line on :func:`prepare_artifacts` (soak, fuzz_wire)."""
    parser.add_argument("--engine", type=Path, help="exported ONNX engine (manifest next to it); default: make one (cached)")
    parser.add_argument("--calibration", type=Path, help="its calibration profile (required with --engine)")
    parser.add_argument("--data", type=Path, help="grabber images: MVTec-layout folder (test/) or an image folder")
    parser.add_argument("--image-size", type=int, default=image_size, help=f"model size when the script trains one (default {image_size})")
    parser.add_argument("--epochs", type=int, default=3, help="epochs when the script trains one (default 3)")
    parser.add_argument("--workdir", type=Path, default=workdir, help="cache, configs and logs")


def say(message: str) -> None:
    print(f"[bench_line] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# model, calibration and images
# ------------------------------------------------------------------------------------------------


def engine_image_size(engine: Path) -> int:
    from inspector.engine.manifest import read_manifest
    h, w = read_manifest(engine)["image_size"]
    return int(h) if h == w else int(max(h, w))


def prepare_artifacts(args) -> dict[str, Path]:
    """Engine, profile and grabber images (made in ``--workdir`` when not given; cached):
    :func:`inspector.artifacts.build`."""
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    size = engine_image_size(args.engine) if args.engine else args.image_size
    recipe = Recipe(product="part", size=size, n_train=40, n_test_good=20, n_defect=5, seed=0, n_calib_good=30,
                    calib_seed=1, epochs=args.epochs, target_frr=0.01)
    data = args.data if args.data is not None else ensure_data(recipe, work / f"data_{size}", say=say)
    if args.engine is not None:   # the daemon verifies them against --trusted-keys (default $INSPECTOR_TRUSTED_KEYS)
        from inspector.core.signing import trust_paths
        trusted = trust_paths([args.trusted_keys] if args.trusted_keys else None)
        if not trusted:
            raise SystemExit("--engine needs --trusted-keys PATH (or INSPECTOR_TRUSTED_KEYS): the daemon verifies it")
        return {"engine": args.engine, "calibration": args.calibration, "data": data, "trusted_key": trusted[0]}
    layout = Layout(data=data, calib=work / f"calib_{size}", model=work / f"model_{size}.pt",
                    engine=work / f"model_{size}.onnx", profile=work / f"profile_{size}.json", keys=work / "keys")
    built = build(recipe, layout, generate_data=False, say=say)
    return {"engine": built["engine"], "calibration": built["profile"], "data": data, "model": built["model"],
            "trusted_key": built["trusted_key"]}


def grab_source(data: Path) -> str:
    return f"mvtec:{data}" if (data / "test").is_dir() else str(data)


# ------------------------------------------------------------------------------------------------
# the engine's own figures
# ------------------------------------------------------------------------------------------------




def line_images(data: Path, count: int) -> tuple[list[np.ndarray], list[str]]:
    """The first ``count`` images the grabbers send (repeated when the folder has fewer)."""
    from inspector.line.sources import open_source

    source = open_source(grab_source(data), loop=True)
    try:
        frames = []
        for frame in source:
            frames.append(frame)
            if len(frames) == count:
                break
    finally:
        source.close()
    return [f.image for f in frames], [f.pixel_format for f in frames]


def bench_engine(engine_path: Path, data: Path, threads: int, max_batch: int, want_maps: bool,
                 iters: int) -> dict[str, Any]:
    """images/s at ``max_batch`` and batch-1 latency, measured as the daemon calls the engine: the
    line's own images prepared once (``prepare_batch``), then ``infer_prepared`` timed (3 untimed
    calls first); ``iters`` batches of ``max_batch``, ``2 x iters`` single images."""
    from inspector.engine import open_engine
    from inspector.core.preprocess import prepare_batch

    engine = open_engine("onnxruntime", str(engine_path), threads=threads or None, max_batch=max_batch)
    h, w = engine.image_size
    images, formats = line_images(data, max_batch)
    prepared = prepare_batch(images, (h, w), formats)
    timings: dict[int, np.ndarray] = {}
    try:
        for batch, repeats in ((max_batch, iters), (1, 2 * iters)):
            x = np.ascontiguousarray(prepared[:batch])
            for _ in range(3):
                engine.infer_prepared(x, want_maps=want_maps)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                engine.infer_prepared(x, want_maps=want_maps)
                times.append(time.perf_counter() - t0)
            timings[batch] = np.asarray(times)
    finally:
        engine.close()
    big, one = timings[max_batch], timings[1]
    return {
        "path": str(engine_path), "image_size": [int(h), int(w)], "threads": int(threads or os.cpu_count() or 1),
        "max_batch": max_batch, "want_maps": want_maps, "iters": iters,
        "images_per_s_max_batch": float(max_batch * len(big) / big.sum()),
        "batch_latency_ms_p50": percentile(big * 1e3, 50),
        "batch1_latency_ms_p50": percentile(one * 1e3, 50),
        "batch1_latency_ms_p99": percentile(one * 1e3, 99),
        "images_per_s_batch1": float(len(one) / one.sum()),
        "blas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


# ------------------------------------------------------------------------------------------------
# processes and observers
# ------------------------------------------------------------------------------------------------


def records_for(collector: VerdictCollector, cameras: set[str]) -> list[tuple]:
    """(camera_id, seq, capture_ns, arrival_ns, decision, reason, has_score) of ``cameras``' verdicts."""
    with collector.lock:
        arrivals = [a for a in collector.arrivals if a.verdict.camera_id in cameras]
    return [(a.verdict.camera_id, a.verdict.seq, a.verdict.capture_ns, a.arrival_ns, a.verdict.decision,
             a.verdict.reason, a.verdict.score is not None) for a in arrivals]


def wait_plc_settled(plc: PlcClient, cameras: int, before: int, expected: int) -> int:
    """Verdicts the PLC's counters gained: wait until all ``expected`` are there, or (a gateway
    that dropped part of its backlog) until the count stops growing for 3 s; bounded."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last, changed_at = -1, time.monotonic()
    while True:
        now_total = plc.verdict_total(cameras) - before
        now = time.monotonic()
        if now_total != last:
            last, changed_at = now_total, now
        if now_total >= expected or now - changed_at > 3.0 or now > deadline:
            return now_total
        time.sleep(0.05)


def daemon_batches(health: str) -> tuple[float, float]:
    """(sum, count) of the daemon's batch_size histogram from /metrics; (nan, nan) if unreadable."""
    try:
        text = urllib.request.urlopen(f"http://{health}/metrics", timeout=2).read().decode()
    except OSError:
        return float("nan"), float("nan")
    values = {}
    for line in text.splitlines():
        for key in ("inspector_daemon_batch_size_sum", "inspector_daemon_batch_size_count"):
            if line.startswith(key + " "):
                values[key] = float(line.split()[-1])
    return (values.get("inspector_daemon_batch_size_sum", float("nan")),
            values.get("inspector_daemon_batch_size_count", float("nan")))


def write_daemon_config(path: Path, args, artifacts: dict, frames: str, verdicts: str, health: str) -> None:
    path.write_text(f"""# written by tools/bench_line.py
[daemon]
id = "bench-line"
frames = "{frames}"
verdicts = "{verdicts}"
health = "{health}"
heartbeat_ms = 100
log_format = "json"

[engine]
path = "{Path(artifacts['engine']).resolve()}"
backend = "onnxruntime"
threads = {int(args.threads)}
max_batch = {int(args.max_batch)}
max_wait_ms = {float(args.max_wait_ms)}

[defaults]
deadline_ms = {float(args.deadline_ms)}
calibration = "{Path(artifacts['calibration']).resolve()}"

[overload]
max_queue = {int(args.max_queue)}
policy = "reject_oldest"

[trust]
keys = ["{Path(artifacts['trusted_key']).resolve()}"]
""")


# ------------------------------------------------------------------------------------------------
# one case
# ------------------------------------------------------------------------------------------------


def steady_window(records: list[tuple]) -> tuple[int, int]:
    """(start_ns, end_ns) where every camera was sending: latest first capture .. earliest last."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for camera, _seq, capture, *_ in records:
        first[camera] = min(first.get(camera, capture), capture)
        last[camera] = max(last.get(camera, capture), capture)
    return max(first.values()), min(last.values())


def rates(records: list[tuple]) -> tuple[float, float]:
    """(verdicts/s, judged verdicts/s) arriving inside the steady window (whole span if it is short)."""
    start, end = steady_window(records)
    if end - start < 500_000_000:
        start, end = min(r[2] for r in records), max(r[3] for r in records)
    inside = [r for r in records if start <= r[3] <= end]
    seconds = max((end - start) / 1e9, 1e-9)
    return len(inside) / seconds, sum(1 for r in inside if r[6]) / seconds


def latency_summary(values_ms: list[float]) -> dict[str, Any]:
    return {"count": len(values_ms), "p50": percentile(values_ms, 50), "p99": percentile(values_ms, 99)}


def run_case(index: int, cameras: int, fps: float, args, line: dict) -> dict[str, Any]:
    procs: Processes = line["procs"]
    plc: PlcClient = line["plc"]
    ids = [f"b{index}cam{k}" for k in range(cameras)]
    stats_path = args.workdir / "logs" / f"gateway_{index}.json"
    stats_path.unlink(missing_ok=True)
    frames_per_camera = max(1, round(fps * args.seconds))

    plc.write_coil(mm.COIL_DAEMON_READY, False)   # so that "ready" below is this gateway's doing
    before = plc.verdict_total(cameras)
    procs.start("gateway", "gateway", "--connect", line["verdicts"], "--plc", f"modbus://127.0.0.1:{line['plc_port']}",
                "--cameras", ",".join(ids), "--stats", str(stats_path))
    wait_until(lambda: procs.check_alive("gateway") or plc.coil(mm.COIL_DAEMON_READY), 60,
               "the gateway to see the daemon ready")
    batch_sum0, batch_n0 = daemon_batches(line["health"])
    for k, cam in enumerate(ids):
        shuffle = ["--seed", str(k)] if line["source"].startswith("mvtec:") else []  # cameras see different parts
        procs.start(f"grab{k}", "grab", "--source", line["source"], "--camera", cam, "--connect", line["frames"],
                    "--fps", f"{fps:g}", "--loop", "--max-frames", str(frames_per_camera), *shuffle,
                    "--deadline-ms", f"{args.deadline_ms:g}")
    summaries = [procs.wait_exit(f"grab{k}", timeout=args.seconds * 4 + 60).last_json() or {} for k in range(cameras)]
    frames_sent = sum(int(s.get("frames_sent", 0)) for s in summaries)
    collector: VerdictCollector = line["collector"]
    wanted = set(ids)
    wait_until(lambda: len(records_for(collector, wanted)) >= frames_sent, SETTLE_TIMEOUT_S, "every verdict at the SUB")
    records = records_for(collector, wanted)
    plc_verdicts = wait_plc_settled(plc, cameras, before, len(records))
    procs.stop("gateway")
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    batch_sum1, batch_n1 = daemon_batches(line["health"])

    keys = Counter((r[0], r[1]) for r in records)
    decisions = Counter(r[4] for r in records)
    reasons = Counter(r[5] for r in records if r[5])
    verdicts_per_s, judged_per_s = rates(records)
    judged_latency = [(r[3] - r[2]) / 1e6 for r in records if r[6]]
    plc_latency = stats.get("latency_ms") or {}
    engine = line["engine"]
    verdict_lat = latency_summary(judged_latency)
    batches = batch_n1 - batch_n0
    return {
        "cameras": cameras, "fps_per_camera": fps, "offered_fps": cameras * fps, "seconds": args.seconds,
        "frames_sent": frames_sent, "verdicts": len(records), "plc_verdicts": plc_verdicts,
        "missing_verdicts": max(0, frames_sent - len(keys)), "duplicate_verdicts": sum(n - 1 for n in keys.values()),
        "ok": decisions["OK"], "reject": decisions["REJECT"], "fault": decisions["FAULT"],
        "judged": sum(1 for r in records if r[6]), "reasons": dict(reasons),
        "dropped": reasons["overload_dropped"], "deadline_missed": reasons["deadline_missed"],
        "other_faults": decisions["FAULT"] - reasons["overload_dropped"] - reasons["deadline_missed"],
        "verdicts_per_s": verdicts_per_s, "judged_per_s": judged_per_s,
        "line_vs_engine": judged_per_s / engine["images_per_s_max_batch"],
        "capture_to_verdict_ms": verdict_lat,
        "capture_to_plc_ms": {"count": plc_latency.get("count", 0), "p50": plc_latency.get("p50"),
                              "p99": plc_latency.get("p99")},
        "plc_write_ms_p50": (stats.get("plc_write_ms") or {}).get("p50"),
        "added_p50_ms": (verdict_lat["p50"] - engine["batch1_latency_ms_p50"]) if verdict_lat["p50"] is not None else None,
        "mean_batch": (batch_sum1 - batch_sum0) / batches if math.isfinite(batches) and batches > 0 else None,
        "grabber_late_events": sum(int(s.get("late", 0)) for s in summaries),
        "plc_backlog_dropped": stats.get("backlog_dropped"),
        "reject_pulses_dropped": stats.get("reject_pulses_dropped"),
    }


# ------------------------------------------------------------------------------------------------
# the whole run
# ------------------------------------------------------------------------------------------------


def start_line(args, artifacts: dict, procs: Processes, engine: dict) -> dict[str, Any]:
    frames, verdicts = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    health = f"127.0.0.1:{free_port()}"
    config = args.workdir / "inspector.toml"
    write_daemon_config(config, args, artifacts, frames, verdicts, health)
    procs.start("plc", "plc-sim", "--port", "0")
    procs.start("daemon", "serve", "--config", str(config))
    collector = VerdictCollector(verdicts)
    plc_port = int(procs.wait_line("plc", "plc-sim listening on ", 30).rsplit(":", 1)[1])
    wait_until(lambda: procs.check_alive("daemon") or collector.ready, READY_TIMEOUT_S, "the daemon to be ready")
    return {"frames": frames, "verdicts": verdicts, "health": health, "plc_port": plc_port, "plc": PlcClient(plc_port),
            "collector": collector, "procs": procs, "source": grab_source(Path(artifacts["data"])), "engine": engine,
            "config": str(config)}


def machine_info() -> dict[str, Any]:
    try:
        cpus_allowed = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus_allowed = os.cpu_count()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    import onnxruntime
    return {"cpus": os.cpu_count(), "cpus_allowed": cpus_allowed, "platform": platform.platform(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__, "commit": commit,
            "load_average_1m_at_start": os.getloadavg()[0]}


def moderate_case(cases: list[dict], engine: dict) -> dict | None:
    """The busiest case that keeps the engine at most a quarter busy at batch 1 (else the lightest)."""
    ok = [c for c in cases if c["offered_fps"] <= 0.25 * engine["images_per_s_batch1"]
          and c["capture_to_verdict_ms"]["p50"] is not None]
    if ok:
        return max(ok, key=lambda c: (c["offered_fps"], -c["cameras"]))
    return min(cases, key=lambda c: c["offered_fps"]) if cases else None


def summarize(cases: list[dict], engine: dict) -> dict[str, Any]:
    """Read-offs: throughput against the engine where the line is saturated (offered >= 90 % of the
    engine's images/s at max batch), keeping up where it is not, and the added p50 at moderate load."""
    capacity = engine["images_per_s_max_batch"]
    saturated = [c for c in cases if c["offered_fps"] >= 0.9 * capacity]
    best = max(saturated, key=lambda c: c["judged_per_s"]) if saturated else None
    unsaturated = [c for c in cases if c not in saturated]
    moderate = moderate_case(cases, engine)
    return {
        "engine_images_per_s": capacity,
        "saturated_cases": [[c["cameras"], c["fps_per_camera"]] for c in saturated],
        "best_saturated_case": [best["cameras"], best["fps_per_camera"]] if best else None,
        "best_saturated_judged_per_s": best["judged_per_s"] if best else None,
        "best_line_vs_engine": best["line_vs_engine"] if best else None,
        "within_10_percent_of_engine": (best["line_vs_engine"] >= 0.9) if best else None,
        "unsaturated_cases_keeping_up": sum(1 for c in unsaturated if c["judged_per_s"] >= 0.9 * c["offered_fps"]),
        "unsaturated_cases": len(unsaturated),
        "moderate_case": [moderate["cameras"], moderate["fps_per_camera"]] if moderate else None,
        "moderate_added_p50_ms": moderate["added_p50_ms"] if moderate else None,
        "moderate_added_under_5_ms": (moderate["added_p50_ms"] < 5.0)
        if moderate and moderate["added_p50_ms"] is not None else None,
    }


def _f(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(report: dict) -> str:
    e, s = report["engine"], report["summary"]
    lines = [
        f"engine {Path(e['path']).name} {e['image_size'][1]}x{e['image_size'][0]}, onnxruntime, {e['threads']} thread(s), "
        f"maps {'on' if e['want_maps'] else 'off'}: {e['images_per_s_max_batch']:.1f} images/s at batch {e['max_batch']} "
        f"(batch p50 {e['batch_latency_ms_p50']:.1f} ms); batch 1: p50 {e['batch1_latency_ms_p50']:.1f} ms, "
        f"{e['images_per_s_batch1']:.1f} images/s",
        "",
        "| cameras | fps/cam | offered fps | verdicts/s | judged/s | line/engine | capture->verdict p50 / p99 ms "
        "| added p50 ms | capture->PLC p50 / p99 ms | mean batch | dropped | deadline missed | other faults | sent | at PLC |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in report["cases"]:
        v, p = c["capture_to_verdict_ms"], c["capture_to_plc_ms"]
        lines.append(
            f"| {c['cameras']} | {c['fps_per_camera']:g} | {c['offered_fps']:g} | {c['verdicts_per_s']:.1f} "
            f"| {c['judged_per_s']:.1f} | {100 * c['line_vs_engine']:.0f}% | {_f(v['p50'])} / {_f(v['p99'])} "
            f"| {_f(c['added_p50_ms'])} | {_f(p['p50'])} / {_f(p['p99'])} | {_f(c['mean_batch'], 2)} | {c['dropped']} "
            f"| {c['deadline_missed']} | {c['other_faults']} | {c['frames_sent']} | {c['plc_verdicts']} |")
    if s["best_saturated_case"] is not None:
        throughput = (f"saturated line (offered >= 90% of {s['engine_images_per_s']:.1f} images/s): best "
                      f"{s['best_saturated_judged_per_s']:.1f} judged/s at {s['best_saturated_case']} (cameras, fps) = "
                      f"{100 * s['best_line_vs_engine']:.0f}% of the engine's own images/s "
                      f"({'within' if s['within_10_percent_of_engine'] else 'NOT within'} 10%)")
    else:
        throughput = (f"no case offers >= 90% of the engine's {s['engine_images_per_s']:.1f} images/s: throughput "
                      "against the engine cannot be read off (add cameras or fps)")
    lines += [
        "",
        throughput,
        f"below saturation: {s['unsaturated_cases_keeping_up']} of {s['unsaturated_cases']} case(s) judged >= 90% "
        "of the offered frames per second",
        f"moderate load {s['moderate_case']} (cameras, fps): transport + queueing + batching add "
        f"{_f(s['moderate_added_p50_ms'])} ms to the engine's batch-1 p50 "
        f"({'under' if s['moderate_added_under_5_ms'] else 'NOT under'} 5 ms; max_wait_ms = "
        f"{report['settings']['max_wait_ms']:g} of it can be batching wait)",
        f"load average 1 min: {report['machine']['load_average_1m_at_start']:.2f} at start, "
        f"{report['machine']['load_average_1m_at_end']:.2f} at end ({report['machine']['cpus_allowed']} CPUs)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.workdir = args.workdir.resolve()
    machine = machine_info()
    artifacts = prepare_artifacts(args)
    from inspector.judge.profile import load_profile
    want_maps = load_profile(artifacts["calibration"]).has_region_rule
    say(f"measuring the engine alone ({args.engine_iters} batches of {args.max_batch}, then batch 1)")
    engine = bench_engine(Path(artifacts["engine"]), Path(artifacts["data"]), args.threads, args.max_batch, want_maps,
                          args.engine_iters)
    procs = Processes(args.workdir / "logs")
    cases: list[dict] = []
    line: dict | None = None
    daemon_summary: dict = {}
    try:
        line = start_line(args, artifacts, procs, engine)
        index = 0
        for cameras in args.cameras:
            for fps in args.fps:
                say(f"case {index + 1}/{len(args.cameras) * len(args.fps)}: {cameras} camera(s) x {fps:g} fps, "
                    f"{args.seconds:g} s")
                cases.append(run_case(index, cameras, fps, args, line))
                index += 1
        daemon_summary = procs.stop("daemon", grace_s=30).last_json() or {}
    finally:
        if line is not None:
            line["plc"].close()
            line["collector"].close()
        procs.stop_all()
    machine["load_average_1m_at_end"] = os.getloadavg()[0]
    report = {
        "cases": cases, "engine": engine, "summary": summarize(cases, engine),
        "daemon": {k: daemon_summary.get(k) for k in ("verdicts", "frames_without_verdict", "batches",
                                                      "frames_judged", "by_reason", "exit")},
        "settings": {"cameras": args.cameras, "fps": args.fps, "seconds": args.seconds, "threads": args.threads,
                     "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "deadline_ms": args.deadline_ms,
                     "max_queue": args.max_queue, "engine_iters": args.engine_iters, "quick": args.quick},
        "machine": machine,
        "artifacts": {k: str(v) for k, v in artifacts.items()},
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BuildError, HarnessError, PlcClientError) as exc:  # a step, a process or the PLC failed
        print(f"bench_line: {exc}", file=sys.stderr)
        sys.exit(2)
