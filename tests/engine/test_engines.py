"""Engines: torch vs onnxruntime agreement, FP16 error, manifests refuse mismatches and tampering."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import run_cli
from inspector.model.data import load_prepared
from inspector.model.data import test_samples as list_test_samples
from inspector.engine import EngineError, open_engine
from inspector.engine.manifest import read_manifest
from inspector.evaluation.metrics import image_auroc

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def test_batch(tiny_dataset):
    samples = list_test_samples(tiny_dataset)
    images, _, kept, _ = load_prepared(samples, (64, 64))
    return images, np.array([s.is_defect for s in kept])


def test_onnxruntime_matches_torch_on_a_dataset(tiny_model, tiny_engine, test_batch):
    images, labels = test_batch
    ref = open_engine("torch", str(tiny_model)).infer_prepared(images, want_maps=True)
    ort = open_engine("onnxruntime", str(tiny_engine)).infer_prepared(images, want_maps=True)
    np.testing.assert_allclose(ort.scores, ref.scores, rtol=1e-4)
    np.testing.assert_allclose(ort.maps, ref.maps, rtol=1e-3, atol=1e-5)
    assert image_auroc(labels, ort.scores) == image_auroc(labels, ref.scores)


def test_engine_input_contract(tiny_engine):
    engine = open_engine("onnxruntime", str(tiny_engine))
    assert engine.image_size == (64, 64)
    with pytest.raises(EngineError, match="uint8"):
        engine.infer_prepared(np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(EngineError):
        engine.infer_prepared(np.zeros((1, 32, 64, 3), np.uint8))
    # camera images of any size and format go through the one pre-processing
    mono = np.full((50, 70, 1), 128, np.uint8)
    bgr = np.full((90, 40, 3), 30, np.uint8)
    res = engine.infer([mono, bgr], ["mono8", "bgr8"], want_maps=True)
    assert res.scores.shape == (2,) and res.maps.shape == (2, 64, 64)
    # letterboxed (the default fit): the mirrored fill around the image is never scored
    assert res.valid is not None and res.valid.shape == (2, 64, 64) and not res.valid.all()
    assert np.allclose(res.scores, [m[v].max() for m, v in zip(res.maps, res.valid)])


def test_fp16_engine_error_is_small(tiny_model, tiny_engine, test_batch, tmp_path):
    out = tmp_path / "tiny16.onnx"
    run_cli("export", "--model", str(tiny_model), "--out", str(out), "--fp16")
    assert read_manifest(out)["precision"] == "fp16"
    images, labels = test_batch
    fp32 = open_engine("onnxruntime", str(tiny_engine)).infer_prepared(images).scores
    fp16 = open_engine("onnxruntime", str(out)).infer_prepared(images).scores
    rel = np.abs(fp16 - fp32) / np.abs(fp32)
    assert rel.max() < 0.02, rel.max()  # measured ~1e-3; see README "FP16"


def test_manifest_refuses_tampering_and_mismatch(tiny_engine, tmp_path):
    engine = tmp_path / tiny_engine.name  # the manifest names its engine file
    shutil.copy(tiny_engine, engine)
    shutil.copy(tiny_engine.with_suffix(".json"), engine.with_suffix(".json"))
    open_engine("onnxruntime", str(engine))  # a faithful copy opens
    with pytest.raises(EngineError, match="image size"):
        open_engine("onnxruntime", str(engine), expect={"image_size": [128, 128]})
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine.write_bytes(bytes(data))
    with pytest.raises(EngineError, match="does not match its manifest"):
        open_engine("onnxruntime", str(engine))
    engine.with_suffix(".json").unlink()
    with pytest.raises(EngineError, match="no manifest"):
        open_engine("onnxruntime", str(engine))


def test_manifest_records_identity(tiny_model, tiny_engine):
    manifest = json.loads(tiny_engine.with_suffix(".json").read_text())
    for key in ("engine_sha256", "model_sha256", "teacher", "image_size", "opset", "precision", "versions"):
        assert key in manifest
    assert manifest["teacher"]["name"] == "efficientnet_lite0"
    margin = manifest["geometry"]["margin"]
    assert margin > 0 and manifest["geometry"]["n_tiles"] == 1 and manifest["image_size"] == [64, 64]
    side = 64 + 2 * margin  # one tile: the reflect-padded inspection image
    assert manifest["input"] == {"name": "images", "dtype": "uint8", "layout": "NHWC", "color": "RGB",
                                 "range": [0, 255], "shape": ["N", side, side, 3],
                                 "meaning": "tiles of the padded inspection image"}


def test_unknown_backend():
    with pytest.raises(EngineError, match="unknown backend"):
        open_engine("tflite", "x")
