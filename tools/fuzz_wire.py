#!/usr/bin/env python
"""Wire fuzzer: hostile frame messages into a real ``inspector serve``, valid frames among them.

    python tools/fuzz_wire.py --messages N [--json FILE] [--seed S] [--valid-every 100]
                              [--engine FILE.onnx --calibration PROFILE.json] [--data DIR]
                              [--workdir .cache/fuzz_wire]

The daemon runs as a process on loopback with the model ``tools/bench_line.py`` builds (cached),
cameras ``valid`` (calibrated), ``fuzz0`` .. ``fuzz3`` (a profile that does not exist: a frame that
gets through the wire is FAULT ``no_calibration`` without the engine) and ``fuzzj`` (calibrated:
JPEGs whose frame header is right but whose data is not reach the engine worker's decoder). Every
``--valid-every``-th message is a valid frame of camera ``valid`` (one session, seq 0, 1, ...; at
most 8 of them without a verdict, so that they never wait on the engine); the others come from :data:`MUTATIONS` (:func:`hostile_message`), which never use camera ``valid``:
random bytes, every header field replaced by a value of another type or out of bounds, unknown
and missing keys, old and future schemas, wrong part counts, raw payloads of the wrong size,
JPEG bombs over and under the pixel budget, cut and corrupt JPEGs, seq jumps, replays and stale
sessions, unknown camera ids, and (on a socket of their own, since the daemon's receive limit
disconnects the sender) parts bigger than any allowed frame.

Reported (stdout, ``--json``): ``messages``, ``messages_per_s``, ``crashes`` (the daemon exited),
``rss_growth_mb`` (daemon RSS at the end minus after the first 2 % of messages), ``rss_max_mb``,
``valid_frames``, ``valid_frames_affected`` (a valid frame without exactly one verdict, or whose
decision differs from the undisturbed one), ``by_mutation`` and the daemon's exit summary. Exit
status 0 when there were no crashes, no valid frame was affected and RSS grew by less than 50 MB.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import cv2
import msgpack
import numpy as np
import zmq

import bench_line

from inspector.core.ports import free_port
from inspector.line import transport, wire
from inspector.line.harness import Processes, VerdictCollector, wait_until

REPO = Path(__file__).resolve().parents[1]
FUZZ_CAMERAS = ("fuzz0", "fuzz1", "fuzz2", "fuzz3")
JPEG_CAMERA = "fuzzj"
MAX_PIXELS = 1_000_000            # the fuzz daemon's pixel budget
RSS_LIMIT_MB = 50.0
VALID_OUTSTANDING = 8              # valid frames without a verdict yet, at most (so that none waits long)
QUIET_S = 3.0                      # at the end: no verdict for this long = everything sent was answered

Parts = list


def _header_map(rng: random.Random, camera: str | None = None, *, shape=(16, 16, 3), encoding="raw") -> dict:
    now = time.time_ns()
    return {"schema": wire.SCHEMA_VERSION, "camera_id": camera or rng.choice(FUZZ_CAMERAS), "seq": rng.randrange(1000),
            "session": rng.randrange(1, 5), "part_id": "p", "capture_ns": now, "deadline_ns": now + 10**10,
            "label": None, "source": None, "dtype": "uint8", "pixel_format": "bgr8", "encoding": encoding,
            "shape": list(shape)}


def _pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _odd_value(rng: random.Random):
    return rng.choice([-1, 2**63, 2**64 - 1, True, 1.5, float("nan"), "x" * rng.randrange(300), b"\x00\xff", None,
                       [], {"a": 1}, [1, 2, 3, 4], 0, "\u0000ctl", rng.randrange(-10**6, 10**6)])


def _raw(rng: random.Random, header: dict) -> Parts:
    h, w, c = header["shape"]
    return [_pack(header), rng.randbytes(h * w * c)]


def _jpeg(rng: random.Random, side: int = 16) -> bytearray:
    image = np.array([[[rng.randrange(256)] * 3] * side] * side, np.uint8)
    return bytearray(cv2.imencode(".jpg", image)[1].tobytes())


def _with_sof(jpeg: bytearray, height: int, width: int) -> bytearray:
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return jpeg


def m_random_bytes(rng):
    return [rng.randbytes(rng.randrange(0, 600)), rng.randbytes(rng.randrange(0, 600))]


def m_field(rng):
    header = _header_map(rng)
    header[rng.choice(list(header))] = _odd_value(rng)
    return [_pack(header), bytes(768)]


def m_unknown_or_missing_key(rng):
    header = _header_map(rng)
    if rng.random() < 0.5:
        header["extra"] = 1
    else:
        del header[rng.choice(list(header))]
    return [_pack(header), bytes(768)]


def m_schema(rng):
    return [_pack({**_header_map(rng), "schema": rng.choice([0, 1, 3, 99])}), bytes(768)]


def m_parts(rng):
    good = _raw(rng, _header_map(rng))
    return rng.choice([[b""], good[:1], good + [b"x"], good + good])


def m_raw_size(rng):
    header = _header_map(rng)
    return [_pack(header), bytes(rng.choice([0, 1, 767, 769, 10_000]))]


def m_shape(rng):
    shape = rng.choice([[0, 16, 3], [16, 16, 4], [16, 16], [17000, 16, 3], [5000, 5000, 3], [16, 16, 1], [-1, 4, 3]])
    return [_pack({**_header_map(rng), "shape": shape}), bytes(768)]


def m_jpeg_bomb(rng):
    side = rng.choice([1200, 9000, 16000])          # over the budget: refused before decoding
    header = _header_map(rng, rng.choice(FUZZ_CAMERAS + (JPEG_CAMERA,)), shape=(side, side, 3), encoding="jpeg")
    return [_pack(header), bytes(_with_sof(_jpeg(rng), side, side))]


def m_jpeg_corrupt(rng):
    jpeg = _jpeg(rng)
    start = jpeg.index(b"\xff\xda") + 12
    choice = rng.randrange(3)
    if choice == 0:
        jpeg = jpeg[:start + rng.randrange(len(jpeg) - start)]       # cut in the scan
    elif choice == 1:
        for _ in range(20):
            jpeg[rng.randrange(start, len(jpeg))] = rng.randrange(256)
    else:
        jpeg = _with_sof(jpeg, 900, 900)                                 # within the budget, data for 16 x 16
    height, width = (900, 900) if choice == 2 else (16, 16)
    header = _header_map(rng, JPEG_CAMERA, shape=(height, width, 3), encoding="jpeg")
    return [_pack(header), bytes(jpeg)]


def m_sequence(rng):
    header = _header_map(rng)
    header["seq"] = rng.choice([0, 1, 2**62, rng.randrange(10**9)])
    header["session"] = rng.choice([1, 2, 3, 2**63 - 1])
    return _raw(rng, header)


def m_unknown_camera(rng):
    return _raw(rng, _header_map(rng, "".join(rng.choice("abcXYZ09-_é") for _ in range(rng.randrange(1, 40)))))


def m_msgpack_oddities(rng):
    body = rng.choice([_pack([1, 2, 3]), _pack("str"), b"\x81\xa1a" * 50, _pack({"schema": 2, "x": {"y": [1] * 20}}),
                       msgpack.packb({"schema": msgpack.ExtType(1, b"xx")}), _pack({1: 2}), b"\xdd\xff\xff\xff\xff"])
    return [body, bytes(768)]


MUTATIONS: dict[str, Callable[[random.Random], Parts]] = {
    name.removeprefix("m_"): fn for name, fn in sorted(globals().items()) if name.startswith("m_")}


def hostile_message(rng: random.Random) -> tuple[str, Parts]:
    """One hostile frame message (never of camera ``valid``): (mutation name, parts)."""
    name = rng.choice(sorted(MUTATIONS))
    return name, MUTATIONS[name](rng)


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, required=True, help="hostile + valid messages to send")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--valid-every", type=int, default=100, help="every Nth message is a valid frame (default 100)")
    bench_line.add_artifact_arguments(p, REPO / ".cache" / "fuzz_wire", 64)
    args = p.parse_args(argv)
    if args.messages < 1 or args.valid_every < 2 or (args.engine is not None and args.calibration is None):
        p.error("--messages >= 1, --valid-every >= 2, and --engine needs --calibration")
    return args


def write_config(path: Path, artifacts: dict, frames: str, verdicts: str) -> None:
    cameras = "".join(f'\n[cameras.{c}]\ncalibration = "missing-profile.json"\n' for c in FUZZ_CAMERAS)
    path.write_text(f"""[daemon]
frames = "{frames}"
verdicts = "{verdicts}"
heartbeat_ms = 100
log_format = "json"

[engine]
path = "{Path(artifacts['engine']).resolve()}"
max_batch = 8

[defaults]
deadline_ms = 20000
calibration = "{Path(artifacts['calibration']).resolve()}"
max_pixels = {MAX_PIXELS}

[cameras.valid]

[cameras.{JPEG_CAMERA}]
{cameras}
[overload]
max_queue = 4096
""")


def rss_mb(pid: int) -> float | None:
    try:
        return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024
    except (OSError, AttributeError):
        return None


class Quiet:
    """True once no verdict has arrived for ``seconds`` (every message the daemon got is answered)."""

    def __init__(self, collector: VerdictCollector, seconds: float) -> None:
        self.collector, self.seconds = collector, seconds
        self.count, self.since = -1, time.monotonic()

    def __call__(self) -> bool:
        with self.collector.lock:
            count = len(self.collector.arrivals)
        if count != self.count:
            self.count, self.since = count, time.monotonic()
        return time.monotonic() - self.since >= self.seconds


class ValidVerdicts:
    """How many verdicts of camera ``valid`` the collector has, counted incrementally."""

    def __init__(self, collector: VerdictCollector) -> None:
        self.collector, self.seen, self.count = collector, 0, 0

    def __call__(self) -> int:
        with self.collector.lock:
            new = self.collector.arrivals[self.seen:]
            self.seen += len(new)
        self.count += sum(a.verdict.camera_id == "valid" for a in new)
        return self.count


def run(args) -> dict:
    args.workdir.mkdir(parents=True, exist_ok=True)
    artifacts = bench_line.prepare_artifacts(args)
    image = bench_line.line_images(Path(artifacts["data"]), 1)[0][0]
    frames, verdicts = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    config = args.workdir / "fuzz.toml"
    write_config(config, artifacts, frames, verdicts)
    procs = Processes(args.workdir / "logs", cwd=REPO)
    rng = random.Random(args.seed)
    context = zmq.Context()
    collector = VerdictCollector(verdicts)
    answered = ValidVerdicts(collector)
    daemon = procs.start("daemon", "serve", "--config", str(config))
    socks = {name: transport.frame_push(context, frames, hwm=100, send_timeout_ms=10_000, linger_ms=0)
             for name in ("fuzz", "big", "valid")}
    session, valid_seq, by_mutation = wire.new_session(), 0, Counter()
    rss: list[float] = []
    crashes = 0
    try:
        wait_until(lambda: collector.ready or not daemon.alive(), 180, "the daemon to be ready")
        started = time.monotonic()
        for index in range(args.messages):
            if not daemon.alive():
                crashes += 1
                break
            if index % args.valid_every == 0:
                wait_until(lambda: valid_seq - answered() < VALID_OUTSTANDING or not daemon.alive(), 120,
                           "valid frames' verdicts")   # never more than the engine takes
                header = wire.FrameHeader("valid", valid_seq, str(valid_seq), time.time_ns(), 0, (), session=session)
                wire.send_frame(socks["valid"], header, image)
                valid_seq += 1
            elif rng.random() < 0.0005:
                by_mutation["oversized_part"] += 1
                socks["big"].send_multipart([_pack(_header_map(rng)), bytes(8 * MAX_PIXELS)])
            else:
                name, parts = hostile_message(rng)
                by_mutation[name] += 1
                socks["fuzz"].send_multipart(parts)
            if index % max(1, args.messages // 200) == 0:
                rss.append(rss_mb(daemon.pid) or float("nan"))
        wait_until(lambda: answered() >= valid_seq or not daemon.alive(), 120, "the valid frames' verdicts")
        wait_until(Quiet(collector, QUIET_S), 3600, "the daemon to answer everything sent")   # nothing left in flight
        crashes += not daemon.alive()
        rss.append(rss_mb(daemon.pid) or float("nan"))
        elapsed = time.monotonic() - started
        summary = procs.stop("daemon", 30).last_json() if daemon.alive() else None
    finally:
        for sock in socks.values():
            sock.close(0)
        collector.close()
        context.term()
        procs.stop_all(10)
    valid = [v for v in collector.verdicts if v.camera_id == "valid"]
    per_seq = Counter(v.seq for v in valid)
    baseline = valid[0].decision if valid else None
    affected = sum(per_seq[s] != 1 for s in range(valid_seq)) + sum(v.decision != baseline for v in valid)
    warm = [x for x in rss[max(1, len(rss) // 50):] if x == x]
    return {"messages": args.messages, "seconds": round(elapsed, 1), "messages_per_s": round(args.messages / elapsed, 1),
            "crashes": crashes, "rss_first_mb": round(warm[0], 1) if warm else None,
            "rss_last_mb": round(warm[-1], 1) if warm else None,
            "rss_growth_mb": round(warm[-1] - warm[0], 1) if warm else None,
            "rss_max_mb": round(max(warm), 1) if warm else None, "valid_frames": valid_seq,
            "valid_frames_affected": affected, "valid_decision": baseline, "by_mutation": dict(sorted(by_mutation.items())),
            "daemon": summary, "seed": args.seed}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    keys = ("messages", "messages_per_s", "crashes", "rss_growth_mb", "rss_max_mb", "valid_frames", "valid_frames_affected")
    print(json.dumps({k: result[k] for k in keys}))
    growth = result["rss_growth_mb"]
    return 0 if result["crashes"] == 0 and result["valid_frames_affected"] == 0 and growth is not None \
        and growth < RSS_LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
