"""tools/accuracy_suite.py on a tiny synthetic set: the real train -> export -> calibrate -> eval chain,
one table (markdown + JSON) whose escape and false-reject counts match the test set on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def count_images(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.suffix.lower() == ".png")


def test_suite_on_a_tiny_set_writes_one_consistent_table(tmp_path):
    data = tmp_path / "small"
    run_cli("synth", "--out", str(data), "--product", "part", "--n-train", "30", "--n-test-good", "6",
            "--n-defect", "2", "--size", "64", "--seed", "4")
    too_small = tmp_path / "too_small"   # 10 good images cannot leave 21 aside for calibration
    run_cli("synth", "--out", str(too_small), "--product", "part", "--n-train", "10", "--n-test-good", "2",
            "--n-defect", "1", "--size", "64", "--seed", "5")
    out = tmp_path / "acc"
    proc = subprocess.run([sys.executable, "tools/accuracy_suite.py", "--data", f"small={data}",
                           "--data", f"too_small={too_small}", "--out", str(out),
                           "--train-args", "--epochs 1 --image-size 64 --batch-size 8"],
                          cwd=REPO, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 1, proc.stdout + proc.stderr          # one set failed, and says so

    rows = {r["name"]: r for r in json.loads((out / "accuracy.json").read_text())["rows"]}
    assert "too few" in rows["too_small"]["error"]
    row = rows["small"]
    n_defect = sum(count_images(d) for d in (data / "test").iterdir() if d.is_dir() and d.name != "good")
    n_good = count_images(data / "test" / "good")
    assert (row["n_defect"], row["n_good"]) == (n_defect, n_good)
    assert 0 <= row["escapes"] <= n_defect and row["escape_rate"] == pytest.approx(row["escapes"] / n_defect)
    assert 0 <= row["false_rejects"] <= n_good and row["test_frr"] == pytest.approx(row["false_rejects"] / n_good)
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert 0.0 <= row[key] <= 1.0
    assert row["train_seconds"] > 0
    assert "--epochs 1 --image-size 64" in row["train_command"]
    assert row["inspection"]["inspect_size"] == [64, 64]
    # the profile it calibrated is the one it applied
    profile = json.loads((out / "small" / "profile.json").read_text())
    assert row["threshold"] == pytest.approx(profile["thresholds"]["image"])
    # 30 good training images: 21 set aside for calibration, 9 left for training (symlinks, no copies)
    assert count_images(out / "small" / "calibration_good") == 21
    assert count_images(out / "small" / "view" / "train" / "good") == 9
    assert all(p.is_symlink() for p in (out / "small" / "calibration_good").iterdir())

    table = (out / "accuracy.md").read_text().splitlines()
    assert table[0].startswith("| data set |") and len(table) == 4   # header, rule, two rows
    assert f"{row['escapes']}/{n_defect}" in table[2] and "failed" in table[3]
