#!/usr/bin/env python3
"""One prepared check of the GPU path, for a machine with an NVIDIA GPU (run it via tools/gpu_check.sh).

Runs with the machine's own python3 (no venv, nothing installed): every component is optional and a
missing one is reported as SKIP with the reason, never as a crash.

1. environment: versions of numpy / torch / cupy / cuda-core / cuda-bindings / tensorrt, the GPU;
2. pytest -m "gpu or tensorrt" on the test files that carry those marks (if pytest is installed);
3. kernel vs numpy reference: the CUDA head (cuda-core launch, or CuPy if cuda-core is missing)
   against the float64 operator reference and MapHead, random maps, sizes 64x64, 256x256, 768x320,
   320x768 (WxH), batch 1..8, scores and full maps: max abs / rel error;
4. FP16 vs FP32 score error: a model (``--model CKPT``, else a tiny one trained here in seconds) under
   torch CUDA autocast (FP16 convs, FP32 cosine) and fully in half precision, vs FP32; with
   TensorRT, the FP16 engine vs the FP32 engine as well (``--onnx`` / ``--onnx-fp16``, or both
   exported here from ``--model``);
5. benchmark: head kernel time per image vs the CPU MapHead; model + GPU head images/s and latency
   p50/p99 at batch 1 and 8 (torch FP32 / autocast FP16, and TensorRT when available).

Prints a table at the end; ``--json FILE`` also writes all numbers. Exit code 0 unless a check that
ran found a wrong result (kernel error above tolerance, pytest failures).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

# the parts, next to this file (run as a script, tools/ is sys.path[0]); gpu_check_common puts the repository on it
from gpu_check_bench import bench_head, bench_torch
from gpu_check_common import REPO, Report, ensure_cv2_importable, try_import
from gpu_check_kernel import check_kernel
from gpu_check_model import check_fp16, check_tensorrt, get_model


# ----------------------------------------------------------------------------------------------------
# 1. environment
# ----------------------------------------------------------------------------------------------------

def check_environment(report: Report) -> dict:
    env = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "torch", "cupy", "cuda.core", "cuda.bindings", "tensorrt", "onnx",
                 "onnxruntime", "onnxconverter_common", "pytest"):
        mod, err = try_import(name)
        env[name] = getattr(mod, "__version__", "?") if mod else None
        report.add("env", name, "INFO", str(env[name]) if mod else f"missing ({err.splitlines()[0][:80]})")
    try:
        from inspector.engine.cuda_runtime import cuda_device_count, gpu_name
        count = cuda_device_count()
        env["gpus"] = count
        env["gpu"] = gpu_name(0) if count else None
        report.add("env", "GPU", "INFO" if count else "FAIL", f"{count} device(s): {env['gpu']}")
    except Exception as exc:
        report.add("env", "GPU", "FAIL", f"cannot query: {exc}")
    try:
        out = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, timeout=20).stdout
        env["nvcc"] = out.strip().splitlines()[-1] if out.strip() else None
    except Exception:
        env["nvcc"] = None
    report.add("env", "nvcc", "INFO", str(env["nvcc"]))
    return env


# ----------------------------------------------------------------------------------------------------
# 2. pytest
# ----------------------------------------------------------------------------------------------------

def run_pytest(report: Report, stub_dir: str | None, timeout: int) -> None:
    if importlib.util.find_spec("pytest") is None:
        report.add("pytest", "gpu or tensorrt", "SKIP", "pytest is not installed on this machine")
        return
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                   if "mark.gpu" in p.read_text() or "mark.tensorrt" in p.read_text())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in (stub_dir, str(REPO), env.get("PYTHONPATH")) if p])
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "gpu or tensorrt", "-p", "no:cacheprovider", *files]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        report.add("pytest", "gpu or tensorrt", "FAIL", f"timed out after {timeout} s")
        return
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    print("\n".join(tail[-40:]), flush=True)
    summary = next((line for line in reversed(tail) if " in " in line and ("passed" in line or "skipped" in line
                                                                          or "failed" in line or "error" in line)), "")
    status = "OK" if proc.returncode in (0, 5) else "FAIL"
    report.add("pytest", " ".join(files), status, summary.strip("= ") or f"exit {proc.returncode}")


# ----------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="trained checkpoint (.pt) for the FP16 check and the benchmark")
    p.add_argument("--teacher-weights", help="teacher weights file for --model (resnet teachers)")
    p.add_argument("--onnx", help="FP32 ONNX export (with manifest) for the TensorRT checks")
    p.add_argument("--onnx-fp16", help="FP16 ONNX export (inspector export --fp16) for the TensorRT checks")
    p.add_argument("--model-size", type=int, default=256, help="image size of the model trained here")
    p.add_argument("--train-steps", type=int, default=150)
    p.add_argument("--iters", type=int, default=50, help="timed iterations per benchmark")
    p.add_argument("--quick", action="store_true", help="fewer sizes and iterations")
    p.add_argument("--skip-pytest", action="store_true")
    p.add_argument("--pytest-timeout", type=int, default=300)
    p.add_argument("--json", help="also write all numbers to this JSON file")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="torch device of the model checks (cpu: a dry run of the script's own code)")
    args = p.parse_args(argv)
    if args.quick:
        args.iters = min(args.iters, 20)
        args.train_steps = min(args.train_steps, 80)

    report = Report()
    t_start = time.time()
    stub_dir = ensure_cv2_importable(report)
    steps = [("environment", lambda: report.data.update(env=check_environment(report)))]
    if args.skip_pytest:
        report.add("pytest", "gpu or tensorrt", "SKIP", "--skip-pytest")
    else:
        steps.append(("pytest", lambda: run_pytest(report, stub_dir, args.pytest_timeout)))
    steps += [("kernel", lambda: check_kernel(report, args.quick)), ("head benchmark", lambda: bench_head(report, args))]
    for name, step in steps:
        try:
            step()
        except Exception as exc:
            report.add(name, "unexpected error", "FAIL", f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
    try:
        model, desc = get_model(report, args)
        if model is None:
            report.add("fp16", "torch autocast", "SKIP", desc)
            report.add("bench", "torch model + GPU head", "SKIP", desc)
        else:
            report.add("model", "used", "INFO", desc)
            check_fp16(report, model, desc, args)
            if args.device == "cuda":
                bench_torch(report, model, args)
    except Exception as exc:
        report.add("fp16/bench", "unexpected error", "FAIL", f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    try:
        check_tensorrt(report, args)
    except Exception as exc:
        report.add("tensorrt", "unexpected error", "FAIL", f"{type(exc).__name__}: {exc}")
        traceback.print_exc()

    print("\n" + report.table())
    print(f"\ngpu_check finished in {time.time() - t_start:.0f} s: {'FAILURES' if report.failed() else 'no failures'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": report.rows, **report.data}, indent=2, default=str))
    return 1 if report.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
