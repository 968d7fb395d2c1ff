"""The one engine interface used downstream (daemon, calibrate, validate, bench, eval).

Data flow inside every engine, defined once here::

    camera images (uint8 h x W x C, any sizes)                       infer(images, formats, rois)
      -> fit to the inspection size H x W (squash or letterbox)       core.preprocess.prepare_fitted
         + valid region (letterbox fill and ROI excluded)            bool N x H x W, or None
      -> reflect-pad by the margin, cut into tiles                    core.geometry.TileGrid.cut
      -> backend: tiles uint8 T x th x tw x 3 RGB -> three per-scale  Engine.scale_maps (the hook)
         1 - cos maps float32 T x th/s x tw/s
      -> stitch the tiles' owned regions                              TileGrid.stitch
      -> map head: upsample + sum + blur, crop the margin             core.map_head.MapHead
      -> per-position normalisation (good-part statistics)            core.scoring.GoodStats
      -> image score over the valid region (max or top-k)             core.scoring.image_scores

Input: a list of camera images, each ``numpy.uint8`` H x W x C (C = 1 mono8, C = 3 bgr8 or rgb8,
as ``pixel_formats`` says; sizes may differ), or an already fitted batch ``uint8 N x H x W x 3 RGB``
at the inspection size. Output: :class:`EngineResult` with float32 scores (N,) and, on request,
float32 (normalised) anomaly maps N x H x W and the valid region.

Backends implement only :meth:`Engine.scale_maps`; a backend with a GPU head overrides
:meth:`Engine.head`. ``max_batch`` counts tiles per backend run. The geometry, score rule and
statistics come from the model config (``manifest["config"]``) and the manifest's ``head`` block;
``_init_head`` refuses statistics that do not match.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.geometry import TileGrid
from ..core.map_head import MapHead
from ..core.preprocess import prepare_fitted
from ..core.scoring import GoodStats, ScoreRule, image_scores


class EngineError(RuntimeError):
    """An engine cannot be opened (missing file, manifest mismatch, tampered model) or failed to run."""


@dataclass
class EngineResult:
    scores: np.ndarray                # float32 (N,)
    maps: np.ndarray | None = None    # float32 (N, H, W) when asked for (normalised when the engine is);
                                      # outside ``valid`` each holds its image's minimum inside it
    valid: np.ndarray | None = None   # bool (N, H, W): pixels that were scored; None = all


@dataclass(frozen=True)
class Inspection:
    """What an engine does around its network, read from a model config dict."""

    image_size: tuple[int, int]       # inspection size (H, W)
    fit: str
    grid: TileGrid
    rule: ScoreRule

    @classmethod
    def from_config(cls, config: dict, strides: tuple[int, ...], image_size=None) -> "Inspection":
        size = tuple(int(v) for v in (image_size if image_size is not None else config["image_size"]))
        margin = int(config.get("margin") or 0)
        tile = config.get("tile_size")
        grid = (TileGrid(size, tuple(int(v) for v in tile), margin, tuple(strides)) if tile
                else TileGrid.single(size, margin, tuple(strides)))
        return cls(size, str(config.get("fit") or "squash"), grid, ScoreRule.from_dict(config.get("score") or {}))


def outside_to_minimum(maps: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Maps whose pixels outside the valid region hold the image's minimum inside it, so that
    thresholds and region rules applied to the map never see them (and the map stays finite)."""
    if valid is None:
        return maps
    floor = np.array([m[v].min() if v.any() else np.nan for m, v in zip(maps, valid)], np.float32)
    return np.where(valid, maps, floor[:, None, None]).astype(np.float32)


class Engine:
    """Base class. Subclasses set ``manifest`` (dict), ``backend``, ``max_batch`` and ``strides``,
    call :meth:`_init_head` with the model config, and implement ``scale_maps``."""

    backend: str = "?"
    manifest: dict
    max_batch: int = 8
    strides: tuple[int, int, int] = (4, 8, 16)
    stats: GoodStats | None = None

    def _init_head(self, config: dict, stats: GoodStats | None = None, image_size=None) -> None:
        """Geometry, head, rule and statistics from the model config (``image_size``, when given,
        is the manifest's and wins)."""
        self.inspection = Inspection.from_config(config, self.strides, image_size)
        self.image_size = self.inspection.image_size
        self.grid = self.inspection.grid
        self.input_size = self.grid.tile_size
        self.map_head = MapHead.for_model(self.image_size, self.strides, margin=self.grid.margin)
        if stats is not None and stats.shape != tuple(self.image_size):
            raise EngineError(f"good-part statistics are {stats.shape[1]}x{stats.shape[0]} (WxH), the engine "
                              f"inspects at {self.image_size[1]}x{self.image_size[0]}")
        self.stats = stats

    def scale_maps(self, tiles: np.ndarray) -> list[np.ndarray]:
        """uint8 T x th x tw x 3 RGB tiles -> three float32 T x th/s x tw/s maps (s = 4, 8, 16)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the CPU head
    def head(self, stitched: list[np.ndarray], valid: np.ndarray | None, want_maps: bool) -> EngineResult:
        """Stitched per-scale maps of padded images -> scores (and maps): head, statistics, rule."""
        maps = self.map_head.maps(stitched)
        if self.stats is not None:
            maps = self.stats.apply(maps)
        scores = image_scores(maps, self.inspection.rule, valid)
        if not want_maps:
            return EngineResult(scores)
        return EngineResult(scores, outside_to_minimum(maps, valid), valid)

    # ------------------------------------------------------------------ running
    def check_batch(self, batch: np.ndarray) -> None:
        h, w = self.image_size
        if not (isinstance(batch, np.ndarray) and batch.dtype == np.uint8 and batch.ndim == 4
                and batch.shape[1:] == (h, w, 3)):
            raise EngineError(f"engine input must be uint8 N x {h} x {w} x 3 RGB, got "
                              f"{getattr(batch, 'dtype', type(batch))} {getattr(batch, 'shape', '')}")

    def run_tiles(self, tiles: np.ndarray) -> list[np.ndarray]:
        parts = [self.scale_maps(np.ascontiguousarray(tiles[i:i + self.max_batch]))
                 for i in range(0, len(tiles), self.max_batch)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def infer_prepared(self, batch: np.ndarray, want_maps: bool = False,
                       valid: np.ndarray | None = None) -> EngineResult:
        """Fitted uint8 N x H x W x 3 RGB batch (+ bool N x H x W valid region) -> scores (and maps).
        Images are run in chunks of about ``max_batch`` tiles."""
        self.check_batch(batch)
        if valid is not None and valid.shape != batch.shape[:3]:
            raise EngineError(f"valid region {valid.shape} does not match the batch {batch.shape[:3]}")
        per_run = max(1, self.max_batch // self.grid.n_tiles)
        results = []
        for i in range(0, len(batch), per_run):
            tiles = self.grid.cut(batch[i:i + per_run])
            stitched = self.grid.stitch(self.run_tiles(tiles))
            results.append(self.head(stitched, None if valid is None else valid[i:i + per_run], want_maps))
        scores = np.concatenate([r.scores for r in results]).astype(np.float32)
        if not want_maps:
            return EngineResult(scores)
        maps = np.concatenate([r.maps for r in results])
        return EngineResult(scores, maps, valid)

    def prepare(self, images: list[np.ndarray], pixel_formats: list[str] | str = "bgr8",
                rois: list[np.ndarray | None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Camera images -> (fitted uint8 N x H x W x 3 RGB batch, bool N x H x W valid region or None).
        ``rois``: per image None or a bool mask at that image's own size (True = judge here)."""
        return prepare_fitted(images, self.image_size, self.inspection.fit, pixel_formats, rois)

    def infer(self, images: list[np.ndarray], pixel_formats: list[str] | str = "bgr8",
              want_maps: bool = False, rois: list[np.ndarray | None] | None = None) -> EngineResult:
        """Camera images (any sizes) -> scores (and maps at the inspection size)."""
        batch, valid = self.prepare(images, pixel_formats, rois)
        return self.infer_prepared(batch, want_maps, valid)

    def close(self) -> None:
        pass
