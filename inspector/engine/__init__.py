"""Engines: the trained model as something that turns frames into scores.

``open_engine(backend, path)`` picks a backend by name: ``torch`` (reference, from a checkpoint),
``onnxruntime`` (CPU default, from an exported ``.onnx`` + manifest), ``tensorrt`` (GPU, FP16).
Backends are imported lazily; nothing here imports torch or any GPU module at import time.

The GPU map head: ``cuda_head`` (``CudaMapHead``, the device wrapper), ``cuda_kernel`` (the kernel's
source, compile, constants, operators, launch geometry), ``cuda_emulator`` (numpy emulator) and
``cuda_runtime`` (CUDA calls, GPU discovery, buffers); see docs/gpu.md.
"""

from __future__ import annotations

from .base import Engine, EngineError, EngineResult

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def open_engine(backend: str, path: str, **kwargs) -> Engine:
    """Open an engine. ``path`` is a checkpoint (.pt) for ``torch`` and an engine file (.onnx)
    with its manifest next to it for the others. Raises EngineError on any mismatch."""
    if backend == "torch":
        from .torch_engine import TorchEngine
        return TorchEngine.from_checkpoint(path, **kwargs)
    if backend == "onnxruntime":
        from .onnx_engine import OnnxRuntimeEngine
        return OnnxRuntimeEngine(path, **kwargs)
    if backend == "tensorrt":
        from .tensorrt_engine import TensorRTEngine
        return TensorRTEngine(path, **kwargs)
    raise EngineError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


__all__ = ["BACKENDS", "Engine", "EngineError", "EngineResult", "open_engine"]
