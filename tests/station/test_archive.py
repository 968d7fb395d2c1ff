"""The reject archive's store (inspector/station/archive.py) and its entries (entry.py): what is
written, how it is found again, the limits, corruption and recovery. In process, real files and
a real SQLite index (the crash tests with kill -9 are in test_archiver.py)."""

from __future__ import annotations

import json
import sqlite3

import cv2
import numpy as np
import pytest

from inspector.station.archive import Archive, ArchiveError, ArchiveFull, CorruptEntry
from station_helpers import frame, store, verdict

T0 = 1_700_000_000_000_000_000


def test_an_entry_holds_the_original_pixels_map_overlay_and_verdict(tmp_path):
    archive = Archive(tmp_path / "a")
    v = verdict("cam0", 7, "REJECT", capture_ns=T0)
    entry = archive.get(store(archive, v))
    assert entry.files.keys() == {"original.png", "map.png", "overlay.jpg", "thumb.jpg"}
    assert (entry.camera, entry.seq, entry.decision, entry.reason, entry.score, entry.threshold) == \
        ("cam0", 7, "REJECT", "score_above_threshold", 0.9, 0.5)
    _, image = frame("cam0", 7, capture_ns=T0, seed=7)
    original = cv2.imdecode(np.frombuffer(archive.read(entry, "original.png"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(original, image)                      # lossless, BGR as received
    overlay = cv2.imdecode(np.frombuffer(archive.read(entry, "overlay.jpg"), np.uint8), cv2.IMREAD_COLOR)
    document = json.loads((archive.entries_dir / entry.dir / "entry.json").read_text())
    k, band = document["made_by"]["overlay"]["scale"], document["made_by"]["overlay"]["caption_px"]
    assert k == 8 and overlay.shape == (band + 48 * k, 64 * k, 3)   # full resolution (64 px wide: enlarged 8x)
    thumb = cv2.imdecode(np.frombuffer(archive.read(entry, "thumb.jpg"), np.uint8), cv2.IMREAD_COLOR)
    assert max(thumb.shape[:2]) == 32
    assert document["made_by"]["map"]["fit"] == "squash" and document["made_by"]["frame"]["pixel_format"] == "bgr8"
    assert document["files"]["original.png"]["sha256"] == entry.files["original.png"]["sha256"]


def test_an_entry_without_frame_or_map_keeps_the_verdict(tmp_path):
    archive = Archive(tmp_path / "a")
    entry = archive.get(store(archive, verdict("cam1", 3, "FAULT", capture_ns=T0), with_frame=False, with_map=False))
    assert entry.files == {} and entry.decision == "FAULT" and entry.reason == "deadline_missed"


def test_query_by_camera_time_decision_and_reason(tmp_path):
    archive = Archive(tmp_path / "a")
    for seq, (camera, decision) in enumerate([("cam0", "REJECT"), ("cam1", "REJECT"), ("cam0", "FAULT"),
                                              ("cam0", "OK"), ("cam1", "FAULT")]):
        store(archive, verdict(camera, seq, decision, capture_ns=T0 + seq * 10**9), with_map=decision != "OK")
    seqs = lambda entries: sorted(e.seq for e in entries)
    assert seqs(archive.query(camera="cam0")) == [0, 2, 3]
    assert seqs(archive.query(decision="FAULT")) == [2, 4]
    assert seqs(archive.query(reason="score_above_threshold")) == [0, 1]
    assert seqs(archive.query(since_ns=T0 + 10**9, until_ns=T0 + 3 * 10**9)) == [1, 2]
    assert seqs(archive.query(camera="cam1", decision="FAULT")) == [4]
    newest = archive.query(limit=2)
    assert [e.seq for e in newest] == [4, 3]
    assert seqs(archive.query(after_id=newest[0].id)) == []


def test_the_quota_deletes_oldest_first_and_counts(tmp_path):
    probe = Archive(tmp_path / "probe")
    one = probe.get(store(probe, verdict(capture_ns=T0))).bytes
    archive = Archive(tmp_path / "a", quota_bytes=5 * one)
    for seq in range(40):
        store(archive, verdict("cam0", seq, capture_ns=T0 + seq))
        assert archive.total_bytes() <= 5 * one                 # room is made before each write
    kept = sorted(e.seq for e in archive.query(limit=100))
    assert kept == list(range(40 - len(kept), 40)) and 4 <= len(kept) <= 5
    assert archive.counters()["deleted_quota"] == 40 - len(kept)
    folders = [d for day in archive.entries_dir.iterdir() for d in day.iterdir()]
    assert len(folders) == len(kept)                              # the files went with their rows


def test_retention_deletes_entries_older_than_the_limit(tmp_path):
    archive = Archive(tmp_path / "a", retention_s=3600.0)
    store(archive, verdict("cam0", 0, capture_ns=T0))            # 2023: far older than an hour
    import time as _time
    fresh = store(archive, verdict("cam0", 1, capture_ns=_time.time_ns()))
    assert [e.id for e in archive.query()] == [fresh]
    assert archive.counters()["deleted_age"] == 1


def test_a_corrupt_entry_is_reported_flagged_and_skipped(tmp_path, caplog):
    archive = Archive(tmp_path / "a")
    good = store(archive, verdict("cam0", 0, capture_ns=T0))
    bad = store(archive, verdict("cam0", 1, capture_ns=T0 + 1))
    entry = archive.get(bad)
    path = archive.path(entry, "original.png")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptEntry):
        archive.read(entry, "original.png")
    assert "corrupt archive entry" in caplog.text
    assert [e.id for e in archive.query()] == [good]              # skipped by readers
    assert archive.get(bad).corrupt.startswith("original.png")
    assert archive.counters()["corrupt_entries"] == 1
    (archive.entries_dir / archive.get(good).dir / "thumb.jpg").unlink()  # a missing file
    assert archive.check_all() and [e.id for e in archive.query()] == []
    assert archive.counters()["corrupt_entries"] == 2


def test_recovery_removes_unfinished_writes_and_unindexed_folders(tmp_path):
    archive = Archive(tmp_path / "a")
    kept = store(archive, verdict("cam0", 0, capture_ns=T0))
    (archive.tmp_dir / "half").mkdir()
    (archive.tmp_dir / "half" / "original.png").write_bytes(b"\x89PNG half")
    orphan = archive.entries_dir / "20231114" / "never-indexed"
    orphan.mkdir(parents=True)
    (orphan / "entry.json").write_text("{}")
    archive.close()
    reopened = Archive(tmp_path / "a")
    assert not any(reopened.tmp_dir.iterdir()) and not orphan.exists()
    assert [e.id for e in reopened.query()] == [kept] and not reopened.verify(reopened.get(kept))


def test_another_archive_format_is_refused(tmp_path):
    Archive(tmp_path / "a").close()
    db = sqlite3.connect(tmp_path / "a" / "index.sqlite")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'format'")
    db.commit()
    db.close()
    with pytest.raises(ArchiveError, match="format 99"):
        Archive(tmp_path / "a")


def test_a_write_that_would_fill_the_disk_is_refused(tmp_path):
    archive = Archive(tmp_path / "a", min_free_bytes=2**62)
    with pytest.raises(ArchiveFull):
        store(archive, verdict(capture_ns=T0))
    assert len(archive) == 0 and not any(archive.tmp_dir.iterdir())


def test_false_reject_marks_are_kept_with_who_and_when(tmp_path):
    archive = Archive(tmp_path / "a")
    reject = store(archive, verdict("cam0", 0, "REJECT", capture_ns=T0))
    ok = store(archive, verdict("cam0", 1, "OK", capture_ns=T0), with_map=False)
    marked = archive.mark_false_reject(reject, "alice")
    assert marked.false_reject and marked.marked_by == "alice" and marked.marked_ns
    assert [e.id for e in archive.query(false_reject=True)] == [reject]
    with pytest.raises(ValueError):
        archive.mark_false_reject(ok, "alice")
    with pytest.raises(KeyError):
        archive.mark_false_reject(999, "alice")
    assert archive.events()[0]["kind"] == "false_reject" and archive.events()[0]["user"] == "alice"
