#!/usr/bin/env python3
"""Learning curves of one training recipe on one MVTec AD-layout data set, in one process.

Research tool behind the defaults (docs/accuracy.md): it trains exactly as ``inspector train`` does
(same config, geometry, batches and loss) and, at the epochs listed in ``--eval-at``, scores the
held-out good images and the test set with the reference head, then prints one line per
(statistics, score rule) variant:

    image AUROC, pixel AUROC, AU-PRO, escapes at 0 false rejects on test/good (the strictest
    threshold a line could run), escapes at the threshold that gives <= 1 % FRR on the calibration
    half of the held-out good images.

The held-out good images (``--holdout``) are split in two halves: per-position statistics are fitted
on the first, the 1 %-FRR threshold is read from the second (or, with ``--calib DIR``, the statistics
use every held-out image and the threshold comes from the good images in DIR, as a line's
calibration parts). Teacher features of the held-out and
test images are cached, so an evaluation only runs the student. Results are appended to
``--jsonl`` (one JSON object per evaluation) for later comparison.

    python tools/rd_lab.py --data ../shared/datasets/ksdd1 --epochs 20 --eval-at 5,10,20 \
        --train-args "--image-size 256x640 --anomalies 0.5" --tag ksdd_base --jsonl runs/lab.jsonl
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inspector.core.dataset_layout import Sample, list_images, test_samples, train_samples  # noqa: E402
from inspector.core.map_head import MapHead  # noqa: E402
from inspector.core.scoring import GoodStats, ScoreRule, image_scores  # noqa: E402
from inspector.evaluation.metrics import aupro, image_auroc, pixel_auroc  # noqa: E402
from inspector.model import train as train_mod  # noqa: E402
from inspector.model.data import fit_read, load_fitted, read_samples  # noqa: E402
from inspector.model.network import ReverseDistillation, cosine_maps  # noqa: E402
from inspector.model.teachers import create_teacher, teacher_options  # noqa: E402
from inspector.model.training_data import TrainingBatches, teacher_features  # noqa: E402

RULES = ["max", "topk:0.001", "topk:0.005", "topk:0.02"]


def student_maps(model: ReverseDistillation, feats: list[torch.Tensor], head: MapHead, batch: int = 8) -> np.ndarray:
    """Cached teacher features (float16) -> float32 N x H x W anomaly maps (reference head)."""
    model.student.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(feats[0]), batch):
            t = [f[i:i + batch].float() for f in feats]
            maps = [m.numpy() for m in cosine_maps(t, model.student(t))]
            out.append(head.maps(maps))
    return np.concatenate(out)


def escapes_at(threshold: float, defect_scores: np.ndarray) -> int:
    return int((defect_scores <= threshold).sum())


def evaluate(model, head, hold_a, hold_b, test, test_masks, test_labels, test_valid, dump=None) -> list[dict]:
    maps_a, maps_b, maps_t = (student_maps(model, f, head) for f in (hold_a, hold_b, test))
    if dump is not None:
        dump(maps_a, maps_b, maps_t)
    rows = []
    stats = GoodStats.fit(maps_a) if len(maps_a) >= 2 else None
    for norm in (False, True):
        if norm and stats is None:
            continue
        mb, mt = (stats.apply(maps_b), stats.apply(maps_t)) if norm else (maps_b, maps_t)
        px = pixel_auroc(test_masks, mt, test_valid)
        pro = aupro(test_masks, mt, valid=test_valid)
        for text in RULES:
            rule = ScoreRule.parse(text)
            sb = image_scores(mb, rule)
            st = image_scores(mt, rule, test_valid)
            good, bad = st[~test_labels], st[test_labels]
            thr_cal = float(np.quantile(sb, 0.99, method="higher")) if len(sb) else float("nan")
            rows.append({"norm": norm, "rule": text, "image_auroc": image_auroc(test_labels, st),
                         "pixel_auroc": px, "aupro": pro,
                         "escapes_0fr": escapes_at(float(good.max()), bad),
                         "escapes_cal": escapes_at(thr_cal, bad), "fr_cal": int((good > thr_cal).sum()),
                         "n_defect": int(bad.size), "n_good": int(good.size)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--eval-at", default="", help="comma-separated epochs (default: the last)")
    p.add_argument("--train-args", default="", help="inspector train flags (quoted)")
    p.add_argument("--tag", default="")
    p.add_argument("--jsonl", default="runs/lab.jsonl")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--dump", help="save held-out/test maps and images here (npz) at the last evaluation, or at "
                   "every one when the name holds EPOCH")
    p.add_argument("--save-student", help="save the student's weights here at every evaluation (EPOCH in "
                   "the name is replaced by the epoch)")
    p.add_argument("--calib", help="folder of good images (never trained on) for the 1 %%-FRR threshold: then the "
                   "statistics use every held-out image, as inspector train does")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    tp = argparse.ArgumentParser()
    train_mod.add_arguments(tp)
    targs = tp.parse_args(["--data", args.data, "--out", "/dev/null", "--epochs", str(args.epochs),
                           *shlex.split(args.train_args)])
    train_mod.seed_everything(targs.seed)
    t0 = time.time()
    raw = read_samples(train_samples(args.data))
    shapes = [im.shape[:2] for im in raw[0]]
    cfg = train_mod.make_config(targs, shapes)
    teacher = create_teacher(cfg.backbone, targs.teacher_weights, **teacher_options(cfg.backbone, cfg.taps))
    model = ReverseDistillation(teacher, cfg)
    fitted = fit_read(*raw, cfg.image_size, cfg.fit)
    del raw
    train_idx, hold_idx = train_mod.split_holdout(len(fitted.images), targs.holdout, targs.seed)
    grid = cfg.grid(model.teacher.feature_info.strides)
    if grid.n_tiles != 1:
        raise SystemExit("rd_lab caches whole-image features: use it without --tile")
    batches = TrainingBatches(model, fitted.images[train_idx], grid, batch_size=targs.batch_size,
                              device="cpu", anomaly_share=targs.anomalies)
    half = len(hold_idx) if args.calib else len(hold_idx) // 2
    hold_a = teacher_features(model, grid.pad(fitted.images[hold_idx[:half]]), "cpu", half=True)
    if args.calib:
        calib = load_fitted([Sample(path, "good") for path in list_images(args.calib)], cfg.image_size, cfg.fit)
        hold_b = teacher_features(model, grid.pad(calib.images), "cpu", half=True)
    else:
        hold_b = teacher_features(model, grid.pad(fitted.images[hold_idx[half:]]), "cpu", half=True)
    test = load_fitted(test_samples(args.data), cfg.image_size, cfg.fit, with_masks=True)
    test_feats = teacher_features(model, grid.pad(test.images), "cpu", half=True)
    labels = np.array([s.is_defect for s in test.samples])
    head = MapHead.for_model(cfg.image_size, model.teacher.feature_info.strides, margin=cfg.margin)
    opt = torch.optim.Adam(model.student.parameters(), lr=targs.lr, betas=(0.5, 0.999))
    print(f"[{args.tag}] {cfg.backbone} {cfg.image_size} margin {cfg.margin}: {len(train_idx)} train, "
          f"{len(hold_idx)} held out, {len(labels)} test; ready in {time.time() - t0:.0f} s", flush=True)
    eval_at = {int(e) for e in args.eval_at.split(",") if e} or {args.epochs}
    t_train = 0.0
    for epoch in range(args.epochs):
        t1 = time.time()
        for group in opt.param_groups:
            group["lr"] = train_mod.learning_rate(targs.lr, targs.schedule, epoch, args.epochs)
        loss = train_mod.train_epoch(model, opt, batches, np.random.default_rng([targs.seed, epoch]),
                                     loss_kind=targs.loss)
        t_train += time.time() - t1
        print(f"[{args.tag}] epoch {epoch + 1}: loss {loss:.4f} ({t_train:.0f} s)", flush=True)
        if epoch + 1 not in eval_at:
            continue
        t2 = time.time()
        if args.save_student:
            torch.save(model.student.state_dict(), args.save_student.replace("EPOCH", str(epoch + 1)))
        dump = None
        if args.dump and (epoch + 1 == max(eval_at) or "EPOCH" in args.dump):
            def dump(maps_a, maps_b, maps_t, _test=test, _path=args.dump.replace("EPOCH", str(epoch + 1))):
                Path(_path).parent.mkdir(parents=True, exist_ok=True)
                maps_train = student_maps(model, batches.cached, head).astype(np.float16)  # in-sample
                np.savez_compressed(_path, maps_a=maps_a, maps_b=maps_b, maps_t=maps_t, valid=_test.valid,
                                    maps_train=maps_train,
                                    images=_test.images[..., 0], masks=_test.masks, labels=labels,
                                    names=np.array([str(s.path) for s in _test.samples]))
        rows = evaluate(model, head, hold_a, hold_b, test_feats, test.masks, labels, test.valid, dump)
        Path(args.jsonl).parent.mkdir(parents=True, exist_ok=True)
        with open(args.jsonl, "a") as f:
            for r in rows:
                r.update({"tag": args.tag, "data": args.data, "epoch": epoch + 1, "train_seconds": t_train,
                          "loss": loss, "train_args": args.train_args})
                f.write(json.dumps(r) + "\n")
                print(f"[{args.tag}] ep {epoch + 1:3d} {'norm' if r['norm'] else 'raw '} {r['rule']:<11} "
                      f"img {r['image_auroc']:.3f} px {r['pixel_auroc']:.3f} pro {r['aupro']:.3f} "
                      f"esc@0fr {r['escapes_0fr']:2d}/{r['n_defect']} esc@cal {r['escapes_cal']:2d} "
                      f"fr@cal {r['fr_cal']}/{r['n_good']}", flush=True)
        print(f"[{args.tag}] eval {time.time() - t2:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
