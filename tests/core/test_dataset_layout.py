"""MVTec AD folder discovery, defined once: what it finds, and who finds the same files with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.core import dataset_layout as layout
from inspector.core.dataset_layout import DatasetError, files_by_kind, find_mask, list_images
from inspector.core.dataset_layout import test_samples as list_test_samples
from inspector.core.dataset_layout import train_samples
from inspector.line.sources import mvtec_source
from inspector.recordings.recording import open_recording, record_from_folder


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def _mvtec(root: Path) -> Path:
    _touch(root, "train/good/000.png", "train/good/001.JPG", "train/good/notes.txt",
           "test/good/000.png", "test/crack/001.png", "test/crack/000.png", "test/hole/000.bmp",
           "test/empty/readme.md", "ground_truth/crack/000_mask.png", "ground_truth/crack/001_mask.tif")
    (root / "train" / "good" / "sub.png").mkdir()  # a folder with an image suffix is not an image
    return root


def test_listing_by_suffix_and_name(tmp_path):
    root = _mvtec(tmp_path)
    assert [p.name for p in list_images(root / "train/good")] == ["000.png", "001.JPG"]
    with pytest.raises(DatasetError, match="missing folder: .*nowhere"):
        list_images(root / "nowhere")
    found = files_by_kind(root)
    assert list(found) == ["crack", "good", "hole"]  # sorted; 'empty' holds no image and is left out
    assert [p.name for p in found["crack"]] == ["000.png", "001.png"]
    with pytest.raises(DatasetError, match="missing folder: .*val"):
        files_by_kind(root, "val")


def test_samples_and_masks(tmp_path):
    root = _mvtec(tmp_path)
    assert [(s.path.name, s.kind, s.is_defect) for s in train_samples(root)] == [("000.png", "good", False),
                                                                                ("001.JPG", "good", False)]
    samples = list_test_samples(root)
    assert [(s.kind, s.path.name, s.mask_path and s.mask_path.name) for s in samples] == [
        ("crack", "000.png", "000_mask.png"), ("crack", "001.png", "001_mask.tif"),
        ("good", "000.png", None), ("hole", "000.bmp", None)]  # hole has no ground_truth folder
    assert find_mask(root / "ground_truth/crack", Path("x/002.png")) is None
    (root / "ground_truth/crack/001_mask.tif").unlink()
    with pytest.raises(DatasetError, match="no mask for .*001.png .*expected 001_mask.png"):
        list_test_samples(root)


def test_empty_and_missing_sets(tmp_path):
    with pytest.raises(DatasetError, match="missing folder: .*train/good"):
        train_samples(tmp_path)
    _touch(tmp_path, "train/good/readme.txt", "test/good/readme.txt")
    with pytest.raises(DatasetError, match="no images in .*train/good"):
        train_samples(tmp_path)
    with pytest.raises(DatasetError, match="no test images under"):
        list_test_samples(tmp_path)


def test_folder_predicates(tmp_path):
    root = _mvtec(tmp_path / "cat")
    assert layout.has_split(root) and layout.is_layout_root(root) and not layout.is_layout_root(root / "test")
    assert layout.is_training_folder(root / "train/good") and not layout.is_training_folder(root / "test/good")
    assert layout.train_good_dir(root) == root / "train/good" and layout.test_good_dir(root) == root / "test/good"
    assert layout.mask_dir(root, "crack") / layout.mask_name(Path("a/007.jpg")) == root / "ground_truth/crack/007_mask.png"


def test_line_source_and_recorder_find_the_same_test_files(tmp_path):
    """The line's MVTec source and the recorder discover the test split through the same code."""
    import cv2
    import numpy as np

    root = tmp_path / "set"
    for name in ("test/good/000.png", "test/good/001.png", "test/crack/000.png", "test/hole/000.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / name), np.full((8, 8), 9, np.uint8))
    expected = {f"{kind}/{p.name}" for kind, paths in files_by_kind(root).items() for p in paths}
    with mvtec_source(root) as source:
        streamed = {frame.source for frame in source}
    record_from_folder(root, tmp_path / "r.mcap", start_ns=0)
    recorded = {item.header.source for item in open_recording(tmp_path / "r.mcap").iter_frames()}
    assert streamed == recorded == expected == {"good/000.png", "good/001.png", "crack/000.png", "hole/000.png"}
