"""core/overlay.py: the map goes back onto the camera's pixels (inverse of the fit), the defect
region is outlined where it is, and the caption is printed."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.core.overlay import OUTLINE_BGR, defect_contours, map_to_image, render_overlay, thumbnail
from inspector.core.preprocess import fit_image


def test_letterbox_map_comes_back_where_the_image_was():
    image = np.zeros((60, 120, 3), np.uint8)
    image[20:30, 90:100] = 255                              # a bright square in camera pixels
    fitted, valid = fit_image(image, (64, 64), "letterbox")  # 120 wide -> 64, 60 tall -> 32, centred
    amap = fitted[..., 0].astype(np.float32) / 255.0         # a map that is exactly the fitted image
    back = map_to_image(amap, image.shape[:2], "letterbox")
    assert back.shape == (60, 120)
    ys, xs = np.nonzero(back > 0.5)
    assert 18 <= ys.min() and ys.max() <= 31 and 88 <= xs.min() and xs.max() <= 101


def test_squash_map_is_resized_to_the_image():
    amap = np.zeros((32, 32), np.float32)
    amap[:, 16:] = 1.0
    back = map_to_image(amap, (50, 200), "squash")
    assert back.shape == (50, 200) and back[:, :95].max() < 0.5 and back[:, 105:].min() > 0.5


def test_the_outline_surrounds_the_region_and_the_caption_is_printed():
    image = np.full((200, 300), 128, np.uint8)               # mono camera image
    amap = np.zeros((64, 64), np.float32)
    amap[30:40, 40:50] = 1.0
    out = render_overlay(image, amap, "squash", pixel_format="mono8", threshold=0.5, score=1.0, decision="REJECT")
    assert out.shape == (200, 300, 3) and out.dtype == np.uint8
    contours = defect_contours(map_to_image(amap, (200, 300), "squash"), 0.5)
    assert len(contours) == 1
    x, y, w, h = cv2.boundingRect(contours[0])
    assert abs(x - 40 * 300 / 64) < 6 and abs(y - 30 * 200 / 64) < 6
    magenta = np.all(out == OUTLINE_BGR, axis=2)
    assert magenta[y - 3:y + h + 4, x - 3:x + w + 4].any()    # drawn around the region ...
    magenta[y - 3:y + h + 4, x - 3:x + w + 4] = False
    assert not magenta.any()                                  # ... and nowhere else
    assert (out[:12, :40] == 255).any()                       # white caption text on its dark band
    assert defect_contours(amap, None) == [] and defect_contours(amap, 2.0) == []


def test_thumbnail_keeps_the_aspect_ratio():
    assert thumbnail(np.zeros((100, 400, 3), np.uint8), 80).shape == (20, 80, 3)
    assert thumbnail(np.zeros((10, 20, 3), np.uint8), 80).shape == (10, 20, 3)
