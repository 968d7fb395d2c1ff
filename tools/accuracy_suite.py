#!/usr/bin/env python3
"""Train and evaluate a list of data sets with the current defaults: one accuracy table.

For each MVTec AD-layout data set, as a new user would run it:

1. a share of ``train/good`` (``--calibration-share``, at least 21 images) is set aside as the line's
   calibration parts; the rest is the training folder (a view of symlinks: nothing is copied);
2. ``inspector train`` with the defaults (plus the entry's own ``train_args``), timed;
3. ``inspector export`` -> ONNX engine (what the daemon runs);
4. ``inspector calibrate`` on the calibration parts at ``--target-frr`` (default 1 %), with the
   test defects for its separation report;
5. ``inspector eval`` on the test set (image AUROC, pixel AUROC, AU-PRO);
6. the calibrated profile applied to every test image exactly as the daemon applies it (image rule
   OR region rule): escape rate (defects judged OK) and false-reject rate on ``test/good``.

Writes ``OUT/accuracy.md`` (one markdown table) and ``OUT/accuracy.json`` (the same rows plus the
commands). The suite file (TOML)::

    [[dataset]]
    name = "ksdd1"
    path = "../shared/datasets/ksdd1"
    train_args = []            # optional: extra `inspector train` flags for this set

    [[dataset]]                # a set the suite makes itself (once) into OUT/data/NAME
    name = "synth_part"
    make = ["inspector", "synth", "--out", "{out}", "--product", "part", "--seed", "5"]

    python tools/accuracy_suite.py --suite tools/suite.toml --out runs/accuracy
    python tools/accuracy_suite.py --data tiny=runs/tiny --out runs/acc --train-args "--epochs 3"

Every default is chosen with this tool; the README's accuracy table is its output.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MIN_CALIBRATION = 21  # inspector calibrate needs this many good parts


def cli(*args: str, log: Path) -> float:
    """Run ``inspector ARGS`` (this checkout), append its output to ``log``; seconds taken."""
    t0 = time.time()
    with open(log, "a") as f:
        f.write(f"\n$ inspector {shlex.join(args)}\n")
        f.flush()
        proc = subprocess.run([sys.executable, "-m", "inspector.cli", *args], cwd=REPO, stdout=f,
                              stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode:
        raise RuntimeError(f"inspector {args[0]} failed (exit {proc.returncode}); see {log}")
    return time.time() - t0


def make_view(data: Path, work: Path, share: float, seed: int) -> tuple[Path, Path]:
    """(training view root, calibration folder): symlinks into ``data``."""
    from inspector.core.images import IMAGE_EXTENSIONS

    goods = sorted(p for p in (data / "train" / "good").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    n_cal = max(MIN_CALIBRATION, int(round(share * len(goods))))
    if len(goods) - n_cal < 4:
        raise ValueError(f"{data}: {len(goods)} good training images are too few to set {n_cal} aside")
    order = np.random.default_rng(seed).permutation(len(goods))
    calib, train = set(order[:n_cal].tolist()), set(order[n_cal:].tolist())
    view, cal_dir = work / "view", work / "calibration_good"
    for folder, chosen in ((view / "train" / "good", train), (cal_dir, calib)):
        folder.mkdir(parents=True, exist_ok=True)
        for i in sorted(chosen):
            link = folder / goods[i].name
            if not link.exists():
                link.symlink_to(goods[i].resolve())
    for sub in ("test", "ground_truth"):
        if (data / sub).exists() and not (view / sub).exists():
            (view / sub).symlink_to((data / sub).resolve())
    return view, cal_dir


def verdict_rates(engine_path: Path, profile_path: Path, data: Path) -> dict:
    """Apply the profile to the test set as the daemon does: escapes and false rejects."""
    from inspector.calibration.calibrate import region_rejects, score_images
    from inspector.engine import open_engine
    from inspector.judge.profile import load_profile
    from inspector.model.data import test_samples

    engine = open_engine("onnxruntime", str(engine_path))
    profile = load_profile(profile_path)
    samples = test_samples(data)
    scores, maps, kept, _ = score_images(engine, [s.path for s in samples], want_maps=profile.has_region_rule)
    rejected = scores >= profile.image_threshold
    if profile.has_region_rule:
        rejected |= region_rejects(maps, profile.pixel_threshold, profile.min_defect_area)
    defect = np.array([s.is_defect for s in samples])
    engine.close()
    return {"escape_rate": float(np.mean(~rejected[defect])), "escapes": int((~rejected[defect]).sum()),
            "n_defect": int(defect.sum()), "test_frr": float(np.mean(rejected[~defect])),
            "false_rejects": int(rejected[~defect].sum()), "n_good": int((~defect).sum()),
            "threshold": profile.image_threshold, "region_rule": profile.has_region_rule}


def run_one(name: str, data: Path, out: Path, train_args: list[str], args) -> dict:
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    view, cal_dir = make_view(data, work, args.calibration_share, args.seed)
    model, engine, profile = work / "model.pt", work / "engine.onnx", work / "profile.json"
    train_cmd = ["train", "--data", str(view), "--out", str(model), "--no-progress", *train_args]
    train_s = cli(*train_cmd, log=log)
    cli("export", "--model", str(model), "--out", str(engine), log=log)
    defects = ["--defects", str(data)] if any(p.name != "good" for p in (data / "test").iterdir() if p.is_dir()) else []
    cli("calibrate", "--engine", str(engine), "--good", str(cal_dir), "--target-frr", str(args.target_frr),
        "--out", str(profile), *defects, log=log)
    cli("eval", "--engine", str(engine), "--data", str(view), "--json", str(work / "metrics.json"), log=log)
    metrics = json.loads((work / "metrics.json").read_text())
    manifest = json.loads(engine.with_suffix(".json").read_text())
    row = {"name": name, "data": str(data), "train_seconds": round(train_s, 1),
           "image_auroc": metrics["image_auroc"], "pixel_auroc": metrics["pixel_auroc"], "aupro": metrics["aupro"],
           **verdict_rates(engine, profile, data),
           "inspection": manifest["geometry"], "backbone": manifest["config"]["backbone"],
           "normalized": manifest["head"]["stats"] is not None, "score_rule": manifest["head"]["score"],
           "train_command": "inspector " + shlex.join(train_cmd), "per_kind": metrics["per_kind"]}
    (work / "row.json").write_text(json.dumps(row, indent=2))
    return row


def _f(v, pct=False):
    if v is None:
        return "-"
    return f"{100 * v:.1f} %" if pct else f"{v:.3f}"


def markdown(rows: list[dict], target_frr: float) -> str:
    lines = [f"| data set | inspection (WxH, tiles) | train | image AUROC | pixel AUROC | AU-PRO | "
             f"escapes at {100 * target_frr:g} % FRR | test FRR |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error']} | | | | | | |")
            continue
        g = r["inspection"]
        lines.append(f"| {r['name']} | {g['inspect_size'][1]}x{g['inspect_size'][0]}, {g['n_tiles']} | "
                     f"{r['train_seconds'] / 60:.1f} min | {_f(r['image_auroc'])} | {_f(r['pixel_auroc'])} | "
                     f"{_f(r['aupro'])} | {r['escapes']}/{r['n_defect']} ({_f(r['escape_rate'], True)}) | "
                     f"{r['false_rejects']}/{r['n_good']} ({_f(r['test_frr'], True)}) |")
    return "\n".join(lines) + "\n"


def make_dataset(command: list[str], out: Path) -> Path:
    """Run a suite entry's ``make`` command once (``{out}`` = the folder; ``inspector`` and
    ``python`` run with this interpreter and checkout)."""
    if (out / "test").is_dir():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(a).replace("{out}", str(out)) for a in command]
    head = {"inspector": [sys.executable, "-m", "inspector.cli"], "python": [sys.executable]}.get(argv[0], argv[:1])
    subprocess.run([*head, *argv[1:]], cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                   stdout=subprocess.DEVNULL)
    return out


def read_suite(args) -> list[tuple[str, Path, list[str]]]:
    entries = []
    if args.suite:
        suite = tomllib.loads(Path(args.suite).read_text())
        base = Path(args.suite).resolve().parent
        for d in suite.get("dataset", []):
            if "make" in d:
                path = make_dataset(list(d["make"]), Path(args.out).resolve() / "data" / d["name"])
            else:
                path = Path(d["path"])
                path = path if path.is_absolute() else (base / path).resolve()
            entries.append((d["name"], path, [str(a) for a in d.get("train_args", [])]))
    for item in args.data or []:
        name, _, path = item.partition("=")
        entries.append((name, Path(path).resolve(), []))
    if not entries:
        raise SystemExit("no data sets: give --suite FILE and/or --data NAME=PATH")
    return entries


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", help="TOML file with [[dataset]] entries (name, path, train_args)")
    p.add_argument("--data", action="append", help="NAME=PATH, repeatable")
    p.add_argument("--out", required=True, help="folder for the runs and accuracy.md / accuracy.json")
    p.add_argument("--target-frr", type=float, default=0.01)
    p.add_argument("--calibration-share", type=float, default=0.15)
    p.add_argument("--train-args", default="", help="extra `inspector train` flags for every data set")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from inspector.artifacts import use_site_key
    use_site_key(out / "keys")   # export signs, eval verifies (docs/security.md)
    rows = []
    for name, data, extra in read_suite(args):
        print(f"== {name}: {data}", flush=True)
        try:
            rows.append(run_one(name, data, out, [*shlex.split(args.train_args), *extra], args))
        except (RuntimeError, ValueError, OSError) as exc:
            print(f"   {name} failed: {exc}", flush=True)
            rows.append({"name": name, "data": str(data), "error": str(exc)})
        (out / "accuracy.json").write_text(json.dumps({"target_frr": args.target_frr, "rows": rows}, indent=2))
        (out / "accuracy.md").write_text(markdown(rows, args.target_frr))
        print(markdown(rows[-1:], args.target_frr).splitlines()[-1], flush=True)
    print(markdown(rows, args.target_frr))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
