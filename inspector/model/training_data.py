"""Training batches: fitted, reflect-padded good images -> (teacher targets, student inputs).

The training images are fitted to the inspection size and reflect-padded by the margin exactly as an
engine does (:class:`inspector.core.geometry.TileGrid`), then kept in memory as uint8.

* **One tile** (the network sees the whole padded image): the teacher's features of every image
  are computed once and cached (float16); each step only runs the student (the reference recipe has
  no augmentation and the teacher is frozen, so this is exact up to the float16 rounding).
* **Tiles**: each step takes random tiles (positions on the 32-pixel grid, anywhere in the padded
  image) and runs the teacher on them, as an engine runs it on its tiles. An epoch holds as many
  tiles as the images' tile grids.

With synthetic anomalies (``anomaly_share`` > 0, :mod:`inspector.model.anomalies`) that share of
each batch reaches the student through the teacher's features of an altered image, while the
target stays the clean image's features.

Shapes: padded images uint8 N x Hp x Wp x 3 RGB; teacher features float32 B x C_i x h_i x w_i.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..core.geometry import ALIGN, TileGrid
from .anomalies import add_anomaly
from .network import ReverseDistillation

Features = list[torch.Tensor]


@torch.no_grad()
def teacher_features(model: ReverseDistillation, images: np.ndarray, device: str, batch: int = 16,
                     half: bool = False) -> Features:
    """Teacher features of uint8 N x h x w x 3 RGB images: list of 3 tensors N x C x h/s x w/s."""
    chunks: list[list[torch.Tensor]] = [[], [], []]
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).to(device)
        for k, f in enumerate(model.teacher_features(x)):
            chunks[k].append(f.half() if half else f)
    return [torch.cat(c) for c in chunks]


class TrainingBatches:
    """Yields ``(targets, inputs)`` feature lists for one epoch at a time (see module docstring)."""

    def __init__(self, model: ReverseDistillation, images: np.ndarray, grid: TileGrid, *, batch_size: int,
                 device: str, anomaly_share: float = 0.0):
        self.model, self.grid, self.device = model, grid, device
        self.batch_size = int(batch_size)
        self.anomaly_share = float(anomaly_share)
        self.padded = grid.pad(images)
        self.single = grid.n_tiles == 1
        self.cached = teacher_features(model, self.padded, device, half=True) if self.single else None

    @property
    def samples_per_epoch(self) -> int:
        return len(self.padded) * self.grid.n_tiles

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple[Features, Features, int]]:
        """``(targets, inputs, n)`` per step; batches of fewer than 2 samples are skipped (BatchNorm)."""
        n = self.samples_per_epoch
        order = np.concatenate([rng.permutation(len(self.padded)) for _ in range(self.grid.n_tiles)])[:n]
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            if len(idx) < 2 and n > 1:
                continue
            yield (*self._batch(idx, rng), len(idx))

    def _batch(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[Features, Features]:
        if self.single:
            pixels = self.padded[idx]
            targets = [f[torch.from_numpy(idx)].float() for f in self.cached]
        else:
            pixels = self._random_tiles(idx, rng)
            targets = teacher_features(self.model, pixels, self.device)
        return targets, self._with_anomalies(targets, pixels, rng)

    def _random_tiles(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        th, tw = self.grid.tile_size
        Hp, Wp = self.padded.shape[1:3]
        ys = rng.integers(0, (Hp - th) // ALIGN + 1, len(idx)) * ALIGN
        xs = rng.integers(0, (Wp - tw) // ALIGN + 1, len(idx)) * ALIGN
        return np.stack([self.padded[j, y:y + th, x:x + tw] for j, y, x in zip(idx, ys, xs)])

    def _with_anomalies(self, targets: Features, pixels: np.ndarray, rng: np.random.Generator) -> Features:
        if self.anomaly_share <= 0:
            return targets
        chosen = np.flatnonzero(rng.random(len(pixels)) < self.anomaly_share)
        if not len(chosen):
            return targets
        altered = np.stack([add_anomaly(rng, pixels[j], self.padded)[0] for j in chosen])
        feats = teacher_features(self.model, altered, self.device)
        inputs = [t.clone() for t in targets]
        where = torch.from_numpy(chosen).to(targets[0].device)
        for k in range(len(inputs)):
            inputs[k][where] = feats[k]
        return inputs
