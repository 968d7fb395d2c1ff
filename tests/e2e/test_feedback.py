"""Operator feedback: the false rejects marked in the archive become good parts for
``inspector calibrate --from-archive`` and ``inspector train --from-archive``; a corrupt one is
reported and skipped."""

from __future__ import annotations

import json

import cv2
import pytest

from conftest import run_cli
from inspector.line import wire
from inspector.station.archive import Archive
from inspector.station.entry import Pending, entry_files, verdict_fields
from line_helpers import N_GOOD, render_good_parts

pytestmark = pytest.mark.e2e


def archive_with_marked_rejects(root, images) -> tuple[Archive, list[int]]:
    """Each image stored as the station stores a REJECT (original, no map), then marked by alice."""
    archive = Archive(root)
    ids = []
    for seq, path in enumerate(images):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        v = wire.Verdict("cam0", seq, "", 1_700_000_000_000_000_000 + seq, "REJECT", "score_above_threshold",
                         2.5, 2.0, 1_700_000_000_001_000_000 + seq)
        header = wire.FrameHeader("cam0", seq, "", v.capture_ns, 0, image.shape, source=path.name)
        files, made_by = entry_files(Pending(v, header, image), 32)
        ids.append(archive.add(verdict_fields(v), files, made_by))
        archive.mark_false_reject(ids[-1], "alice")
    return archive, ids


def test_marked_false_rejects_are_good_parts_for_calibrate_and_train(tiny_dataset, tiny_engine, tmp_path):
    good = render_good_parts(tmp_path / "good")
    marked = render_good_parts(tmp_path / "marked", seed=5)
    images = sorted(marked.glob("*.png"))[:4]
    archive, ids = archive_with_marked_rejects(tmp_path / "archive", images)
    corrupt = archive.path(archive.get(ids[-1]), "original.png")
    corrupt.write_bytes(corrupt.read_bytes()[:-20])            # a truncated file: reported, skipped
    archive.close()

    proc = run_cli("calibrate", "--engine", str(tiny_engine), "--good", str(good), "--from-archive",
                   str(tmp_path / "archive"), "--target-frr", "0.5", "--no-region-rule", "--out",
                   str(tmp_path / "p.json"), timeout=180)
    assert "3 false reject(s) marked by operators" in proc.stdout and "1 skipped" in proc.stdout, proc.stdout
    profile = json.loads((tmp_path / "p.json").read_text())
    assert profile["n_good"] == N_GOOD + 3
    assert profile["sources"]["from_archive"] == str((tmp_path / "archive").resolve())
    assert Archive(tmp_path / "archive", recover=False).get(ids[-1]).corrupt   # flagged for everyone

    trained = run_cli("train", "--data", str(tiny_dataset), "--out", str(tmp_path / "m.pt"), "--epochs", "1",
                      "--image-size", "64", "--batch-size", "8", "--max-images", "8", "--holdout", "0",
                      "--from-archive", str(tmp_path / "archive"), "--no-progress", timeout=300)
    assert "on 11 images" in trained.stdout, trained.stdout + trained.stderr   # 8 from the set + 3 from the archive
