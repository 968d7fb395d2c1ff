"""ONNX Runtime backend: the CPU default, tuned for small edge machines.

Session: intra-op threads = ``threads`` (default: all cores), one inter-op thread, no spinning
(``session.intra_op.allow_spinning = 0``: idle threads give the CPU back to grabbers and the
daemon), full graph optimisation, sequential execution. The manifest is checked (engine hash,
format) before the session is created.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import Engine, EngineError
from .manifest import INPUT_NAME, OUTPUT_NAMES, ManifestError, check_expectations, load_stats, read_manifest


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, path: str | Path, *, threads: int | None = None, max_batch: int = 8,
                 expect: dict | None = None, trusted=None):
        try:
            self.manifest = read_manifest(path, trusted=trusted)   # trusted: core.signing.TrustedKeys
            check_expectations(self.manifest, **(expect or {}))
        except ManifestError as exc:
            raise EngineError(str(exc)) from exc
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # corrupt graph despite the hash (e.g. exported by a newer opset)
            raise EngineError(f"onnxruntime cannot load {path}: {exc}") from exc
        self.path = str(path)
        self.max_batch = max_batch
        self.strides = tuple(o["stride"] for o in self.manifest["outputs"])
        try:
            self._init_head(self.manifest["config"], load_stats(path, self.manifest), self.manifest["image_size"])
        except (ManifestError, ValueError) as exc:
            raise EngineError(f"{path}: {exc}") from exc

    def scale_maps(self, batch: np.ndarray) -> list[np.ndarray]:
        outs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return [np.asarray(o, dtype=np.float32) for o in outs]
