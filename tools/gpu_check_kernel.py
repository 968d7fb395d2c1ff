"""gpu_check part 3: the CUDA head kernel (cuda-core launch, or CuPy) against the float64 operator
reference and MapHead, on random maps of several sizes and batches."""

from __future__ import annotations

import traceback

from gpu_check_common import BATCHES, KERNEL_RTOL, SIZES_WH, Report



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
        from inspector.engine import cuda_kernel as ck
        self.cp, self.np, self.ck = cp, np, ck
        self.ops = ck.HeadOperators.build(image_size, shapes)
        options = ("-std=c++17",) + tuple(f"-D{k}={v}" for k, v in ck.TILES.items())
        self.module = cp.RawModule(code=ck.kernel_source(), options=options)
        self.k = {name: self.module.get_function(name) for name in ck.KERNEL_SIGNATURES}
        self.left_t, self.right_t = cp.asarray(self.ops.left_t), cp.asarray(self.ops.right_t)

    def scores_and_maps(self, maps, want_maps=True):
        cp, np, ck, ops = self.cp, self.np, self.ck, self.ops
        n = len(maps[0])
        H, W = ops.image_size
        K = ops.K
        dev = [cp.asarray(m) for m in maps] + [cp.zeros(1, cp.float32)] * (ck.MAX_SCALES - len(maps))
        (h0, h1, h2), (w0, w1, w2) = ops.heights, ops.widths
        t_cat = cp.empty((n, K, W), cp.float32)
        keys = cp.empty(n, cp.int32)
        out = cp.empty((n, H, W), cp.float32) if want_maps else cp.zeros(1, cp.float32)
        scores = cp.empty(n, cp.float32)
        i32 = np.int32
        grid, block = ck.stage1_launch(W, K, n)
        self.k["rows_times_right"](grid, block, (dev[0], dev[1], dev[2], i32(h0), i32(w0), i32(h1), i32(w1),
                                                 i32(h2), i32(w2), self.right_t, t_cat, keys, i32(W)))
        grid, block = ck.stage2_launch(W, H, n)
        self.k["left_times_rows_max"](grid, block, (self.left_t, t_cat, keys, out, *[np.uint64(0)] * 3, i32(0), i32(K), i32(H), i32(W),
                                                    i32(int(want_maps))))
        grid, block = ck.decode_launch(n)
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
