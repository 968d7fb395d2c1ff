"""``inspector score --heatmaps``: full-resolution overlays with score and threshold, one unique
file per image (MVTec folders all hold 000.png), and never a silent overwrite."""

from __future__ import annotations

import json

import cv2
import pytest

from conftest import run_cli
from line_helpers import calibrate, render_good_parts

pytestmark = pytest.mark.e2e


def test_same_file_names_in_two_kinds_give_two_heatmaps_and_no_overwrite(tiny_dataset, tiny_engine, tmp_path):
    images = [tiny_dataset / "test" / "hole" / "000.png", tiny_dataset / "test" / "scratch" / "000.png",
              tiny_dataset / "test" / "good" / "000.png"]
    assert all(p.is_file() for p in images)
    profile = calibrate(tiny_engine, render_good_parts(tmp_path / "good"), tmp_path / "tiny.json")
    out = tmp_path / "heatmaps"
    proc = run_cli("score", "--engine", str(tiny_engine), "--calibration", str(profile), "--json",
                   "--heatmaps", str(out), *map(str, images))
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(p.name for p in out.iterdir()) == ["good__000_heatmap.png", "hole__000_heatmap.png",
                                                     "scratch__000_heatmap.png"]
    threshold = json.loads(profile.read_text())["thresholds"]["image"]
    for row in rows:
        assert row["threshold"] == threshold and row["decision"] == ("REJECT" if row["score"] >= threshold else "OK")
        picture = cv2.imread(row["heatmap"], cv2.IMREAD_COLOR)
        assert picture.shape[1] == 64 * 8 and picture.shape[0] > 64 * 8   # full resolution, enlarged 8x + caption
    hole = cv2.imread(str(out / "hole__000_heatmap.png"))
    scratch = cv2.imread(str(out / "scratch__000_heatmap.png"))
    assert hole.shape == scratch.shape and (hole != scratch).any()          # two images, two pictures

    before = (out / "hole__000_heatmap.png").read_bytes()
    again = run_cli("score", "--engine", str(tiny_engine), "--heatmaps", str(out), *map(str, images), check=False)
    assert again.returncode == 1 and again.stderr.count("not overwritten") == 3, again.stderr
    assert (out / "hole__000_heatmap.png").read_bytes() == before
    run_cli("score", "--engine", str(tiny_engine), "--heatmaps", str(out), "--overwrite", *map(str, images))
    assert (out / "hole__000_heatmap.png").read_bytes() != before        # without --calibration: no threshold printed
