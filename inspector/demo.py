"""`inspector demo`: the whole line on this machine, with embedded defaults.

1. Model: generates a labelled synthetic sample set (machined washers with scratches, holes, stains
   and missing pieces), trains a quick model on it, exports the ONNX engine and calibrates its
   threshold on separate good parts. All of it is cached in ``.cache/demo`` (and ``engines/demo.*``,
   ``calibration/demo.json``) and reused when present and consistent.
2. Line: a simulated PLC (pymodbus Modbus TCP server), ``inspector serve`` (the daemon),
   ``inspector gateway`` (verdicts -> Modbus), the station (``inspector archive``: the reject archive
   in ``.cache/demo/archive``; ``inspector ui``: the operator page, its address printed) and two
   ``inspector grab`` processes replaying the labelled test images as cameras cam0 and cam1, all
   as real processes on loopback.
3. Live progress once a second (frames/s, verdict counts, latency), then a summary checked against
   the PLC's own registers: every frame sent must have exactly one verdict at the PLC.

Security as on a real line (docs/security.md): the engine and the profile are signed with a site
key made for the demo (``.cache/demo/keys/site.signing``; the daemon's ``[trust]`` lists
``site.pub``), and every link runs CURVE with key pairs made for the demo in
``.cache/demo/keys/curve`` (the daemon; cam0 and cam1, each bound to its camera; the gateway; the
demo's own verdict reader).

JSON summary keys (``--json FILE``): frames_sent, verdicts, verdicts_at_plc, ok, reject, fault,
false_rejects, escapes, latency_ms_p50, latency_ms_p99 (capture -> PLC write, from the gateway),
plus per-camera counts, throughput and the artifacts used.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

from .core.stats import percentile
from .core.ports import free_ports
from .line.wire import Verdict

CAMERAS = ("cam0", "cam1")
DEMO_SIZE = "160"          # model input 160x160, the sample images' own size: quick on 2 cores
DEMO_EPOCHS = 60
DEMO_TRAIN_IMAGES = 150
DEMO_TARGET_FRR = 0.01
DEMO_UI_PORT = 0           # the operator page's port: 0 = a free one (printed)


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
    p.add_argument("--stay", action="store_true", help="keep the operator page (and the idle line) up after the "
                                                       "run, until Ctrl-C")


def step(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


# --------------------------------------------------------------------------- model preparation
def prepare_model(args) -> dict:
    """Sample data, model, engine and calibration profile (cached): :func:`inspector.artifacts.build`."""
    from .artifacts import Layout, Recipe, build

    work = Path(args.workdir)
    recipe = Recipe(product="part", size=int(DEMO_SIZE), n_train=DEMO_TRAIN_IMAGES, n_test_good=40, n_defect=10,
                    seed=7, n_calib_good=80, calib_seed=8, epochs=args.epochs, target_frr=DEMO_TARGET_FRR)
    layout = Layout(data=work / "data", calib=work / "calib", model=work / "model.pt",
                    engine=Path(args.engines_dir) / "demo.onnx", profile=Path(args.calibration_dir) / "demo.json",
                    keys=work / "keys")
    return build(recipe, layout, rebuild=args.rebuild, say=step)


CURVE_NAMES = ("daemon", *CAMERAS, "gateway", "demo", "archive", "ui")


def curve_keys(folder: Path) -> Path:
    """The demo's CURVE key pairs in ``folder`` (made once): NAME.key + NAME.key_secret."""
    from .line.keys import make_pair

    for name in CURVE_NAMES:
        if not (folder / f"{name}.key_secret").is_file():
            (folder / f"{name}.key").unlink(missing_ok=True)
            make_pair(folder, name)
    return folder


def curve_args(keys: Path, name: str) -> list[str]:
    """The options of a client of the demo daemon: pin its key, present ``name``'s."""
    return ["--curve-server-key", str(keys / "daemon.key"), "--curve-key", str(keys / f"{name}.key")]


# --------------------------------------------------------------------------- the line
def write_config(path: Path, artifacts: dict, frames_ep: str, verdicts_ep: str, tap_ep: str, health: str,
                 keys: Path, plc_port: int) -> None:
    work = path.parent.resolve()
    cameras = "".join(f'\n[cameras.{cam}]\ngrabber_key = "{keys / f"{cam}.key"}"\n' for cam in CAMERAS)
    path.write_text(f"""# written by inspector demo
[daemon]
id = "demo"
frames = "{frames_ep}"
verdicts = "{verdicts_ep}"
tap = "{tap_ep}"
tap_maps = true
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
{cameras}
[curve]
server_key = "{keys / "daemon.key"}"
verdict_clients = ["{keys / "demo.key"}"]

[trust]
keys = ["{Path(artifacts['trusted_key']).resolve()}"]

[gateways.demo]                 # started by the demo with the same settings; the page reads this PLC
plc = "modbus://127.0.0.1:{plc_port}"
cameras = ["cam0", "cam1"]
key = "{keys / "gateway.key"}"

[archive]
path = "{work / 'archive'}"
ok_every = 20
quota_mb = 200
key = "{keys / "archive.key"}"

[ui]
listen = "127.0.0.1:{DEMO_UI_PORT}"
users = "{work / 'users.json'}"
secure_cookies = false          # the demo serves http://127.0.0.1 only
key = "{keys / "ui.key"}"
""")


def wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass


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
    from .line.harness import Processes, VerdictCollector, start_station
    from .plc.plc_sim import start_sim_in_thread

    work = Path(args.workdir)
    ports = free_ports(4)   # distinct: two free_port() calls in a row can return the same port
    frames_ep, verdicts_ep, tap_ep = (f"tcp://127.0.0.1:{port}" for port in ports[:3])
    health = f"127.0.0.1:{ports[3]}"
    config = work / "inspector.toml"
    keys = curve_keys((work / "keys" / "curve").resolve())
    sim = start_sim_in_thread("127.0.0.1", 0)
    step(f"simulated PLC (Modbus TCP) on 127.0.0.1:{sim.port}")
    write_config(config, artifacts, frames_ep, verdicts_ep, tap_ep, health, keys, sim.port)
    from .line.keys import key_pair, public_key
    from .line.transport import ClientCurve
    tap = VerdictCollector(verdicts_ep, ClientCurve(key_pair(keys / "demo.key"), public_key(keys / "daemon.key")))
    procs = Processes(work / "logs")
    try:
        procs.start("daemon", "serve", "--config", str(config))
        gateway_stats = work / "gateway_stats.json"
        gateway_stats.unlink(missing_ok=True)
        procs.start("gateway", "gateway", "--connect", verdicts_ep, "--plc", f"modbus://127.0.0.1:{sim.port}",
                    "--cameras", ",".join(CAMERAS), "--stats", str(gateway_stats), *curve_args(keys, "gateway"))
        if not tap.wait_ready(60, alive=procs.children["daemon"].alive):
            state = "exited early" if not procs.children["daemon"].alive() else "did not become ready in 60 s"
            raise RuntimeError(f"the daemon {state}; see {procs.log_path('daemon')}")
        url = start_station(procs, config)
        step(f"operator page: {url}  (reject archive in {work / 'archive'}; operator login: "
             f"inspector ui --config {config} --add-user NAME)")
        step(f"daemon ready (config {config}); starting 2 grabbers at {args.fps:g} fps, {args.frames} frames each")
        time.sleep(0.5)  # let the gateway see a heartbeat before parts arrive
        for k, cam in enumerate(CAMERAS):
            procs.start(cam, "grab", "--source", f"mvtec:{artifacts['data']}", "--camera", cam,
                        "--connect", frames_ep, "--fps", str(args.fps), "--loop", "--seed", str(k),
                        "--max-frames", str(args.frames), "--deadline-ms", str(args.deadline_ms), *curve_args(keys, cam))
        t0 = time.time()
        last_print, grab_summaries = t0, {}
        expected = None
        while True:
            time.sleep(0.1)
            now = time.time()
            for cam in CAMERAS:
                if cam not in grab_summaries and not procs.children[cam].alive():
                    grab_summaries[cam] = procs.wait_exit(cam, 10).last_json() or {}
            if len(grab_summaries) == len(CAMERAS) and expected is None:
                expected = sum(int(s.get("frames_sent", 0)) for s in grab_summaries.values())
            verdicts = tap.verdicts
            if not args.quiet and now - last_print >= 1.0:
                last_print = now
                print(progress_line(verdicts, now - t0), flush=True)
            if expected is not None and len(verdicts) >= expected:
                break
            if now - t0 > args.frames / args.fps * 3 + 60:
                step("timed out waiting for verdicts")
                break
        elapsed = time.time() - t0
        verdicts = tap.verdicts
        # the gateway writes asynchronously: wait until the PLC holds every verdict (bounded)
        t_plc = time.time()
        while sum(c["total"] for c in plc_counts(sim).values()) < len(verdicts) and time.time() - t_plc < 10:
            time.sleep(0.1)
        at_plc = plc_counts(sim)
        if args.stay:
            step(f"the line is idle; the operator page stays at {url} until Ctrl-C")
            wait_for_interrupt()
        archive_summary = procs.stop("archive").last_json() or {}
        procs.stop("ui")
        procs.stop("gateway")
        daemon_summary = procs.stop("daemon").last_json() or {}
        gw = json.loads(gateway_stats.read_text()) if gateway_stats.is_file() else {}
        summary = summarize(verdicts, grab_summaries, at_plc, gw, daemon_summary, elapsed, artifacts)
        summary["station"] = {"url": url, "archive": str(work / "archive"),
                              **{k: archive_summary.get(k, 0) for k in ("stored_reject", "stored_fault", "stored_ok",
                                                                        "lost_queue_full", "store_failed")}}
        return summary
    finally:
        procs.stop_all(grace_s=5)
        sim.stop()
        tap.close()


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
    st = s["station"]
    print(f"archive: {st['stored_reject']} REJECT + {st['stored_fault']} FAULT + {st['stored_ok']} sampled OK "
          f"entries in {st['archive']} (lost {st['lost_queue_full'] + st['store_failed']}); operator page was "
          f"{st['url']} (--stay keeps it up)")


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
