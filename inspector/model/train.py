"""`inspector train`: the Reverse Distillation recipe on good parts, at the inspection geometry.

Recipe (reference code): flattened per-scale cosine loss, Adam lr 0.005 betas (0.5, 0.999), batch
16, no schedule. Around it, measured choices (README "Accuracy"): images are fitted to the
inspection size (``--image-size``, ``auto`` keeps the training images' aspect ratio within a pixel
budget; ``--fit letterbox`` never distorts them), reflect-padded by ``--margin`` so the borders are
judged with real-looking context, optionally cut into ``--tile`` tiles; ``--anomalies`` trains the
student to repair synthetic anomalies (:mod:`inspector.model.anomalies`); ``--holdout`` keeps a
share of the good images out of training to fit per-position statistics of the anomaly map
(``--normalize``), stored in the checkpoint and, on export, next to the engine.

Deterministic for a given ``--seed`` (the hold-out split, shuffling and anomalies use generators seeded
by (seed, ...), so a resumed run sees the same order). A checkpoint is written atomically after every
epoch; ``--resume`` continues from it up to ``--epochs``; the statistics are fitted at the end.
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

from ..core.preprocess import FITS, format_image_size, parse_image_size
from ..core.scoring import GoodStats, ScoreRule
from .checkpoint import build_model, load_checkpoint, save_checkpoint
from .data import GOOD, Sample, fit_read, read_samples, train_samples
from .network import LOSSES, RDConfig, ReverseDistillation, rd_loss
from .teachers import DEFAULT_TEACHER, LITE_VARIANTS, TEACHERS, create_teacher, teacher_options
from .training_data import TrainingBatches

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 80  # ~8 min for 200 images at 256x256 on 2 cores (README "Training time")
AUTO_PIXELS = 256 * 640          # --image-size auto: at most this many inspection pixels

def default_margin(size_hw: tuple[int, int]) -> int:
    """--margin auto: 32 px for inspection sides of 192 px and more, 16 below (multiples of 16)."""
    return 32 if min(size_hw) >= 192 else 16

MIN_STATS_IMAGES = 10            # --normalize auto needs at least this many held-out good images
SAME_SIZE_TOLERANCE = 0.1        # --normalize auto: training images within 10 % of one size (aligned parts)
_LITE = {"taps": "expanded", "fuse_channels": 192, "embed_channels": 512, "width_mult": 1.0,
         "decoder_depths": (1, 1, 1)}
# Student sizes per teacher: keep the defaults fast on a 2-core CPU (README: "Model sizes").
TEACHER_DEFAULTS: dict[str, dict] = {
    **{name: dict(_LITE) for name in LITE_VARIANTS},
    "resnet18": {"width_mult": 1.0, "decoder_depths": (2, 2, 2)},
    "wide_resnet50_2": {"width_mult": 2.0, "decoder_depths": (3, 4, 6)},
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="MVTec AD-layout folder (uses train/good)")
    p.add_argument("--out", required=True, help="model checkpoint to write (.pt)")
    p.add_argument("--backbone", default=DEFAULT_TEACHER, choices=sorted(TEACHERS), help="teacher")
    p.add_argument("--teacher-weights", help="ImageNet weights file for resnet18 / wide_resnet50_2")
    p.add_argument("--taps", choices=["expanded", "blocks"], help="efficientnet_lite* feature taps")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--image-size", default="auto",
                   help="inspection size: N, WIDTHxHEIGHT (multiples of 32) or auto (default: the training "
                        f"images' median size, scaled down to at most {AUTO_PIXELS} pixels)")
    p.add_argument("--fit", choices=FITS, default="letterbox", help="how images are fitted to the inspection size")
    p.add_argument("--margin", default="auto", help="reflect padding around the image, px (multiple of 16; "
                   "auto: 32, or 16 when a side is under 192 px)")
    p.add_argument("--tile", default=None, help="tile size WIDTHxHEIGHT (default: one tile, the whole image)")
    p.add_argument("--score", default="max", help="image score rule: max or topk:FRACTION (default max)")
    p.add_argument("--anomalies", type=float, default=0.0, help="share of each batch given a synthetic anomaly")
    p.add_argument("--holdout", type=float, default=0.15, help="share of good images held out for the "
                   "anomaly-map statistics")
    p.add_argument("--normalize", choices=["auto", "on", "off"], default="auto",
                   help="per-position normalisation of the anomaly map (auto: on for aligned parts, i.e. "
                        f"images of one size, with >= {MIN_STATS_IMAGES} held-out images)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--loss", choices=LOSSES, default="flat", help="distillation loss: flat (reference code: "
                   "cosine of whole flattened maps), pixel (mean per-pixel cosine distance), mixed (both)")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="learning-rate schedule over the epochs (constant: the reference recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) unreadable images")
    p.add_argument("--max-images", type=int, default=0, help="use at most N training images (0: all)")
    p.add_argument("--from-archive", metavar="ARCHIVE", help="also train on the false rejects operators marked in "
                   "this reject archive (docs/station.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def auto_image_size(shapes: list[tuple[int, int]], budget: int = AUTO_PIXELS) -> tuple[int, int]:
    """(h, w) from the images' median size: aspect kept, scaled down (never up) to ``budget``
    pixels, each side rounded to a multiple of 32 (at least 64)."""
    h, w = (float(np.median([s[k] for s in shapes])) for k in (0, 1))
    scale = min(1.0, math.sqrt(budget / (h * w)))
    return tuple(max(64, int(round(v * scale / 32)) * 32) for v in (h, w))


def make_config(args, shapes: list[tuple[int, int]]) -> RDConfig:
    defaults = dict(TEACHER_DEFAULTS.get(args.backbone, {}))
    if args.backbone in LITE_VARIANTS and args.taps:
        defaults["taps"] = args.taps
        if args.taps == "blocks":
            defaults.update(fuse_channels=None, embed_channels=None)
    size = auto_image_size(shapes) if str(args.image_size) == "auto" else parse_image_size(args.image_size)
    margin = default_margin(size) if str(args.margin) == "auto" else int(args.margin)
    cfg = RDConfig(backbone=args.backbone, image_size=size, fit=args.fit, margin=margin,
                   tile_size=parse_image_size(args.tile) if args.tile else None,
                   score=ScoreRule.parse(args.score).describe(), **defaults)
    cfg.grid()  # raises for an impossible geometry
    return cfg


def split_holdout(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices), sorted; at most a share of ``n``, and at least 2 to train."""
    k = int(round(n * max(0.0, min(share, 0.5)))) if n >= 4 else 0
    order = np.random.default_rng([seed, 7]).permutation(n)
    return np.sort(order[k:]), np.sort(order[:k])


def should_normalize(mode: str, n_holdout: int, shapes: list[tuple[int, int]]) -> tuple[bool, str]:
    """The --normalize decision and its reason (recorded in the checkpoint)."""
    if mode == "off":
        return False, "off (--normalize off)"
    if n_holdout < 2:
        if mode == "on":
            raise ValueError("--normalize on needs held-out good images (--holdout)")
        return False, "off: no held-out good images"
    if mode == "on":
        return True, "on (--normalize on)"
    if n_holdout < MIN_STATS_IMAGES:
        return False, f"off: {n_holdout} held-out images < {MIN_STATS_IMAGES}"
    hs, ws = np.array([s[0] for s in shapes]), np.array([s[1] for s in shapes])
    if hs.max() > hs.min() * (1 + SAME_SIZE_TOLERANCE) or ws.max() > ws.min() * (1 + SAME_SIZE_TOLERANCE):
        return False, "off: the training images differ in size (not aligned parts)"
    return True, f"on: aligned parts (one image size), {n_holdout} held-out images"


def learning_rate(base: float, schedule: str, epoch: int, epochs: int) -> float:
    """The learning rate of ``epoch`` (0-based): constant, or cosine decay to 1 % of ``base``."""
    if schedule == "constant" or epochs <= 1:
        return base
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * epoch / (epochs - 1))))


def train_epoch(model: ReverseDistillation, opt, batches: TrainingBatches, rng: np.random.Generator,
                bar=None, loss_kind: str = "flat") -> float:
    model.student.train()
    losses = []
    for targets, inputs, n in batches.epoch(rng):
        loss = rd_loss(targets, model.student(inputs), loss_kind)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if bar is not None:
            bar.update(n)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return float(np.mean(losses)) if losses else math.nan


def fit_good_stats(model: ReverseDistillation, ckpt_like: dict, fitted, device: str) -> GoodStats:
    """Per-position statistics of the held-out images' maps, through the reference engine (so with
    exactly the engines' tiling and head)."""
    from ..engine.torch_engine import TorchEngine

    engine = TorchEngine(model, {**ckpt_like, "good_stats": None}, device=device)
    maps = engine.infer_prepared(fitted.images, want_maps=True, valid=fitted.valid).maps
    return GoodStats.fit(maps)


def _start(args, out: Path, shapes):
    """(model, optimizer, config, first epoch, history, prior seconds, teacher weights)."""
    teacher_weights = args.teacher_weights
    if args.resume and out.exists():
        ckpt = load_checkpoint(out)
        teacher_weights = teacher_weights or ckpt["train"].get("teacher_weights")
        model = build_model(ckpt, teacher_weights=teacher_weights, path=out)
        log.info("resuming %s at epoch %d of %d", out, int(ckpt["epoch"]), args.epochs)
        opt = torch.optim.Adam(model.student.parameters(), lr=args.lr, betas=(0.5, 0.999))
        opt.load_state_dict(ckpt["optimizer"])
        return (model.to(args.device), opt, model.cfg, int(ckpt["epoch"]), list(ckpt["train"].get("history", [])),
                float(ckpt["train"].get("train_seconds", 0.0)), teacher_weights)
    cfg = make_config(args, shapes)
    teacher = create_teacher(cfg.backbone, teacher_weights, **teacher_options(cfg.backbone, cfg.taps))
    model = ReverseDistillation(teacher, cfg).to(args.device)
    opt = torch.optim.Adam(model.student.parameters(), lr=args.lr, betas=(0.5, 0.999))
    return model, opt, cfg, 0, [], 0.0, teacher_weights


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device available to torch")
    seed_everything(args.seed)
    out = Path(args.out)
    samples = train_samples(args.data)
    if args.max_images:
        samples = samples[: args.max_images]
    if args.from_archive:
        from ..station.feedback import false_reject_images

        feedback = false_reject_images(args.from_archive)
        log.info(feedback.describe(args.from_archive))
        samples = samples + [Sample(path, GOOD) for path in feedback.paths]
    t0 = time.time()
    raw = read_samples(samples, skip_bad=args.skip_bad)
    kept, skips = raw[3], raw[4]
    shapes = [im.shape[:2] for im in raw[0]]
    model, opt, cfg, start_epoch, history, prior_seconds, teacher_weights = _start(args, out, shapes)
    fitted = fit_read(*raw, cfg.image_size, cfg.fit)
    del raw
    train_idx, hold_idx = split_holdout(len(fitted.images), args.holdout, args.seed)
    if len(train_idx) < 2:
        raise ValueError("training needs at least 2 good images")
    normalize, why = should_normalize(args.normalize, len(hold_idx), shapes)
    grid = cfg.grid(model.teacher.feature_info.strides)
    batches = TrainingBatches(model, fitted.images[train_idx], grid, batch_size=args.batch_size,
                              device=args.device, anomaly_share=args.anomalies)
    log.info("%d training + %d held-out images (%d skipped), inspection %s (WxH, %s, margin %d, %d tile(s) of %s); "
             "normalisation %s; ready in %.1f s", len(train_idx), len(hold_idx), len(skips),
             format_image_size(cfg.image_size), cfg.fit, cfg.margin, grid.n_tiles, format_image_size(grid.tile_size),
             why, time.time() - t0)

    train_info = {"data": str(Path(args.data).resolve()), "from_archive": args.from_archive and
                  str(Path(args.from_archive).resolve()), "n_images": len(train_idx), "n_holdout": len(hold_idx),
                  "holdout": [kept[i].path.name for i in hold_idx], "skipped": len(skips),
                  "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
                  "anomalies": args.anomalies, "normalize": why, "loss": args.loss, "schedule": args.schedule,
                  "teacher_weights": str(teacher_weights) if teacher_weights else None, "history": history}
    total = max(0, args.epochs - start_epoch) * batches.samples_per_epoch
    bar = tqdm(total=total, unit="tile" if grid.n_tiles > 1 else "img", desc="train", disable=args.no_progress,
               dynamic_ncols=True)
    t_train = time.time()
    for epoch in range(start_epoch, args.epochs):
        for group in opt.param_groups:
            group["lr"] = learning_rate(args.lr, args.schedule, epoch, args.epochs)
        loss = train_epoch(model, opt, batches, np.random.default_rng([args.seed, epoch]), bar, args.loss)
        history.append({"epoch": epoch + 1, "loss": loss})
        bar.set_description(f"epoch {epoch + 1}/{args.epochs}")
        train_info["train_seconds"] = prior_seconds + (time.time() - t_train)
        save_checkpoint(out, model.eval(), optimizer=opt, epoch=epoch + 1, train=train_info)
        if args.no_progress:
            log.info("epoch %d/%d: loss %.4f (%.0f s)", epoch + 1, args.epochs, loss, train_info["train_seconds"])
    bar.close()
    stats = None
    if normalize:
        t1 = time.time()
        stats = fit_good_stats(model.eval(), {"config": cfg.to_dict(), "teacher": model.teacher.identity()},
                               fitted.subset(hold_idx), args.device)
        train_info["stats_seconds"] = time.time() - t1
    train_info["train_seconds"] = prior_seconds + (time.time() - t_train)
    save_checkpoint(out, model.eval(), optimizer=opt, epoch=args.epochs if args.epochs > start_epoch else start_epoch,
                    train=train_info, good_stats=stats)
    elapsed = time.time() - t_train
    print(f"trained {cfg.backbone} {format_image_size(cfg.image_size)} on {len(train_idx)} images: "
          f"{args.epochs - start_epoch} epochs in {elapsed:.1f} s, final loss "
          f"{history[-1]['loss'] if history else float('nan'):.4f}; normalisation {why} -> {out}")
    return 0
