"""TensorRT backend (NVIDIA GPU): FP16 convolutions, FP32 cosine head, the map head as a CUDA kernel.

``TensorRTEngine(onnx_path)`` opens an exported ONNX engine (``inspector export``) the same way the
other backends do, and in this order, so that nothing can crash the process on a machine without a
GPU or without TensorRT:

1. manifest: :func:`read_manifest` (hash of the ONNX file) + ``expect`` checks -> EngineError;
2. GPU: :func:`cuda_device_count` through cuda-bindings, catching everything -> EngineError when
   there is none (a TensorRT runtime is never created without a GPU: that crashes the process);
3. ``import tensorrt`` (lazily; EngineError when missing; TensorRT >= 10 required);
4. plan: load ``<cache_dir>/<name>.<gpu-slug>.trt<version>.<onnx-sha12>.plan`` or build it (see
   :func:`plan_path`) from the ONNX;
5. CUDA: one non-blocking stream, pinned host buffers (cudaMallocHost), device buffers for the
   uint8 input and the three float32 scale maps, :class:`CudaMapHead` on the same stream.

Precision (docs/gpu.md): TensorRT 11 networks are always strongly typed and have no FP16 builder
flag, so FP16 comes from the ONNX graph itself: ``inspector export --fp16`` writes a graph whose
teacher and student are float16 and whose normalisation and cosine head are float32, and it is built
as it is (strongly typed; TensorRT 10 gets ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``). An FP32
export with ``fp16=True`` can only become FP16 on TensorRT 10, through the weakly typed
``BuilderFlag.FP16`` with the reduce / unary / elementwise layers pinned to FP32; on TensorRT 11 that
is an EngineError asking for an ``--fp16`` export or ``fp16=False`` (converting the graph here with
onnxconverter-common was dropped: it does not finish on these graphs). TF32 is switched off so that
"fp32" means FP32.

Data path per batch of n <= max_batch prepared images (uint8 n x h x w x 3 RGB): copy into pinned
memory -> H2D (and the valid region, when there is one) -> ``execute_async_v3`` -> head kernels read
the scale maps where TensorRT wrote them -> D2H of n scores (and n maps only when asked) -> one
synchronize. ``scale_maps`` (the Engine interface) copies the per-scale maps back to the host for
callers that want them.

Which head runs (``self.fused``): engines with **one tile and the ``max`` score rule** use the fused
GPU head (:class:`CudaMapHead`), which applies the good-part statistics (``self.stats``, uploaded
once) and the valid region (uploaded per batch) in the kernel; the host then fills the pixels
outside the valid region of returned maps with the image's minimum inside it
(:func:`inspector.engine.base.outside_to_minimum`), as the CPU head does. **Tiled engines** (the
tiles are stitched on the host) and the **``topk`` rule** (a partial sort, not a max) use the CPU
head (:meth:`Engine.head`) on scale maps copied back from the GPU.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import Engine, EngineError, EngineResult, outside_to_minimum
from .cuda_head import CudaMapHead
from .cuda_runtime import (CudaHeadError, DeviceBuffer, PinnedArray, check_cuda, cuda_device_count, cudart, free_all,
                           gpu_name, memcpy_async)
from .manifest import INPUT_NAME, OUTPUT_NAMES, ManifestError, check_expectations, load_stats, read_manifest

log = logging.getLogger(__name__)

MIN_TRT_MAJOR = 10


# ----------------------------------------------------------------------------------------------------
# Pure helpers (tested without a GPU)
# ----------------------------------------------------------------------------------------------------

def gpu_slug(name: str) -> str:
    """``"NVIDIA GeForce RTX 4090"`` -> ``"nvidia-geforce-rtx-4090"`` (lowercase, [a-z0-9-])."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")
    return slug or "gpu"


def plan_path(onnx_path: str | Path, cache_dir: str | Path | None, *, gpu: str, trt_version: str,
              onnx_sha256: str, precision: str, max_batch: int) -> Path:
    """Where the serialized TensorRT plan for this ONNX engine, GPU model and TensorRT version lives.

    ``<cache_dir>/<name>.<gpu-slug>.trt<version>.<onnx-sha12>.plan`` with ``name = <onnx stem>-<precision>
    -b<max_batch>`` (the build settings are part of the name, so an FP32 or smaller-batch plan is never
    picked up for an FP16 / larger request). ``cache_dir`` defaults to the ONNX file's folder
    (``engines/``). A plan is only valid for the exact GPU model and TensorRT version that built it."""
    if precision not in ("fp16", "fp32"):
        raise ValueError(f"precision must be fp16 or fp32, not {precision!r}")
    if not re.fullmatch(r"[0-9a-f]{12,64}", str(onnx_sha256)):
        raise ValueError(f"onnx_sha256 must be a hex digest, got {onnx_sha256!r}")
    version = re.sub(r"[^0-9A-Za-z.]+", "-", str(trt_version))
    onnx_path = Path(onnx_path)
    folder = Path(cache_dir) if cache_dir is not None else onnx_path.parent
    name = f"{onnx_path.stem}-{precision}-b{int(max_batch)}"
    return folder / f"{name}.{gpu_slug(gpu)}.trt{version}.{onnx_sha256[:12]}.plan"


def trt_major(version: str) -> int:
    """``"10.13.0.35"`` -> 10. Raises EngineError for an unparsable version."""
    m = re.match(r"\s*(\d+)\.", str(version) + ".")
    if not m:
        raise EngineError(f"cannot parse the TensorRT version {version!r}")
    return int(m.group(1))


@dataclass(frozen=True)
class BuildChoice:
    """How to build: ``precision`` of the convolutions, whether the network is strongly typed, whether
    to set BuilderFlag.FP16 (weakly typed, TensorRT 10 only, head layers pinned to FP32)."""

    precision: str
    strongly_typed: bool
    fp16_flag: bool


def choose_build(major: int, onnx_precision: str, fp16: bool, *, have_fp16_flag: bool) -> BuildChoice:
    """Pick the build route for TensorRT ``major`` (10 or 11+) and the export's precision.

    An ``--fp16`` export is FP16 whatever ``fp16`` says (its types are in the graph). Raises
    EngineError for TensorRT < 10, and when FP16 is asked of an FP32 export where only a strongly
    typed build exists (TensorRT 11)."""
    if major < MIN_TRT_MAJOR:
        raise EngineError(f"TensorRT {major}.x is too old: need {MIN_TRT_MAJOR} or newer")
    if onnx_precision == "fp16":
        return BuildChoice("fp16", strongly_typed=True, fp16_flag=False)
    if not fp16:
        return BuildChoice("fp32", strongly_typed=True, fp16_flag=False)
    if major < 11 and have_fp16_flag:
        return BuildChoice("fp16", strongly_typed=False, fp16_flag=True)
    raise EngineError(
        f"fp16 was requested for an FP32 ONNX engine, but TensorRT {major} builds strongly typed networks "
        "only (no FP16 builder flag): export the model with `inspector export --fp16`, or open the engine "
        "with fp16=False")


# ----------------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------------

class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(self, onnx_path: str | Path, *, max_batch: int = 8, cache_dir: str | Path | None = None,
                 fp16: bool = True, expect: dict | None = None, device: int = 0, rebuild: bool = False,
                 trusted=None):
        # state first, so that close() works whatever fails below
        self._lock = threading.Lock()
        self._trt = self._runtime = self._engine = self._context = None
        self._head: CudaMapHead | None = None
        self._stream = None
        self._stream_handle: int | None = None
        self._device_buffers: dict[str, DeviceBuffer] = {}
        self._pinned: dict[str, PinnedArray] = {}

        self.path = str(onnx_path)
        if int(max_batch) < 1:
            raise EngineError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = int(max_batch)
        self.device = int(device)
        try:
            self.manifest = read_manifest(onnx_path, trusted=trusted)   # trusted: core.signing.TrustedKeys
            check_expectations(self.manifest, **(expect or {}))
        except ManifestError as exc:
            raise EngineError(str(exc)) from exc
        outputs = self.manifest.get("outputs") or [{"name": n, "stride": s} for n, s in zip(OUTPUT_NAMES, (4, 8, 16))]
        self.strides = tuple(int(o["stride"]) for o in outputs)
        try:  # the CPU head: reference, and the path for tiled and top-k inspection
            self._init_head(self.manifest["config"], load_stats(onnx_path, self.manifest), self.manifest["image_size"])
        except (ManifestError, ValueError) as exc:
            raise EngineError(f"{onnx_path}: {exc}") from exc
        th, tw = self.input_size
        self.scale_shapes = [(th // s, tw // s) for s in self.strides]
        # one tile and the max rule (statistics and valid regions or not): the fused GPU head reads
        # TensorRT's outputs in place; tiled engines and the top-k rule use the CPU head
        self.fused = self.grid.n_tiles == 1 and self.inspection.rule.rule == "max"

        count = cuda_device_count()
        if count <= self.device:
            raise EngineError(
                f"the tensorrt backend needs an NVIDIA GPU, but CUDA reports {count} usable device(s) "
                f"(device {self.device} requested): no driver, no GPU, or CUDA_VISIBLE_DEVICES hides it. "
                "Use the onnxruntime backend on this machine.")
        try:
            import tensorrt as trt
        except Exception as exc:
            raise EngineError(f"TensorRT is not installed (import tensorrt: {exc}); install the tensorrt "
                              "package for this CUDA version, or use the onnxruntime backend") from exc
        self._trt = trt
        self.trt_version = str(trt.__version__)
        self._major = trt_major(self.trt_version)
        try:
            self._open(cache_dir, fp16, rebuild)
        except BaseException as exc:
            self.close()
            if isinstance(exc, EngineError):
                raise
            if isinstance(exc, Exception):
                raise EngineError(f"tensorrt engine {self.path}: {exc}") from exc
            raise

    # -- opening ------------------------------------------------------------------------------------
    def _open(self, cache_dir, fp16: bool, rebuild: bool) -> None:
        trt = self._trt
        rt = cudart()
        check_cuda(rt.cudaSetDevice(self.device), "cudaSetDevice")
        self.gpu_name = gpu_name(self.device)
        self._choice = choose_build(self._major, self.manifest["precision"], fp16,
                                    have_fp16_flag=hasattr(trt.BuilderFlag, "FP16"))
        self.precision = self._choice.precision
        self.plan_path = plan_path(self.path, cache_dir, gpu=self.gpu_name, trt_version=self.trt_version,
                                   onnx_sha256=self.manifest["engine_sha256"], precision=self.precision,
                                   max_batch=self.max_batch)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = None if rebuild else self._load_cached_plan()
        self.built = self._engine is None
        if self._engine is None:
            plan = self._build_plan(Path(self.path))
            self._write_plan(plan)
            self._engine = self._runtime.deserialize_cuda_engine(plan)
            if self._engine is None:
                raise EngineError("TensorRT could not deserialize the plan it just built")
        self._check_io()
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError("TensorRT could not create an execution context (out of GPU memory?)")
        self._stream = check_cuda(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        self._stream_handle = int(self._stream)
        self._allocate_io()
        # a tile's head (= the whole image's when fused); the statistics are the image's, so only then
        self._head = CudaMapHead(self.input_size, self.scale_shapes, self.device, stream_handle=self._stream_handle,
                                 max_batch=self.max_batch, crop=self.grid.margin,
                                 stats=self.stats if self.fused else None)
        self.manifest = {**self.manifest, "runtime": {
            "backend": "tensorrt", "tensorrt": self.trt_version, "gpu": self.gpu_name, "precision": self.precision,
            "plan": str(self.plan_path), "max_batch": self.max_batch}}
        log.info("tensorrt engine %s on %s (TensorRT %s, %s, plan %s %s)", self.path, self.gpu_name, self.trt_version,
                 self.precision, "built" if self.built else "cached", self.plan_path)

    def _load_cached_plan(self):
        if not self.plan_path.is_file():
            return None
        engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if engine is None:
            log.warning("cached plan %s does not load (stale or corrupt): rebuilding", self.plan_path)
        return engine

    def _write_plan(self, plan: bytes) -> None:
        self.plan_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.plan_path.with_name(f".{self.plan_path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(plan)
        os.replace(tmp, self.plan_path)

    def _network_flags(self) -> int:
        trt = self._trt
        if self._major >= 11:
            return 0                         # TensorRT 11: every network is strongly typed
        if self._choice.strongly_typed:
            return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        return 0

    def _build_plan(self, onnx_file: Path) -> bytes:
        """ONNX -> serialized plan with an optimisation profile for batch 1..max_batch (opt = max)."""
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(self._network_flags())
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(onnx_file)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"TensorRT cannot parse {self.path}: {errors or 'unknown error'}")
        config = builder.create_builder_config()
        if hasattr(trt.BuilderFlag, "TF32"):
            try:
                config.clear_flag(trt.BuilderFlag.TF32)
            except Exception:  # not settable on strongly typed networks in some releases
                pass
        if self._choice.fp16_flag:
            config.set_flag(trt.BuilderFlag.FP16)
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            self._pin_head_fp32(network)
        H, W = self.input_size
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, (1, H, W, 3), (self.max_batch, H, W, 3), (self.max_batch, H, W, 3))
        config.add_optimization_profile(profile)
        log.info("building a TensorRT %s plan for %s (batch 1..%d); this takes a while", self.precision, self.path,
                 self.max_batch)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineError(f"TensorRT failed to build a plan for {self.path} (see the TensorRT log above)")
        return bytes(memoryview(serialized))

    def _pin_head_fp32(self, network) -> None:
        """Weakly typed FP16 (TRT 10 fallback): keep reductions, unary and elementwise layers in FP32."""
        trt = self._trt
        keep = {trt.LayerType.REDUCE, trt.LayerType.UNARY, trt.LayerType.ELEMENTWISE}
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type in keep:
                layer.precision = trt.float32
                for o in range(layer.num_outputs):
                    layer.set_output_type(o, trt.float32)

    def _check_io(self) -> None:
        """The plan must take uint8 ``images`` and give the three float32 maps of the manifest."""
        trt, engine = self._trt, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        expected = {INPUT_NAME, *OUTPUT_NAMES[:len(self.strides)]}
        if set(names) != expected:
            raise EngineError(f"plan I/O tensors {sorted(names)} != expected {sorted(expected)}")
        if engine.get_tensor_mode(INPUT_NAME) != trt.TensorIOMode.INPUT:
            raise EngineError(f"{INPUT_NAME!r} is not an input of the plan")
        if engine.get_tensor_dtype(INPUT_NAME) != trt.DataType.UINT8:
            raise EngineError(f"plan input dtype {engine.get_tensor_dtype(INPUT_NAME)} != UINT8")
        for name, (h, w) in zip(OUTPUT_NAMES, self.scale_shapes):
            if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise EngineError(f"plan output {name} dtype {engine.get_tensor_dtype(name)} != FLOAT")
            shape = tuple(engine.get_tensor_shape(name))
            if len(shape) != 3 or shape[1:] != (h, w):
                raise EngineError(f"plan output {name} shape {shape} != (N, {h}, {w})")

    def _allocate_io(self) -> None:
        H, W = self.input_size
        n = self.max_batch
        self._device_buffers[INPUT_NAME] = DeviceBuffer.allocate(n * H * W * 3)
        self._pinned[INPUT_NAME] = PinnedArray.allocate((n, H, W, 3), np.uint8)
        for name, (h, w) in zip(OUTPUT_NAMES, self.scale_shapes):
            self._device_buffers[name] = DeviceBuffer.allocate(n * h * w * 4)
            self._pinned[name] = PinnedArray.allocate((n, h, w), np.float32)
        for name, buf in self._device_buffers.items():
            if not self._context.set_tensor_address(name, buf.ptr):
                raise EngineError(f"TensorRT refused the address of {name}")

    # -- running ------------------------------------------------------------------------------------
    def _enqueue_model(self, batch: np.ndarray) -> int:
        """Queue H2D + inference for n <= max_batch prepared images; returns n."""
        n = len(batch)
        H, W = self.input_size
        pinned = self._pinned[INPUT_NAME]
        np.copyto(pinned.array[:n], batch)
        memcpy_async(self._device_buffers[INPUT_NAME].ptr, pinned.ptr, batch.nbytes, "h2d", self._stream_handle)
        if not self._context.set_input_shape(INPUT_NAME, (n, H, W, 3)):
            raise EngineError(f"TensorRT refused input shape {(n, H, W, 3)} (profile 1..{self.max_batch})")
        if not self._context.execute_async_v3(self._stream_handle):
            raise EngineError("TensorRT execute_async_v3 failed")
        return n

    def _device_map_ptrs(self) -> list[int]:
        return [self._device_buffers[name].ptr for name in OUTPUT_NAMES[:len(self.strides)]]

    def _chunks(self, batch: np.ndarray):
        for i in range(0, len(batch), self.max_batch):
            yield np.ascontiguousarray(batch[i:i + self.max_batch])

    def scale_maps(self, batch: np.ndarray) -> list[np.ndarray]:
        """uint8 T x th x tw x 3 RGB tiles -> three float32 T x th/s x tw/s maps, copied back to the host."""
        th, tw = self.input_size
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != (th, tw, 3):
            raise EngineError(f"tensorrt input must be uint8 N x {th} x {tw} x 3 tiles, got {batch.dtype} {batch.shape}")
        parts: list[list[np.ndarray]] = [[] for _ in self.strides]
        with self._lock:
            self._require_open()
            try:
                for chunk in self._chunks(batch):
                    n = self._enqueue_model(chunk)
                    for s, (name, (h, w)) in enumerate(zip(OUTPUT_NAMES, self.scale_shapes)):
                        memcpy_async(self._pinned[name].ptr, self._device_buffers[name].ptr, n * h * w * 4, "d2h",
                                     self._stream_handle)
                    self._synchronize()
                    for s, name in enumerate(OUTPUT_NAMES[:len(self.strides)]):
                        parts[s].append(self._pinned[name].array[:n].copy())
            except CudaHeadError as exc:
                raise EngineError(f"tensorrt engine: {exc}") from exc
        return [np.concatenate(p) for p in parts]

    @staticmethod
    def _fill_outside(maps: np.ndarray | None, valid) -> np.ndarray | None:
        """The CPU head's map convention on the GPU's maps: outside ``valid`` the image's minimum inside."""
        if maps is None or valid is None:
            return maps
        return outside_to_minimum(maps, np.broadcast_to(np.asarray(valid, bool), maps.shape))

    def head(self, scale_maps: list[np.ndarray], valid, want_maps: bool) -> EngineResult:
        """Stitched host scale maps (+ bool valid region) -> scores (and maps): the GPU kernel where it
        applies (one tile, max rule; statistics and the valid region in the kernel), else the CPU head."""
        if not self.fused:
            return super().head(scale_maps, valid, want_maps)
        with self._lock:
            self._require_open()
            try:
                scores, maps = self._head.scores_and_maps(list(scale_maps), want_maps=want_maps, valid=valid)
            except CudaHeadError as exc:
                raise EngineError(f"tensorrt engine head: {exc}") from exc
        if not want_maps:
            return EngineResult(scores)
        return EngineResult(scores, self._fill_outside(maps, valid), valid)

    def infer_prepared(self, batch: np.ndarray, want_maps: bool = False, valid=None) -> EngineResult:
        """Fitted uint8 N x H x W x 3 RGB (+ bool N x H x W valid region) -> scores (and maps). On the
        fused path the scale maps stay on the GPU (the margin is reflect-padded on the host, the head
        crops it); statistics and the valid region are applied by the kernel, the outside of the
        valid region of returned maps is filled on the host. Tiled / top-k engines: the CPU head."""
        if not self.fused:
            return super().infer_prepared(batch, want_maps, valid)
        self.check_batch(batch)
        if valid is not None and np.shape(valid) != batch.shape[:3]:
            raise EngineError(f"valid region {np.shape(valid)} does not match the batch {batch.shape[:3]}")
        padded = self.grid.pad(batch)
        scores, maps = [], []
        with self._lock:
            self._require_open()
            try:
                for i in range(0, len(padded), self.max_batch):
                    chunk = np.ascontiguousarray(padded[i:i + self.max_batch])
                    part = None if valid is None else valid[i:i + self.max_batch]
                    # the previous chunk was synchronised: the head's mask staging memory is free
                    valid_ptr, valid_stride = self._head.upload_valid(part, len(chunk))
                    n = self._enqueue_model(chunk)
                    self._head.enqueue(self._device_map_ptrs(), n, want_maps, valid_ptr, valid_stride)
                    self._head.synchronize()
                    s, m = self._head.results(n, want_maps)
                    scores.append(s)
                    if want_maps:
                        maps.append(self._fill_outside(m, part))
            except CudaHeadError as exc:
                raise EngineError(f"tensorrt engine: {exc}") from exc
            except ValueError as exc:
                raise EngineError(f"tensorrt engine: {exc}") from exc
        scores = np.concatenate(scores).astype(np.float32)
        if not want_maps:
            return EngineResult(scores)
        return EngineResult(scores, np.concatenate(maps), valid)

    def _synchronize(self) -> None:
        check_cuda(cudart().cudaStreamSynchronize(self._stream_handle), "cudaStreamSynchronize")

    def _require_open(self) -> None:
        """Raise EngineError when closed; make the GPU current in the calling thread."""
        if self._context is None or self._head is None:
            raise EngineError("tensorrt engine is closed")
        try:
            self._head.make_current()
        except CudaHeadError as exc:
            raise EngineError(f"tensorrt engine: {exc}") from exc

    def close(self) -> None:
        """Release the head, TensorRT objects, buffers and the stream (idempotent)."""
        if self._stream_handle is not None:
            try:
                self._synchronize()
            except Exception:
                pass
        if self._head is not None:
            self._head.close()
            self._head = None
        self._context = None   # context before engine before runtime
        self._engine = None
        self._runtime = None
        free_all(self._device_buffers, self._pinned)
        if self._stream is not None:
            try:
                cudart().cudaStreamDestroy(self._stream)
            except Exception:
                pass
            self._stream, self._stream_handle = None, None
