"""Data loading errors, checkpoint round trip and refusal, and train + eval + score via the CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from conftest import run_cli
from inspector.model.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from inspector.model.data import DatasetError, load_prepared, read_image, read_mask, train_samples
from inspector.model.data import test_samples as list_test_samples
from inspector.core.preprocess import parse_image_size, prepare

pytestmark = pytest.mark.e2e


# ------------------------------------------------------------------ data
def test_image_size_parsing():
    assert parse_image_size("256") == (256, 256)
    assert parse_image_size("320x768") == (768, 320)  # WIDTHxHEIGHT -> (h, w)
    for bad in ("300", "abc", "32x", "0", "8192"):
        with pytest.raises(ValueError):
            parse_image_size(bad)


def test_prepare_converts_formats_to_rgb():
    bgr = np.zeros((10, 20, 3), np.uint8)
    bgr[..., 0] = 255  # blue in BGR
    out = prepare(bgr, (32, 64), "bgr8")
    assert out.shape == (32, 64, 3) and out.dtype == np.uint8 and (out[..., 2] == 255).all()
    mono = np.full((10, 20, 1), 7, np.uint8)
    assert (prepare(mono, (32, 32), "mono8") == 7).all()
    with pytest.raises(ValueError):
        prepare(np.zeros((4, 4, 3), np.float32), (32, 32))
    with pytest.raises(ValueError):
        prepare(bgr, (32, 32), "mono8")


def make_set(root, n_train=3):
    for sub in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (root / sub).mkdir(parents=True)
    img = np.random.default_rng(0).integers(0, 255, (40, 60), dtype=np.uint8)
    for i in range(n_train):
        cv2.imwrite(str(root / f"train/good/{i:03d}.png"), img)
    cv2.imwrite(str(root / "test/good/000.png"), img)
    cv2.imwrite(str(root / "test/crack/000.jpg"), img)
    mask = np.zeros((40, 60), np.uint8)
    mask[5:9, 5:20] = 255
    cv2.imwrite(str(root / "ground_truth/crack/000_mask.png"), mask)


def test_loader_reads_layout_and_masks(tmp_path):
    make_set(tmp_path)
    assert len(train_samples(tmp_path)) == 3
    samples = list_test_samples(tmp_path)
    assert [s.kind for s in samples] == ["crack", "good"]
    images, masks, kept, skips = load_prepared(samples, (32, 64), with_masks=True)
    assert images.shape == (2, 32, 64, 3) and masks.shape == (2, 32, 64)
    assert masks[0].any() and not masks[1].any() and len(skips) == 0


def test_loader_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="missing folder"):
        train_samples(tmp_path)
    make_set(tmp_path)
    # truncated PNG
    good = tmp_path / "train/good/001.png"
    good.write_bytes(good.read_bytes()[:100])
    with pytest.raises(DatasetError, match="001.png"):
        load_prepared(train_samples(tmp_path), (32, 32))
    images, _, kept, skips = load_prepared(train_samples(tmp_path), (32, 32), skip_bad=True)
    assert len(kept) == 2 and len(skips) == 1 and "001.png" in skips.skipped[0][0]
    # garbage file with an image extension
    (tmp_path / "train/good/002.png").write_bytes(b"\x00" * 50)
    with pytest.raises(DatasetError, match="002.png"):
        read_image(tmp_path / "train/good/002.png")
    # mask of the wrong size
    cv2.imwrite(str(tmp_path / "ground_truth/crack/000_mask.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match="000_mask.png"):
        read_mask(tmp_path / "ground_truth/crack/000_mask.png", (40, 60))
    # defect without a mask while its kind has ground truth
    (tmp_path / "ground_truth/crack/000_mask.png").unlink()
    with pytest.raises(DatasetError, match="no mask"):
        list_test_samples(tmp_path)


# ------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip_and_refusals(tiny_model, tmp_path):
    model, ckpt = load_model(tiny_model)
    assert ckpt["teacher"]["name"] == "efficientnet_lite0" and ckpt["epoch"] == 3
    assert ckpt["config"]["image_size"] == [64, 64]
    copy = save_checkpoint(tmp_path / "copy.pt", model, epoch=3, train=ckpt["train"])
    again, _ = load_model(copy)
    x = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        for a, b in zip(model.cosine_maps(x), again.cosine_maps(x)):
            assert torch.equal(a, b)
    # a different image size is refused when the caller states one
    with pytest.raises(CheckpointError, match="image size"):
        load_model(tiny_model, expect_image_size=(128, 128))
    # teacher weights hash mismatch is refused
    bad = load_checkpoint(tiny_model)
    bad["teacher"]["weights_sha256"] = "0" * 64
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="refusing"):
        load_model(tmp_path / "bad.pt")
    # not a checkpoint / a pickle with code is refused by weights_only loading
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "junk.pt")


# ------------------------------------------------------------------ CLI end to end
def test_train_eval_score_cli(tiny_dataset, tiny_model, tmp_path):
    out = tmp_path / "metrics.json"
    proc = run_cli("eval", "--model", str(tiny_model), "--data", str(tiny_dataset), "--json", str(out))
    assert "img AUROC" in proc.stdout
    metrics = json.loads(out.read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["n_good"] == 8 and metrics["n_defect"] == 16
    assert set(metrics["per_kind"]) == {"scratch", "hole", "stain", "missing"}
    # score: JSON lines + heatmaps
    imgs = sorted((tiny_dataset / "test" / "hole").glob("*.png"))[:2]
    proc = run_cli("score", "--model", str(tiny_model), "--json", "--heatmaps", str(tmp_path / "hm"),
                   *map(str, imgs))
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["path"] for r in rows] == list(map(str, imgs))
    assert all(np.isfinite(r["score"]) for r in rows)
    assert all((tmp_path / "hm" / f"{p.stem}_heatmap.png").is_file() for p in imgs)


def test_training_is_deterministic_and_resumable(tiny_dataset, tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    common = ["--data", str(tiny_dataset), "--image-size", "64", "--batch-size", "8", "--no-progress",
              "--max-images", "12", "--seed", "3"]
    run_cli("train", "--out", str(a), "--epochs", "2", *common)
    run_cli("train", "--out", str(b), "--epochs", "1", *common)
    run_cli("train", "--out", str(b), "--epochs", "2", "--resume", *common)
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    assert sb["epoch"] == 2
    assert [h["loss"] for h in sa["train"]["history"]] == pytest.approx([h["loss"] for h in sb["train"]["history"]], rel=1e-5)
    for k, v in sa["student"].items():
        assert torch.allclose(v.float(), sb["student"][k].float(), atol=1e-5), k


def test_train_reports_bad_data_clearly(tmp_path):
    proc = run_cli("train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "m.pt"), check=False)
    assert proc.returncode == 2 and "missing folder" in proc.stderr
