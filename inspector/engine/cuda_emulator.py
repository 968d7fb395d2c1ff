"""A numpy emulator of the three CUDA kernels in ``upsample_max.cu``: the same loop structure, index
formulas, zero padding, FMA accumulation order, normalisation, valid mask, NaN-propagating max and key
mapping, so the CPU tests check the kernel's indexing against MapHead + GoodStats + image_scores and
the plain reference (see docs/gpu.md). numpy only; slow, for tests and checks.
"""

from __future__ import annotations

import numpy as np

from .cuda_kernel import (NTHREADS, ORDERED_MIN, TILES, HeadOperators, check_scale_maps, check_stats_arrays,
                          check_valid_mask, keys_to_float, ordered_keys, stage1_launch, stage2_launch)

__all__ = ["emulate_head", "emulate_left_times_rows_max", "emulate_rows_times_right"]


def _fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """fmaf in numpy: the float32 product is exact in float64; one (double) rounding back to float32."""
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


def _nan_max(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The device nan_max: (v > m || v != v) ? v : m."""
    return np.where((v > m) | np.isnan(v), v, m)


def emulate_rows_times_right(ops: HeadOperators, maps: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1: -> (t_cat float32 N x K x W, keys int32 N reset to ORDERED_MIN)."""
    H, W = ops.image_size
    K = ops.K
    (gx, gy, gz), (bx, by, _) = stage1_launch(W, K, n)
    x = (np.arange(gx)[:, None] * bx + np.arange(bx)[None, :]).ravel()      # blockIdx.x * S1X + tx
    k = (np.arange(gy)[:, None] * by + np.arange(by)[None, :]).ravel()      # blockIdx.y * S1Y + ty
    x, k = x[x < W], k[k < K]                                               # the kernel's guard
    (h0, h1, h2), (w0, w1, w2) = ops.heights, ops.widths
    scale = np.where(k < h0, 0, np.where(k < h0 + h1, 1, 2))
    row = k - np.array([0, h0, h0 + h1])[scale]
    width = np.array([w0, w1, w2])[scale]
    j0 = np.array([0, w0, w0 + w1])[scale]
    flat = [np.ascontiguousarray(m, dtype=np.float32).reshape(n, -1) for m in maps]
    acc = np.zeros((gz, len(k), len(x)), dtype=np.float32)
    for j in range(max(width.max(initial=0), 0)):
        active = j < width                                                  # for (j = 0; j < w; ++j)
        vals = np.zeros((gz, len(k)), dtype=np.float32)
        for s, m in enumerate(flat):
            sel = active & (scale == s)
            vals[:, sel] = m[:, row[sel] * width[sel] + j]                  # row[j], row = m + i * w
        rt = ops.right_t[np.where(active, j0 + j, 0)][:, x]                 # col[j * W], col = right_t + j0*W + x
        acc = np.where(active[None, :, None], _fma32(vals[:, :, None], rt[None, :, :], acc), acc)
    t_cat = np.zeros((gz, K, W), dtype=np.float32)
    t_cat[:, k[:, None], x[None, :]] = acc
    return t_cat, np.full(gz, ORDERED_MIN, dtype=np.int32)


def _finite_or_nan(v: np.ndarray) -> np.ndarray:
    """The device finite_or_nan: NaN and +-inf enter the max as NaN."""
    return np.where(np.abs(v) <= np.float32(3.402823466e38), v, np.float32(np.nan)).astype(np.float32)


def emulate_left_times_rows_max(ops: HeadOperators, t_cat: np.ndarray, keys: np.ndarray,
                                write_map: bool, mean: np.ndarray | None = None,
                                inv_std: np.ndarray | None = None, valid: np.ndarray | None = None
                                ) -> np.ndarray | None:
    """Stage 2 on all blocks and threads at once: updates ``keys`` in place, returns the map or None.

    ``mean`` / ``inv_std``: float32 H x W statistics (both or neither); ``valid``: H x W (shared) or
    N x H x W mask, nonzero = scored (see :func:`check_valid_mask`)."""
    H, W = ops.image_size
    K, n = ops.K, t_cat.shape[0]
    stats = check_stats_arrays(ops, mean, inv_std)
    mask = check_valid_mask(ops, valid, n)
    BM, BN, BK, TX, TY = (TILES[c] for c in ("BM", "BN", "BK", "TX", "TY"))
    RM, RN = BM // TY, BN // TX
    (gx, gy, gz), _ = stage2_launch(W, H, n)
    bx, by, bz = (a.ravel() for a in np.meshgrid(np.arange(gx), np.arange(gy), np.arange(gz), indexing="ij"))
    x0, y0 = bx * BN, by * BM
    tid = np.arange(NTHREADS)
    tx, ty = tid % TX, tid // TX
    e_l = (tid[None, :] + NTHREADS * np.arange(BK * BM // NTHREADS)[:, None]).ravel()
    c_l, r_l = e_l // BM, e_l % BM
    e_t = (tid[None, :] + NTHREADS * np.arange(BK * BN // NTHREADS)[:, None]).ravel()
    c_t, r_t = e_t // BN, e_t % BN
    rows = ty[:, None] + TY * np.arange(RM)[None, :]                       # ty + a * TY
    cols = tx[:, None] + TX * np.arange(RN)[None, :]                       # tx + b * TX
    acc = np.zeros((len(bx), NTHREADS, RM, RN), dtype=np.float32)
    for k0 in range(0, K, BK):
        ls = np.zeros((len(bx), BK, BM), dtype=np.float32)
        kk_l, yy = k0 + c_l, y0[:, None] + r_l[None, :]
        ok = (kk_l < K)[None, :] & (yy < H)
        ls[:, c_l, r_l] = np.where(ok, ops.left_t[np.minimum(kk_l, K - 1)[None, :], np.minimum(yy, H - 1)], 0.0)
        ts = np.zeros((len(bx), BK, BN), dtype=np.float32)
        kk_t, xx = k0 + c_t, x0[:, None] + r_t[None, :]
        ok = (kk_t < K)[None, :] & (xx < W)
        ts[:, c_t, r_t] = np.where(ok, t_cat[bz[:, None], np.minimum(kk_t, K - 1)[None, :], np.minimum(xx, W - 1)], 0.0)
        for kk in range(BK):
            av = ls[:, kk, :][:, rows]                                      # (G, threads, RM)
            bv = ts[:, kk, :][:, cols]                                      # (G, threads, RN)
            acc = _fma32(av[:, :, :, None], bv[:, :, None, :], acc)
    y = y0[:, None, None, None] + rows[None, :, :, None]
    x = x0[:, None, None, None] + cols[None, :, None, :]
    inside = (y < H) & (x < W)                                              # the (y < H && x < W) guard
    p = np.minimum(y, H - 1) * W + np.minimum(x, W - 1)                     # p = y * W + x (G, t, RM, RN)
    v = acc
    if stats is not None:                                                   # __fmul_rn(__fsub_rn(v, m), s)
        v = ((v - stats[0].ravel()[p]).astype(np.float32) * stats[1].ravel()[p]).astype(np.float32)
    scored = inside
    if mask is not None:                                                    # vn[p], vn = valid + n * stride
        flat, stride = mask[0].ravel(), mask[1]
        scored = inside & (flat[bz[:, None, None, None] * stride + p] != 0)
    vm = _finite_or_nan(v)
    local = np.full((len(bx), NTHREADS), -np.inf, dtype=np.float32)
    for a in range(RM):
        for b in range(RN):
            local = np.where(scored[:, :, a, b], _nan_max(local, vm[:, :, a, b]), local)
    red = local
    s = NTHREADS // 2
    while s > 0:                                                            # shared-memory tree
        red = np.concatenate([_nan_max(red[:, :s], red[:, s:2 * s]), red[:, s:]], axis=1)
        s //= 2
    hit = red[:, 0] != -np.inf                                              # tid 0, red[0] != -inf
    np.maximum.at(keys, bz[hit], ordered_keys(red[hit, 0]))                 # atomicMax per block
    if not write_map:
        return None
    out = np.zeros((n, H, W), dtype=np.float32)
    g, t, a, b = np.nonzero(np.broadcast_to(inside, acc.shape))
    out[bz[g], y[g, t, a, 0], x[g, t, 0, b]] = v[g, t, a, b]
    return out


def emulate_head(ops: HeadOperators, scale_maps: list[np.ndarray], want_maps: bool = True, *,
                 mean: np.ndarray | None = None, inv_std: np.ndarray | None = None,
                 valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Run the three kernels in numpy: -> (scores float32 N, maps float32 N x H x W or None).

    ``mean`` / ``inv_std`` (float32 H x W, both or neither): the good-part normalisation;
    ``valid`` (bool / uint8 H x W or N x H x W): only these pixels are scored. Maps are normalised
    at every pixel (outside the valid region too)."""
    n = check_scale_maps(ops, scale_maps)
    t_cat, keys = emulate_rows_times_right(ops, scale_maps, n)
    out = emulate_left_times_rows_max(ops, t_cat, keys, want_maps, mean, inv_std, valid)
    return keys_to_float(keys), out
