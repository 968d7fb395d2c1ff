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
import copy
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

KERNEL_RTOL = 1e-4      # float32 vs float64 reference, relative to the map's max
SIZES_WH = [(64, 64), (256, 256), (768, 320), (320, 768)]
BATCHES = [1, 2, 5, 8]


class Report:
    """Rows of (section, item, status, detail); status OK / SKIP / FAIL / INFO."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []
        self.data: dict = {}

    def add(self, section: str, item: str, status: str, detail: str = "") -> None:
        self.rows.append((section, item, status, detail))
        print(f"[{status:4}] {section}: {item} {detail}", flush=True)

    def failed(self) -> bool:
        return any(r[2] == "FAIL" for r in self.rows)

    def table(self) -> str:
        w = [max(len(r[i]) for r in self.rows + [("section", "item", "status", "")]) for i in range(3)]
        lines = [f"{'section':<{w[0]}}  {'item':<{w[1]}}  {'status':<{w[2]}}  detail", "-" * (sum(w) + 16)]
        lines += [f"{s:<{w[0]}}  {i:<{w[1]}}  {st:<{w[2]}}  {d}" for s, i, st, d in self.rows]
        return "\n".join(lines)


def _try_import(name: str):
    try:
        return importlib.import_module(name), ""
    except Exception as exc:  # ImportError, or a broken install raising anything else
        return None, f"{type(exc).__name__}: {exc}"


def ensure_cv2_importable(report: Report) -> str | None:
    """inspector.engine imports inspector.core.preprocess, which imports cv2 at module level. When OpenCV is
    missing here, put a stub on the path (nothing in these checks resizes images) and say so."""
    if importlib.util.find_spec("cv2") is not None:
        return None
    stub_dir = tempfile.mkdtemp(prefix="gpu_check_cv2_")
    Path(stub_dir, "cv2.py").write_text(
        "def __getattr__(name):\n    raise ImportError('OpenCV is not installed (gpu_check stub)')\n")
    sys.path.insert(0, stub_dir)
    report.add("env", "cv2", "INFO", "missing: stub module used (no resizing happens in these checks)")
    return stub_dir


# ----------------------------------------------------------------------------------------------------
# 1. environment
# ----------------------------------------------------------------------------------------------------

def check_environment(report: Report) -> dict:
    env = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "torch", "cupy", "cuda.core", "cuda.bindings", "tensorrt", "onnx",
                 "onnxruntime", "onnxconverter_common", "pytest"):
        mod, err = _try_import(name)
        env[name] = getattr(mod, "__version__", "?") if mod else None
        report.add("env", name, "INFO", str(env[name]) if mod else f"missing ({err.splitlines()[0][:80]})")
    try:
        from inspector.engine.cuda_head import cuda_device_count, gpu_name
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
# 3. kernel vs reference
# ----------------------------------------------------------------------------------------------------

def reference64(np, H: int, W: int, shapes, maps):
    """float64 operator reference (same maths as MapHead, no float32 rounding)."""
    from inspector.core.map_head import bilinear_matrix, gaussian_matrix
    gh, gw = gaussian_matrix(H), gaussian_matrix(W)
    full = 0.0
    for (h, w), m in zip(shapes, maps):
        full = full + np.matmul(gh @ bilinear_matrix(H, h), np.matmul(m.astype(np.float64), (gw @ bilinear_matrix(W, w)).T))
    return full, full.reshape(len(full), -1).max(axis=1)


class CupyHead:
    """The same kernels launched through CuPy (used when cuda-core is missing): an independent host side."""

    def __init__(self, image_size, shapes):
        import cupy as cp
        import numpy as np
        from inspector.engine import cuda_head as ch
        self.cp, self.np, self.ch = cp, np, ch
        self.ops = ch.HeadOperators.build(image_size, shapes)
        options = ("-std=c++17",) + tuple(f"-D{k}={v}" for k, v in ch.TILES.items())
        self.module = cp.RawModule(code=ch.kernel_source(), options=options)
        self.k = {name: self.module.get_function(name) for name in ch.KERNEL_SIGNATURES}
        self.left_t, self.right_t = cp.asarray(self.ops.left_t), cp.asarray(self.ops.right_t)

    def scores_and_maps(self, maps, want_maps=True):
        cp, np, ch, ops = self.cp, self.np, self.ch, self.ops
        n = len(maps[0])
        H, W = ops.image_size
        K = ops.K
        dev = [cp.asarray(m) for m in maps] + [cp.zeros(1, cp.float32)] * (ch.MAX_SCALES - len(maps))
        (h0, h1, h2), (w0, w1, w2) = ops.heights, ops.widths
        t_cat = cp.empty((n, K, W), cp.float32)
        keys = cp.empty(n, cp.int32)
        out = cp.empty((n, H, W), cp.float32) if want_maps else cp.zeros(1, cp.float32)
        scores = cp.empty(n, cp.float32)
        i32 = np.int32
        grid, block = ch.stage1_launch(W, K, n)
        self.k["rows_times_right"](grid, block, (dev[0], dev[1], dev[2], i32(h0), i32(w0), i32(h1), i32(w1),
                                                 i32(h2), i32(w2), self.right_t, t_cat, keys, i32(W)))
        grid, block = ch.stage2_launch(W, H, n)
        self.k["left_times_rows_max"](grid, block, (self.left_t, t_cat, keys, out, *[np.uint64(0)] * 3, i32(0), i32(K), i32(H), i32(W),
                                                    i32(int(want_maps))))
        grid, block = ch.decode_launch(n)
        self.k["decode_scores"](grid, block, (keys, scores, i32(n)))
        return cp.asnumpy(scores), cp.asnumpy(out) if want_maps else None

    def close(self):
        pass


def _cuda_core_head(image_size, shapes):
    from inspector.engine.cuda_head import CudaMapHead
    return CudaMapHead(image_size, shapes)


LAUNCHERS = [("cuda-core", _cuda_core_head), ("cupy", CupyHead)]


def check_kernel(report: Report, quick: bool) -> None:
    """The kernel through each available launcher (cuda-core = the production path; CuPy = an
    independent host side) against the float64 reference and MapHead."""
    results = []
    for launcher, factory in LAUNCHERS:
        for W, H in (SIZES_WH[:3] if quick else SIZES_WH):
            shapes = [(H // s, W // s) for s in (4, 8, 16)]
            try:
                head = factory((H, W), shapes)
            except Exception as exc:
                report.add("kernel", launcher, "SKIP", f"cannot set up: {type(exc).__name__}: {exc}")
                break
            try:
                row = _kernel_errors(head, H, W, shapes)
            except Exception as exc:
                report.add("kernel", f"{W}x{H} ({launcher})", "FAIL", f"{type(exc).__name__}: {exc}")
                traceback.print_exc()
                continue
            finally:
                head.close()
            ok = row["score_rel"] < KERNEL_RTOL and row["map_rel"] < KERNEL_RTOL and row["negative_ok"]
            results.append({"W": W, "H": H, "launcher": launcher, **row})
            report.add("kernel", f"{W}x{H} batch {BATCHES} ({launcher})", "OK" if ok else "FAIL",
                       f"score abs {row['score_abs']:.2e} rel {row['score_rel']:.2e}; map abs {row['map_abs']:.2e} "
                       f"rel {row['map_rel']:.2e}; vs MapHead rel {row['vs_maphead_rel']:.2e}; negatives "
                       f"{'ok' if row['negative_ok'] else 'WRONG'}")
    report.data["kernel"] = results


def _kernel_errors(head, H: int, W: int, shapes) -> dict:
    import numpy as np
    from inspector.core.map_head import MapHead
    rng = np.random.default_rng(H * 10_000 + W)
    cpu = MapHead((H, W), shapes)
    worst = {"score_abs": 0.0, "score_rel": 0.0, "map_abs": 0.0, "map_rel": 0.0, "vs_maphead_rel": 0.0}
    for n in BATCHES:
        maps = [(rng.random((n, h, w)) * 0.4 + rng.random() * 0.1).astype(np.float32) for h, w in shapes]
        scores, full = head.scores_and_maps(maps, want_maps=True)
        ref_full, ref_scores = reference64(np, H, W, shapes, maps)
        err = np.abs(scores - ref_scores)
        worst["score_abs"] = max(worst["score_abs"], float(err.max()))
        worst["score_rel"] = max(worst["score_rel"], float((err / np.abs(ref_scores)).max()))
        worst["map_abs"] = max(worst["map_abs"], float(np.abs(full - ref_full).max()))
        worst["map_rel"] = max(worst["map_rel"], float(np.abs(full - ref_full).max() / np.abs(ref_full).max()))
        mh = cpu.scores(maps)
        worst["vs_maphead_rel"] = max(worst["vs_maphead_rel"], float((np.abs(scores - mh) / np.abs(mh)).max()))
        only, none = head.scores_and_maps(maps, want_maps=False)
        if none is not None or not np.array_equal(only, scores):
            raise AssertionError("scores without maps differ from scores with maps")
    neg = [-(m + 0.5) for m in maps]
    neg_scores, _ = head.scores_and_maps(neg, want_maps=False)
    worst["negative_ok"] = bool(np.allclose(neg_scores, cpu.scores(neg), rtol=1e-5))
    return worst


# ----------------------------------------------------------------------------------------------------
# 4. a model: given, or trained here in seconds
# ----------------------------------------------------------------------------------------------------

def synthetic_images(torch, n: int, H: int, W: int, seed: int, defects: bool = False, device: str = "cuda"):
    """uint8 n x H x W x 3 'good' textures (oriented stripes + fine noise) on ``device``; with ``defects``
    a random dark or bright blob is painted into each."""
    g = torch.Generator(device=device).manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(H, device=device), torch.arange(W, device=device), indexing="ij")
    angle = 0.6 + 0.1 * torch.rand(n, 1, 1, device=device, generator=g)
    phase = 6.28 * torch.rand(n, 1, 1, device=device, generator=g)
    base = 128 + 60 * torch.sin((xx * torch.cos(angle) + yy * torch.sin(angle)) / 3.0 + phase)
    img = base[..., None] + 8 * torch.randn(n, H, W, 3, device=device, generator=g)
    if defects:
        cy = torch.randint(H // 8, H - H // 8, (n, 1, 1), device=device, generator=g)
        cx = torch.randint(W // 8, W - W // 8, (n, 1, 1), device=device, generator=g)
        r = max(3, min(H, W) // 16)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)[..., None]
        value = torch.where(torch.rand(n, 1, 1, 1, device=device, generator=g) < 0.5, 20.0, 235.0)
        img = torch.where(blob, value, img)
    return img.clamp(0, 255).to(torch.uint8)


def random_teacher(torch, channels=(32, 64, 128)):
    """A frozen random conv encoder with the Teacher attributes ReverseDistillation uses (stand-in when no
    pretrained teacher can be loaded here; fine for measuring FP16 rounding, not for accuracy)."""
    from torch import nn

    from inspector.model.teachers import FeatureInfo

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class RandomTeacher(nn.Module):
        name = "random-conv"
        feature_info = FeatureInfo(tuple(channels))
        mean = (0.5, 0.5, 0.5)
        std = (0.25, 0.25, 0.25)

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.stem = nn.Sequential(block(3, 16), block(16, channels[0]))
            self.s8, self.s16 = block(channels[0], channels[1]), block(channels[1], channels[2])
            for p in self.parameters():
                p.requires_grad_(False)
            self.eval()

        def train(self, mode: bool = True):
            return super().train(False)

        def forward(self, x):
            f4 = self.stem(x)
            f8 = self.s8(f4)
            return [f4, f8, self.s16(f8)]

    return RandomTeacher()


def get_model(report: Report, args):
    """-> (model on cuda in eval mode, description) or (None, reason)."""
    torch, err = _try_import("torch")
    if torch is None or (args.device == "cuda" and not torch.cuda.is_available()):
        return None, f"torch with CUDA is not available ({err or 'torch.cuda.is_available() is False'})"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if args.model:
        try:
            from inspector.model.checkpoint import load_model
            model, _ = load_model(args.model, teacher_weights=args.teacher_weights)
            return model.to(args.device).eval(), f"checkpoint {args.model}"
        except Exception as exc:
            report.add("model", args.model, "SKIP", f"cannot load ({type(exc).__name__}: {exc}); training one here")
    from inspector.model.network import RDConfig, ReverseDistillation, rd_loss
    H = W = args.model_size
    try:
        from inspector.model.teachers import create_teacher
        teacher, what = create_teacher("efficientnet_lite0"), "efficientnet_lite0 teacher (ImageNet)"
        cfg = RDConfig(image_size=(H, W), fuse_channels=192, embed_channels=512)
    except Exception as exc:
        teacher, what = random_teacher(torch), f"random conv teacher (pretrained one unavailable: {type(exc).__name__})"
        cfg = RDConfig(image_size=(H, W), embed_channels=256)
    model = ReverseDistillation(teacher, cfg).to(args.device)
    opt = torch.optim.Adam(model.student.parameters(), lr=0.005, betas=(0.5, 0.999))
    t0 = time.perf_counter()
    model.student.train()
    for step in range(args.train_steps):
        x = synthetic_images(torch, 16, H, W, seed=step, device=args.device)
        t = model.teacher_features(x)
        loss = rd_loss(t, model.student(t))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if args.device == "cuda":
        torch.cuda.synchronize()
    model.eval()
    return model, f"tiny model trained here: {what}, {H}x{H}, {args.train_steps} steps, loss {loss.item():.4f}, " \
                  f"{time.perf_counter() - t0:.1f} s"


def _auroc(np, good, bad) -> float:
    scores = np.concatenate([good, bad])
    ranks = scores.argsort().argsort() + 1.0
    return float((ranks[len(good):].sum() - len(bad) * (len(bad) + 1) / 2) / (len(good) * len(bad)))


def check_fp16(report: Report, model, desc: str, args) -> None:
    import numpy as np
    import torch
    from inspector.core.map_head import MapHead
    H, W = model.cfg.image_size
    strides = tuple(model.teacher.feature_info.strides)
    head = MapHead((H, W), [(H // s, W // s) for s in strides])
    dev = args.device
    good = torch.cat([synthetic_images(torch, 16, H, W, seed=10_000 + i, device=dev) for i in range(4)])
    bad = torch.cat([synthetic_images(torch, 16, H, W, seed=20_000 + i, defects=True, device=dev) for i in range(4)])
    x = torch.cat([good, bad])
    half_model = copy.deepcopy(model).half()  # a copy: half() -> float() would round the FP32 weights

    def scores(mode: str):
        out = []
        with torch.no_grad():
            for i in range(0, len(x), 16):
                xb = x[i:i + 16]
                if mode == "fp32":
                    maps = model.cosine_maps(xb)
                elif mode == "autocast":
                    with torch.autocast(dev, dtype=torch.float16):
                        maps = model.cosine_maps(xb)
                else:  # everything in half, cosine included
                    t = half_model.teacher(half_model.normalize(xb).half())
                    s = half_model.student(t)
                    maps = [1.0 - torch.nn.functional.cosine_similarity(a, b, dim=1) for a, b in zip(t, s)]
                out.append(head.scores([m.float().cpu().numpy() for m in maps]))
        return np.concatenate(out)

    ref = scores("fp32")
    spread = float(ref[:len(good)].std())
    rows = {}
    for mode, label in (("autocast", "autocast FP16 convs, FP32 cosine"), ("half", "all FP16 incl. cosine")):
        try:
            got = scores(mode)
        except Exception as exc:
            report.add("fp16", label, "SKIP", f"{type(exc).__name__}: {exc}")
            continue
        err = np.abs(got - ref)
        rows[mode] = {"max_abs": float(err.max()), "mean_abs": float(err.mean()),
                      "max_rel": float((err / np.abs(ref)).max()), "err_over_good_std": float(err.max() / spread),
                      "auroc": _auroc(np, got[:len(good)], got[len(good):])}
        report.add("fp16", label, "INFO",
                   f"score err max {err.max():.2e} (rel {rows[mode]['max_rel']:.2e}), mean {err.mean():.2e}; "
                   f"= {rows[mode]['err_over_good_std']:.2f} x good-score std; AUROC {rows[mode]['auroc']:.3f}")
    report.add("fp16", "reference FP32", "INFO",
               f"{desc}; good scores mean {ref[:len(good)].mean():.4f} std {spread:.2e}; AUROC "
               f"{_auroc(np, ref[:len(good)], ref[len(good):]):.3f}")
    report.data["fp16_torch"] = rows


def _tensorrt_onnx_pair(report: Report, args, tmp: str) -> tuple[str | None, str | None]:
    """(FP32 ONNX, FP16 ONNX) from --onnx / --onnx-fp16, else exported here from --model."""
    if args.onnx or args.onnx_fp16 or not args.model:
        return args.onnx, args.onnx_fp16
    try:
        from inspector.engine.export import export_onnx
        paths = []
        for fp16 in (False, True):
            path = str(Path(tmp) / f"model-{'fp16' if fp16 else 'fp32'}.onnx")
            export_onnx(args.model, path, fp16=fp16, teacher_weights=args.teacher_weights)
            paths.append(path)
        return paths[0], paths[1]
    except Exception as exc:
        report.add("tensorrt", "export from --model", "SKIP", f"{type(exc).__name__}: {exc}")
        return None, None


def check_tensorrt(report: Report, args) -> None:
    """TensorRT FP32 and FP16 engines: score error FP16 vs FP32, and their latency."""
    if importlib.util.find_spec("tensorrt") is None:
        report.add("tensorrt", "FP16 vs FP32 + benchmark", "SKIP", "TensorRT is not installed on this machine")
        return
    import numpy as np
    from inspector.engine.tensorrt_engine import TensorRTEngine
    with tempfile.TemporaryDirectory() as tmp:
        onnx32, onnx16 = _tensorrt_onnx_pair(report, args, tmp)
        if not (onnx32 or onnx16):
            report.add("tensorrt", "FP16 vs FP32 + benchmark", "SKIP", "no --onnx / --onnx-fp16 / --model given")
            return
        engines = {}
        for label, path, fp16 in (("FP32", onnx32, False), ("FP16", onnx16, True)):
            if not path:
                continue
            try:
                t0 = time.perf_counter()
                engines[label] = TensorRTEngine(path, fp16=fp16, cache_dir=tmp)
                report.add("tensorrt", f"{label} engine", "OK", f"built in {time.perf_counter() - t0:.1f} s: "
                           f"{engines[label].plan_path.name}")
            except Exception as exc:
                report.add("tensorrt", f"{label} engine", "FAIL", f"{type(exc).__name__}: {exc}")
        try:
            if len(engines) == 2:
                H, W = engines["FP32"].image_size
                x = np.random.default_rng(0).integers(0, 255, (16, H, W, 3), dtype=np.uint8)
                a, b = engines["FP32"].infer_prepared(x).scores, engines["FP16"].infer_prepared(x).scores
                err = np.abs(a - b)
                report.add("fp16", "TensorRT FP16 vs FP32", "INFO",
                           f"score err max {err.max():.2e} (rel {(err / np.abs(a)).max():.2e}), mean {err.mean():.2e}")
            for label, engine in engines.items():
                bench_engine(report, engine, f"TensorRT {label}", args)
        finally:
            for engine in engines.values():
                engine.close()


# ----------------------------------------------------------------------------------------------------
# 5. benchmarks
# ----------------------------------------------------------------------------------------------------

def _percentiles(np, lat_s):
    lat = np.asarray(lat_s) * 1000
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def bench_head(report: Report, args) -> None:
    import numpy as np
    from inspector.core.map_head import MapHead
    rows = []
    for W, H in ((256, 256), (768, 320)):
        shapes = [(H // s, W // s) for s in (4, 8, 16)]
        try:
            from inspector.engine.cuda_head import CudaMapHead
            head = CudaMapHead((H, W), shapes)
        except Exception as exc:
            report.add("bench", f"head {W}x{H}", "SKIP", f"CudaMapHead unavailable: {type(exc).__name__}: {exc}")
            return
        cpu = MapHead((H, W), shapes)
        try:
            for n in (1, 8):
                maps = [np.random.default_rng(n).random((n, h, w), dtype=np.float32) for h, w in shapes]
                t0 = time.perf_counter()
                reps = 3 if args.quick else 10
                for _ in range(reps):
                    cpu.scores(maps)
                cpu_s = (time.perf_counter() - t0) / reps / n
                g_scores = head.time_kernels(n, want_maps=False, iters=args.iters) / n
                g_maps = head.time_kernels(n, want_maps=True, iters=args.iters) / n
                rows.append({"W": W, "H": H, "batch": n, "gpu_scores_us": g_scores * 1e6, "gpu_maps_us": g_maps * 1e6,
                             "cpu_us": cpu_s * 1e6})
                report.add("bench", f"head {W}x{H} batch {n}", "INFO",
                           f"GPU {g_scores * 1e6:.1f} us/img (scores), {g_maps * 1e6:.1f} us/img (+maps to host); "
                           f"CPU MapHead {cpu_s * 1e6:.0f} us/img ({cpu_s / g_scores:.0f}x)")
        finally:
            head.close()
    report.data["bench_head"] = rows


def bench_torch(report: Report, model, args) -> None:
    import numpy as np
    import torch
    from inspector.engine.cuda_head import CudaMapHead
    H, W = model.cfg.image_size
    shapes = [(H // s, W // s) for s in model.teacher.feature_info.strides]
    stream = torch.cuda.Stream()
    try:
        head = CudaMapHead((H, W), shapes, stream_handle=stream.cuda_stream)
    except Exception as exc:
        report.add("bench", "torch model + GPU head", "SKIP", f"CudaMapHead unavailable: {type(exc).__name__}: {exc}")
        return
    rows = []
    try:
        for mode in ("fp32", "autocast"):
            for n in (1, 8):
                host = torch.from_numpy(np.random.default_rng(n).integers(0, 255, (n, H, W, 3), dtype=np.uint8)).pin_memory()
                lat = []
                with torch.no_grad(), torch.cuda.stream(stream):
                    for it in range(args.iters + 10):
                        t0 = time.perf_counter()
                        x = host.to("cuda", non_blocking=True)
                        with torch.autocast("cuda", dtype=torch.float16, enabled=(mode == "autocast")):
                            maps = [m.float().contiguous() for m in model.cosine_maps(x)]
                        head.enqueue([m.data_ptr() for m in maps], n, want_maps=False)
                        head.synchronize()
                        head.results(n, False)
                        if it >= 10:
                            lat.append(time.perf_counter() - t0)
                p50, p99 = _percentiles(np, lat)
                ips = n / float(np.mean(lat))
                rows.append({"mode": mode, "batch": n, "images_per_s": ips, "p50_ms": p50, "p99_ms": p99})
                report.add("bench", f"torch {mode} + GPU head, batch {n}", "INFO",
                           f"{ips:.0f} images/s, latency p50 {p50:.2f} ms p99 {p99:.2f} ms ({H}x{W})")
    finally:
        head.close()
    report.data["bench_torch"] = rows


def bench_engine(report: Report, engine, label: str, args) -> None:
    import numpy as np
    H, W = engine.image_size
    for n in (1, min(8, engine.max_batch)):
        x = np.random.default_rng(n).integers(0, 255, (n, H, W, 3), dtype=np.uint8)
        lat = []
        for it in range(args.iters + 10):
            t0 = time.perf_counter()
            engine.infer_prepared(x)
            if it >= 10:
                lat.append(time.perf_counter() - t0)
        p50, p99 = _percentiles(np, lat)
        report.add("bench", f"{label}, batch {n}", "INFO",
                   f"{n / float(np.mean(lat)):.0f} images/s, latency p50 {p50:.2f} ms p99 {p99:.2f} ms ({H}x{W})")


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
