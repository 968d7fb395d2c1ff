"""`inspector calibrate` and calibration profiles: real CLI runs on the tiny model / engine of the
session fixtures, with extra good parts rendered by inspector.model.synthetic (another seed than the
fixture's training set, so the model never saw them)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import run_cli
from inspector.calibration import thresholds as th
from inspector.calibration.calibrate import (CalibrationError, cv_folds, resolve_defect_images, resolve_good_images,
                                             score_images)
from inspector.model.data import DatasetError
from inspector.engine import open_engine
from inspector.engine.manifest import read_manifest, sha256_file
from inspector.judge.profile import (FORMAT, ProfileError, check_profile_matches, engine_identity, load_profile,
                                     profile_from_dict, save_profile)
from inspector.model.synthetic import make_normal

pytestmark = pytest.mark.e2e

N_GOOD = 30
TARGET = 0.05


def _write_good_images(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = make_normal(np.random.default_rng([seed, i]), "texture", (64, 64))
        assert cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    return folder


@pytest.fixture(scope="module")
def good_root(tmp_path_factory) -> Path:
    """MVTec-layout root: test/good holds N_GOOD unseen good parts; train/good a decoy image that
    must never be used for calibration."""
    root = tmp_path_factory.mktemp("calgood") / "line"
    _write_good_images(root / "test" / "good", N_GOOD, seed=4242)
    _write_good_images(root / "train" / "good", 1, seed=999)
    return root


@pytest.fixture(scope="module")
def onnx_calibration(tiny_engine, tiny_dataset, good_root, tmp_path_factory):
    """One CLI run on the ONNX engine with defects, a hold-out and a report."""
    out_dir = tmp_path_factory.mktemp("calrun")
    out, report = out_dir / "calibration" / "cam0.json", out_dir / "report"
    proc = run_cli("calibrate", "--engine", str(tiny_engine), "--good", str(good_root), "--defects",
                   str(tiny_dataset), "--target-frr", str(TARGET), "--out", str(out), "--camera", "cam0",
                   "--report", str(report), "--holdout", "0.2", "--seed", "3", timeout=120)
    return {"profile": out, "report": report, "stdout": proc.stdout}


def _valid_profile_dict() -> dict:
    return {
        "format": FORMAT,
        "camera": "cam0",
        "engine": {"sha256": "a" * 64, "backend": "onnxruntime", "precision": "fp32", "image_size": [64, 96]},
        "thresholds": {"image": 1.25, "pixel": 1.1, "min_defect_area": 12},
        "target_frr": 0.01,
        "n_good": 100,
    }


# ----------------------------------------------------------------------------- CLI, ONNX engine


def test_onnx_calibration_profile_records_engine_and_thresholds(onnx_calibration, tiny_engine):
    profile = load_profile(onnx_calibration["profile"])
    manifest = read_manifest(tiny_engine)
    assert profile.camera == "cam0"
    assert profile.backend == "onnxruntime" and profile.precision == "fp32"
    assert profile.engine_sha256 == manifest["engine_sha256"] == sha256_file(tiny_engine)
    assert profile.image_size == (64, 64)
    assert profile.has_region_rule and profile.min_defect_area >= 1
    raw = profile.raw
    assert raw["target_frr"] == TARGET
    assert (raw["n_good"], raw["n_fit"], raw["n_heldout"]) == (N_GOOD, 24, 6)
    assert raw["engine"]["teacher"]["weights_sha256"] == manifest["teacher"]["weights_sha256"]
    assert raw["engine"]["model_sha256"] == manifest["model_sha256"]
    assert raw["method"] in ("empirical", "gpd") and isinstance(raw["params"], dict)
    est = raw["estimated_frr"]
    assert 0.0 <= est["ci_low"] <= est["estimated_frr"] <= est["ci_high"] <= 1.0
    stats = raw["score_stats"]
    assert stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
    assert "--target-frr" in raw["command"] and raw["created"] and raw["versions"]["inspector"]
    check_profile_matches(profile, manifest, backend="onnxruntime", camera="cam0")
    assert "image threshold" in onnx_calibration["stdout"] and "estimated FRR" in onnx_calibration["stdout"]


def test_onnx_calibration_threshold_is_fitted_on_the_fit_parts_only(onnx_calibration, good_root):
    profile = load_profile(onnx_calibration["profile"])
    summary = json.loads((onnx_calibration["report"] / "summary.json").read_text())
    for key in ("threshold", "target_frr", "estimated_frr", "ci_low", "ci_high", "n_good", "holdout",
                "separation"):
        assert key in summary
    rows = summary["scores"]
    used = {Path(r["path"]).resolve().parent for r in rows}
    assert used == {(good_root / "test" / "good").resolve()}  # never train/good
    fit = np.array([r["score"] for r in rows if r["set"] == "fit"])
    held = np.array([r["score"] for r in rows if r["set"] == "holdout"])
    assert (fit.size, held.size) == (24, 6)
    assert summary["threshold"] == profile.image_threshold
    assert profile.image_threshold == pytest.approx(th.fit_threshold(fit, TARGET).threshold, rel=1e-9)
    assert np.mean(fit >= profile.image_threshold) <= TARGET + 0.1
    hold = profile.raw["holdout"]
    assert hold["n"] == 6 and hold["rejected"] == int(np.sum(held >= profile.image_threshold))
    assert hold["within_estimate_ci"] == (summary["ci_low"] <= hold["frr"] <= summary["ci_high"])


def test_onnx_calibration_scores_are_the_engines(onnx_calibration, tiny_engine):
    """The recorded scores are what the engine gives for these files (same pre-processing)."""
    rows = json.loads((onnx_calibration["report"] / "summary.json").read_text())["scores"]
    engine = open_engine("onnxruntime", str(tiny_engine), threads=1)
    scores, _, _, _ = score_images(engine, [Path(r["path"]) for r in rows], want_maps=False)
    assert np.allclose(scores, [r["score"] for r in rows], rtol=1e-5, atol=1e-6)


def test_onnx_calibration_separation_and_report(onnx_calibration, tiny_dataset):
    profile = load_profile(onnx_calibration["profile"])
    summary = json.loads((onnx_calibration["report"] / "summary.json").read_text())
    sep = profile.raw["separation"]
    n_defects = len(resolve_defect_images(tiny_dataset))
    assert n_defects > 0 and sep["n_defect"] == n_defects
    defect_scores = np.array(summary["defect_scores"])
    assert sep["recall_at_threshold"] == pytest.approx(np.mean(defect_scores >= profile.image_threshold))
    assert sep["escape_rate"] == pytest.approx(1 - sep["recall_at_threshold"])
    assert 0.0 <= sep["auroc"] <= 1.0 and "best_threshold" in sep
    assert sep["recall_combined"] >= sep["recall_at_threshold"]
    report = onnx_calibration["report"]
    png = cv2.imread(str(report / "report.png"))
    assert png is not None and png.shape[0] > 200 and png.shape[1] > 400
    heatmaps = sorted(report.glob("heatmap_*.png"))
    assert len(heatmaps) == 4 and all(cv2.imread(str(p)) is not None for p in heatmaps)
    top = max((r for r in summary["scores"] if r["set"] == "fit"), key=lambda r: r["score"])
    assert heatmaps[0].name == f"heatmap_01_{Path(top['path']).stem}.png"


# ----------------------------------------------------------------------------- CLI, torch model


def test_torch_model_calibration(tiny_model, good_root, tmp_path):
    out = tmp_path / "torch.json"
    run_cli("calibrate", "--model", str(tiny_model), "--good", str(good_root / "test" / "good"),
            "--target-frr", "0.1", "--out", str(out), "--no-region-rule", timeout=120)
    profile = load_profile(out)
    assert profile.backend == "torch" and profile.camera is None
    assert profile.engine_sha256 == sha256_file(tiny_model)
    assert not profile.has_region_rule
    assert profile.raw["separation"] is None and profile.raw["holdout"] is None
    torch_manifest = open_engine("torch", str(tiny_model)).manifest
    check_profile_matches(profile, torch_manifest, backend="torch", camera="any-camera")
    with pytest.raises(ProfileError, match="inspection"):  # a hand-made manifest claims another geometry
        check_profile_matches(profile, {"backend": "torch", "model": str(tiny_model), "image_size": [64, 64]})
    with pytest.raises(ProfileError, match="backend"):
        check_profile_matches(profile, torch_manifest, backend="onnxruntime")


def test_calibration_with_a_roi_records_it_and_scores_only_inside(tiny_engine, good_root, tmp_path):
    out, full = tmp_path / "roi.json", tmp_path / "full.json"
    good = str(good_root / "test" / "good")
    run_cli("calibrate", "--engine", str(tiny_engine), "--good", good, "--target-frr", "0.1", "--out", str(full),
            "--no-region-rule", timeout=120)
    run_cli("calibrate", "--engine", str(tiny_engine), "--good", good, "--target-frr", "0.1", "--out", str(out),
            "--no-region-rule", "--roi", "0,0,32,32", timeout=120)
    with_roi, without = load_profile(out), load_profile(full)
    assert with_roi.raw["roi"] == {"rect": [0, 0, 32, 32]} and without.raw["roi"] is None
    assert with_roi.raw["score_stats"]["max"] <= without.raw["score_stats"]["max"]  # a max over fewer pixels
    manifest = read_manifest(tiny_engine)
    check_profile_matches(with_roi, manifest, roi={"rect": [0, 0, 32, 32]})
    with pytest.raises(ProfileError, match="region of interest"):
        check_profile_matches(with_roi, manifest)


# ----------------------------------------------------------------------------- CLI errors


@pytest.mark.parametrize("case", ["too_few", "train_folder", "holdout_too_big"])
def test_calibrate_refuses_bad_good_sets_with_exit_code_2(case, tiny_engine, tiny_dataset, good_root, tmp_path):
    good, extra, expected = {
        "too_few": (tiny_dataset, [], "too few good images"),  # test/good holds 8
        "train_folder": (tiny_dataset / "train" / "good", [], "training folder"),
        "holdout_too_big": (good_root, ["--holdout", "0.5"], "too few good images"),
    }[case]
    out = tmp_path / "p.json"
    proc = run_cli("calibrate", "--engine", str(tiny_engine), "--good", str(good), "--target-frr", "0.01",
                   "--out", str(out), *extra, check=False, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert not out.exists()


def test_calibrate_rejects_bad_target_frr(tiny_engine, good_root, tmp_path):
    proc = run_cli("calibrate", "--engine", str(tiny_engine), "--good", str(good_root), "--target-frr", "1.5",
                   "--out", str(tmp_path / "p.json"), check=False, timeout=60)
    assert proc.returncode == 2 and "target-frr" in proc.stderr


# ----------------------------------------------------------------------------- folders, scoring


def test_resolve_good_and_defect_folders(tiny_dataset, good_root):
    assert resolve_good_images(good_root) == sorted((good_root / "test" / "good").glob("*.png"))
    assert len(resolve_good_images(good_root / "test" / "good")) == N_GOOD
    with pytest.raises(CalibrationError, match="training folder"):
        resolve_good_images(good_root / "train" / "good")
    defects = resolve_defect_images(tiny_dataset)
    assert defects and all(p.parent.name != "good" and p.parent.parent.name == "test" for p in defects)
    assert resolve_defect_images(tiny_dataset / "test") == defects
    assert resolve_defect_images(tiny_dataset / "test" / "hole") == sorted((tiny_dataset / "test" / "hole").glob("*.png"))


def test_score_images_chunks_and_bad_files(tiny_engine, good_root, tmp_path):
    engine = open_engine("onnxruntime", str(tiny_engine), threads=1)
    paths = resolve_good_images(good_root)[:7]
    scores, maps, kept, skipped = score_images(engine, paths, chunk=3)
    whole, whole_maps, _, _ = score_images(engine, paths, chunk=16)
    assert scores.dtype == np.float32 and maps.shape == (7, 64, 64) and kept == paths and not skipped
    assert np.allclose(scores, whole, rtol=1e-6) and np.allclose(maps, whole_maps, rtol=1e-6)
    assert np.allclose(scores, maps.reshape(7, -1).max(axis=1), rtol=1e-6)  # score = max of the map
    broken = tmp_path / "broken.png"
    broken.write_bytes(paths[0].read_bytes()[:200])  # truncated PNG
    with pytest.raises(DatasetError, match="broken.png"):
        score_images(engine, [paths[0], broken])
    scores2, _, kept2, skipped2 = score_images(engine, [paths[0], broken, paths[1]], skip_bad=True)
    assert kept2 == [paths[0], paths[1]] and [s[0] for s in skipped2] == [str(broken)]
    assert np.allclose(scores2, scores[:2], rtol=1e-6)


# ----------------------------------------------------------------------------- profile loading


def test_profile_round_trip_and_atomic_save(tmp_path):
    path = save_profile(tmp_path / "sub" / "p.json", _valid_profile_dict())
    profile = load_profile(path)
    assert (profile.camera, profile.image_size, profile.image_threshold) == ("cam0", (64, 96), 1.25)
    assert (profile.pixel_threshold, profile.min_defect_area, profile.target_frr) == (1.1, 12, 0.01)
    bad = _valid_profile_dict()
    bad["thresholds"]["image"] = float("nan")
    with pytest.raises(ProfileError):
        save_profile(path, bad)
    assert load_profile(path).image_threshold == 1.25  # the old file is untouched
    assert [p.name for p in path.parent.iterdir()] == ["p.json"]  # no temp files left


def test_load_profile_missing_file_and_bad_json(tmp_path):
    with pytest.raises(ProfileError, match="not found.*nope.json"):
        load_profile(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "inspector.calibration/1",')
    with pytest.raises(ProfileError, match="broken.json.*JSON"):
        load_profile(broken)
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(_valid_profile_dict()).replace("1.25", "NaN"))
    with pytest.raises(ProfileError, match="nan.json.*NaN"):
        load_profile(nan)


def _mutate(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    if value is KeyError:
        del data[last]
    else:
        data[last] = value


@pytest.mark.parametrize("field,value,message", [
    ("format", "inspector.engine/1", "format"),
    ("engine", KeyError, "missing field 'engine'"),
    ("camera", KeyError, "missing field 'camera'"),
    ("engine.sha256", KeyError, "engine.sha256"),
    ("engine.sha256", "abc", "engine.sha256"),
    ("engine.image_size", [64], "engine.image_size"),
    ("engine.backend", "", "engine.backend"),
    ("thresholds.image", KeyError, "thresholds.image"),
    ("thresholds.image", "1.25", "thresholds.image"),
    ("thresholds.image", True, "thresholds.image"),
    ("thresholds.min_defect_area", None, "both be set"),
    ("thresholds.min_defect_area", 0, "min_defect_area"),
    ("target_frr", 1.5, "target_frr"),
])
def test_load_profile_refuses_invalid_fields(tmp_path, field, value, message):
    data = copy.deepcopy(_valid_profile_dict())
    _mutate(data, field, value)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=message) as info:
        load_profile(path)
    assert "bad.json" in str(info.value)


def test_region_rule_may_be_absent():
    data = _valid_profile_dict()
    data["thresholds"].update(pixel=None, min_defect_area=None)
    profile = profile_from_dict(data)
    assert not profile.has_region_rule and profile.pixel_threshold is None


# ----------------------------------------------------------------------------- matching


@pytest.mark.parametrize("change,kwargs,message", [
    ({"engine_sha256": "b" * 64}, {}, "engine sha256"),
    ({"image_size": [64, 64]}, {}, "image size"),
    ({}, {"backend": "tensorrt"}, "backend"),
    ({"precision": "fp16"}, {}, "precision"),
    ({}, {"camera": "cam1"}, "camera"),
    ({"head": {"score": {"rule": "max"}, "stats": {"sha256": "c" * 64}}}, {}, "statistics"),
    ({"geometry": {"fit": "letterbox", "margin": 32, "tile_size": [128, 160]}}, {}, "geometry"),
    ({"head": {"score": {"rule": "topk", "fraction": 0.01}}}, {}, "score rule"),
    ({}, {"roi": {"rect": [0, 0, 10, 10]}}, "region of interest"),
])
def test_check_profile_matches_refuses_mismatch(tmp_path, change, kwargs, message):
    profile = load_profile(save_profile(tmp_path / "p.json", _valid_profile_dict()))
    manifest = {"engine_sha256": "a" * 64, "image_size": [64, 96], "precision": "fp32"}
    check_profile_matches(profile, manifest, backend="onnxruntime", camera="cam0")  # the good case
    check_profile_matches(profile, manifest)  # camera / backend not stated: not checked
    with pytest.raises(ProfileError, match=message) as info:
        check_profile_matches(profile, {**manifest, **change}, **{"backend": "onnxruntime", **kwargs})
    assert "p.json" in str(info.value)


def test_any_camera_profile_and_unidentifiable_engine():
    data = _valid_profile_dict()
    data["camera"] = None
    profile = profile_from_dict(data)
    manifest = {"engine_sha256": "a" * 64, "image_size": [64, 96]}
    check_profile_matches(profile, manifest, backend="onnxruntime", camera="whatever")
    with pytest.raises(ProfileError, match="cannot identify"):
        engine_identity({"backend": "torch", "model": "/nonexistent/model.pt"})
    with pytest.raises(ProfileError, match="cannot identify"):
        check_profile_matches(profile, {"image_size": [64, 96]})


def test_cv_folds_keep_enough_parts_in_every_training_split():
    for n in (21, 22, 24, 25, 40, 300):
        folds = cv_folds(n)
        assert n - -(-n // folds) >= th.MIN_GOOD_SCORES
    assert cv_folds(25) == 5 and cv_folds(300) == 5 and cv_folds(21) == 21
    with pytest.raises(CalibrationError):
        cv_folds(20)
