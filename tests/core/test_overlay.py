"""core/overlay.py: the map goes back onto the camera's pixels (inverse of the fit), the defect
region is outlined where it is, and the caption is printed."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.core.overlay import (OUTLINE_BGR, defect_contours, map_to_image, overlay_scale, render_overlay,
                                    thumbnail)
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
    image = np.full((200, 600), 128, np.uint8)               # mono camera image, wide enough for 1:1
    amap = np.zeros((64, 64), np.float32)
    amap[30:40, 40:50] = 1.0
    out = render_overlay(image, amap, "squash", pixel_format="mono8", threshold=0.5, score=1.0, decision="REJECT")
    band = out.shape[0] - 200
    assert out.shape[1:] == (600, 3) and out.dtype == np.uint8 and 10 < band < 60
    assert (out[:band] == 255).any() and not (out[:band] == OUTLINE_BGR).all(axis=2).any()   # white caption
    picture = out[band:]
    contours = defect_contours(map_to_image(amap, (200, 600), "squash"), 0.5)
    assert len(contours) == 1
    x, y, w, h = cv2.boundingRect(contours[0])
    assert abs(x - 40 * 600 / 64) < 10 and abs(y - 30 * 200 / 64) < 6
    magenta = np.all(picture == OUTLINE_BGR, axis=2)
    assert magenta[y - 3:y + h + 4, x - 3:x + w + 4].any()    # drawn around the region ...
    magenta[y - 3:y + h + 4, x - 3:x + w + 4] = False
    assert not magenta.any()                                  # ... and nowhere else
    assert defect_contours(amap, None) == [] and defect_contours(amap, 2.0) == []


def test_narrow_images_are_enlarged_by_whole_pixels():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert overlay_scale(64) == 8 and overlay_scale(480) == 1
    out = render_overlay(image, np.zeros((32, 32), np.float32), "squash", threshold=1.0)
    picture = out[out.shape[0] - 512:]
    assert out.shape[1] == 512 and np.array_equal(picture[::8, ::8], cv2.addWeighted(
        image, 0.6, cv2.applyColorMap(np.zeros((64, 64), np.uint8), cv2.COLORMAP_JET), 0.4, 0))


def test_thumbnail_keeps_the_aspect_ratio():
    assert thumbnail(np.zeros((100, 400, 3), np.uint8), 80).shape == (20, 80, 3)
    assert thumbnail(np.zeros((10, 20, 3), np.uint8), 80).shape == (10, 20, 3)
