"""Profiles are made in one place: judge.profile.new_profile + engine_block, written by save_profile."""

from __future__ import annotations

import pytest

from inspector.judge.profile import (FORMAT, ProfileError, check_profile_matches, engine_block, load_profile,
                                     new_profile, save_profile)

pytestmark = pytest.mark.unit

MANIFEST = {"engine_sha256": "b" * 64, "image_size": [64, 96], "precision": "fp32",
            "geometry": {"fit": "letterbox", "margin": 2}, "head": {"score": {"rule": "max"}}}


def test_a_new_profile_round_trips_and_fits_its_engine(tmp_path):
    data = new_profile(engine_block(MANIFEST, "onnxruntime", engine_file=tmp_path / "e.onnx"),
                       {"image": 1.5, "pixel": 1.2, "min_defect_area": 9, "pixel_fpr": 1e-4},
                       camera="cam0", roi={"rect": [1, 2, 30, 40]}, method="empirical", n_good=50)
    assert data["format"] == FORMAT and data["engine"]["inspection"]["fit"] == "letterbox"
    profile = load_profile(save_profile(tmp_path / "p.json", data))
    assert (profile.image_threshold, profile.pixel_threshold, profile.min_defect_area) == (1.5, 1.2, 9)
    assert profile.raw["method"] == "empirical" and profile.raw["thresholds"]["pixel_fpr"] == 1e-4
    check_profile_matches(profile, MANIFEST, backend="onnxruntime", camera="cam0", roi={"rect": [1, 2, 30, 40]})


def test_the_roi_must_match_both_ways(tmp_path):
    with_roi = load_profile(save_profile(tmp_path / "r.json", new_profile(
        engine_block(MANIFEST, "onnxruntime"), {"image": 1.0, "pixel": None, "min_defect_area": None},
        roi={"rect": [0, 0, 8, 8]})))
    without = load_profile(save_profile(tmp_path / "n.json", new_profile(
        engine_block(MANIFEST, "onnxruntime"), {"image": 1.0, "pixel": None, "min_defect_area": None})))
    with pytest.raises(ProfileError, match="region of interest"):
        check_profile_matches(with_roi, MANIFEST, backend="onnxruntime", roi=None)
    with pytest.raises(ProfileError, match="region of interest"):
        check_profile_matches(without, MANIFEST, backend="onnxruntime", roi={"rect": [0, 0, 8, 8]})


def test_an_invalid_profile_is_never_made():
    with pytest.raises(ProfileError):
        new_profile(engine_block(MANIFEST, "onnxruntime"), {"image": float("nan"), "pixel": None,
                                                             "min_defect_area": None})
    with pytest.raises(ProfileError, match="identify"):
        engine_block({"image_size": [8, 8]}, "onnxruntime")
