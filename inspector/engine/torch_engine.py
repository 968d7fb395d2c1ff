"""The reference backend: the eager PyTorch model from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..model.checkpoint import CheckpointError, load_model, stats_from_checkpoint
from .base import Engine, EngineError
from .manifest import inspection_blocks


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, model, ckpt: dict, *, device: str = "cpu", max_batch: int = 8, source: str = ""):
        torch.set_flush_denormal(True)
        self.model = model.to(device).eval()
        self.device = device
        self.max_batch = max_batch
        self.strides = tuple(model.teacher.feature_info.strides)
        self.manifest = {"backend": "torch", "model": source, "config": ckpt["config"],
                         "teacher": ckpt["teacher"], "image_size": list(model.cfg.image_size)}
        try:
            self._init_head(ckpt["config"], stats_from_checkpoint(ckpt))
        except (CheckpointError, ValueError) as exc:
            raise EngineError(f"{source}: {exc}") from exc
        stats = None if self.stats is None else {"sha256": self.stats.sha256, "n_images": self.stats.n_images}
        self.manifest.update(inspection_blocks(ckpt["config"], self.grid, stats))

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, teacher_weights=None, **kwargs) -> "TorchEngine":
        try:
            model, ckpt = load_model(path, teacher_weights=teacher_weights)
        except CheckpointError as exc:
            raise EngineError(str(exc)) from exc
        return cls(model, ckpt, source=str(path), **kwargs)

    @torch.no_grad()
    def scale_maps(self, tiles: np.ndarray) -> list[np.ndarray]:
        x = torch.from_numpy(tiles).to(self.device)
        return [m.float().cpu().numpy() for m in self.model.cosine_maps(x)]
