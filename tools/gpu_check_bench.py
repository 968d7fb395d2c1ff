"""gpu_check part 5: benchmarks: the head kernel per image vs the CPU MapHead, model + GPU head
images/s and latency p50/p99 (torch FP32 / autocast FP16, TensorRT when available)."""

from __future__ import annotations

import time

from gpu_check_common import Report



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
