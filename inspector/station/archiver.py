"""``inspector archive --config FILE``: the reject archive's process.

    daemon tap PUB --[frame | map]--> SUB --+
                                             +--> Joiner --> bounded queue --> writer thread --> Archive
    daemon verdicts PUB --[verdict]--> SUB --+                                  (encode, fsync, index, limits)

Two threads: the receive loop (this one) owns both sockets, decodes with the strict wire codec
and pairs frames, maps and verdicts (:class:`~inspector.station.joiner.Joiner`); the writer thread
encodes the pictures and stores the entries, what is queued at once as one group commit
(:class:`~inspector.station.archive.Archive`). The
archive never slows a verdict: it only subscribes (the daemon's tap sends never block), and when
the disk falls behind the queue fills and entries are counted as lost (``lost_queue_full``) and
logged, not waited for. A frame that cannot be stored (disk full, an encode error) is counted
and logged and the process goes on. ``--check`` verifies every stored entry instead.

Prints one JSON summary line when it stops (SIGTERM / SIGINT): what was received, stored and lost.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import zmq

from inspector.core.hashing import sha256_file
from inspector.engine.manifest import manifest_path
from inspector.line import keys, transport, wire
from inspector.line.config import Config, command_config, connectable
from inspector.line.logs import Throttle
from inspector.line.readiness import notify_ready
from inspector.station.archive import Archive, ArchiveFull
from inspector.station.entry import Pending, entry_files, verdict_fields
from inspector.station.joiner import Joiner

log = logging.getLogger("inspector.archive")

POLL_MS = 50
GROUP = 16          # entries stored per group commit at most (under load; alone otherwise)
MB = 2**20


def open_archive(config: Config, *, recover: bool = True) -> Archive:
    """The archive of ``config`` (its ``[archive]`` section) with its limits."""
    section = config.archive
    return Archive(section.path, quota_bytes=int(section.quota_mb * MB), retention_s=section.retention_days * 86400.0,
                   recover=recover)


class Provenance:
    """What made an entry, beyond the frame: the daemon id, the engine file and hash (from its
    manifest's record) and each camera's calibration profile file and hash (read once)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.engine = {"path": config.engine.path, "backend": config.engine.backend}
        try:
            self.engine["sha256"] = json.loads(manifest_path(config.engine.path).read_text()).get("engine_sha256")
        except (OSError, ValueError):
            self.engine["sha256"] = None
        self.profiles: dict[str, dict[str, Any]] = {}

    def profile(self, camera: str) -> dict[str, Any]:
        if camera not in self.profiles:
            path, _ = self.config.calibration_for(camera)
            try:
                digest = sha256_file(path) if path else None
            except OSError:
                digest = None
            self.profiles[camera] = {"path": path or None, "sha256": digest}
        return self.profiles[camera]

    def record(self, camera: str) -> dict[str, Any]:
        return {"daemon": self.config.daemon.id, "engine": self.engine, "calibration": self.profile(camera)}


class Archiver:
    """Subscribes to ``config``'s daemon and archives until ``stop`` is set; :meth:`run` returns the summary."""

    def __init__(self, config: Config, stop: threading.Event) -> None:
        self.config, self.stop = config, stop
        section = config.archive
        self.joiner = Joiner(wait_s=section.wait_ms / 1000.0, ok_every=section.ok_every,
                             maps_expected=config.daemon.tap_maps)
        self.queue: queue.Queue[Pending | None] = queue.Queue(maxsize=section.queue)
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.throttle = Throttle()
        self.provenance = Provenance(config)
        self.archive = open_archive(config)
        self.said_ready = False
        self.writer = threading.Thread(target=self._write_loop, name="archive-writer", daemon=True)

    # ---------------------------------------------------------------------------------- receive loop
    def run(self) -> dict[str, Any]:
        context = zmq.Context()
        curve = keys.station_curve(self.config, "archive")   # None without [curve] (docs/security.md)
        tap = transport.subscriber(context, connectable(self.config.daemon.tap), (wire.TOPIC_FRAME, wire.TOPIC_MAP),
                                   hwm=transport.TAP_SUB_HWM, curve=curve)
        verdicts = transport.verdict_subscriber(context, connectable(self.config.daemon.verdicts), curve=curve)
        poller = zmq.Poller()
        poller.register(tap, zmq.POLLIN)
        poller.register(verdicts, zmq.POLLIN)
        self.writer.start()
        try:
            while not self.stop.is_set():
                events = dict(poller.poll(POLL_MS))
                if tap in events:
                    self._drain(tap, self._on_tap)
                if verdicts in events:
                    self._drain(verdicts, self._on_verdict)
                self._ready(self.joiner.poll(time.monotonic()))
            self._ready(self.joiner.drain())
        finally:
            tap.close(0)
            verdicts.close(0)
            context.term()
            self.queue.put(None)
            self.writer.join()
        return self.summary()

    @staticmethod
    def _drain(sock: zmq.Socket, handle) -> None:
        for _ in range(1000):
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            handle(parts)

    def _on_tap(self, parts: list) -> None:
        now = time.monotonic()
        try:
            if len(parts) == 3 and bytes(parts[0].buffer[:16]) == wire.TOPIC_MAP:
                self._count("maps_received")
                self._ready(self.joiner.add_map(wire.decode_map(parts), now))
            else:
                header, image = wire.decode_tap(parts)
                self._count("frames_received")
                self._ready(self.joiner.add_frame(header, image, now))
        except wire.WireError as exc:
            self._count("tap_malformed")
            if self.throttle("tap_malformed"):
                log.warning("undecodable tap message (not archived): %s", exc)

    def _on_verdict(self, parts: list) -> None:
        try:
            message = wire.decode_message(parts)
        except wire.WireError as exc:
            self._count("verdicts_malformed")
            if self.throttle("verdict_malformed"):
                log.warning("undecodable verdict message: %s", exc)
            return
        if isinstance(message, wire.Verdict):
            self._count("verdicts_received")
            self._ready(self.joiner.add_verdict(message, time.monotonic()))
        elif not self.said_ready:  # the first heartbeat: our subscriptions are in place
            self.said_ready = True
            notify_ready()
            print(f"archive ready: {self.archive.root}", flush=True)

    def _ready(self, entries: list[Pending]) -> None:
        for pending in entries:
            try:
                self.queue.put_nowait(pending)
            except queue.Full:
                self._lost("lost_queue_full", pending, "the disk is behind: archive queue full")

    # ---------------------------------------------------------------------------------- writer thread
    def _write_loop(self) -> None:
        """Takes what is queued (up to GROUP entries), encodes each, stores them as one group
        commit; an entry that does not encode is lost alone, a group that cannot be stored is lost
        whole (counted, logged); returns at the None sentinel."""
        section = self.config.archive
        done = False
        while not done:
            group = [self.queue.get()]
            while len(group) < GROUP and group[-1] is not None:
                try:
                    group.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            done = group[-1] is None
            encoded = []
            for pending in (p for p in group if p is not None):
                try:
                    files, made_by = entry_files(pending, section.thumbnail_px)
                    made_by.update(self.provenance.record(pending.verdict.camera_id))
                    encoded.append((pending, (verdict_fields(pending.verdict), files, made_by)))
                except Exception as exc:  # a picture that does not encode
                    self._lost("store_failed", pending, f"{type(exc).__name__}: {exc}")
            for chunk in self._within_quota(encoded):
                self._store([pending for pending, _ in chunk], [item for _, item in chunk])

    def _within_quota(self, encoded: list) -> list[list]:
        """The group cut into chunks that each fit in the quota (an entry larger than the whole
        quota goes alone, and is refused alone)."""
        limit = int(self.config.archive.quota_mb * MB) // 2
        chunks: list[list] = []
        size = limit + 1
        for pending, item in encoded:
            entry = sum(len(data) for data in item[1].values()) + 4096
            if size + entry > limit:
                chunks.append([])
                size = 0
            chunks[-1].append((pending, item))
            size += entry
        return chunks

    def _store(self, pendings: list[Pending], items: list) -> None:
        try:
            self.archive.add_many(items)
        except ArchiveFull as exc:
            for pending in pendings:
                self._lost("refused_disk_full", pending, str(exc))
            return
        except Exception as exc:  # an I/O error, a locked index...: count, go on
            for pending in pendings:
                self._lost("store_failed", pending, f"{type(exc).__name__}: {exc}")
            return
        for pending in pendings:
            self._count(f"stored_{pending.verdict.decision.lower()}")

    def _lost(self, counter: str, pending: Pending, why: str) -> None:
        self._count(counter)
        if self.throttle(counter):
            v = pending.verdict
            log.error("archive: %s %s seq %d not stored: %s", v.decision, v.camera_id, v.seq, why,
                      extra={"camera": v.camera_id, "seq": v.seq, counter: self.counts[counter]})

    def _count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def summary(self) -> dict[str, Any]:
        with self.lock:
            counts = dict(self.counts)
        return {"archive": str(self.archive.root), **counts, **{f"joiner_{k}": v for k, v in self.joiner.counts.items()},
                "entries": len(self.archive), "bytes": self.archive.total_bytes(), **self.archive.counters()}


def run_archiver(config: Config, stop: threading.Event) -> dict[str, Any]:
    """The archive process's work for the composition root: archive until ``stop``; the summary."""
    return Archiver(config, stop).run()


# ---------------------------------------------------------------------------------- `inspector archive`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="box config with an [archive] section")
    parser.add_argument("--check", action="store_true", help="verify every stored entry (files and SHA-256); "
                                                             "exit 1 when any is corrupt")


def run(args: argparse.Namespace) -> int:
    config = command_config(args.config)
    if isinstance(config, int):
        return config
    if config.archive is None:
        print(f"{args.config}: no [archive] section", flush=True)
        return 2
    if args.check:
        return check(config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(json.dumps(run_archiver(config, stop)), flush=True)
    return 0


def check(config: Config) -> int:
    archive = open_archive(config, recover=False)
    bad = archive.check_all()
    for entry_id, problems in bad:
        print(f"entry {entry_id}: " + "; ".join(problems))
    print(f"{len(archive)} entries, {len(bad)} corrupt ({archive.root})")
    return 1 if bad else 0
