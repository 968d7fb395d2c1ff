"""Anomaly-map head (numpy, no torch): per-scale cosine maps -> full-resolution map -> image score.

The reference recipe: per scale s, bilinear upsample (align_corners=True) of the 1 - cos map
``m_s`` (h_s x w_s) to the image size H x W, SUM over scales, Gaussian blur sigma=4 (scipy
``gaussian_filter`` defaults: truncate 4 -> 33 taps, mode 'reflect'), image score = max.

Every step is linear, and both the upsampling and the blur are separable, so the whole head is
exactly::

    full = sum_s  L_s @ m_s @ R_s.T        L_s = G_H @ A_s  (H x h_s),  R_s = G_W @ B_s  (W x w_s)

where A_s / B_s are the bilinear interpolation matrices along rows / columns and G_H / G_W the
Gaussian blur matrices (reflect boundary folded in). This is the reference computation re-associated
(no approximation; float32 rounding only), and costs two small matmuls per scale. The same
operator matrices are what the CUDA kernel (``inspector/engine/upsample_max.cu``) uses on the GPU.

Input: list of float32 arrays N x h_s x w_s (any finite values; 1 - cos lies in [0, 2]).
Output: float32 N x H x W maps (the model's input size) and float32 N scores (per-image max).
"""

from __future__ import annotations

import numpy as np

SIGMA = 4.0
TRUNCATE = 4.0


def bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out_size x in_size) matrix of 1-D linear interpolation with align_corners=True."""
    a = np.zeros((out_size, in_size), dtype=np.float64)
    if in_size == 1 or out_size == 1:
        a[:, 0] = 1.0
        return a
    pos = np.arange(out_size) * (in_size - 1) / (out_size - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = pos - lo
    rows = np.arange(out_size)
    np.add.at(a, (rows, lo), 1.0 - frac)
    np.add.at(a, (rows, hi), frac)
    return a


def gaussian_taps(sigma: float = SIGMA, truncate: float = TRUNCATE) -> np.ndarray:
    """Normalised 1-D Gaussian taps, radius int(truncate * sigma + 0.5) (scipy's rule): 33 for sigma 4."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _reflect_index(i: np.ndarray, n: int) -> np.ndarray:
    """scipy 'reflect' (half-sample symmetric: d c b a | a b c d | d c b a) index folding."""
    period = 2 * n
    i = np.mod(i, period)
    return np.where(i < n, i, period - 1 - i)


def gaussian_matrix(n: int, sigma: float = SIGMA, truncate: float = TRUNCATE) -> np.ndarray:
    """(n x n) matrix applying the 1-D Gaussian blur with scipy's 'reflect' boundary."""
    taps = gaussian_taps(sigma, truncate)
    radius = len(taps) // 2
    g = np.zeros((n, n), dtype=np.float64)
    rows = np.arange(n)
    for k, w in enumerate(taps):
        cols = _reflect_index(rows + k - radius, n)
        np.add.at(g, (rows, cols), w)
    return g


class MapHead:
    """Precomputed operators for one model: the map size (H, W), its per-scale map shapes, and an
    optional ``crop`` (pixels cut from every side of the result).

    With ``crop = m`` the per-scale maps cover a reflect-padded image (H x W = inspection size + 2m,
    :mod:`inspector.core.geometry`) and the head returns only the inspection area, (H - 2m) x
    (W - 2m): the operators are the rows of the padded ones, so the blur near the image's border
    reads the padded (reflected) context instead of folding the border back on itself.

    ``maps(scale_maps)`` -> float32 N x out_h x out_w; ``scores(scale_maps)`` -> float32 N (max per
    image). Raises ValueError when the inputs do not have the shapes the head was built for.
    """

    def __init__(self, image_size: tuple[int, int], scale_shapes: list[tuple[int, int]],
                 sigma: float = SIGMA, truncate: float = TRUNCATE, crop: int = 0):
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.scale_shapes = [(int(h), int(w)) for h, w in scale_shapes]
        self.sigma = sigma
        self.crop = int(crop)
        H, W = self.image_size
        c = self.crop
        if c < 0 or 2 * c >= min(H, W):
            raise ValueError(f"crop {c} does not fit a {W}x{H} (WxH) map")
        self.out_size = (H - 2 * c, W - 2 * c)
        gh, gw = gaussian_matrix(H, sigma, truncate), gaussian_matrix(W, sigma, truncate)
        self.left = [np.ascontiguousarray((gh @ bilinear_matrix(H, h))[c:H - c].astype(np.float32))
                     for h, _ in self.scale_shapes]
        self.right_t = [np.ascontiguousarray((gw @ bilinear_matrix(W, w))[c:W - c].T.astype(np.float32))
                        for _, w in self.scale_shapes]

    @classmethod
    def for_model(cls, image_size: tuple[int, int], strides: tuple[int, ...] = (4, 8, 16), *,
                  margin: int = 0, **kw) -> "MapHead":
        """The head of a model inspecting ``image_size`` (H, W) with a reflect ``margin``: per-scale
        maps of the padded image (H + 2m) / s x (W + 2m) / s in, H x W maps out."""
        H, W = image_size[0] + 2 * margin, image_size[1] + 2 * margin
        return cls((H, W), [(H // s, W // s) for s in strides], crop=margin, **kw)

    def _check(self, scale_maps: list[np.ndarray]) -> int:
        if len(scale_maps) != len(self.scale_shapes):
            raise ValueError(f"expected {len(self.scale_shapes)} scale maps, got {len(scale_maps)}")
        n = scale_maps[0].shape[0] if scale_maps[0].ndim == 3 else -1
        for m, shape in zip(scale_maps, self.scale_shapes):
            if m.ndim != 3 or m.shape[1:] != shape or m.shape[0] != n:
                raise ValueError(f"scale map shape {m.shape} does not match N x {shape[0]} x {shape[1]}")
        return n

    def maps(self, scale_maps: list[np.ndarray]) -> np.ndarray:
        """Full-resolution blurred anomaly maps, float32 N x out_h x out_w."""
        n = self._check(scale_maps)
        out = np.zeros((n, *self.out_size), dtype=np.float32)
        for m, left, right_t in zip(scale_maps, self.left, self.right_t):
            m = np.asarray(m, dtype=np.float32)
            out += np.matmul(left, np.matmul(m, right_t))  # (H x h) @ (N x h x W)
        return out

    def scores(self, scale_maps: list[np.ndarray]) -> np.ndarray:
        """Image scores (max of the full map), float32 N."""
        return self.maps(scale_maps).reshape(len(scale_maps[0]), -1).max(axis=1)

    def maps_and_scores(self, scale_maps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        full = self.maps(scale_maps)
        return full, full.reshape(full.shape[0], -1).max(axis=1)
