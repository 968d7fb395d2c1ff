"""The CUDA kernel's contract on the host side: its source and compile, tile constants and parameter
lists, the operators it consumes, launch geometry, the order-preserving float <-> int keys, and the
argument checks shared by the emulator (:mod:`.cuda_emulator`) and the device wrapper
(:mod:`.cuda_head`).

The head is the exact re-association of :class:`inspector.core.map_head.MapHead` (read its docstring):
``full[n] = sum_s L_s @ m_s[n] @ R_s^T``. The operators are the very matrices MapHead builds (float32),
concatenated over the scales and uploaded once:

* ``left_t``  float32 K x H: rows ``[L_0^T; L_1^T; L_2^T]``, K = sum h_s (L transposed: coalesced loads)
* ``right_t`` float32 J x W: rows ``[R_0^T; R_1^T; R_2^T]``, J = sum w_s

``compile_kernel`` needs only cuda-core + NVRTC (works without a GPU). Bad shapes raise ValueError.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.map_head import SIGMA, TRUNCATE, MapHead
from .cuda_runtime import import_cuda_core


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


# ----------------------------------------------------------------------------------------------------
# Source and compile (NVRTC through cuda-core)
# ----------------------------------------------------------------------------------------------------

def kernel_source() -> str:
    """The CUDA C source of the head (``upsample_max.cu``)."""
    return KERNEL_PATH.read_text()


def _program_options(cc, arch: str):
    return cc.ProgramOptions(arch=arch, std="c++17", name="upsample_max",
                             define_macro=[(k, str(v)) for k, v in TILES.items()])


@dataclass
class CompiledKernel:
    """A compiled kernel image: ``code`` (cubin or PTX bytes) for ``arch``, with NVRTC's ``log``."""

    arch: str
    target: str
    code: bytes
    log: str = ""

    @property
    def size(self) -> int:
        return len(self.code)


def compile_program(cc, arch: str, target: str = "cubin"):
    """Compile ``upsample_max.cu`` (with :data:`TILES` as macros) with ``cc`` (the cuda-core
    namespace) for ``arch``; -> (cuda-core ObjectCode, NVRTC log text). The NVRTC program is closed
    afterwards. Raises cuda-core's NVRTC error (with the compile log) on a compile error."""
    log = io.StringIO()
    program = cc.Program(kernel_source(), "c++", _program_options(cc, arch))
    try:
        obj = program.compile(target, logs=log)
    finally:
        if hasattr(program, "close"):
            program.close()
    return obj, log.getvalue()


def compile_kernel(arch: str = "sm_87", target: str = "cubin") -> CompiledKernel:
    """Compile ``upsample_max.cu`` with NVRTC through cuda-core, for ``arch`` (``sm_XY``). No GPU needed
    for ``cubin`` (PTX output asks the driver whether it can load it, so it needs one).

    Raises ImportError without cuda-core, and cuda-core's NVRTC error (with the compile log) on
    a compile error."""
    obj, log = compile_program(import_cuda_core(), arch, target)
    code = obj.code
    if isinstance(code, str):
        code = code.encode()
    return CompiledKernel(arch=arch, target=target, code=bytes(code), log=log)


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
# Argument checks (shared by the emulator and the device wrapper)
# ----------------------------------------------------------------------------------------------------

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


def check_scale_maps(ops: HeadOperators, scale_maps: list[np.ndarray]) -> int:
    """The batch size of per-scale maps (float32 N x h_s x w_s, one per scale of ``ops``). Raises
    ValueError for another count, shape or an empty batch."""
    if len(scale_maps) != len(ops.scale_shapes):
        raise ValueError(f"expected {len(ops.scale_shapes)} scale maps, got {len(scale_maps)}")
    n = getattr(scale_maps[0], "shape", (0,))[0]
    for m, shape in zip(scale_maps, ops.scale_shapes):
        if not isinstance(m, np.ndarray) or m.ndim != 3 or m.shape != (n, *shape):
            raise ValueError(f"scale map {getattr(m, 'shape', type(m))} does not match {n} x {shape[0]} x {shape[1]}")
    if n < 1:
        raise ValueError("empty batch")
    return int(n)
