"""The archive under stress, as real processes: kill -9 in the middle of writes loses nothing that
was acknowledged and leaves nothing half written; the real ``inspector archive`` process keeps its
disk quota under a flood of rejects, and accounts for every verdict (stored, or counted as lost).

The flood's "daemon" is this test: it binds the verdict and tap PUB sockets the archiver
subscribes to (built with the line's own transport and wire codec) and publishes heartbeats,
frames, maps and REJECT verdicts as fast as it can."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from conftest import REPO, free_port, wait_until
from inspector.line import transport, wire
from inspector.line.harness import Processes
from inspector.station.archive import Archive
from station_helpers import hot_map, verdict

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

HERE = Path(__file__).resolve().parent
WRITER = """
import sys
sys.path.insert(0, {here!r})
from station_helpers import store, verdict
from inspector.station.archive import Archive
archive = Archive({root!r})
seq = {start}
while True:
    entry_id = store(archive, verdict("cam0", seq, capture_ns=1_700_000_000_000_000_000 + seq), shape=(300, 400, 3))
    print("ACK", entry_id, seq, flush=True)
    seq += 1
"""


def acknowledged_after_kill(root: Path, start: int, run_s: float) -> list[int]:
    """Run a writer process until its first acknowledgement, then ``run_s`` s more, and kill -9
    it; the ids it had acknowledged (printed after ``add`` returned)."""
    child = subprocess.Popen([sys.executable, "-c", WRITER.format(here=str(HERE), root=str(root), start=start)],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(child.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_until(lambda: lines or child.poll() is not None, 120, "the writer's first entry")
        time.sleep(run_s)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        reader.join(10)
    acked = [int(line.split()[1]) for line in lines if line.startswith("ACK ")]
    assert acked, f"the writer acknowledged nothing:\n{child.stderr.read()[-2000:]}"
    return acked


def test_kill_9_mid_write_loses_nothing_acknowledged(tmp_path):
    root = tmp_path / "archive"
    rng = random.Random(0)
    acked: list[int] = []
    for round_ in range(5):
        acked += acknowledged_after_kill(root, start=1000 * round_, run_s=rng.uniform(0.2, 1.0))
        archive = Archive(root)                                   # opening recovers
        try:
            indexed = {e.id: e for e in archive.query(limit=100_000, include_corrupt=True)}
            assert set(acked) <= set(indexed), f"acknowledged but lost: {sorted(set(acked) - set(indexed))}"
            for entry in indexed.values():                       # nothing referenced is missing or damaged
                assert archive.verify(entry) == [], entry.id
            assert not any(archive.tmp_dir.iterdir())             # no half-written entry left
            folders = {f"{day.name}/{d.name}" for day in archive.entries_dir.iterdir() for d in day.iterdir()}
            assert folders == {e.dir for e in indexed.values()}   # and no folder without its row
        finally:
            archive.close()


# ------------------------------------------------------------------------------------------ the flood
def box_config(path: Path, verdicts: str, tap: str, archive: Path, quota_mb: float) -> Path:
    path.write_text(f"""
[daemon]
frames = "tcp://127.0.0.1:{free_port()}"
verdicts = "{verdicts}"
tap = "{tap}"
tap_maps = true

[engine]
path = "not-needed.onnx"

[archive]
path = "{archive}"
quota_mb = {quota_mb}
wait_ms = 300
queue = 32
thumbnail_px = 48
""")
    return path


class FakeDaemon:
    """The daemon's two PUB sockets, bound here."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.verdicts = transport.publisher(self.context)
        self.tap = transport.publisher(self.context, hwm=10_000)
        self.verdict_ep = f"tcp://127.0.0.1:{free_port()}"
        self.tap_ep = f"tcp://127.0.0.1:{free_port()}"
        self.verdicts.bind(self.verdict_ep)
        self.tap.bind(self.tap_ep)
        self.beats = 0

    def heartbeat(self) -> None:
        self.verdicts.send_multipart(wire.encode_heartbeat(wire.Heartbeat("fake", self.beats, time.time_ns(), True)))
        self.beats += 1

    def reject(self, seq: int, rng: np.random.Generator) -> None:
        v = verdict("cam0", seq, "REJECT")
        image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
        header = wire.FrameHeader("cam0", seq, v.part_id, v.capture_ns, 0, image.shape)
        self.tap.send_multipart(wire.encode_tap(wire.encode_frame(header, image)))
        self.tap.send_multipart(wire.encode_map(hot_map("cam0", seq, capture_ns=v.capture_ns)))
        self.verdicts.send_multipart(wire.encode_verdict(v))

    def close(self) -> None:
        self.context.destroy(linger=0)


def test_the_quota_holds_under_a_flood_of_rejects(tmp_path):
    daemon = FakeDaemon()
    quota = 0.5 * 2**20
    config = box_config(tmp_path / "box.toml", daemon.verdict_ep, daemon.tap_ep, tmp_path / "archive", 0.5)
    procs = Processes(tmp_path / "logs")
    try:
        procs.start("archive", "archive", "--config", str(config))

        def ready():
            daemon.heartbeat()
            return any(line.startswith("archive ready") for line in procs.children["archive"].lines)

        wait_until(ready, 60, "the archiver's subscriptions")
        sizes = []
        rng = np.random.default_rng(0)
        n = 400
        for seq in range(n):
            daemon.reject(seq, rng)
            if seq % 20 == 0:
                daemon.heartbeat()
                time.sleep(0.01)
                sizes.append(sum(f.stat().st_size for f in (tmp_path / "archive" / "entries").rglob("*") if f.is_file()))
        time.sleep(1.5)                                          # the last verdicts wait out their 300 ms
        summary = procs.stop("archive").last_json()
    finally:
        procs.stop_all()
        daemon.close()
    assert summary is not None, "no summary from the archiver"
    archive = Archive(tmp_path / "archive")
    entries = archive.query(limit=10_000)
    assert max(sizes) <= quota, (max(sizes), quota)              # files on disk, entry.json included, at every sample
    assert archive.total_bytes() <= quota
    assert summary["deleted_quota"] > 0 and summary["verdicts_received"] == n
    stored, lost = summary.get("stored_reject", 0), summary.get("lost_queue_full", 0) + summary.get("store_failed", 0)
    assert stored + lost == n, summary                          # every verdict accounted for
    assert stored == len(entries) + summary["deleted_quota"]
    newest = max(e.seq for e in entries)
    assert newest >= n - 1 - lost and all(archive.verify(e) == [] for e in entries)
    assert all(e.files.keys() == {"original.png", "map.png", "overlay.jpg", "thumb.jpg"} for e in entries)
    print(json.dumps({k: summary.get(k) for k in ("stored_reject", "lost_queue_full", "deleted_quota")}))
