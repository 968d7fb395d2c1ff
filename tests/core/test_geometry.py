"""Tiles, stitching, fitting and the cropped map head, against direct references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from inspector.core.geometry import GeometryError, TileGrid, axis_ownership, axis_positions
from inspector.core.map_head import MapHead
from inspector.core.preprocess import fit_image, fit_mask, prepare_fitted


@pytest.mark.parametrize("side,tile,margin", [(256, 128, 32), (640, 256, 32), (96, 64, 16), (64, 96, 16), (512, 160, 16)])
def test_owned_regions_partition_the_padded_image_away_from_tile_edges(side, tile, margin):
    length = side + 2 * margin
    tile = min(tile, length)
    starts = axis_positions(length, tile, margin)
    owned = axis_ownership(starts, tile, length)
    assert starts[0] == 0 and starts[-1] + tile == length and all(s % 32 == 0 for s in starts)
    assert owned[0][0] == 0 and owned[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(owned, owned[1:]))               # contiguous, no gap, no overlap
    for i, (start, (a, b)) in enumerate(zip(starts, owned)):
        assert start <= a < b <= start + tile and a % 16 == 0 and b % 16 == 0
        if i > 0:
            assert a - start >= margin - 8                                    # away from the tile's zero padding
        if i < len(starts) - 1:
            assert start + tile - b >= margin - 8


def test_stitching_a_position_coded_map_is_exact():
    grid = TileGrid((128, 192), (96, 96), 16)
    Hp, Wp = grid.padded_size
    assert grid.n_tiles == len(grid.rows) * len(grid.cols) > 4
    n = 2
    truth = [np.random.default_rng(s).random((n, Hp // s, Wp // s), dtype=np.float32) for s in grid.strides]
    th, tw = grid.tile_size
    tiles = [np.stack([truth[k][i, y // s:(y + th) // s, x // s:(x + tw) // s]
                       for i in range(n) for y, x in grid.positions()])
             for k, s in enumerate(grid.strides)]
    for got, want in zip(grid.stitch(tiles), truth):
        np.testing.assert_array_equal(got, want)


def test_cut_pads_by_reflection_and_orders_tiles_image_major():
    grid = TileGrid((64, 64), (64, 64), 16)
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    tiles = grid.cut(images)
    assert tiles.shape == (2 * grid.n_tiles, 64, 64, 3) and tiles.dtype == np.uint8
    padded = np.pad(images, ((0, 0), (16, 16), (16, 16), (0, 0)), mode="reflect")
    for i in range(2):
        for t, (y, x) in enumerate(grid.positions()):
            np.testing.assert_array_equal(tiles[i * grid.n_tiles + t], padded[i, y:y + 64, x:x + 64])


@pytest.mark.parametrize("kwargs", [dict(inspect_size=(100, 64), tile_size=(64, 64), margin=16),
                                    dict(inspect_size=(64, 64), tile_size=(64, 64), margin=24),
                                    dict(inspect_size=(64, 64), tile_size=(160, 64), margin=16),
                                    dict(inspect_size=(64, 64), tile_size=(32, 32), margin=16)])
def test_impossible_geometries_are_refused(kwargs):
    with pytest.raises(GeometryError):
        TileGrid(**kwargs)


def test_cropped_head_equals_upsample_sum_blur_of_the_padded_image_then_crop():
    m, H, W = 16, 64, 96
    Hp, Wp = H + 2 * m, W + 2 * m
    rng = np.random.default_rng(3)
    scale_maps = [rng.random((2, Hp // s, Wp // s), dtype=np.float32) for s in (4, 8, 16)]
    head = MapHead.for_model((H, W), (4, 8, 16), margin=m)
    got = head.maps(scale_maps)
    full = sum(F.interpolate(torch.from_numpy(x)[:, None], size=(Hp, Wp), mode="bilinear", align_corners=True)[:, 0]
               for x in scale_maps).numpy()
    ref = np.stack([ndi.gaussian_filter(f.astype(np.float64), 4.0, mode="reflect") for f in full])[:, m:m + H, m:m + W]
    assert got.shape == (2, H, W)
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_letterbox_keeps_the_aspect_ratio_and_marks_the_fill_invalid():
    image = np.zeros((50, 150, 1), np.uint8)
    image[:, :75] = 200
    out, valid = fit_image(image, (96, 96), "letterbox")
    assert out.shape == (96, 96, 1) and valid.shape == (96, 96)
    rows = np.flatnonzero(valid.any(axis=1))
    assert valid.all(axis=1).sum() == len(rows) == 32 and valid[rows[0]].all()   # 150x50 -> 96x32, centred
    assert rows[0] == 32
    mask = np.zeros((50, 150), bool)
    mask[20:30, 100:120] = True
    fitted = fit_mask(mask, (96, 96), "letterbox")
    assert fitted.any() and not (fitted & ~valid).any()
    squashed, none = fit_image(image, (96, 96), "squash")
    assert none is None and squashed.shape == (96, 96, 1)


def test_roi_and_letterbox_combine_per_image():
    a = np.full((40, 80, 3), 90, np.uint8)
    b = np.full((64, 64, 3), 90, np.uint8)
    roi = np.zeros((64, 64), bool)
    roi[:, :32] = True
    batch, valid = prepare_fitted([a, b], (64, 64), "letterbox", "bgr8", [None, roi])
    assert batch.shape == (2, 64, 64, 3) and valid.shape == (2, 64, 64)
    assert valid[0].sum() == 64 * 32                # letterboxed 80x40 -> 64x32
    assert valid[1].sum() == 64 * 32 and valid[1][:, :32].all()
    with pytest.raises(ValueError, match="region of interest"):
        prepare_fitted([a], (64, 64), "letterbox", "bgr8", [roi])
    assert prepare_fitted([b], (64, 64), "squash", "bgr8")[1] is None
