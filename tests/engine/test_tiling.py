"""Tiled engines against the direct full-resolution pass; good-part statistics through export and
every backend, refused when they do not match the engine."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from conftest import run_cli
from inspector.core.scoring import GoodStats
from inspector.engine import EngineError, open_engine
from inspector.engine.torch_engine import TorchEngine
from inspector.model.checkpoint import load_model
from inspector.model.data import load_fitted
from inspector.model.data import test_samples as list_test_samples

pytestmark = pytest.mark.e2e

# Stitched maps differ from the direct pass by the part of each owned pixel's receptive field that a
# tile cuts off (the one-class embedding at stride 32 sees ~200 px). Measured on a 128x128 inspection
# with 32 px margins: 160 px tiles (96 px cores) 2.7 % of the map's maximum, scores 0.4 %; 128 px
# tiles 18 % / 1.9 %. The tolerances below are for the 160 px tiles.
MAP_TOLERANCE = 0.06      # max |tiled - direct| / max(direct)
SCORE_TOLERANCE = 0.015   # max relative score difference


@pytest.fixture(scope="module")
def textures(tmp_path_factory):
    """40 good 192x192 textures to train on (a model trained on too little has noisy, tile-dependent maps)."""
    out = tmp_path_factory.mktemp("tex") / "tex"
    run_cli("synth", "--out", str(out), "--product", "texture", "--n-train", "40", "--n-test-good", "6",
            "--n-defect", "2", "--size", "192", "--seed", "1")
    return out


@pytest.fixture(scope="module")
def model128(textures, tmp_path_factory):
    out = tmp_path_factory.mktemp("m128") / "m.pt"
    run_cli("train", "--data", str(textures), "--out", str(out), "--epochs", "6", "--image-size", "128",
            "--margin", "32", "--holdout", "0.3", "--normalize", "on", "--no-progress")
    return out


@pytest.fixture(scope="module")
def fitted128(textures):
    return load_fitted(list_test_samples(textures), (128, 128), "letterbox")


def _with(ckpt, **config):
    c = copy.deepcopy(ckpt)
    c["config"].update(config)
    return c


def test_stitched_tiles_equal_the_direct_pass_within_the_receptive_field_tolerance(model128, fitted128):
    model, ckpt = load_model(model128)
    ckpt = {**ckpt, "good_stats": None}  # raw maps: the tolerance is about the network, not z-scores
    direct = TorchEngine(model, ckpt).infer_prepared(fitted128.images, want_maps=True)
    tiled_engine = TorchEngine(model, _with(ckpt, tile_size=[160, 160]))
    assert tiled_engine.grid.n_tiles == 4 and tiled_engine.input_size == (160, 160)
    tiled = tiled_engine.infer_prepared(fitted128.images, want_maps=True)
    assert tiled.maps.shape == direct.maps.shape == (len(fitted128.images), 128, 128)
    err = np.abs(tiled.maps - direct.maps).max() / np.abs(direct.maps).max()
    assert err < MAP_TOLERANCE, err
    score_err = (np.abs(tiled.scores - direct.scores) / np.abs(direct.scores)).max()
    assert score_err < SCORE_TOLERANCE, score_err
    # one tile covering the padded image *is* the direct pass
    single = TorchEngine(model, _with(ckpt, tile_size=[192, 192])).infer_prepared(fitted128.images, want_maps=True)
    np.testing.assert_array_equal(single.maps, direct.maps)


def test_tiled_onnx_engine_agrees_with_torch_and_statistics_travel_with_it(model128, fitted128, tmp_path):
    model, ckpt = load_model(model128)
    tiled_ckpt = tmp_path / "tiled.pt"
    import torch
    torch.save(_with(ckpt, tile_size=[160, 160]), tiled_ckpt)
    engine_path = tmp_path / "tiled.onnx"
    run_cli("export", "--model", str(tiled_ckpt), "--out", str(engine_path))
    manifest = json.loads(engine_path.with_suffix(".json").read_text())
    assert manifest["geometry"] == {"fit": "letterbox", "inspect_size": [128, 128], "tile_size": [160, 160],
                                    "margin": 32, "n_tiles": 4}
    assert manifest["input"]["shape"] == ["N", 160, 160, 3]
    stats_block = manifest["head"]["stats"]
    assert stats_block["file"] == "tiled.stats.npz" and stats_block["n_images"] == 12
    ref = open_engine("torch", str(tiled_ckpt)).infer_prepared(fitted128.images, want_maps=True, valid=fitted128.valid)
    ort = open_engine("onnxruntime", str(engine_path), max_batch=3)  # 3 tiles per run: chunks cross images
    got = ort.infer_prepared(fitted128.images, want_maps=True, valid=fitted128.valid)
    assert ort.stats is not None
    np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-4)
    np.testing.assert_allclose(got.maps, ref.maps, rtol=1e-3, atol=1e-4)


def test_engine_refuses_statistics_that_do_not_match(model128, tmp_path):
    engine_path = tmp_path / "e.onnx"
    run_cli("export", "--model", str(model128), "--out", str(engine_path))
    stats_file = tmp_path / "e.stats.npz"
    good = GoodStats.load(stats_file)
    open_engine("onnxruntime", str(engine_path)).close()
    GoodStats(good.mean * 0.5, good.inv_std, good.n_images).save(stats_file)       # other statistics
    with pytest.raises(EngineError, match="do not match"):
        open_engine("onnxruntime", str(engine_path))
    GoodStats(good.mean[:64], good.inv_std[:64], good.n_images).save(stats_file)   # other size
    with pytest.raises(EngineError):
        open_engine("onnxruntime", str(engine_path))
    stats_file.unlink()
    with pytest.raises(EngineError, match="missing"):
        open_engine("onnxruntime", str(engine_path))
    proc = run_cli("eval", "--engine", str(engine_path), "--data", str(tmp_path), check=False)
    assert proc.returncode != 0 and "missing" in proc.stderr
