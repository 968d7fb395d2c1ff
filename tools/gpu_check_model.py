"""gpu_check part 4: a model (given, or trained here in seconds), its FP16 vs FP32 score error under
torch and, with TensorRT, of the FP16 vs the FP32 engine."""

from __future__ import annotations

import copy
import importlib.util
import tempfile
import time
from pathlib import Path

from gpu_check_bench import bench_engine
from gpu_check_common import Report, try_import



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
    torch, err = try_import("torch")
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
