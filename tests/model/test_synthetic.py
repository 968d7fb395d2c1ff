"""Tests of the synthetic MVTec AD-layout data set generator and its `inspector synth` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.model import synthetic

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


# --------------------------------------------------------------------------------------------
# data set layout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("product", synthetic.PRODUCTS)
def test_layout_images_and_masks(tmp_path, product):
    summary = synthetic.generate_dataset(
        tmp_path / "set",
        product=product,
        n_train=3,
        n_test_good=2,
        n_test_defect_per_kind=2,
        seed=1,
    )
    root = tmp_path / "set"
    assert sorted(p.name for p in root.iterdir()) == ["ground_truth", "test", "train"]
    assert names(root / "train") == ["good"]
    assert names(root / "train" / "good") == ["000.png", "001.png", "002.png"]
    assert names(root / "test") == sorted(["good", *synthetic.DEFECT_KINDS])
    assert names(root / "test" / "good") == ["000.png", "001.png"]
    assert names(root / "ground_truth") == sorted(synthetic.DEFECT_KINDS)  # no masks for good
    for image_path in (root / "train" / "good").iterdir():
        image = read(image_path)
        assert image.dtype == np.uint8 and image.shape == (128, 128, 3)
    for kind in synthetic.DEFECT_KINDS:
        assert names(root / "test" / kind) == ["000.png", "001.png"]
        assert names(root / "ground_truth" / kind) == ["000_mask.png", "001_mask.png"]
        for index in range(2):
            image = read(root / "test" / kind / f"{index:03d}.png")
            mask = read(root / "ground_truth" / kind / f"{index:03d}_mask.png")
            assert image.shape == (128, 128, 3)
            assert mask.shape == (128, 128) and mask.dtype == np.uint8
            assert set(np.unique(mask)) == {0, 255}
            assert (mask > 0).sum() >= 6
    assert summary["product"] == product and summary["size"] == [128, 128]
    assert summary["n_test_defect"] == {kind: 2 for kind in synthetic.DEFECT_KINDS}
    json.dumps(summary)  # serialisable


def test_gray_non_square_and_kind_subset(tmp_path):
    root = tmp_path / "set"
    synthetic.generate_dataset(
        root, product="part", n_train=1, n_test_good=1, n_test_defect_per_kind=1,
        kinds=("scratch", "missing"), size=(48, 80), color=False,
    )
    assert names(root / "test") == ["good", "missing", "scratch"]
    image = read(root / "test" / "missing" / "000.png")
    mask = read(root / "ground_truth" / "missing" / "000_mask.png")
    assert image.shape == (48, 80) and mask.shape == (48, 80)
    assert read(root / "train" / "good" / "000.png").shape == (48, 80)


def test_same_seed_same_bytes_other_seed_differs_and_splits_are_independent(tmp_path):
    kwargs = dict(product="texture", n_test_good=2, n_test_defect_per_kind=1, size=(40, 56))
    synthetic.generate_dataset(tmp_path / "a", n_train=2, seed=5, **kwargs)
    synthetic.generate_dataset(tmp_path / "b", n_train=2, seed=5, **kwargs)
    synthetic.generate_dataset(tmp_path / "c", n_train=2, seed=6, **kwargs)
    synthetic.generate_dataset(tmp_path / "d", n_train=4, seed=5, **kwargs)
    a, b, c, d = (tree_bytes(tmp_path / x) for x in "abcd")
    assert a == b
    # test images are not copies of training images (each split has its own random stream)
    assert a["train/good/000.png"] != a["test/good/000.png"]
    assert a["train/good/001.png"] != a["test/good/001.png"]
    assert set(a) == set(c) and all(a[k] != c[k] for k in a)
    # more training images do not change the images shared with the smaller set
    assert {k: v for k, v in d.items() if k in a} == a and len(d) == len(a) + 2


def test_refuses_to_mix_with_existing_set_unless_overwrite(tmp_path):
    root = tmp_path / "set"
    small = dict(n_test_good=1, n_test_defect_per_kind=1, size=(32, 32))
    synthetic.generate_dataset(root, n_train=3, **small)
    with pytest.raises(FileExistsError, match="already holds"):
        synthetic.generate_dataset(root, n_train=1, **small)
    (root / "notes.txt").write_text("kept")
    synthetic.generate_dataset(
        root, n_train=1, kinds=("hole",), overwrite=True, **small
    )
    assert names(root / "train" / "good") == ["000.png"]  # stale 001/002 removed
    assert names(root / "test") == ["good", "hole"]
    assert (root / "notes.txt").read_text() == "kept"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(product="bolt"), "unknown product"),
        (dict(kinds=("crack",)), "kinds"),
        (dict(kinds=("hole", "hole")), "kinds"),
        (dict(n_train=-1), "n_train"),
        (dict(size=(16, 128)), "sides"),
        (dict(seed=-3), "seed"),
    ],
)
def test_bad_arguments_raise_value_error(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic.generate_dataset(tmp_path / "set", **kwargs)
    assert not (tmp_path / "set").exists()


def test_parse_size():
    assert synthetic.parse_size("128") == (128, 128)
    assert synthetic.parse_size("96x256") == (256, 96)  # W x H -> (H, W)
    for bad in ("", "x", "12x", "128x256x3", "-5", "abc", "8x8"):
        with pytest.raises(ValueError):
            synthetic.parse_size(bad)


# --------------------------------------------------------------------------------------------
# normal images and defects
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("product", synthetic.PRODUCTS)
def test_normal_images_vary_but_stay_alike(product):
    images = [
        synthetic.make_normal(np.random.default_rng(i), product, (96, 96), True).astype(np.float32)
        for i in range(6)
    ]
    again = synthetic.make_normal(np.random.default_rng(0), product, (96, 96), True)
    assert np.array_equal(again, images[0].astype(np.uint8))
    means = np.array([image.mean() for image in images])
    assert np.all(np.abs(means - means.mean()) < 0.12 * means.mean())  # same product
    for first, second in zip(images[:-1], images[1:]):
        assert np.abs(first - second).mean() > 1.0  # but not copies of each other
    gray = synthetic.make_normal(np.random.default_rng(0), product, (96, 96), False)
    assert gray.shape == (96, 96) and gray.dtype == np.uint8


@pytest.mark.parametrize("color", [True, False])
@pytest.mark.parametrize("product", synthetic.PRODUCTS)
@pytest.mark.parametrize("kind", synthetic.DEFECT_KINDS)
def test_defect_changes_exactly_its_mask(kind, product, color):
    for seed in range(3):
        rng = np.random.default_rng(seed)
        clean = synthetic.render_normal(rng, product, (80, 112), color)
        image, mask = synthetic.add_defect(
            rng, clean.image, kind, background=clean.background, foreground=clean.foreground
        )
        assert image.shape == clean.image.shape and image.dtype == np.uint8
        assert mask.shape == (80, 112) and mask.dtype == bool
        assert mask.sum() >= 6
        assert not (mask & ~clean.foreground).any()  # on the product surface
        difference = np.abs(image.astype(np.int16) - clean.image.astype(np.int16))
        difference = difference.reshape(80, 112, -1)
        assert not difference[~mask].any()  # nothing changes outside the mask
        assert difference[mask].max(axis=1).mean() >= 12  # visible inside it
        if kind == "missing":
            assert np.array_equal(image[mask], clean.background[mask])


def test_add_defect_defaults_and_single_channel_shape():
    rng = np.random.default_rng(4)
    clean = synthetic.make_normal(rng, "part", (64, 64), False)[..., None]  # H x W x 1
    image, mask = synthetic.add_defect(rng, clean, "missing")  # background: border median
    assert image.shape == (64, 64, 1) and mask.any()
    assert not np.array_equal(image[mask], clean[mask])


def test_add_defect_rejects_bad_input():
    rng = np.random.default_rng(0)
    clean = synthetic.render_normal(rng, "texture", (64, 64), True)
    with pytest.raises(ValueError, match="unknown defect kind"):
        synthetic.add_defect(rng, clean.image, "crack")
    with pytest.raises(ValueError, match="uint8"):
        synthetic.add_defect(rng, clean.image.astype(np.float32), "hole")
    with pytest.raises(ValueError, match="background shape"):
        synthetic.add_defect(rng, clean.image, "missing", background=clean.background[:10])
    with pytest.raises(ValueError, match="foreground shape"):
        synthetic.add_defect(rng, clean.image, "hole", foreground=clean.foreground[:, :10])
    tiny = np.zeros((64, 64), bool)
    tiny[30, 30:32] = True
    with pytest.raises(RuntimeError, match="could not place"):
        synthetic.add_defect(rng, clean.image, "hole", foreground=tiny)


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

SMALL_ARGS = ["--n-train", "2", "--n-test-good", "1", "--n-defect", "1", "--size", "64x40"]
SMALL_ARGS += ["--seed", "3"]
SYNTH = [sys.executable, "-m", "inspector.cli", "synth"]


def run_command(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_cli_synth_and_tool_script_write_the_same_set(tmp_path):
    cli = run_command(
        [*SYNTH, "--out", str(tmp_path / "cli"), "--product", "part", "--gray", *SMALL_ARGS]
    )
    assert cli.returncode == 0, cli.stderr
    summary = json.loads(cli.stdout)
    assert summary["size"] == [40, 64] and summary["color"] is False
    assert summary["product"] == "part"
    image = read(tmp_path / "cli" / "test" / "stain" / "000.png")
    assert image.shape == (40, 64)
    tool = run_command(
        [sys.executable, "tools/make_synthetic.py", "--out", str(tmp_path / "tool")]
        + ["--product", "part", "--gray", *SMALL_ARGS]
    )
    assert tool.returncode == 0, tool.stderr
    assert tree_bytes(tmp_path / "cli") == tree_bytes(tmp_path / "tool")

    again = run_command([*SYNTH, "--out", str(tmp_path / "cli"), *SMALL_ARGS])
    assert again.returncode == 2 and "already holds" in again.stderr


def test_cli_synth_rejects_bad_size(tmp_path):
    result = run_command([*SYNTH, "--out", str(tmp_path / "x"), "--size", "40by64"])
    assert result.returncode == 2 and "size must look like" in result.stderr
    assert not (tmp_path / "x").exists()
