"""Anomaly map -> image score: good-part statistics, the valid region, and the score rule (numpy).

The map head (:mod:`inspector.core.map_head`) gives float32 maps N x H x W at the inspection size.
Two optional steps follow before the image score:

* **Per-position normalisation** (:class:`GoodStats`): ``z = (map - mean) * inv_std``, where
  ``mean`` and ``std`` are each pixel's statistics over good parts the student did not train on.
  On aligned parts some spots are bright on every good part (reflections, fixture edges); the
  normalisation turns "how unusual is this value *here*" into the score. ``std`` is smoothed and
  floored at its median, so a position is never trusted more than a typical one.
* **The valid region** (bool H x W or N x H x W): pixels outside it (outside the camera's region of
  interest, or the letterbox fill) are never scored.

Score rules (:class:`ScoreRule`): ``max`` (the paper's), or ``topk``: the mean of the top
``fraction`` of valid pixels (at least one pixel), which one hot pixel cannot set.

Fail closed: a non-finite value anywhere in the valid region makes that image's score NaN (the
verdict step turns it into a FAULT); an image with no valid pixel scores NaN too.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

RULES = ("max", "topk")
STATS_FORMAT = "inspector.goodstats/1"


class ScoringError(ValueError):
    """A score rule or statistics file that is malformed or does not fit the maps."""


@dataclass(frozen=True)
class ScoreRule:
    """How an image score is read from its (normalised) anomaly map."""

    rule: str = "max"
    fraction: float = 0.0   # topk only: share of the valid pixels averaged, in (0, 0.5]

    def __post_init__(self):
        if self.rule not in RULES:
            raise ScoringError(f"unknown score rule {self.rule!r}; expected one of {RULES}")
        if self.rule == "topk" and not 0.0 < self.fraction <= 0.5:
            raise ScoringError(f"topk fraction must be in (0, 0.5], got {self.fraction}")

    def describe(self) -> dict:
        return {"rule": self.rule, "fraction": self.fraction} if self.rule == "topk" else {"rule": "max"}

    @classmethod
    def from_dict(cls, d: dict) -> "ScoreRule":
        if not isinstance(d, dict) or set(d) - {"rule", "fraction"}:
            raise ScoringError(f"bad score rule {d!r}")
        return cls(str(d.get("rule", "max")), float(d.get("fraction", 0.0)))

    @classmethod
    def parse(cls, text: str) -> "ScoreRule":
        """``max`` or ``topk:0.001``."""
        name, _, arg = text.partition(":")
        return cls(name, float(arg) if arg else (0.001 if name == "topk" else 0.0))


def image_scores(maps: np.ndarray, rule: ScoreRule = ScoreRule(), valid: np.ndarray | None = None) -> np.ndarray:
    """float32 N x H x W maps (+ bool H x W or N x H x W valid region) -> float32 N scores."""
    if maps.ndim != 3:
        raise ScoringError(f"maps must be N x H x W, got {maps.shape}")
    n = len(maps)
    flat = maps.reshape(n, -1)
    if valid is not None:
        valid = np.broadcast_to(np.asarray(valid, bool), maps.shape).reshape(n, -1)
    scores = np.empty(n, np.float32)
    for i in range(n):
        v = flat[i] if valid is None else flat[i][valid[i]]
        if v.size == 0 or not np.isfinite(v).all():
            scores[i] = np.nan
        elif rule.rule == "max":
            scores[i] = v.max()
        else:
            k = max(1, int(round(v.size * rule.fraction)))
            scores[i] = np.partition(v, v.size - k)[v.size - k:].mean(dtype=np.float64)
    return scores


@dataclass(frozen=True)
class GoodStats:
    """Per-position statistics of good parts' anomaly maps at the inspection size (H x W)."""

    mean: np.ndarray      # float32 H x W
    inv_std: np.ndarray   # float32 H x W, 1 / (smoothed, floored std)
    n_images: int

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mean.shape)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.mean, np.float32).tobytes())
        h.update(np.ascontiguousarray(self.inv_std, np.float32).tobytes())
        return h.hexdigest()

    @classmethod
    def fit(cls, maps: np.ndarray, *, smooth_sigma: float = 4.0, floor: float = 1.0) -> "GoodStats":
        """Good-part maps float32 N x H x W (N >= 2) -> statistics. ``std`` is blurred with
        ``smooth_sigma`` and floored at ``floor`` times its median."""
        maps = np.asarray(maps, np.float32)
        if maps.ndim != 3 or len(maps) < 2 or not np.isfinite(maps).all():
            raise ScoringError(f"need >= 2 finite good maps N x H x W, got {maps.shape}")
        mean = maps.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = maps.std(axis=0, dtype=np.float64).astype(np.float32)
        if smooth_sigma > 0:
            std = cv2.GaussianBlur(std, (0, 0), smooth_sigma, borderType=cv2.BORDER_REFLECT)
        std = np.maximum(std, floor * float(np.median(std)) + 1e-6)
        return cls(mean, (1.0 / std).astype(np.float32), len(maps))

    def apply(self, maps: np.ndarray) -> np.ndarray:
        """float32 N x H x W -> normalised float32 N x H x W. Raises ScoringError on a shape mismatch."""
        if maps.shape[1:] != self.mean.shape:
            raise ScoringError(f"maps {maps.shape[1:]} do not match statistics {self.mean.shape}")
        return (maps - self.mean) * self.inv_std

    # --------------------------------------------------------------- files (npz, hash-checked)
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, format=np.array(STATS_FORMAT), mean=self.mean, inv_std=self.inv_std,
                 n_images=np.array(self.n_images))
        return buf.getvalue()

    def save(self, path: str | Path) -> str:
        """Write the statistics; returns their sha256 (of the arrays, not of the file)."""
        Path(path).write_bytes(self.to_bytes())
        return self.sha256

    @classmethod
    def load(cls, path: str | Path, *, sha256: str | None = None, shape: tuple[int, int] | None = None) -> "GoodStats":
        """Read and check: format, finite arrays of one shape, the expected hash and shape."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != STATS_FORMAT:
                    raise ScoringError(f"{path}: not good-part statistics ({STATS_FORMAT})")
                stats = cls(z["mean"].astype(np.float32), z["inv_std"].astype(np.float32), int(z["n_images"]))
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, ScoringError):
                raise
            raise ScoringError(f"cannot read good-part statistics {path}: {exc}") from exc
        if (stats.mean.ndim != 2 or stats.mean.shape != stats.inv_std.shape
                or not (np.isfinite(stats.mean).all() and np.isfinite(stats.inv_std).all())):
            raise ScoringError(f"{path}: malformed statistics arrays")
        if shape is not None and tuple(shape) != stats.shape:
            raise ScoringError(f"{path}: statistics are {stats.shape[1]}x{stats.shape[0]} (WxH), the engine "
                               f"inspects at {shape[1]}x{shape[0]}")
        if sha256 is not None and stats.sha256 != sha256:
            raise ScoringError(f"{path}: statistics do not match the engine's manifest (sha256 "
                               f"{stats.sha256[:12]}... != {sha256[:12]}...); refusing them")
        return stats
