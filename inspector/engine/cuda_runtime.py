"""CUDA runtime access for the GPU head and the TensorRT engine: GPU discovery, error checks, device
and page-locked host buffers, async copies, and the cuda-core namespace.

Nothing is imported from CUDA at import time. ``cuda_device_count`` / ``has_cuda_gpu`` never raise;
every other call raises :class:`CudaHeadError` (a RuntimeError) naming the call and the CUDA error,
or ImportError when cuda-bindings / cuda-core are missing.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

__all__ = ["CudaHeadError", "DeviceBuffer", "PinnedArray", "check_cuda", "cuda_device_count", "cudart", "free_all",
           "gpu_name", "has_cuda_gpu", "import_cuda_core", "memcpy_async"]


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


def free_all(*pools: dict) -> None:
    """``free()`` every DeviceBuffer / PinnedArray held in the given dicts, then empty the dicts."""
    for pool in pools:
        for item in pool.values():
            item.free()
        pool.clear()


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
