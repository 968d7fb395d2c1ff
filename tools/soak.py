#!/usr/bin/env python
"""Soak test of the whole line under faults: does every captured frame end in an outcome at the PLC?

    python tools/soak.py --minutes N [--json FILE] [--load 2.0] [--cameras 2] [--fault-every-s 30]
                         [--engine FILE.onnx --calibration PROFILE.json] [--data DIR]
                         [--window-s 2.0] [--image-size 160] [--workdir .cache/soak]

Every process is the real one on loopback, as ``tools/bench_line.py`` starts them (same model
build, cached in ``--workdir``): ``inspector plc-sim`` (its write log, with the reference PLC
routine's decisions), ``inspector serve``, ``inspector gateway`` and one ``inspector grab`` per
camera, looping over the test images at ``--load`` x the engine's own capacity (images/s at
max batch, measured first) split over the cameras, each with ``--capture-log``.

Every ``--fault-every-s`` seconds the next fault of the cycle: ``kill -9`` and immediate restart
of the daemon, the gateway, each grabber; a PLC outage (the simulator killed, back after 3 s on
the same port: its memory is lost, as a restarted PLC's); ``SIGSTOP`` of the daemon for 5 s and of
the gateway for 3 s. Before each fault the soak acknowledges latched faults as an operator
would (the fault-reset coil). Each process's RSS and the gateway's backlog are sampled every second.

At the end the grabbers stop, the line drains (the gateway's backlog written: on a loaded machine
the simulated PLC's Modbus answers limit how fast the gateway writes, ``gateway_backlog_max`` and
``gateway_drain_s`` say how far behind it fell), and :mod:`soak_check` classifies every frame the
grabbers logged against the PLC's write log (after the last fault the line runs again for a while,
so that what it lost is revealed): ``verdicts_at_plc`` (an entry of its own),
``covered_by_fault`` (a ``sequence_gap`` FAULT or a line stop at the PLC within ``--window-s`` of
capture: the part's way to the reject station, the daemon's deadline), ``uncovered`` and
``silent_passes`` (see soak_check). JSON: those keys, ``frames_captured``, ``max_rss_mb`` (the
largest RSS of any process), ``rss_mb`` per process (largest RSS, largest growth of one process
instance after its first 30 s, instances), ``faults`` (what was done when), ``capacity_images_per_s``, ``offered_fps``, the daemon's and gateway's own
figures. Exit status 0 when ``uncovered`` and ``silent_passes`` are 0.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

import bench_line
from soak_check import captured_frames, check, read_jsonl

from inspector.core.ports import free_port
from inspector.line.harness import Processes, wait_until
from inspector.plc.client import PlcClient

REPO = Path(__file__).resolve().parents[1]
FAULTS = ("kill:daemon", "kill:gateway", "kill:grab0", "plc_outage", "stop:daemon:5", "kill:grab1", "stop:gateway:3")
DRAIN_TIMEOUT_S = 900.0           # at the end: longest wait for the gateway to write its backlog
PART_ID_RUN = 10_000_000          # part ids of one grabber run: camera k, run r -> k * 10**9 + r * 10**7 + seq


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, required=True, help="how long the line runs under faults")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--load", type=float, default=2.0, help="offered frames / engine capacity (default 2)")
    p.add_argument("--cameras", type=int, default=2, help="grabbers (default 2, at most 4)")
    p.add_argument("--fault-every-s", type=float, default=30.0, help="seconds between faults (default 30)")
    p.add_argument("--window-s", type=float, default=2.0,
                   help="the daemon's deadline, a part's way to the reject station (at least 4 engine batches)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = all cores)")
    bench_line.add_artifact_arguments(p, REPO / ".cache" / "soak", 64)
    args = p.parse_args(argv)
    if args.engine is not None and args.calibration is None:
        p.error("--engine needs --calibration")
    if not (args.minutes > 0 and args.load > 0 and 1 <= args.cameras <= 4 and args.fault_every_s > 0):
        p.error("--minutes, --load, --fault-every-s must be > 0 and --cameras 1..4")
    return args


def say(message: str) -> None:
    print(f"[soak] {message}", file=sys.stderr, flush=True)


class Line:
    """The processes of the soak, started and restarted by name."""

    def __init__(self, args, artifacts: dict, run_dir: Path, fps: float) -> None:
        self.args, self.run_dir, self.fps = args, run_dir, fps
        self.procs = Processes(run_dir / "logs", cwd=REPO)
        self.cameras = [f"cam{k}" for k in range(args.cameras)]
        self.frames, self.verdicts = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        self.plc_port, self.gateway_metrics = free_port(), free_port()
        self.plc_log = run_dir / "plc.jsonl"
        self.config = run_dir / "inspector.toml"
        self.source = bench_line.grab_source(Path(artifacts["data"]))
        self.runs = [0] * args.cameras
        self.outages: list[tuple[int, int]] = []
        cameras = "".join(f"\n[cameras.{c}]\nfps = {fps}\n" for c in self.cameras)
        self.config.write_text(f"""[daemon]
frames = "{self.frames}"
verdicts = "{self.verdicts}"
heartbeat_ms = 100
drain_ms = 3000

[engine]
path = "{Path(artifacts['engine']).resolve()}"
threads = {args.threads}
max_batch = 8

[defaults]
deadline_ms = {args.window_s * 1000}
calibration = "{Path(artifacts['calibration']).resolve()}"
{cameras}
[overload]
max_queue = 64
""")

    def start(self, name: str) -> None:
        if name == "plc":
            self.procs.start("plc", "plc-sim", "--port", str(self.plc_port), "--log", str(self.plc_log))
            self.procs.wait_line("plc", "plc-sim listening on ", 30)
        elif name == "daemon":
            self.procs.start("daemon", "serve", "--config", str(self.config))
        elif name == "gateway":
            self.procs.start("gateway", "gateway", "--connect", self.verdicts, "--plc", f"modbus://127.0.0.1:{self.plc_port}",
                             "--cameras", ",".join(self.cameras), "--pulse-ms", "5", "--stats", str(self.run_dir / "gateway.json"),
                             "--metrics-port", str(self.gateway_metrics), "--metrics-host", "127.0.0.1")
        else:
            k = int(name.removeprefix("grab"))
            self.procs.start(name, "grab", "--source", self.source, "--camera", self.cameras[k], "--connect", self.frames,
                             "--loop", "--fps", f"{self.fps:.3f}", "--seed", str(k), "--capture-log",
                             str(self.run_dir / f"capture_{k}.jsonl"), "--part-id-start",
                             str(k * 10**9 + self.runs[k] * PART_ID_RUN))
            self.runs[k] += 1

    def gateway_backlog(self) -> float | None:
        """Verdicts waiting in the gateway for the PLC (its metric), None when it does not answer."""
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.gateway_metrics}/metrics", timeout=2).read().decode()
        except OSError:
            return None
        match = re.search(r"^inspector_gateway_plc_backlog (\S+)$", text, re.M)
        return float(match.group(1)) if match else None

    @staticmethod
    def ready(plc: PlcClient) -> bool:
        """The line runs: the daemon is ready and nothing stops the line."""
        try:
            return plc.coil(2) and not plc.coil(1)
        except Exception:
            return False

    def acknowledge(self, plc: PlcClient) -> None:
        """The operator's fault reset (coil 3): latched faults clear once their cause is quiet."""
        try:
            plc.write_coil(3, True)
        except Exception:  # the PLC may be down right now (outage): the next one will do
            pass

    def fault(self, fault: str) -> dict:
        """Do one fault of FAULTS; returns what was done when."""
        kind, name, *rest = fault.split(":") + [""]
        started = time.time_ns()
        child = self.procs.children.get(name) if kind != "plc_outage" else self.procs.children.get("plc")
        if kind == "kill":
            child.signal(signal.SIGKILL)
            child.wait(10)
            self.start(name)                                     # at once, as systemd would
        elif kind == "stop":
            child.signal(signal.SIGSTOP)
            time.sleep(float(rest[0]))
            child.signal(signal.SIGCONT)
        else:
            child.signal(signal.SIGKILL)
            child.wait(10)
            time.sleep(3.0)
            self.start("plc")
            self.outages.append((started, time.time_ns()))
        return {"fault": fault, "t_ns": started, "took_s": round((time.time_ns() - started) / 1e9, 2)}


class RssSampler:
    """Every second, the RSS (MiB) of every child process of ``procs``, per process instance (a
    restart is a new instance). ``report``: per name (grabbers together) the largest RSS and the
    largest growth of one instance that lived at least a minute (its last sample minus its sample
    30 s after it started: the warm-up left out)."""

    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self.samples: dict[tuple[str, int], list[float]] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(1.0):
            for name, child in list(self.procs.children.items()):
                try:
                    match = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{child.pid}/status").read_text())
                except (OSError, TypeError):
                    continue
                if match:
                    key = (re.sub(r"\d+$", "", name), child.pid)
                    self.samples.setdefault(key, []).append(int(match.group(1)) / 1024)

    def report(self) -> dict:
        self.done.set()
        self.thread.join(3)
        out: dict[str, dict] = {}
        for (name, _), values in self.samples.items():
            entry = out.setdefault(name, {"max": 0.0, "growth_after_warmup": None, "instances": 0})
            entry["max"] = round(max(entry["max"], max(values)), 1)
            entry["instances"] += 1
            if len(values) >= 60:
                growth = round(values[-1] - values[30], 1)
                entry["growth_after_warmup"] = max(growth, entry["growth_after_warmup"] or growth)
        return out


def run(args) -> dict:
    args.workdir.mkdir(parents=True, exist_ok=True)
    artifacts = bench_line.prepare_artifacts(args)
    engine = bench_line.bench_engine(Path(artifacts["engine"]), Path(artifacts["data"]), args.threads, 8, False, 10)
    capacity = engine["images_per_s_max_batch"]
    fps = args.load * capacity / args.cameras
    args.window_s = max(args.window_s, 4 * 8 / capacity)   # a deadline of at least 4 engine batches
    run_dir = args.workdir / time.strftime("run-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    say(f"engine capacity {capacity:.1f} images/s; {args.cameras} cameras at {fps:.1f} fps each ({args.load:g}x); {run_dir}")
    line = Line(args, artifacts, run_dir, fps)
    sampler = RssSampler(line.procs)
    faults: list[dict] = []
    plc = None
    try:
        for name in ("plc", "daemon", "gateway"):
            line.start(name)
        plc = PlcClient(line.plc_port)
        wait_until(lambda: line.ready(plc), 180, "the line to be ready")
        start_ns = time.time_ns()
        for k in range(args.cameras):
            line.start(f"grab{k}")
        end = time.monotonic() + args.minutes * 60
        next_fault, index, backlog_max = time.monotonic() + args.fault_every_s, 0, 0.0
        while time.monotonic() < end:
            time.sleep(1.0)
            backlog_max = max(backlog_max, line.gateway_backlog() or 0.0)
            if time.monotonic() >= next_fault:
                line.acknowledge(plc)
                faults.append(line.fault(FAULTS[index % len(FAULTS)]))
                say(f"fault {faults[-1]}")
                index, next_fault = index + 1, time.monotonic() + args.fault_every_s
        wait_until(lambda: line.ready(plc), 300, "the line to run again after the last fault")
        time.sleep(args.window_s + 2.0)      # frames flow again: what the last fault lost is revealed
        for k in range(args.cameras):
            line.procs.stop(f"grab{k}", 10)
        time.sleep(args.window_s + 3.0)                         # the last frames' verdicts are published
        drained = time.monotonic()
        wait_until(lambda: line.gateway_backlog() == 0, DRAIN_TIMEOUT_S, "the gateway to write what it holds")
        drain_s = time.monotonic() - drained
        daemon = line.procs.stop("daemon", 20).last_json()
        line.procs.stop("gateway", 10)
    finally:
        if plc is not None:
            plc.close()
        rss = sampler.report()
        line.procs.stop_all(10)
    end_ns = time.time_ns()
    frames = captured_frames(sorted(run_dir.glob("capture_*.jsonl")), line.cameras)
    records = list(read_jsonl(line.plc_log))
    kills = {k: [f["t_ns"] for f in faults if f["fault"] == f"kill:grab{k}"] for k in range(args.cameras)}
    result = check(frames, records, window_s=args.window_s, outages=line.outages, start_ns=start_ns, end_ns=end_ns,
                   grabber_kills=kills)
    gateway_stats = run_dir / "gateway.json"
    return {**result, "max_rss_mb": max((r["max"] for r in rss.values()), default=None), "rss_mb": rss,
            "gateway_backlog_max": backlog_max, "gateway_drain_s": round(drain_s, 1),
            "faults": faults, "capacity_images_per_s": round(capacity, 1), "offered_fps": round(fps * args.cameras, 1),
            "minutes": args.minutes, "load": args.load, "cameras": args.cameras, "window_s": args.window_s,
            "daemon_last_run": daemon, "gateway_last_run": json.loads(gateway_stats.read_text()) if gateway_stats.is_file() else None,
            "run_dir": str(run_dir)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    keys = ("frames_captured", "verdicts_at_plc", "covered_by_fault", "uncovered", "silent_passes", "max_rss_mb")
    print(json.dumps({k: result[k] for k in keys}))
    return 0 if result["uncovered"] == 0 and result["silent_passes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
