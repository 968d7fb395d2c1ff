"""`inspector eval`: image AUROC, pixel AUROC and AU-PRO on an MVTec AD-layout test set.

Runs the same engine interface the daemon uses (reference torch backend by default, or an exported
engine with ``--engine FILE --backend onnxruntime``), so the numbers are those of what will run.
Metrics are computed at the model's input resolution (masks resized with nearest neighbour), as
the Reverse Distillation reference does.

It refuses what the daemon refuses: an exported engine's manifest must carry the signature of a
trusted key (``--trusted-keys``, default ``$INSPECTOR_TRUSTED_KEYS``; docs/security.md) and match
its engine file; a checkpoint must match its recorded tensor hash.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..core.dataset_layout import test_samples
from ..model.data import load_fitted
from .metrics import evaluate_set


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model checkpoint (.pt): torch reference backend")
    src.add_argument("--engine", help="exported engine (.onnx with manifest)")
    p.add_argument("--backend", default=None, help="torch | onnxruntime | tensorrt (default: by file)")
    p.add_argument("--data", required=True, help="MVTec AD-layout folder (uses test/ and ground_truth/)")
    p.add_argument("--json", help="write the metrics as JSON here")
    p.add_argument("--teacher-weights", help="teacher weights file (resnet teachers)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) unreadable images")
    p.add_argument("--scores-out", help="write per-image scores as JSON lines here")
    p.add_argument("--trusted-keys", action="append", metavar="PATH",
                   help="--engine: public keys (.pub files or folders) its manifest must be signed by "
                        "(default $INSPECTOR_TRUSTED_KEYS)")


def open_from_args(args):
    from ..engine import open_engine
    if args.model:
        kw = {"teacher_weights": getattr(args, "teacher_weights", None), "max_batch": args.batch_size}
        return open_engine(args.backend or "torch", args.model, **kw)
    from ..core.signing import trusted_keys_from
    trusted = trusted_keys_from(getattr(args, "trusted_keys", None), "inspector eval --engine")
    return open_engine(args.backend or "onnxruntime", args.engine, max_batch=args.batch_size, trusted=trusted)


def score_dataset(engine, data: str | Path, *, skip_bad: bool = False) -> dict:
    """Run the engine over a test set as the daemon would (``engine.prepare``: its fit and
    geometry): kinds, labels, scores, masks/maps/valid at the inspection size (None without masks)."""
    samples = test_samples(data)
    with_masks = all(s.mask_path is not None for s in samples if s.is_defect)
    fitted = load_fitted(samples, engine.image_size, engine.inspection.fit, skip_bad=skip_bad,
                         with_masks=with_masks)
    t0 = time.perf_counter()
    result = engine.infer_prepared(fitted.images, want_maps=with_masks, valid=fitted.valid)
    elapsed = time.perf_counter() - t0
    kept = fitted.samples
    return {"samples": kept, "kinds": [s.kind for s in kept], "labels": np.array([s.is_defect for s in kept]),
            "scores": result.scores, "masks": fitted.masks, "maps": result.maps, "valid": fitted.valid,
            "skipped": len(fitted.skips), "seconds": elapsed}


def format_table(metrics: dict) -> str:
    def f(v):
        return "   -  " if v is None else f"{v:6.4f}"
    lines = [f"{'set':<16} {'n':>5} {'img AUROC':>10} {'px AUROC':>10} {'AU-PRO':>8}",
             f"{'all':<16} {metrics['n_good'] + metrics['n_defect']:>5} {f(metrics['image_auroc']):>10} "
             f"{f(metrics['pixel_auroc']):>10} {f(metrics['aupro']):>8}"]
    for kind, m in metrics["per_kind"].items():
        lines.append(f"{kind:<16} {m['n']:>5} {f(m['image_auroc']):>10} {f(m['pixel_auroc']):>10} {f(m['aupro']):>8}")
    return "\n".join(lines)


def run(args) -> int:
    engine = open_from_args(args)
    scored = score_dataset(engine, args.data, skip_bad=args.skip_bad)
    metrics = evaluate_set(scored["kinds"], scored["labels"], scored["scores"], scored["masks"], scored["maps"],
                           scored["valid"])
    n = len(scored["kinds"])
    metrics.update({"backend": engine.backend, "image_size": list(engine.image_size),
                    "skipped": scored["skipped"], "seconds": scored["seconds"],
                    "images_per_s": n / scored["seconds"] if scored["seconds"] > 0 else None,
                    "data": str(Path(args.data).resolve()), "model": args.model or args.engine})
    print(format_table(metrics))
    print(f"{n} images ({scored['skipped']} skipped), {engine.backend}, "
          f"{metrics['images_per_s']:.1f} images/s")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    if args.scores_out:
        with open(args.scores_out, "w") as f:
            for s, score in zip(scored["samples"], scored["scores"]):
                f.write(json.dumps({"path": str(s.path), "kind": s.kind, "score": float(score)}) + "\n")
    return 0
