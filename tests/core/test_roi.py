"""Regions of interest: rectangles and mask files, their identity, and refusal of bad ones."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.core.roi import Roi, RoiError


def test_rectangle_is_clipped_to_the_image():
    roi = Roi.parse(" 10, 5, 100, 20 ")
    mask = roi.mask_for((30, 50))
    assert mask.shape == (30, 50) and mask.sum() == 20 * 40 and mask[5, 10] and not mask[4, 10]
    assert roi.identity() == {"rect": [10, 5, 100, 20]}
    with pytest.raises(RoiError, match="outside"):
        roi.mask_for((4, 4))


def test_mask_file_must_match_the_camera_resolution(tmp_path):
    m = np.zeros((40, 60), np.uint8)
    m[10:20, 10:50] = 255
    cv2.imwrite(str(tmp_path / "roi.png"), m)
    roi = Roi.parse(str(tmp_path / "roi.png"))
    assert roi.mask_for((40, 60)).sum() == 400
    assert roi.identity()["shape"] == [40, 60] and len(roi.identity()["mask_sha256"]) == 64
    with pytest.raises(RoiError, match="WxH"):
        roi.mask_for((40, 61))
    m[:] = 0
    cv2.imwrite(str(tmp_path / "empty.png"), m)
    with pytest.raises(RoiError, match="no pixel"):
        Roi.parse(str(tmp_path / "empty.png"))


@pytest.mark.parametrize("spec", ["1,2,3", "0,0,0,5", "nope.png", "a,b,c,d"])
def test_bad_specs_are_refused(spec):
    with pytest.raises(RoiError):
        Roi.parse(spec)
