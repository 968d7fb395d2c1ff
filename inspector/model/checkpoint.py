"""Model checkpoints that carry their own config and identity (nanoGPT style).

A checkpoint is a ``torch.save``d dict of plain types and tensors, loadable with
``torch.load(weights_only=True)``::

    format            "inspector.rd/1"
    config            RDConfig as a dict (backbone, taps, image_size (h, w), widths, depths)
    teacher           name, weights_sha256, channels, strides, mean, std (normalisation)
    student           state dict of the trainable part (OCBE + decoder); the teacher's weights are
                      not copied: they are loaded from their source and checked against the hash
    good_stats        per-position statistics of held-out good parts' maps (mean, inv_std tensors
                      H x W at the inspection size, n_images), or None: see core.scoring.GoodStats
    optimizer, epoch  for resuming
    train             recipe and data (epochs, lr, batch size, seed, n_images, data path, history)
    versions          inspector, torch, python
    tensors_sha256    SHA-256 over every tensor the model is rebuilt from (student, good_stats):
                      :func:`tensors_digest`. Bytes flipped in a weight change it.

Loaders refuse a checkpoint of another format, one without ``tensors_sha256`` or whose tensors do
not match it (altered or damaged weights), a teacher whose weights hash differs, and (where the
caller states one) an image size that differs.
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..core.hashing import sha256_file as file_sha256  # noqa: F401 - its old name here
from ..core.scoring import GoodStats
from .network import RDConfig, ReverseDistillation
from .teachers import create_teacher, teacher_options

FORMAT = "inspector.rd/1"


class CheckpointError(ValueError):
    """A checkpoint is unreadable, of another format, or does not match what it is used with."""


def versions() -> dict:
    return {"inspector": __version__, "torch": str(torch.__version__), "python": platform.python_version()}


def stats_to_state(stats: GoodStats | None) -> dict | None:
    if stats is None:
        return None
    return {"mean": torch.from_numpy(stats.mean), "inv_std": torch.from_numpy(stats.inv_std),
            "n_images": int(stats.n_images)}


def stats_from_checkpoint(ckpt: dict) -> GoodStats | None:
    """The checkpoint's good-part statistics, or None. Raises CheckpointError when malformed."""
    state = ckpt.get("good_stats")
    if state is None:
        return None
    try:
        stats = GoodStats(state["mean"].numpy().astype(np.float32), state["inv_std"].numpy().astype(np.float32),
                          int(state["n_images"]))
    except (KeyError, AttributeError, TypeError) as exc:
        raise CheckpointError(f"malformed good_stats in checkpoint: {exc}") from exc
    if stats.shape != tuple(ckpt["config"]["image_size"]) or stats.inv_std.shape != stats.shape:
        raise CheckpointError(f"good_stats {stats.shape} do not match the inspection size {ckpt['config']['image_size']}")
    return stats


def tensors_digest(ckpt: dict) -> str:
    """SHA-256 (hex) over the tensors a model is rebuilt from: ``student`` and ``good_stats``, in
    sorted name order, each as name, dtype, shape and its raw bytes (little-endian, C order)."""
    h = hashlib.sha256()
    named = {f"student.{k}": v for k, v in ckpt["student"].items()}
    named.update({f"good_stats.{k}": v for k, v in (ckpt.get("good_stats") or {}).items() if torch.is_tensor(v)})
    for name in sorted(named):
        tensor = named[name].detach().cpu().contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: ReverseDistillation, *, optimizer=None, epoch: int = 0,
                    train: dict | None = None, good_stats: GoodStats | None = None) -> Path:
    """Write atomically (temp file + rename), so a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "config": model.cfg.to_dict(),
        "teacher": model.teacher.identity(),
        "student": model.student.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),
        "train": train or {},
        "good_stats": stats_to_state(good_stats),
        "versions": versions(),
    }
    state["tensors_sha256"] = tensors_digest(state)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Load and validate the structure of a checkpoint (weights_only=True: no code is executed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read model {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an inspector model checkpoint (format {FORMAT})")
    for key in ("config", "teacher", "student"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path}: missing or malformed '{key}'")
    recorded = ckpt.get("tensors_sha256")
    if not isinstance(recorded, str):
        raise CheckpointError(f"{path} records no tensors_sha256 (saved by an older inspector): its weights cannot "
                              "be verified; train it again")
    try:
        actual = tensors_digest(ckpt)
    except (AttributeError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: malformed tensors: {exc}") from exc
    if actual != recorded:
        raise CheckpointError(f"{path}: its tensors do not match their recorded sha256 ({actual[:12]}... != "
                              f"{recorded[:12]}...): altered or damaged weights; refusing it")
    return ckpt


def build_model(ckpt: dict, *, teacher_weights: str | Path | None = None,
                expect_image_size: tuple[int, int] | None = None, path: str | Path = "<checkpoint>"
                ) -> ReverseDistillation:
    """Rebuild the model a checkpoint describes; refuse a teacher or size mismatch."""
    try:
        cfg = RDConfig.from_dict(ckpt["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad model config: {exc}") from exc
    if expect_image_size is not None and tuple(expect_image_size) != tuple(cfg.image_size):
        raise CheckpointError(f"{path}: model image size {cfg.image_size} (h, w) does not match "
                              f"the requested {tuple(expect_image_size)}")
    recorded = ckpt["teacher"]
    teacher = create_teacher(cfg.backbone, teacher_weights, **teacher_options(cfg.backbone, cfg.taps))
    if recorded.get("name") != teacher.name or recorded.get("weights_sha256") != teacher.weights_sha256:
        raise CheckpointError(
            f"{path}: trained with teacher {recorded.get('name')} (weights sha256 "
            f"{str(recorded.get('weights_sha256'))[:12]}...), but the available teacher is {teacher.name} "
            f"(sha256 {teacher.weights_sha256[:12]}...); refusing to mix them")
    model = ReverseDistillation(teacher, cfg)
    try:
        model.student.load_state_dict(ckpt["student"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: student weights do not fit the config: {exc}") from exc
    return model.eval()


def load_model(path: str | Path, *, teacher_weights: str | Path | None = None,
               expect_image_size: tuple[int, int] | None = None) -> tuple[ReverseDistillation, dict]:
    """``(model in eval mode, checkpoint dict)`` from a file. Raises CheckpointError."""
    ckpt = load_checkpoint(path)
    return build_model(ckpt, teacher_weights=teacher_weights or ckpt["train"].get("teacher_weights"),
                       expect_image_size=expect_image_size, path=path), ckpt
