import numpy as np
import pytest

from inspector.engine import open_engine

pytestmark = pytest.mark.e2e


def test_tiny_engine_scores_like_the_reference(tiny_model, tiny_engine, tiny_dataset):
    ref = open_engine("torch", str(tiny_model))
    ort = open_engine("onnxruntime", str(tiny_engine))
    x = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    a, b = ref.infer_prepared(x).scores, ort.infer_prepared(x).scores
    assert np.allclose(a, b, rtol=1e-4, atol=1e-6)
