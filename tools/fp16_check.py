#!/usr/bin/env python3
"""FP16 vs FP32 engines on a real test set: score error, AUROC and verdicts at a threshold.

    python tools/fp16_check.py --model MODEL.pt --data MVTEC_DIR [--threshold T | --calibration P.json]
        [--workdir DIR] [--json FILE]

Exports the model twice (fp32 and --fp16, i.e. fp16 teacher/student convolutions with the
normalisation and cosine head kept in fp32), scores the data set's test images with both through
ONNX Runtime on the CPU, and prints: relative score error (median, p99, max), image AUROC of both,
and how many verdicts differ at the threshold (the calibrated fp32 threshold from a profile, or
--threshold; default: the fp32 scores' best-separating threshold).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from inspector.model.data import load_prepared, test_samples  # noqa: E402
from inspector.artifacts import use_site_key  # noqa: E402
from inspector.engine import open_engine  # noqa: E402
from inspector.evaluation.metrics import image_auroc  # noqa: E402
from inspector.calibration.thresholds import separation_report  # noqa: E402


def export(model: str, out: Path, fp16: bool) -> None:
    cmd = [sys.executable, "-m", "inspector.cli", "export", "--model", model, "--out", str(out)]
    subprocess.run(cmd + (["--fp16"] if fp16 else []), check=True, capture_output=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--threshold", type=float)
    p.add_argument("--calibration", help="profile whose image_threshold to use")
    p.add_argument("--workdir")
    p.add_argument("--json")
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fp16_check_"))
    work.mkdir(parents=True, exist_ok=True)
    use_site_key(work / "keys")   # export signs (docs/security.md): the environment's key, or one made here
    e32, e16 = work / "fp32.onnx", work / "fp16.onnx"
    export(args.model, e32, False)
    export(args.model, e16, True)
    eng32, eng16 = open_engine("onnxruntime", str(e32)), open_engine("onnxruntime", str(e16))
    images, _, kept, _ = load_prepared(test_samples(args.data), eng32.image_size)
    labels = np.array([s.is_defect for s in kept])
    s32 = eng32.infer_prepared(images).scores.astype(np.float64)
    s16 = eng16.infer_prepared(images).scores.astype(np.float64)
    rel = np.abs(s16 - s32) / np.abs(s32)
    if args.calibration:
        threshold = float(json.loads(Path(args.calibration).read_text())["thresholds"]["image"])
    elif args.threshold is not None:
        threshold = args.threshold
    else:
        threshold = float(separation_report(s32[~labels], s32[labels], float(np.median(s32)))["best_threshold"])
    v32, v16 = s32 >= threshold, s16 >= threshold
    margin = np.abs(s32 - threshold) / threshold
    result = {
        "n": int(len(s32)), "rel_error_median": float(np.median(rel)), "rel_error_p99": float(np.quantile(rel, 0.99)),
        "rel_error_max": float(rel.max()), "abs_error_max": float(np.abs(s16 - s32).max()),
        "image_auroc_fp32": image_auroc(labels, s32), "image_auroc_fp16": image_auroc(labels, s16),
        "threshold": threshold, "verdicts_differ": int((v32 != v16).sum()),
        "closest_relative_margin_to_threshold": float(margin.min()),
    }
    for k, v in result.items():
        print(f"{k:>36}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
