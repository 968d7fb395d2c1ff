#!/usr/bin/env python
"""What the operator's station costs: the archive's work per reject, and the line's verdict latency
with the archive and the operator page running against without them.

    python tools/bench_station.py [--entries 40] [--sizes 256x256:bgr8,1024x1024:mono8,2448x2048:bgr8]
                                  [--line-seconds 20] [--fps 10] [--cameras 2] [--rounds 2]
                                  [--workdir .cache/bench_station] [--json FILE]

1. **Per reject** (in this process), the daemon's part: quantising and encoding one anomaly map for
   the tap (``publisher.tap_map``) at 160, 256 and 512 px; the archive's part: for each camera size, ``--entries`` REJECT entries made of a
   synthetic part image and an anomaly map at 256 x 256, exactly as ``inspector archive`` stores
   them: ``entry_files`` (PNG original, map, full-resolution JPEG overlay, thumbnail: the
   encoding) then ``Archive.add`` (files written and fsynced into tmp/, renamed, the index row
   committed, the quota checked: the disk). Reported: ms p50 / p99 of each and bytes per entry.
2. **On the line** (real processes, :mod:`inspector.line.harness`): the daemon, a gateway with a
   simulated PLC and ``--cameras`` grabbers at ``--fps``, ``--line-seconds`` per run, alternating
   *off* (no tap) and *on* (tap with anomaly maps, ``inspector archive``, ``inspector ui`` with one
   client reading its live event stream, as an open page does), ``--rounds`` of each. Reported per
   mode: capture -> verdict ms p50 / p99 (the verdict's arrival at a subscriber) and capture -> PLC
   ms p50 / p99 (the gateway's stats), verdicts, rejects archived. The model is the demo's
   (``inspector demo`` builds and caches it; built here the same way when missing), or
   ``--engine E --calibration P --data MVTEC_DIR``.

Prints a markdown table; ``--json FILE`` keeps every figure. The machine's load average is
recorded: figures from a shared machine are noisier than from an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from inspector.core.ports import free_port  # noqa: E402
from inspector.core.stats import percentile  # noqa: E402
from inspector.line import wire  # noqa: E402
from inspector.line.harness import Processes, VerdictCollector, start_station, wait_until  # noqa: E402
from inspector.station.archive import Archive  # noqa: E402
from inspector.station.entry import Pending, entry_files, verdict_fields  # noqa: E402


def say(message: str) -> None:
    print(f"[bench_station] {message}", file=sys.stderr, flush=True)


def summary(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50) if values else None, "p99": percentile(values, 99) if values else None,
            "n": len(values)}


# ------------------------------------------------------------------------------------------------ per reject
def part_image(height: int, width: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """A machined-part-like picture: smooth shading, texture noise, a dark blob (compresses like a
    camera image, unlike pure noise)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 110 + 40 * np.sin(xx / width * 3.1) * np.cos(yy / height * 2.3) + rng.normal(0, 6, (height, width))
    cy, cx = rng.integers(height // 4, 3 * height // 4), rng.integers(width // 4, 3 * width // 4)
    base[(yy - cy) ** 2 + (xx - cx) ** 2 < (min(height, width) / 30) ** 2] -= 60
    image = np.clip(base, 0, 255).astype(np.uint8)
    return image[..., None] if channels == 1 else np.repeat(image[..., None], 3, axis=2)


def bench_entries(sizes: list[tuple[int, int, str]], entries: int, root: Path) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for height, width, fmt in sizes:
        archive = Archive(root / f"archive_{width}x{height}_{fmt}")
        channels = 1 if fmt == "mono8" else 3
        amap = np.abs(rng.normal(0.2, 0.05, (256, 256))).astype(np.float32)
        amap[100:120, 130:160] = 1.0
        encode_ms, store_ms, sizes_b = [], [], []
        for seq in range(entries):
            image = part_image(height, width, channels, rng)
            v = wire.Verdict("cam0", seq, "", time.time_ns(), "REJECT", "score_above_threshold", 1.0, 0.5,
                             time.time_ns())
            header = wire.FrameHeader("cam0", seq, "", v.capture_ns, 0, image.shape, pixel_format=fmt)
            m = wire.AnomalyMap.quantise("cam0", seq, v.capture_ns, amap, "squash", 0.6)
            t0 = time.perf_counter()
            files, made_by = entry_files(Pending(v, header, image, m), 160)
            t1 = time.perf_counter()
            entry_id = archive.add(verdict_fields(v), files, made_by)
            t2 = time.perf_counter()
            encode_ms.append((t1 - t0) * 1e3)
            store_ms.append((t2 - t1) * 1e3)
            sizes_b.append(archive.get(entry_id).bytes)
        archive.close()
        rows.append({"size": f"{width}x{height}", "pixel_format": fmt, "entries": entries,
                     "encode_ms": summary(encode_ms), "store_ms": summary(store_ms),
                     "total_ms": summary([a + b for a, b in zip(encode_ms, store_ms)]),
                     "bytes_per_entry": int(np.mean(sizes_b))})
        say(f"{width}x{height} {fmt}: encode {rows[-1]['encode_ms']['p50']:.1f} ms, store "
            f"{rows[-1]['store_ms']['p50']:.1f} ms, {rows[-1]['bytes_per_entry']} bytes")
    return rows


def bench_tap_map(sizes: tuple[int, ...] = (160, 256, 512), repeats: int = 200) -> list[dict]:
    """The daemon's own cost per REJECT / FAULT with ``tap_maps``: quantise + encode one map
    (``publisher.tap_map``, in the engine worker), and the bytes it puts on the tap."""
    from inspector.line.publisher import tap_map

    rng = np.random.default_rng(1)
    engine = argparse.Namespace(inspection=argparse.Namespace(fit="squash"))
    rows = []
    for size in sizes:
        amap = rng.random((size, size), dtype=np.float32)
        v = wire.Verdict("cam0", 0, "", 1, "REJECT", "score_above_threshold", 1.0, 0.5, 2)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            parts = tap_map(v, amap, engine, 0.6)
            times.append((time.perf_counter() - t0) * 1e3)
        rows.append({"map": f"{size}x{size}", "ms": summary(times), "bytes": sum(len(bytes(x)) for x in parts)})
    return rows


# ------------------------------------------------------------------------------------------------ on the line
def demo_artifacts(workdir: Path) -> dict:
    from inspector.demo import prepare_model

    args = argparse.Namespace(workdir=str(REPO / ".cache" / "demo"), engines_dir=str(REPO / "engines"),
                              calibration_dir=str(REPO / "calibration"), epochs=60, rebuild=False)
    return prepare_model(args)


def line_config(path: Path, artifacts: dict, on: bool, cameras: list[str], fps: float, frames: int,
                plc_port: int, workdir: Path) -> None:
    tap = f'tap = "tcp://127.0.0.1:{free_port()}"\ntap_maps = true\n' if on else ""
    station = (f'[archive]\npath = "{workdir / "archive"}"\nquota_mb = 200\n\n'
               f'[ui]\nlisten = "127.0.0.1:0"\nsecure_cookies = false\n') if on else ""
    camera_sections = "".join(f'[cameras.{c}]\nsource = "mvtec:{Path(artifacts["data"]).resolve()}"\nseed = {i}\n\n'
                              for i, c in enumerate(cameras))
    path.write_text(f"""[daemon]
id = "bench"
frames = "tcp://127.0.0.1:{free_port()}"
verdicts = "tcp://127.0.0.1:{free_port()}"
{tap}heartbeat_ms = 200
log_format = "text"

[engine]
path = "{Path(artifacts['engine']).resolve()}"
threads = 0

[defaults]
calibration = "{Path(artifacts['profile']).resolve()}"
deadline_ms = 1000
fps = {fps}
loop = true
max_frames = {frames}

{camera_sections}[gateways.plc]
plc = "sim://127.0.0.1:{plc_port}"
cameras = {json.dumps(cameras)}
stats = "{workdir / 'gateway.json'}"

{station}""")


def read_events(url: str, stop: threading.Event) -> None:
    """An open page: reads the live event stream until ``stop``."""
    try:
        with urllib.request.urlopen(url + "api/events", timeout=5) as stream:
            while not stop.is_set():
                if not stream.readline():
                    return
    except OSError:
        return


def run_line(artifacts: dict, on: bool, args, workdir: Path) -> dict:
    from inspector.line.config import load_config

    workdir.mkdir(parents=True, exist_ok=True)
    cameras = [f"cam{i}" for i in range(args.cameras)]
    frames = int(args.fps * args.line_seconds)
    config_path = workdir / "box.toml"
    line_config(config_path, artifacts, on, cameras, args.fps, frames, free_port(), workdir)
    config = load_config(config_path)
    procs = Processes(workdir / "logs", cwd=REPO)
    collector = VerdictCollector(config.daemon.verdicts)
    stop_reader = threading.Event()
    try:
        procs.start("daemon", "serve", "--config", str(config_path))
        procs.start("gateway", "gateway", "--config", str(config_path), "--gateway", "plc")
        if not collector.wait_ready(120, alive=procs.children["daemon"].alive):
            raise RuntimeError(f"the daemon did not become ready; see {procs.log_path('daemon')}")
        time.sleep(1.0)
        if on:
            url = start_station(procs, config_path)
            threading.Thread(target=read_events, args=(url, stop_reader), daemon=True).start()
        for camera in cameras:
            procs.start(f"grab-{camera}", "grab", "--config", str(config_path), "--camera", camera)
        expected = frames * len(cameras)
        wait_until(lambda: len(collector.verdicts) >= expected, args.line_seconds * 4 + 60, f"{expected} verdicts")
        time.sleep(1.5)
        procs.stop("gateway")
        stats = json.loads((workdir / "gateway.json").read_text())
        verdicts = collector.arrivals
        stored = len(Archive(workdir / "archive", recover=False)) if on else 0
    finally:
        stop_reader.set()
        procs.stop_all(grace_s=5)
        collector.close()
    judged = [a for a in verdicts if a.verdict.score is not None]
    rejects = sum(1 for a in verdicts if a.verdict.decision != "OK")
    return {"mode": "on" if on else "off", "verdicts": len(verdicts), "rejects": rejects, "archived": stored,
            "capture_to_verdict_ms": summary([(a.arrival_ns - a.verdict.capture_ns) / 1e6 for a in judged]),
            "capture_to_plc_ms": {k: stats["latency_ms"].get(k) for k in ("p50", "p99", "count")}}


# ------------------------------------------------------------------------------------------------ main
def parse_size(text: str) -> tuple[int, int, str]:
    size, _, fmt = text.partition(":")
    width, height = (int(v) for v in size.lower().split("x"))
    return height, width, fmt or "bgr8"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=40)
    p.add_argument("--sizes", default="256x256:bgr8,1024x1024:mono8,2448x2048:bgr8")
    p.add_argument("--line-seconds", type=float, default=20.0)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--skip-line", action="store_true")
    p.add_argument("--skip-entries", action="store_true")
    p.add_argument("--engine", type=Path, help="an ONNX engine for the line runs (default: the demo's)")
    p.add_argument("--calibration", type=Path, help="its calibration profile (with --engine)")
    p.add_argument("--data", type=Path, help="grabber images, MVTec layout (with --engine)")
    p.add_argument("--workdir", type=Path, default=REPO / ".cache" / "bench_station")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(dir=args.workdir.parent if args.workdir.parent.exists() else None) as tmp:
        entries = [] if args.skip_entries else \
            bench_entries([parse_size(s) for s in args.sizes.split(",")], args.entries, Path(tmp))
    maps = bench_tap_map()
    runs = []
    if not args.skip_line:
        artifacts = ({"engine": args.engine, "profile": args.calibration, "data": args.data} if args.engine
                     else demo_artifacts(args.workdir))
        for round_ in range(args.rounds):
            for on in (False, True):
                say(f"line, round {round_ + 1}, station {'on' if on else 'off'}")
                runs.append(run_line(artifacts, on, args, args.workdir / f"run_{round_}_{'on' if on else 'off'}"))
    load.append(os.getloadavg()[0])
    print("| camera image | encode ms p50 / p99 | store ms p50 / p99 | total ms p50 / p99 | bytes per reject |")
    print("| --- | ---: | ---: | ---: | ---: |")
    f = lambda s: f"{s['p50']:.1f} / {s['p99']:.1f}"
    for row in entries:
        print(f"| {row['size']} {row['pixel_format']} | {f(row['encode_ms'])} | {f(row['store_ms'])} | "
              f"{f(row['total_ms'])} | {row['bytes_per_entry']:,} |")
    print("\n| anomaly map (daemon, tap_maps) | quantise + encode ms p50 / p99 | bytes on the tap |")
    print("| --- | ---: | ---: |")
    for row in maps:
        print(f"| {row['map']} | {row['ms']['p50']:.3f} / {row['ms']['p99']:.3f} | {row['bytes']:,} |")
    if runs:
        print("\n| station | verdicts | rejects | archived | capture -> verdict ms p50 / p99 | capture -> PLC ms p50 / p99 |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for run in runs:
            plc = run["capture_to_plc_ms"]
            print(f"| {run['mode']} | {run['verdicts']} | {run['rejects']} | {run['archived']} | "
                  f"{f(run['capture_to_verdict_ms'])} | {plc['p50']:.1f} / {plc['p99']:.1f} |")
    print(f"\nload average {load[0]:.2f} at start, {load[1]:.2f} at end")
    if args.json:
        args.json.write_text(json.dumps({"entries": entries, "maps": maps, "line": runs, "load_average": load,
                                         "settings": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
