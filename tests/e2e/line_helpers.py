"""Shared by the whole-line tests: good parts the tiny model never trained on, and a profile
calibrated on them by the real ``inspector calibrate``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from conftest import run_cli

N_GOOD = 24


def render_good_parts(folder: Path, seed: int = 2) -> Path:
    """``N_GOOD`` texture parts rendered by ``synthetic.make_normal`` (64 x 64, ``seed``) into
    ``folder``, a different seed from the training set."""
    from inspector.model.synthetic import make_normal

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(N_GOOD):
        cv2.imwrite(str(folder / f"{index:03d}.png"), make_normal(rng, "texture", (64, 64)))
    return folder


def calibrate(engine: Path, good: Path, out: Path, *extra: str) -> Path:
    """``inspector calibrate --target-frr 0.5 --no-region-rule`` (a threshold in the middle of the
    tiny model's scores, so OK and REJECT both occur) plus ``extra`` options."""
    run_cli("calibrate", "--engine", str(engine), "--good", str(good), "--target-frr", "0.5", "--no-region-rule",
            "--out", str(out), *extra, timeout=180)
    return out
