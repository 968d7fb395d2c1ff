"""The anomaly-map head on the GPU: :class:`CudaMapHead`, the device wrapper that runs the CUDA kernel
in ``upsample_max.cu``.

Modules: :mod:`.cuda_runtime` (GPU discovery, CUDA calls, buffers), :mod:`.cuda_kernel` (the kernel's
source, compile, constants, operators, launch geometry, keys, argument checks), :mod:`.cuda_emulator`
(numpy emulator of the kernel) and this one.

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
(:func:`inspector.engine.cuda_emulator.emulate_head`) is numpy only and mirrors the kernel's loops,
index formulas, zero padding, FMA accumulation order, normalisation, valid mask, NaN-propagating max
and key mapping, so the CPU tests check the kernel's indexing against MapHead + GoodStats +
image_scores and the plain reference.

Failure behaviour: shape mismatches raise ValueError; anything CUDA raises :class:`CudaHeadError`
(a RuntimeError) with the CUDA error name; ``cuda_device_count`` / ``has_cuda_gpu`` never raise.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from ..core.map_head import SIGMA, TRUNCATE
from .cuda_kernel import (KERNEL_SIGNATURES, MAX_SCALES, HeadOperators, check_scale_maps, check_stats_arrays,
                          check_valid_mask, compile_program, decode_launch, stage1_launch, stage2_launch)
from .cuda_runtime import (CudaHeadError, DeviceBuffer, PinnedArray, check_cuda, cuda_device_count, cudart, free_all,
                           import_cuda_core, memcpy_async)

if TYPE_CHECKING:  # core.scoring imports cv2; the head only reads .mean / .inv_std
    from ..core.scoring import GoodStats

__all__ = ["CudaMapHead"]


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
        try:
            obj, _ = compile_program(self._cc, self.arch, "cubin")
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
        n = check_scale_maps(self.ops, scale_maps)
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
        free_all(self._buffers, self._pinned)
        if self._own_stream is not None:
            self._rt.cudaStreamDestroy(self._own_stream)
            self._own_stream = None
        self.stream_handle = None

    def __enter__(self) -> "CudaMapHead":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
