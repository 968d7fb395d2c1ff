"""The anomaly-map head on the GPU: the CUDA kernel in ``upsample_max.cu``, its host side, and a numpy
emulator of the kernel's exact indexing and arithmetic.

The head is the exact re-association of :class:`inspector.core.map_head.MapHead` (read its docstring):
``full[n] = sum_s L_s @ m_s[n] @ R_s^T``. The operators are the very matrices MapHead builds (float32),
concatenated over the scales and uploaded once:

* ``left_t``  float32 K x H: rows ``[L_0^T; L_1^T; L_2^T]``, K = sum h_s (L transposed: coalesced loads)
* ``right_t`` float32 J x W: rows ``[R_0^T; R_1^T; R_2^T]``, J = sum w_s

Kernel (three launches on one stream; design and cost in docs/gpu.md):
``rows_times_right`` T = m_s @ R_s^T into an N x K x W scratch (and resets the per-image max keys),
``left_times_rows_max`` out = L^T' @ T per image (64 x 64 tiles), then per pixel the good-part
normalisation ``(out - mean) * inv_std`` (optional; two float32 roundings, as
:meth:`inspector.core.scoring.GoodStats.apply`), a block max over the pixels of the valid region
(optional uint8 mask, per image or shared by the batch) and an ``atomicMax`` on order-preserving int keys
(exact for negative values too), optionally writing the (normalised) map at every pixel;
``decode_scores`` keys -> float32 scores. A non-finite value in the valid region, or an image without a
valid pixel, scores NaN (fail closed, as :func:`inspector.core.scoring.image_scores`).

This is the head for one tile and the ``max`` score rule: tiled engines and the ``topk`` rule use the
CPU head (:meth:`inspector.engine.base.Engine.head`).

Nothing here imports a CUDA module at import time: ``compile_kernel`` needs only cuda-core + NVRTC (works
without a GPU), :class:`CudaMapHead` needs a GPU, cuda-core and cuda-bindings. The emulator
(:func:`emulate_head`) is numpy only and mirrors the kernel's loops, index formulas, zero padding,
FMA accumulation order, normalisation, valid mask, NaN-propagating max and key mapping, so the CPU
tests check the kernel's indexing against MapHead + GoodStats + image_scores and the plain reference.

Failure behaviour: shape mismatches raise ValueError; anything CUDA raises :class:`CudaHeadError`
(a RuntimeError) with the CUDA error name; ``cuda_device_count`` / ``has_cuda_gpu`` never raise.
"""

from __future__ import annotations

import ctypes
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from ..core.map_head import SIGMA, TRUNCATE, MapHead

if TYPE_CHECKING:  # core.scoring imports cv2; the head only reads .mean / .inv_std
    from ..core.scoring import GoodStats

KERNEL_PATH = Path(__file__).with_name("upsample_max.cu")
# Tile constants, passed to NVRTC as macros (the .cu carries the same defaults; a test checks them).
TILES = {"BM": 64, "BN": 64, "BK": 16, "TX": 16, "TY": 16, "S1X": 64, "S1Y": 4}
NTHREADS = TILES["TX"] * TILES["TY"]
MAX_SCALES = 3
ORDERED_MIN = -(2 ** 31)
NAN_KEY = 0x7FFFFFFF
DECODE_BLOCK = 128
# Kernel parameter lists: "ptr" = a device pointer (8 bytes), "i32" = int. Checked against the .cu.
KERNEL_SIGNATURES: dict[str, tuple[str, ...]] = {
    "rows_times_right": ("ptr", "ptr", "ptr", "i32", "i32", "i32", "i32", "i32", "i32",
                         "ptr", "ptr", "ptr", "i32"),
    "left_times_rows_max": ("ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32", "i32"),
    "decode_scores": ("ptr", "ptr", "i32"),
}


class CudaHeadError(RuntimeError):
    """The GPU head cannot be set up or a CUDA call failed (message names the call and the CUDA error)."""


# ----------------------------------------------------------------------------------------------------
# GPU discovery and CUDA runtime helpers (cuda-bindings; cuda-python 11/12 spelled it ``cuda.cudart``)
# ----------------------------------------------------------------------------------------------------

def cudart():
    """The CUDA runtime bindings module (``cuda.bindings.runtime``, or the older ``cuda.cudart``)."""
    try:
        from cuda.bindings import runtime
        return runtime
    except ImportError:
        from cuda import cudart as runtime  # cuda-python < 12.6
        return runtime


def cuda_device_count() -> int:
    """Number of usable CUDA GPUs; 0 when there is none, no driver, no bindings, or anything fails.

    Never raises and never crashes the process (only queries the runtime / driver API)."""
    try:
        rt = cudart()
        err, count = rt.cudaGetDeviceCount()
        if int(getattr(err, "value", err)) == 0:
            return max(0, int(count))
        return 0
    except Exception:
        pass
    try:
        try:
            from cuda.bindings import driver
        except ImportError:
            from cuda import cuda as driver
        (err,) = driver.cuInit(0)
        if int(getattr(err, "value", err)) != 0:
            return 0
        err, count = driver.cuDeviceGetCount()
        return max(0, int(count)) if int(getattr(err, "value", err)) == 0 else 0
    except Exception:
        return 0


def has_cuda_gpu() -> bool:
    """True when at least one CUDA GPU is usable (catches everything; safe on machines without one)."""
    return cuda_device_count() > 0


def _error_name(rt, err) -> str:
    try:
        name = rt.cudaGetErrorName(err)[1]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return str(err)


def check_cuda(result, what: str):
    """Unpack a cuda-bindings result tuple ``(err, *values)``; raise CudaHeadError unless success.

    Returns None, the single value, or the tuple of values."""
    err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if int(getattr(err, "value", err)) != 0:
        raise CudaHeadError(f"{what} failed: {_error_name(cudart(), err)}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def gpu_name(device: int = 0) -> str:
    """The GPU's model name as CUDA reports it (e.g. ``NVIDIA H200``). Raises CudaHeadError."""
    prop = check_cuda(cudart().cudaGetDeviceProperties(int(device)), "cudaGetDeviceProperties")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return str(name).strip()


@dataclass
class DeviceBuffer:
    """``nbytes`` of device memory from cudaMalloc (``ptr`` int); ``free()`` is idempotent."""

    ptr: int
    nbytes: int

    @classmethod
    def allocate(cls, nbytes: int) -> "DeviceBuffer":
        ptr = check_cuda(cudart().cudaMalloc(max(int(nbytes), 1)), f"cudaMalloc({nbytes})")
        return cls(int(ptr), int(nbytes))

    def free(self) -> None:
        if self.ptr:
            cudart().cudaFree(self.ptr)
            self.ptr = 0


@dataclass
class PinnedArray:
    """A numpy array over page-locked host memory (cudaMallocHost), for truly async copies."""

    ptr: int
    array: np.ndarray

    @classmethod
    def allocate(cls, shape: tuple[int, ...], dtype) -> "PinnedArray":
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        ptr = int(check_cuda(cudart().cudaMallocHost(max(nbytes, 1)), f"cudaMallocHost({nbytes})"))
        raw = (ctypes.c_char * max(nbytes, 1)).from_address(ptr)
        array = np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)
        return cls(ptr, array)

    def free(self) -> None:
        if self.ptr:
            self.array = np.empty(0, self.array.dtype)  # drop the view before the memory goes
            cudart().cudaFreeHost(self.ptr)
            self.ptr = 0


def memcpy_async(dst: int, src: int, nbytes: int, kind: str, stream) -> None:
    """cudaMemcpyAsync; ``kind`` is "h2d", "d2h" or "d2d"."""
    rt = cudart()
    kinds = {"h2d": rt.cudaMemcpyKind.cudaMemcpyHostToDevice, "d2h": rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
             "d2d": rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice}
    if nbytes:
        check_cuda(rt.cudaMemcpyAsync(int(dst), int(src), int(nbytes), kinds[kind], stream), f"cudaMemcpyAsync {kind}")


# ----------------------------------------------------------------------------------------------------
# cuda-core (Program / launch): import path differs between releases
# ----------------------------------------------------------------------------------------------------

def import_cuda_core():
    """The cuda-core namespace with Program, ProgramOptions, Device, LaunchConfig, launch.

    cuda-core >= 0.4 exports them from ``cuda.core``; older releases (0.2, 0.3) from
    ``cuda.core.experimental``. Raises ImportError when cuda-core is not installed."""
    try:
        import cuda.core as cc
        if hasattr(cc, "Program") and hasattr(cc, "launch"):
            return cc
    except ImportError:
        pass
    import cuda.core.experimental as cc
    return cc


def kernel_source() -> str:
    """The CUDA C source of the head (``upsample_max.cu``)."""
    return KERNEL_PATH.read_text()


def _program_options(cc, arch: str):
    return cc.ProgramOptions(arch=arch, std="c++17", name="upsample_max",
                             define_macro=[(k, str(v)) for k, v in TILES.items()])


@dataclass
class CompiledKernel:
    arch: str
    target: str
    code: bytes
    log: str = ""

    @property
    def size(self) -> int:
        return len(self.code)


def compile_kernel(arch: str = "sm_87", target: str = "cubin") -> CompiledKernel:
    """Compile ``upsample_max.cu`` with NVRTC through cuda-core, for ``arch`` (``sm_XY``). No GPU needed
    for ``cubin`` (PTX output asks the driver whether it can load it, so it needs one).

    Raises ImportError without cuda-core, and cuda-core's NVRTC error (with the compile log) on
    a compile error."""
    cc = import_cuda_core()
    log = io.StringIO()
    program = cc.Program(kernel_source(), "c++", _program_options(cc, arch))
    try:
        obj = program.compile(target, logs=log)
    finally:
        if hasattr(program, "close"):
            program.close()
    code = obj.code
    if isinstance(code, str):
        code = code.encode()
    return CompiledKernel(arch=arch, target=target, code=bytes(code), log=log.getvalue())


# ----------------------------------------------------------------------------------------------------
# Operators and launch geometry (shared by the emulator and the real launches)
# ----------------------------------------------------------------------------------------------------

@dataclass
class HeadOperators:
    """Concatenated, transposed operators of one model's head (see module docstring)."""

    image_size: tuple[int, int]
    scale_shapes: list[tuple[int, int]]
    left_t: np.ndarray    # float32 K x H
    right_t: np.ndarray   # float32 J x W
    heights: tuple[int, int, int] = field(default=(0, 0, 0))  # h_s, padded with 0 to MAX_SCALES
    widths: tuple[int, int, int] = field(default=(0, 0, 0))

    @property
    def K(self) -> int:
        return int(sum(self.heights))

    @classmethod
    def build(cls, image_size, scale_shapes, sigma: float = SIGMA, truncate: float = TRUNCATE,
              crop: int = 0) -> "HeadOperators":
        """From MapHead's own float32 matrices (``image_size``: the per-scale maps' padded image;
        ``crop``: the reflect margin cut from every side; ``ops.image_size`` is the output size).
        Raises ValueError for bad sizes or > 3 scales."""
        shapes = [(int(h), int(w)) for h, w in scale_shapes]
        H, W = (int(image_size[0]), int(image_size[1]))
        if not 1 <= len(shapes) <= MAX_SCALES:
            raise ValueError(f"the GPU head takes 1..{MAX_SCALES} scales, got {len(shapes)}")
        if H < 1 or W < 1 or any(h < 1 or w < 1 for h, w in shapes):
            raise ValueError(f"bad sizes: image {image_size}, scales {scale_shapes}")
        ref = MapHead((H, W), shapes, sigma=sigma, truncate=truncate, crop=crop)
        if ref.out_size[0] * ref.out_size[1] >= 2 ** 31:
            raise ValueError(f"a {ref.out_size[1]}x{ref.out_size[0]} map is too large for the kernel's int offsets")
        left_t = np.ascontiguousarray(np.concatenate([lt.T for lt in ref.left], axis=0), dtype=np.float32)
        right_t = np.ascontiguousarray(np.concatenate(ref.right_t, axis=0), dtype=np.float32)
        pad = [0] * (MAX_SCALES - len(shapes))
        return cls(ref.out_size, shapes, left_t, right_t, tuple([h for h, _ in shapes] + pad),
                   tuple([w for _, w in shapes] + pad))


def _ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def stage1_launch(W: int, K: int, n: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) of ``rows_times_right``: one thread per (x, k), one grid layer per image."""
    return (_ceil_div(W, TILES["S1X"]), _ceil_div(K, TILES["S1Y"]), int(n)), (TILES["S1X"], TILES["S1Y"], 1)


def stage2_launch(W: int, H: int, n: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) of ``left_times_rows_max``: one block per BM x BN output tile per image."""
    return (_ceil_div(W, TILES["BN"]), _ceil_div(H, TILES["BM"]), int(n)), (TILES["TX"], TILES["TY"], 1)


def decode_launch(n: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    return (_ceil_div(max(n, 1), DECODE_BLOCK), 1, 1), (DECODE_BLOCK, 1, 1)


# ----------------------------------------------------------------------------------------------------
# Order-preserving float <-> int keys (the atomicMax trick), numpy versions of the device functions
# ----------------------------------------------------------------------------------------------------

def ordered_keys(values: np.ndarray) -> np.ndarray:
    """float32 -> int32 keys with a < b  <=>  key(a) < key(b) (and -0 < +0); NaN -> NAN_KEY (largest)."""
    v = np.asarray(values, dtype=np.float32)
    bits = v.view(np.int32)
    keys = np.where(bits >= 0, bits, bits ^ np.int32(0x7FFFFFFF)).astype(np.int32)
    return np.where(np.isnan(v), np.int32(NAN_KEY), keys).astype(np.int32)


def keys_to_float(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`ordered_keys` (bit-exact for non-NaN values; NAN_KEY and ORDERED_MIN -> NaN)."""
    k = np.asarray(keys, dtype=np.int32)
    return np.where(k >= 0, k, k ^ np.int32(0x7FFFFFFF)).astype(np.int32).view(np.float32)


# ----------------------------------------------------------------------------------------------------
# numpy emulator of the three kernels (same loop structure and index formulas as upsample_max.cu)
# ----------------------------------------------------------------------------------------------------

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


def check_stats_arrays(ops: HeadOperators, mean, inv_std) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, inv_std) as float32 C-contiguous H x W (the output size), or None when both are None.
    Raises ValueError for one without the other or a shape that is not the output size."""
    if mean is None and inv_std is None:
        return None
    if mean is None or inv_std is None:
        raise ValueError("mean and inv_std go together (both or neither)")
    mean = np.ascontiguousarray(mean, dtype=np.float32)
    inv_std = np.ascontiguousarray(inv_std, dtype=np.float32)
    if mean.shape != tuple(ops.image_size) or inv_std.shape != tuple(ops.image_size):
        raise ValueError(f"statistics {mean.shape} / {inv_std.shape} do not match the head's output "
                         f"{ops.image_size[0]} x {ops.image_size[1]}")
    return mean, inv_std


def check_valid_mask(ops: HeadOperators, valid, n: int) -> tuple[np.ndarray, int] | None:
    """A valid region -> (uint8 C-contiguous mask, valid_stride) as the kernel takes them: H x W
    (shared by the batch, stride 0) or n x H x W (stride H * W); None -> None. Nonzero / True = scored.
    Raises ValueError for another shape."""
    if valid is None:
        return None
    valid = np.asarray(valid)
    H, W = ops.image_size
    if valid.shape == (H, W):
        stride = 0
    elif valid.shape == (n, H, W):
        stride = H * W
    else:
        raise ValueError(f"valid region {valid.shape} is neither {H} x {W} nor {n} x {H} x {W}")
    return np.ascontiguousarray(valid != 0, dtype=np.uint8), stride


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
    n = _check_maps(ops, scale_maps)
    t_cat, keys = emulate_rows_times_right(ops, scale_maps, n)
    out = emulate_left_times_rows_max(ops, t_cat, keys, want_maps, mean, inv_std, valid)
    return keys_to_float(keys), out


def _check_maps(ops: HeadOperators, scale_maps: list[np.ndarray]) -> int:
    if len(scale_maps) != len(ops.scale_shapes):
        raise ValueError(f"expected {len(ops.scale_shapes)} scale maps, got {len(scale_maps)}")
    n = getattr(scale_maps[0], "shape", (0,))[0]
    for m, shape in zip(scale_maps, ops.scale_shapes):
        if not isinstance(m, np.ndarray) or m.ndim != 3 or m.shape != (n, *shape):
            raise ValueError(f"scale map {getattr(m, 'shape', type(m))} does not match {n} x {shape[0]} x {shape[1]}")
    if n < 1:
        raise ValueError("empty batch")
    return int(n)


# ----------------------------------------------------------------------------------------------------
# The real thing
# ----------------------------------------------------------------------------------------------------

class _ForeignStream:
    """``__cuda_stream__`` protocol wrapper for cuda-core releases without ``Stream.from_handle``."""

    def __init__(self, handle: int):
        self.handle = int(handle)

    def __cuda_stream__(self):
        return (0, self.handle)


def _pack_args(kernel: str, values: tuple) -> list:
    """Kernel arguments as fixed-width numpy scalars matching KERNEL_SIGNATURES[kernel]."""
    sig = KERNEL_SIGNATURES[kernel]
    if len(sig) != len(values):
        raise CudaHeadError(f"{kernel}: {len(values)} arguments for {len(sig)} parameters")
    packed = []
    for kind, v in zip(sig, values):
        v = int(v)
        if kind == "ptr":
            packed.append(np.uint64(v))
        else:
            if not -(2 ** 31) <= v < 2 ** 31:
                raise CudaHeadError(f"{kernel}: int argument {v} out of range")
            packed.append(np.int32(v))
    return packed


class CudaMapHead:
    """The map head on a GPU, for one model: image size (H, W) and its 1..3 per-scale map shapes
    (``crop``: the reflect margin cut from every side; ``image_size`` then is the output size).

    ``scores_and_maps(scale_maps, n, want_maps, valid)`` takes either device pointers (ints; float32
    C-contiguous N x h_s x w_s, e.g. TensorRT's output buffers, written on ``stream_handle``'s stream)
    or host numpy arrays, and returns ``(scores float32 N, maps float32 N x H x W or None)`` on the host.
    Maps are only computed into memory and copied back when ``want_maps``.

    Good-part statistics (``stats``, or :meth:`set_stats`: a :class:`inspector.core.scoring.GoodStats`
    or anything with float32 H x W ``mean`` / ``inv_std``) are uploaded once and then normalise every
    map: ``(map - mean) * inv_std``. ``valid`` (bool H x W for the batch, or N x H x W; None = all) is
    uploaded per call: only its pixels enter the score, an image without one scores NaN. The returned
    maps hold the normalised value at every pixel; filling the outside of the valid region
    (:func:`inspector.engine.base.outside_to_minimum`) is the caller's job. Score rule: the max only.

    ``stream_handle``: a cudaStream_t (int) to launch on (shared with TensorRT); None creates a
    non-blocking stream of our own. Buffers grow on demand beyond ``max_batch``; calls are serialised
    by a lock. Raises CudaHeadError without a GPU or on any CUDA failure, ImportError without
    cuda-core / cuda-bindings, ValueError for statistics or masks of the wrong shape."""

    def __init__(self, image_size, scale_shapes, device: int = 0, *, stream_handle: int | None = None,
                 max_batch: int = 8, sigma: float = SIGMA, truncate: float = TRUNCATE, crop: int = 0,
                 stats: "GoodStats | None" = None):
        self.ops = HeadOperators.build(image_size, scale_shapes, sigma, truncate, crop)
        self.image_size, self.scale_shapes = self.ops.image_size, self.ops.scale_shapes
        self.device_id = int(device)
        self._lock = threading.Lock()
        self._buffers: dict[str, DeviceBuffer] = {}
        self._pinned: dict[str, PinnedArray] = {}
        self._own_stream = None
        self.stream_handle: int | None = None
        self._capacity = 0
        self.stats = None
        if stats is not None:
            check_stats_arrays(self.ops, stats.mean, stats.inv_std)  # before any CUDA work
        count = cuda_device_count()
        if count <= self.device_id:
            raise CudaHeadError(f"no CUDA GPU {self.device_id} (found {count}): the GPU head needs one")
        try:
            self._setup(stream_handle, max_batch)
            if stats is not None:
                self._set_stats(stats)
        except BaseException:
            self.close()
            raise

    def _setup(self, stream_handle: int | None, max_batch: int) -> None:
        self._rt = cudart()
        self._cc = import_cuda_core()
        self.make_current()
        self.arch = "sm_%d%d" % tuple(self._cc_device.compute_capability)
        self._kernels = self._load_kernels()
        if stream_handle is None:
            flags = self._rt.cudaStreamNonBlocking
            self._own_stream = check_cuda(self._rt.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags")
            stream_handle = int(self._own_stream)
        self.stream_handle = int(stream_handle)
        self._cc_stream = self._wrap_stream(self.stream_handle)
        self._upload_operators()
        self._ensure_capacity(max(1, int(max_batch)), want_maps=False)

    # -- setup --------------------------------------------------------------------------------------
    def make_current(self) -> None:
        """Make this head's GPU current in the calling thread (runtime API and cuda-core)."""
        check_cuda(self._rt.cudaSetDevice(self.device_id), "cudaSetDevice")
        self._cc_device = self._cc.Device(self.device_id)
        self._cc_device.set_current()

    def _load_kernels(self) -> dict:
        program = self._cc.Program(kernel_source(), "c++", _program_options(self._cc, self.arch))
        log = io.StringIO()
        try:
            obj = program.compile("cubin", logs=log)
        except Exception as exc:
            raise CudaHeadError(f"NVRTC could not compile upsample_max.cu for {self.arch}: {exc}") from exc
        return {name: obj.get_kernel(name) for name in KERNEL_SIGNATURES}

    def _wrap_stream(self, handle: int):
        stream_cls = getattr(self._cc, "Stream", None)
        if stream_cls is not None and hasattr(stream_cls, "from_handle"):
            return stream_cls.from_handle(handle)
        return self._cc_device.create_stream(_ForeignStream(handle))

    def _upload(self, name: str, array: np.ndarray) -> DeviceBuffer:
        array = np.ascontiguousarray(array)
        buf = self._buffers[name] = DeviceBuffer.allocate(array.nbytes)
        memcpy_async(buf.ptr, array.ctypes.data, array.nbytes, "h2d", self.stream_handle)
        self.synchronize()
        return buf

    def _upload_operators(self) -> None:
        self._upload("left_t", self.ops.left_t)
        self._upload("right_t", self.ops.right_t)

    def set_stats(self, stats: "GoodStats | None") -> None:
        """Upload good-part statistics (float32 H x W ``mean`` / ``inv_std``, the output size) used by
        every later call; None drops them (raw maps). Raises ValueError for another shape."""
        with self._lock:
            self.make_current()
            self._set_stats(stats)

    def _set_stats(self, stats) -> None:
        arrays = None if stats is None else check_stats_arrays(self.ops, stats.mean, stats.inv_std)
        self.synchronize()                      # no launch may still read the old statistics
        for name in ("mean", "inv_std"):
            old = self._buffers.pop(name, None)
            if old is not None:
                old.free()
        self.stats = None
        if arrays is not None:
            self._upload("mean", arrays[0])
            self._upload("inv_std", arrays[1])
            self.stats = stats

    def _realloc(self, name: str, nbytes: int) -> DeviceBuffer:
        old = self._buffers.pop(name, None)
        if old is not None:
            old.free()
        buf = self._buffers[name] = DeviceBuffer.allocate(nbytes)
        return buf

    def _realloc_pinned(self, name: str, shape, dtype) -> PinnedArray:
        old = self._pinned.pop(name, None)
        if old is not None:
            old.free()
        arr = self._pinned[name] = PinnedArray.allocate(tuple(shape), dtype)
        return arr

    def _ensure_capacity(self, n: int, want_maps: bool) -> None:
        """Scratch (N x K x W), keys, scores, and (when maps are wanted) map buffers for n images; on
        growth the per-batch input, map and mask buffers are dropped and re-made on demand."""
        H, W = self.image_size
        if n > self._capacity:
            self.synchronize()
            cap = max(n, self._capacity)
            self._realloc("t_cat", cap * self.ops.K * W * 4)
            self._realloc("keys", cap * 4)
            self._realloc("scores", cap * 4)
            self._realloc_pinned("scores", (cap,), np.float32)
            per_batch = {f"in{i}" for i in range(MAX_SCALES)} | {"map", "valid"}   # re-made on demand
            for name in [k for k in self._buffers if k in per_batch]:
                self._buffers.pop(name).free()
            for name in ("map", "valid"):
                old = self._pinned.pop(name, None)
                if old is not None:
                    old.free()
            self._capacity = cap
        if want_maps and "map" not in self._buffers:
            self._realloc("map", self._capacity * H * W * 4)
            self._realloc_pinned("map", (self._capacity, H, W), np.float32)

    # -- running ------------------------------------------------------------------------------------
    def _launch(self, name: str, grid, block, *values) -> None:
        cfg = self._cc.LaunchConfig(grid=grid, block=block)
        self._cc.launch(self._cc_stream, cfg, self._kernels[name], *_pack_args(name, values))

    def enqueue(self, map_ptrs: list[int], n: int, want_maps: bool, valid_ptr: int = 0,
                valid_stride: int = 0) -> None:
        """Launch the three kernels for ``n`` images on the stream and queue the copies of the scores
        (and maps) into pinned host memory. Returns at once; :meth:`synchronize`, then
        :meth:`results`. ``valid_ptr``: a device uint8 mask (0 = every pixel scored), n x H x W with
        ``valid_stride`` = H * W or one H x W mask with 0 (:meth:`upload_valid` gives both)."""
        if len(map_ptrs) != len(self.scale_shapes):
            raise ValueError(f"expected {len(self.scale_shapes)} map pointers, got {len(map_ptrs)}")
        if n < 1:
            raise ValueError("empty batch")
        H, W = self.image_size
        if valid_ptr and int(valid_stride) not in (0, H * W):
            raise ValueError(f"valid_stride must be 0 (one mask) or {H * W} (H * W), got {valid_stride}")
        self._ensure_capacity(n, want_maps)
        K = self.ops.K
        ptrs = [int(p) for p in map_ptrs] + [0] * (MAX_SCALES - len(map_ptrs))
        (h0, h1, h2), (w0, w1, w2) = self.ops.heights, self.ops.widths
        b = self._buffers
        grid, block = stage1_launch(W, K, n)
        self._launch("rows_times_right", grid, block, ptrs[0], ptrs[1], ptrs[2], h0, w0, h1, w1, h2, w2,
                     b["right_t"].ptr, b["t_cat"].ptr, b["keys"].ptr, W)
        map_ptr = b["map"].ptr if want_maps else 0
        mean_ptr, inv_std_ptr = (b["mean"].ptr, b["inv_std"].ptr) if self.stats is not None else (0, 0)
        valid_ptr = int(valid_ptr)
        grid, block = stage2_launch(W, H, n)
        self._launch("left_times_rows_max", grid, block, b["left_t"].ptr, b["t_cat"].ptr, b["keys"].ptr,
                     map_ptr, mean_ptr, inv_std_ptr, valid_ptr, int(valid_stride) if valid_ptr else 0,
                     K, H, W, int(bool(want_maps)))
        grid, block = decode_launch(n)
        self._launch("decode_scores", grid, block, b["keys"].ptr, b["scores"].ptr, n)
        memcpy_async(self._pinned["scores"].ptr, b["scores"].ptr, n * 4, "d2h", self.stream_handle)
        if want_maps:
            memcpy_async(self._pinned["map"].ptr, map_ptr, n * H * W * 4, "d2h", self.stream_handle)

    def synchronize(self) -> None:
        if getattr(self, "stream_handle", None) is not None:
            check_cuda(self._rt.cudaStreamSynchronize(self.stream_handle), "cudaStreamSynchronize")

    def results(self, n: int, want_maps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Copies of the last results (call after :meth:`synchronize`)."""
        scores = self._pinned["scores"].array[:n].copy()
        maps = self._pinned["map"].array[:n].copy() if want_maps else None
        return scores, maps

    def upload_maps(self, scale_maps: list[np.ndarray]) -> tuple[list[int], int]:
        """Copy host scale maps into the head's staging buffers; -> (device pointers, n)."""
        n = _check_maps(self.ops, scale_maps)
        self._ensure_capacity(n, want_maps=False)
        ptrs = []
        for s, m in enumerate(scale_maps):
            m = np.ascontiguousarray(m, dtype=np.float32)
            name = f"in{s}"
            if name not in self._buffers:
                h, w = self.scale_shapes[s]
                self._realloc(name, self._capacity * h * w * 4)
            memcpy_async(self._buffers[name].ptr, m.ctypes.data, m.nbytes, "h2d", self.stream_handle)
            ptrs.append(self._buffers[name].ptr)
        return ptrs, n

    def upload_valid(self, valid, n: int) -> tuple[int, int]:
        """Copy a host valid region (bool / uint8 H x W for the batch, or n x H x W; nonzero = scored)
        through pinned memory into the head's device mask, queued on the stream; -> (valid_ptr,
        valid_stride) for :meth:`enqueue`; None -> (0, 0). The staging memory is reused: call it
        after the previous call's :meth:`synchronize`. Raises ValueError for another shape."""
        checked = check_valid_mask(self.ops, valid, int(n))
        if checked is None:
            return 0, 0
        mask, stride = checked
        self._ensure_capacity(int(n), want_maps=False)
        H, W = self.image_size
        if "valid" not in self._buffers:
            self._realloc("valid", self._capacity * H * W)
            self._realloc_pinned("valid", (self._capacity * H * W,), np.uint8)
        staging = self._pinned["valid"]
        staging.array[:mask.size] = mask.ravel()
        memcpy_async(self._buffers["valid"].ptr, staging.ptr, mask.size, "h2d", self.stream_handle)
        return self._buffers["valid"].ptr, stride

    def scores_and_maps(self, scale_maps, n: int | None = None, want_maps: bool = False, valid=None
                        ) -> tuple[np.ndarray, np.ndarray | None]:
        """Scale maps (device pointers + ``n``, or host float32 arrays N x h_s x w_s) -> (scores, maps);
        ``valid``: the valid region (see :meth:`upload_valid`), None = every pixel scored."""
        with self._lock:
            self.make_current()
            if all(isinstance(m, np.ndarray) for m in scale_maps):
                ptrs, n_in = self.upload_maps(list(scale_maps))
                if n is not None and int(n) != n_in:
                    raise ValueError(f"n={n} but the maps hold {n_in} images")
                n = n_in
            elif any(isinstance(m, np.ndarray) for m in scale_maps):
                raise ValueError("pass either all device pointers or all host arrays")
            else:
                if n is None:
                    raise ValueError("n is required with device pointers")
                ptrs = [int(p) for p in scale_maps]
            valid_ptr, valid_stride = self.upload_valid(valid, int(n))
            self.enqueue(ptrs, int(n), want_maps, valid_ptr, valid_stride)
            self.synchronize()
            return self.results(int(n), want_maps)

    def time_kernels(self, n: int, want_maps: bool, iters: int = 50) -> float:
        """Mean GPU time (s) of one head call for ``n`` images (kernels + score/map copy to the host),
        measured with CUDA events on random maps already on the device."""
        rng = np.random.default_rng(0)
        maps = [rng.random((n, h, w), dtype=np.float32) * 0.2 for h, w in self.scale_shapes]
        with self._lock:
            self.make_current()
            ptrs, _ = self.upload_maps(maps)
            self.enqueue(ptrs, n, want_maps)
            self.synchronize()
            start = check_cuda(self._rt.cudaEventCreate(), "cudaEventCreate")
            stop = check_cuda(self._rt.cudaEventCreate(), "cudaEventCreate")
            try:
                check_cuda(self._rt.cudaEventRecord(start, self.stream_handle), "cudaEventRecord")
                for _ in range(iters):
                    self.enqueue(ptrs, n, want_maps)
                check_cuda(self._rt.cudaEventRecord(stop, self.stream_handle), "cudaEventRecord")
                check_cuda(self._rt.cudaEventSynchronize(stop), "cudaEventSynchronize")
                ms = check_cuda(self._rt.cudaEventElapsedTime(start, stop), "cudaEventElapsedTime")
            finally:
                self._rt.cudaEventDestroy(start)
                self._rt.cudaEventDestroy(stop)
        return float(ms) / 1000.0 / iters

    def close(self) -> None:
        """Free device and pinned memory and our own stream (idempotent)."""
        try:
            self.synchronize()
        except Exception:
            pass
        for buf in self._buffers.values():
            buf.free()
        for arr in self._pinned.values():
            arr.free()
        self._buffers, self._pinned = {}, {}
        if self._own_stream is not None:
            self._rt.cudaStreamDestroy(self._own_stream)
            self._own_stream = None
        self.stream_handle = None

    def __enter__(self) -> "CudaMapHead":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
