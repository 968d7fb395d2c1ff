"""The one engine interface used downstream (daemon, calibrate, validate, bench, eval).

Input: a list of camera images, each ``numpy.uint8`` H x W x C (C = 1 mono8, C = 3 bgr8 or rgb8,
as ``pixel_formats`` says; sizes may differ), or an already prepared batch ``uint8 N x h x w x 3
RGB`` at the model's size. Pre-processing (:func:`inspector.core.preprocess.prepare`) is part of the
engine and defined once. Output: :class:`EngineResult` with float32 scores (N,) and, on request,
float32 anomaly maps N x h x w at the model's input size.

Backends implement only :meth:`Engine.scale_maps` (prepared batch -> three per-scale 1 - cos maps);
the map head (upsample + sum + blur + max) is :class:`inspector.core.map_head.MapHead` on the CPU, or a
GPU kernel in backends that have one (:meth:`Engine.head`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.map_head import MapHead
from ..core.preprocess import prepare_batch


class EngineError(RuntimeError):
    """An engine cannot be opened (missing file, manifest mismatch, tampered model) or failed to run."""


@dataclass
class EngineResult:
    scores: np.ndarray            # float32 (N,)
    maps: np.ndarray | None = None  # float32 (N, h, w) when asked for


class Engine:
    """Base class. Subclasses set ``image_size`` (h, w), ``manifest`` (dict), ``backend`` and
    ``max_batch``, and implement ``scale_maps``."""

    backend: str = "?"
    image_size: tuple[int, int]
    manifest: dict
    max_batch: int = 8
    strides: tuple[int, int, int] = (4, 8, 16)

    def _init_head(self) -> None:
        self.map_head = MapHead.for_model(self.image_size, self.strides)

    def scale_maps(self, batch: np.ndarray) -> list[np.ndarray]:
        """uint8 N x h x w x 3 RGB -> three float32 N x h/s x w/s maps (s = 4, 8, 16)."""
        raise NotImplementedError

    def head(self, scale_maps: list[np.ndarray], want_maps: bool) -> EngineResult:
        if want_maps:
            maps, scores = self.map_head.maps_and_scores(scale_maps)
            return EngineResult(scores, maps)
        return EngineResult(self.map_head.scores(scale_maps))

    def check_batch(self, batch: np.ndarray) -> None:
        h, w = self.image_size
        if not (isinstance(batch, np.ndarray) and batch.dtype == np.uint8 and batch.ndim == 4
                and batch.shape[1:] == (h, w, 3)):
            raise EngineError(f"engine input must be uint8 N x {h} x {w} x 3 RGB, got "
                              f"{getattr(batch, 'dtype', type(batch))} {getattr(batch, 'shape', '')}")

    def infer_prepared(self, batch: np.ndarray, want_maps: bool = False) -> EngineResult:
        """Prepared uint8 N x h x w x 3 RGB batch -> scores (and maps), in chunks of ``max_batch``."""
        self.check_batch(batch)
        results = [self.head(self.scale_maps(np.ascontiguousarray(batch[i:i + self.max_batch])), want_maps)
                   for i in range(0, len(batch), self.max_batch)]
        scores = np.concatenate([r.scores for r in results]).astype(np.float32)
        maps = np.concatenate([r.maps for r in results]) if want_maps else None
        return EngineResult(scores, maps)

    def infer(self, images: list[np.ndarray], pixel_formats: list[str] | str = "bgr8",
              want_maps: bool = False) -> EngineResult:
        """Camera images (any sizes) -> scores (and maps at the model's size)."""
        return self.infer_prepared(prepare_batch(images, self.image_size, pixel_formats), want_maps)

    def close(self) -> None:
        pass
