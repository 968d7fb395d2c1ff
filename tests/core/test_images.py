"""The one image reader: pixel rules, refusals, and the same rules for data sets and frame sources."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from inspector.core.images import DatasetError, ImageReadError, read_image, to_mono8_or_bgr8
from inspector.line.sources import open_source
from inspector.model.data import read_samples, train_samples


def _write(path, image, ext=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def _noise(shape, seed=0, dtype=np.uint8):
    high = 256 if dtype == np.uint8 else 65536
    return np.random.default_rng(seed).integers(0, high, shape, dtype=dtype)


def test_formats_dtypes_and_channels(tmp_path):
    gray = _noise((12, 20))
    image, fmt = read_image(_write(tmp_path / "gray.png", gray))
    assert fmt == "mono8" and image.shape == (12, 20, 1) and image.dtype == np.uint8
    assert np.array_equal(image[:, :, 0], gray)

    bgr = _noise((12, 20, 3), 1)
    image, fmt = read_image(_write(tmp_path / "bgr.png", bgr))
    assert fmt == "bgr8" and np.array_equal(image, bgr) and image.flags.c_contiguous

    bgra = _noise((12, 20, 4), 2)
    image, fmt = read_image(_write(tmp_path / "bgra.png", bgra))
    assert fmt == "bgr8" and np.array_equal(image, bgra[:, :, :3])

    words = _noise((12, 20), 3, np.uint16)
    image, fmt = read_image(_write(tmp_path / "deep.png", words))
    assert fmt == "mono8" and np.array_equal(image[:, :, 0], (words >> 8).astype(np.uint8))


def test_array_rules():
    gray_alpha = _noise((4, 5, 2))
    image, fmt = to_mono8_or_bgr8(gray_alpha)
    assert fmt == "mono8" and np.array_equal(image[:, :, 0], gray_alpha[:, :, 0])
    for bad in (None, np.zeros((0, 4), np.uint8), np.zeros((4, 4), np.float32), np.zeros((4, 4, 5), np.uint8),
                np.zeros((2, 2, 2, 2), np.uint8)):
        with pytest.raises(ImageReadError):
            to_mono8_or_bgr8(bad)


def test_refusals_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "noise.bmp").write_bytes(b"\x00" * 200)
    with pytest.raises(ImageReadError, match="not a readable image: .*noise.bmp"):
        read_image(tmp_path / "noise.bmp")
    assert issubclass(ImageReadError, DatasetError) and issubclass(ImageReadError, ValueError)


def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_file_refused(tmp_path, ext):
    path = _truncate(_write(tmp_path / f"cut{ext}", _noise((64, 64, 3))))
    with pytest.raises(ImageReadError, match=f"truncated image file: .*cut{ext}"):
        read_image(path)


@pytest.mark.parametrize("ext", [".png", ".jpeg"])
def test_truncated_file_refused_alike_by_data_sets_and_frame_sources(tmp_path, ext, caplog):
    """model.data (training, evaluation) and line.sources (the line's file sources) use one reader:
    the same cut-off file is refused by both, with the same reason."""
    good_dir = tmp_path / "set" / "train" / "good"
    for i in range(3):
        _write(good_dir / f"{i:03d}{ext}", _noise((48, 48, 3), i))
    cut = _truncate(good_dir / f"001{ext}")
    with pytest.raises(DatasetError) as refused:
        read_image(cut)
    reason = str(refused.value)

    with pytest.raises(DatasetError, match="truncated image file") as in_data:
        read_samples(train_samples(tmp_path / "set"))
    assert str(in_data.value) == reason
    _, _, _, kept, skips = read_samples(train_samples(tmp_path / "set"), skip_bad=True)
    assert [s.path.name for s in kept] == [f"000{ext}", f"002{ext}"] and skips.skipped == [(str(cut), reason)]

    with caplog.at_level(logging.WARNING), open_source(str(good_dir)) as source:
        names = [frame.source for frame in source]
    assert names == [f"000{ext}", f"002{ext}"] and source.skipped == 1
    assert any(reason in record.getMessage() for record in caplog.records if record.name.startswith("inspector.line"))
