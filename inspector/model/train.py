"""`inspector train`: the Reverse Distillation recipe on good parts.

Recipe (reference code): flattened per-scale cosine loss, Adam lr 0.005 betas (0.5, 0.999), batch
16, no schedule, no augmentation. Because there is no augmentation and the teacher is frozen, the
teacher's features of every training image are computed once and cached (float16) for all epochs:
training then only runs the student, which makes CPU training several times faster with the same
result (up to the float16 rounding of the cached targets).

Deterministic for a given ``--seed`` (shuffling uses a generator seeded by (seed, epoch), so a resumed
run sees the same order). A checkpoint is written atomically after every epoch; ``--resume``
continues from it up to ``--epochs``.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import build_model, load_checkpoint, save_checkpoint
from .data import load_prepared, train_samples
from .network import RDConfig, ReverseDistillation, rd_loss
from ..core.preprocess import format_image_size, parse_image_size
from .teachers import DEFAULT_TEACHER, TEACHERS, create_teacher

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 80  # ~8 min for 200 images at 256x256 on 2 cores (README "Training time")
# Student sizes per teacher: keep the defaults fast on a 2-core CPU (README: "Model sizes").
TEACHER_DEFAULTS: dict[str, dict] = {
    "efficientnet_lite0": {"taps": "expanded", "fuse_channels": 192, "embed_channels": 512,
                           "width_mult": 1.0, "decoder_depths": (1, 1, 1)},
    "resnet18": {"width_mult": 1.0, "decoder_depths": (2, 2, 2)},
    "wide_resnet50_2": {"width_mult": 2.0, "decoder_depths": (3, 4, 6)},
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="MVTec AD-layout folder (uses train/good)")
    p.add_argument("--out", required=True, help="model checkpoint to write (.pt)")
    p.add_argument("--backbone", default=DEFAULT_TEACHER, choices=sorted(TEACHERS), help="teacher")
    p.add_argument("--teacher-weights", help="ImageNet weights file for resnet18 / wide_resnet50_2")
    p.add_argument("--taps", choices=["expanded", "blocks"], help="efficientnet_lite0 feature taps")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--image-size", default="256", help="N or WIDTHxHEIGHT, multiples of 32 (default 256)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) unreadable images")
    p.add_argument("--max-images", type=int, default=0, help="use at most N training images (0: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def make_config(args) -> RDConfig:
    defaults = dict(TEACHER_DEFAULTS.get(args.backbone, {}))
    if args.backbone == "efficientnet_lite0" and args.taps:
        defaults["taps"] = args.taps
        if args.taps == "blocks":
            defaults.update(fuse_channels=None, embed_channels=None)
    return RDConfig(backbone=args.backbone, image_size=parse_image_size(args.image_size), **defaults)


@torch.no_grad()
def cache_teacher_features(model: ReverseDistillation, images: np.ndarray, device: str,
                           batch: int = 16) -> list[torch.Tensor]:
    """Teacher features of all images, float16 on ``device``: list of 3 tensors N x C x h x w."""
    chunks: list[list[torch.Tensor]] = [[], [], []]
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch]).to(device)
        for k, f in enumerate(model.teacher_features(x)):
            chunks[k].append(f.half())
    return [torch.cat(c) for c in chunks]


def train_epoch(model: ReverseDistillation, opt, feats: list[torch.Tensor], batch_size: int,
                order: np.ndarray, bar=None) -> float:
    model.student.train()
    losses = []
    for i in range(0, len(order), batch_size):
        idx = torch.from_numpy(order[i:i + batch_size])
        if len(idx) < 2 and len(order) > 1:  # BatchNorm needs 2+ samples; the order is reshuffled each epoch
            continue
        t = [f[idx].float() for f in feats]
        loss = rd_loss(t, model.student(t))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if bar is not None:
            bar.update(len(idx))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return float(np.mean(losses)) if losses else math.nan


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device available to torch")
    seed_everything(args.seed)
    out = Path(args.out)
    start_epoch, history = 0, []
    teacher_weights = args.teacher_weights
    if args.resume and out.exists():
        ckpt = load_checkpoint(out)
        teacher_weights = teacher_weights or ckpt["train"].get("teacher_weights")
        model = build_model(ckpt, teacher_weights=teacher_weights, path=out)
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["train"].get("history", []))
        cfg = model.cfg
        log.info("resuming %s at epoch %d of %d", out, start_epoch, args.epochs)
    else:
        cfg = make_config(args)
        kwargs = {"taps": cfg.taps} if cfg.backbone == "efficientnet_lite0" else {}
        model = ReverseDistillation(create_teacher(cfg.backbone, teacher_weights, **kwargs), cfg)
    model.to(args.device)
    opt = torch.optim.Adam(model.student.parameters(), lr=args.lr, betas=(0.5, 0.999))
    if start_epoch:
        opt.load_state_dict(ckpt["optimizer"])

    samples = train_samples(args.data)
    if args.max_images:
        samples = samples[: args.max_images]
    t0 = time.time()
    images, _, kept, skips = load_prepared(samples, cfg.image_size, skip_bad=args.skip_bad)
    if len(kept) < 2:
        raise ValueError("training needs at least 2 good images")
    feats = cache_teacher_features(model, images, args.device)
    log.info("%d training images (%d skipped), size %s (WxH), teacher features cached in %.1f s",
             len(kept), len(skips), format_image_size(cfg.image_size), time.time() - t0)

    train_info = {"data": str(Path(args.data).resolve()), "n_images": len(kept), "skipped": len(skips),
                  "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
                  "teacher_weights": str(teacher_weights) if teacher_weights else None,
                  "history": history}
    total = max(0, args.epochs - start_epoch) * len(kept)
    bar = tqdm(total=total, unit="img", desc="train", disable=args.no_progress, dynamic_ncols=True)
    t_train = time.time()
    prior_seconds = float(ckpt["train"].get("train_seconds", 0.0)) if start_epoch else 0.0
    for epoch in range(start_epoch, args.epochs):
        order = np.random.default_rng([args.seed, epoch]).permutation(len(kept))
        loss = train_epoch(model, opt, feats, args.batch_size, order, bar)
        history.append({"epoch": epoch + 1, "loss": loss})
        bar.set_description(f"epoch {epoch + 1}/{args.epochs}")
        train_info["history"] = history
        train_info["train_seconds"] = prior_seconds + (time.time() - t_train)
        save_checkpoint(out, model.eval(), optimizer=opt, epoch=epoch + 1, train=train_info)
    bar.close()
    elapsed = time.time() - t_train
    print(f"trained {cfg.backbone} {format_image_size(cfg.image_size)} on {len(kept)} images: "
          f"{args.epochs - start_epoch} epochs in {elapsed:.1f} s, final loss "
          f"{history[-1]['loss'] if history else float('nan'):.4f} -> {out}")
    return 0
