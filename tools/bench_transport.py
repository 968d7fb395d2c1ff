#!/usr/bin/env python3
"""Benchmark the wire's own cost per frame: ZeroMQ PUSH/PULL two-part frames between processes.

What is measured, per case (frame size x pixel format x transport x rate): a sender process
(PUSH, connects, like a grabber) sends one uint8 image again and again with ``wire.send_frame`` (raw
pixels, zero copy) and a fresh ``capture_ns = time.time_ns()`` in each header; this process (PULL,
binds, like the daemon) receives with ``wire.recv_frame`` (decode + checks, zero copy) and stamps
``time.time_ns()`` on arrival. Reported:

* frames/s and MB/s (pixel bytes) over the received frames,
* one-way latency receive time - capture_ns, p50 / p99 / max in ms (same machine, same clock),
* lost frames (sequence gaps; PUSH/PULL should lose none),
* CPU time per frame, sender + receiver processes together (user + system; less sensitive than
  wall-clock figures to other jobs sharing the cores).

Two rates: ``max`` (send as fast as the HWM lets: latency then includes queueing in the HWM
buffers, the worst case of a daemon that cannot keep up) and ``paced`` (``--fps``, e.g. a camera at
30 fps: the latency of one frame through an idle wire). The first frames of every case warm the
connection up and are not counted. Nothing here touches the pixels after decoding: engine input
preparation is not the wire's cost.

Sizes: ``1mp`` = 1024 x 1024, ``5mp`` = 2448 x 2048 (W x H); formats mono8 (1 byte/pixel) and bgr8
(3). Each case runs ``--seconds`` (default 2; all 16 default cases in well under a minute).
``--security null,curve`` measures each case also with ZeroMQ CURVE (docs/security.md: a key pair
each, the receiver's ZAP handler letting the sender's key in, as the daemon does): the cost of
encrypting and authenticating every frame.

Usage:  python tools/bench_transport.py [--seconds 2] [--sizes 1mp,5mp] [--formats mono8,bgr8]
            [--transports ipc,tcp] [--security null,curve] [--fps 30] [--hwm 4] [--json FILE]

Output: a markdown table on stdout; ``--json FILE``: ``{"cases": [case, ...], "settings": {...},
"machine": {...}}`` with case keys size, width, height, pixel_format, frame_bytes, transport, mode,
target_fps, security, frames, seconds, frames_per_s, mb_per_s, latency_ms_p50, latency_ms_p99,
latency_ms_max, lost, cpu_ms_per_frame. Exit status 2 with a message on bad arguments or a failed case (sender died, timeout).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import zmq

from inspector.line import transport
from inspector.line.wire import FrameHeader, WireError, recv_frame, send_frame

SIZES: dict[str, tuple[int, int]] = {"1mp": (1024, 1024), "5mp": (2048, 2448)}  # name -> (H, W)
FORMATS: dict[str, int] = {"mono8": 1, "bgr8": 3}  # pixel format -> channels
TRANSPORTS = ("ipc", "tcp")
SECURITY = ("null", "curve")
WARMUP_FRAMES = 3        # first frames of each case: connection set-up, not counted
END_PART_ID = "end"      # part id of the frame that ends a case
STARTUP_ALLOWANCE_S = 20.0  # sender start-up (spawned interpreter, imports) + drain, per case
SEND_TIMEOUT_MS = int(STARTUP_ALLOWANCE_S * 1000)  # a send blocked this long: the receiver is gone
SEED = 0


class TransportBenchError(RuntimeError):
    """A case could not be measured (sender failed or timed out, nothing received)."""


@dataclass(frozen=True)
class Case:
    size: str
    pixel_format: str
    transport: str
    fps: float  # 0: as fast as possible
    security: str = "null"   # "curve": CURVE with a ZAP handler, as the daemon runs it

    @property
    def shape(self) -> tuple[int, int, int]:
        h, w = SIZES[self.size]
        return h, w, FORMATS[self.pixel_format]

    @property
    def mode(self) -> str:
        return "paced" if self.fps else "max"


# ----------------------------------------------------------------------------------- sender
def sender_main(endpoint: str, shape: tuple[int, int, int], pixel_format: str, seconds: float,
                fps: float, hwm: int, curve: transport.ClientCurve | None = None, cpu_s=None) -> None:
    """Sender process: PUSH-connect to ``endpoint`` (a CURVE client with ``curve``), send frames of
    ``shape`` for ``seconds`` (after WARMUP_FRAMES), paced at ``fps`` (0: as fast as the HWM lets),
    then one END frame. ``cpu_s`` (a shared double): the CPU seconds of sending, start-up excluded."""
    ctx = zmq.Context()
    sock = transport.frame_push(ctx, endpoint, hwm=hwm, send_timeout_ms=SEND_TIMEOUT_MS,
                                linger_ms=int(STARTUP_ALLOWANCE_S * 1000), curve=curve)
    image = np.random.default_rng(SEED).integers(0, 256, size=shape, dtype=np.uint8)
    started_cpu = time.process_time()
    period = 1.0 / fps if fps else 0.0
    seq, end_at, next_at = 0, None, time.monotonic()
    while end_at is None or time.monotonic() < end_at:
        if period:
            next_at = _wait_until(next_at, period)
        header = FrameHeader(camera_id="bench", seq=seq, part_id=str(seq), capture_ns=time.time_ns(),
                             deadline_ns=0, shape=shape, pixel_format=pixel_format)
        send_frame(sock, header, image)  # raw, copy=False; the image is never modified
        seq += 1
        if seq == WARMUP_FRAMES:
            end_at = time.monotonic() + seconds
    tiny = np.zeros((1, 1, shape[2]), dtype=np.uint8)
    send_frame(sock, FrameHeader(camera_id="bench", seq=seq, part_id=END_PART_ID, capture_ns=time.time_ns(),
                                 deadline_ns=0, shape=tiny.shape, pixel_format=pixel_format), tiny)
    sock.close()  # lingers until the queued frames are delivered
    ctx.term()
    if cpu_s is not None:
        cpu_s.value = time.process_time() - started_cpu


def _wait_until(next_at: float, period: float) -> float:
    """Sleep until ``next_at``; return the next slot (no catch-up burst after falling behind)."""
    delay = next_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
        return next_at + period
    return time.monotonic() + period


# ----------------------------------------------------------------------------------- receiver
def endpoint_for(transport: str, tmpdir: str, index: int) -> str:
    if transport == "tcp":
        return "tcp://127.0.0.1:*"
    return f"ipc://{tmpdir}/bench{index}.sock"


def run_case(case: Case, seconds: float, hwm: int, tmpdir: str, index: int) -> dict:
    """Measure one case; returns its result row. Raises TransportBenchError."""
    ctx = zmq.Context()
    server, client = curve_pair() if case.security == "curve" else (None, None)
    gatekeeper = transport.Gatekeeper(ctx, server) if server is not None else None
    sock = transport.frame_pull(ctx, hwm=hwm, curve=server)
    sock.bind(endpoint_for(case.transport, tmpdir, index))
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
    spawn = multiprocessing.get_context("spawn")
    sender_cpu = spawn.Value("d", 0.0)
    proc = spawn.Process(target=sender_main, args=(endpoint, case.shape, case.pixel_format, seconds, case.fps, hwm,
                                                   client, sender_cpu), daemon=True)
    proc.start()
    try:
        started_cpu = time.process_time()   # every thread of this process: ZeroMQ's I/O and ZAP threads too
        latencies, arrivals, seqs = _receive(sock, proc, seconds)
        receiver_cpu = time.process_time() - started_cpu
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
        sock.close()
        if gatekeeper is not None:
            gatekeeper.stop()
        ctx.term()
    if proc.exitcode not in (0, None):
        raise TransportBenchError(f"{case}: sender exited with status {proc.exitcode}")
    row = summarize(case, latencies, arrivals, seqs)
    row["cpu_ms_per_frame"] = (receiver_cpu + sender_cpu.value) * 1e3 / (max(seqs) + 2)   # every frame, END included
    return row


def curve_pair() -> tuple[transport.ServerCurve, transport.ClientCurve]:
    """Fresh key pairs: the receiver's (letting in only the sender's key, for camera "bench") and
    the sender's (pinning the receiver's)."""
    server = transport.KeyPair(*zmq.curve_keypair())
    sender = transport.KeyPair(*zmq.curve_keypair())
    return (transport.ServerCurve(server, {sender.public: frozenset({"bench"})}, frozenset(), frozenset()),
            transport.ClientCurve(sender, server.public))


def _receive(sock: zmq.Socket, proc, seconds: float) -> tuple[list[int], list[int], list[int]]:
    """Receive until the END frame; (latency ns, arrival ns, seq) of the counted frames."""
    latencies: list[int] = []
    arrivals: list[int] = []
    seqs: list[int] = []
    deadline = time.monotonic() + seconds + STARTUP_ALLOWANCE_S
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransportBenchError(f"no END frame within {seconds + STARTUP_ALLOWANCE_S:.0f} s")
        if not sock.poll(timeout=min(remaining, 0.5) * 1000):
            if not proc.is_alive() and proc.exitcode != 0:
                raise TransportBenchError(f"sender died (exit status {proc.exitcode})")
            continue
        header, _image = recv_frame(sock)
        now = time.time_ns()
        if header.part_id == END_PART_ID:
            return latencies, arrivals, seqs
        if header.seq >= WARMUP_FRAMES:
            latencies.append(now - header.capture_ns)
            arrivals.append(now)
            seqs.append(header.seq)


def summarize(case: Case, latencies: list[int], arrivals: list[int], seqs: list[int]) -> dict:
    if len(arrivals) < 2:
        raise TransportBenchError(f"{case}: only {len(arrivals)} frames counted; run longer (--seconds)")
    span_s = (arrivals[-1] - arrivals[0]) / 1e9
    frames_per_s = (len(arrivals) - 1) / span_s if span_s > 0 else float("inf")
    frame_bytes = int(np.prod(case.shape))
    lat_ms = np.asarray(latencies, dtype=np.float64) / 1e6
    h, w, _ = case.shape
    return {
        "size": case.size, "width": w, "height": h, "pixel_format": case.pixel_format, "frame_bytes": frame_bytes,
        "transport": case.transport, "mode": case.mode, "target_fps": case.fps or None, "security": case.security,
        "frames": len(arrivals), "seconds": span_s, "frames_per_s": frames_per_s,
        "mb_per_s": frames_per_s * frame_bytes / 1e6,
        "latency_ms_p50": float(np.percentile(lat_ms, 50)), "latency_ms_p99": float(np.percentile(lat_ms, 99)),
        "latency_ms_max": float(lat_ms.max()), "lost": int(seqs[-1] - seqs[0] + 1 - len(seqs)),
    }


# ----------------------------------------------------------------------------------- CLI
def _choice_list(choices) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        bad = [item for item in items if item not in choices]
        if not items or bad:
            raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(choices)}; got {text!r}")
        return list(dict.fromkeys(items))
    return parse


def _positive(kind: type) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        value = kind(text)
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        return value
    return parse


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=_positive(float), default=2.0, help="measured time per case (default 2)")
    p.add_argument("--sizes", type=_choice_list(SIZES), default=list(SIZES), help="1mp,5mp")
    p.add_argument("--formats", type=_choice_list(FORMATS), default=list(FORMATS), help="mono8,bgr8")
    p.add_argument("--transports", type=_choice_list(TRANSPORTS), default=list(TRANSPORTS), help="ipc,tcp")
    p.add_argument("--security", type=_choice_list(SECURITY), default=["null"],
                   help="null,curve: without and with CURVE encryption + authentication (default null)")
    p.add_argument("--fps", type=_non_negative_float, default=30.0,
                   help="paced rate for the 'paced' cases (default 30; 0: max rate only)")
    p.add_argument("--hwm", type=_positive(int), default=4, help="send and receive high-water marks (default 4)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    return p


def cases_for(args) -> list[Case]:
    rates = [0.0] + ([args.fps] if args.fps else [])
    return [Case(size, fmt, transport, fps, security) for size in args.sizes for fmt in args.formats
            for transport in args.transports for fps in rates for security in args.security]


def format_table(rows: list[dict]) -> str:
    lines = ["| frame | format | transport | security | rate | frames/s | MB/s | latency p50 ms | p99 ms | max ms | lost "
             "| CPU ms/frame |", "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        rate = f"paced {r['target_fps']:g} fps" if r["mode"] == "paced" else "max"
        lines.append(f"| {r['width']}x{r['height']} ({r['size']}) | {r['pixel_format']} | {r['transport']} | "
                     f"{r['security']} | {rate} | "
                     f"{r['frames_per_s']:.1f} | {r['mb_per_s']:.0f} | {r['latency_ms_p50']:.3f} | "
                     f"{r['latency_ms_p99']:.3f} | {r['latency_ms_max']:.3f} | {r['lost']} | {r['cpu_ms_per_frame']:.2f} |")
    return "\n".join(lines)


def machine_info() -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "zmq": zmq.zmq_version(), "pyzmq": zmq.__version__,
            "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cases = cases_for(args)
    machine = machine_info()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="ibt") as tmpdir:  # short: ipc paths are limited to ~107 bytes
            for index, case in enumerate(cases):
                rows.append(run_case(case, args.seconds, args.hwm, tmpdir, index))
                print(f"  {case.size} {case.pixel_format} {case.transport} {case.mode}: "
                      f"{rows[-1]['frames_per_s']:.1f} frames/s", file=sys.stderr)
    except (TransportBenchError, WireError, zmq.ZMQError, OSError) as exc:
        print(f"bench_transport: error: {exc}", file=sys.stderr)
        return 2
    print(f"ZeroMQ PUSH/PULL, wire.send_frame/recv_frame (raw, zero copy), sender in another process, "
          f"HWM {args.hwm}; {machine['cpu_count']} CPUs, load average {machine['load_average_1m']}\n")
    print(format_table(rows))
    if args.json:
        report = {"cases": rows, "machine": machine,
                  "settings": {"seconds": args.seconds, "hwm": args.hwm, "fps": args.fps,
                               "warmup_frames": WARMUP_FRAMES, "sizes": {k: SIZES[k] for k in args.sizes}}}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
