"""`inspector bench`: images/s and latency of the engines, side by side, on one machine.

What is timed (per backend, per batch size): the end-to-end path the daemon runs on a prepared
batch, ``uint8 N x h x w x 3 RGB -> Engine.scale_maps -> Engine.head -> float32 scores (N,)``,
i.e. the model graph plus the map head (upsample + sum + blur + max). The head's own time is
measured inside the same loop and reported separately (ms per image and % of the total).
Pre-processing (resize / colour conversion of camera images) and the wire are not included: the
first depends on the camera size, the second has its own benchmark (``tools/bench_transport.py``).

Input: synthetic uint8 random images at the model's size from a fixed seed (content does not change
the cost of a dense CNN; it does change it when weights are random: see below).

Protocol: ``--warmup`` untimed runs, then ``--iters`` timed runs of one batch each
(``time.perf_counter_ns``). Reported: images/s = N * iters / total time, per-batch latency p50 /
p99 / mean in ms, head ms per image and its share of the total.

Threads and floating point: ``--threads`` (default: the CPUs this process may run on) goes to
``torch.set_num_threads`` and to ONNX Runtime's intra-op pool (one inter-op thread, no spinning, as
the daemon's engine). Torch's OpenMP pool gets the same no-spinning policy (``OMP_WAIT_POLICY=PASSIVE``
unless the environment sets it): on a loaded 2-core machine, spinning OpenMP threads next to the
numpy head's BLAS threads made eager torch 10-30x slower. ``--blas-threads N`` limits numpy's BLAS
(the map head) to N threads (threadpoolctl); the default leaves the library's own setting, which is
what the daemon gets. The thread pools in use are listed in ``machine.thread_pools``.
``torch.set_flush_denormal(True)`` is set before torch starts any thread
(untrained or badly trained weights make denormal floats, which can make eager PyTorch 10-100x
slower on x86 CPUs). The ONNX Runtime session is created with the process' default floating-point
mode, as in the daemon (which never imports torch); each row records ``flush_denormal``. A checkpoint
that was never trained (epoch 0) is benchmarked but warned about loudly.

``--breakdown`` (torch) times the model's parts one after another on the same input: teacher
(including the uint8 -> float normalisation), OCBE (fusion + one-class embedding), student decoder,
cosine maps (including the copy to numpy) and the map head.

``--json FILE`` writes::

    {"backend", "batch", "images_per_s", "latency_ms_p50", "latency_ms_p99":   # the headline row:
                   # the fastest non-reference backend at the largest batch (see headline())
     "results":   [row, ...],          # one per (backend, batch); keys below
     "breakdown": [{"backend": "torch", "batch": N, "total_ms_per_image": x,
                    "parts": {"teacher": {"ms_per_image": x, "percent": y}, ...}}, ...],
     "speedup":   {"onnxruntime_vs_torch": {"1": x, "8": y}, ...},   # images/s ratios
     "skipped":   [{"backend": "tensorrt", "reason": "..."}],
     "warnings":  ["..."],
     "machine":   {...}, "settings": {...}}

    row: backend, batch, images_per_s, megapixels_per_s (inspection pixels), latency_ms_p50,
         latency_ms_p99, latency_ms_mean, head_ms_per_image, head_percent, threads, image_size [h, w]
         (inspection size), tiles_per_image, tile_size [h, w], iters, warmup,
         flush_denormal, precision, engine

Failure behaviour: bad arguments or an unusable model/engine raise :class:`BenchError` (exit 2 via
the CLI). TensorRT is opened only through ``open_engine("tensorrt", ...)`` and only when asked for;
when it is unavailable it is skipped with the reason as part of ``--backend all``, and an error when
asked for by name.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

log = logging.getLogger(__name__)

SEED = 0
DEFAULT_BATCHES = "1,8"
DEFAULT_ITERS = 30
DEFAULT_WARMUP = 3
MAX_BATCH = 256
BACKEND_CHOICES = ("torch", "onnxruntime", "tensorrt", "all")
BREAKDOWN_PARTS = ("teacher", "ocbe", "decoder", "cosine_maps", "map_head")
ROW_KEYS = ("backend", "batch", "images_per_s", "latency_ms_p50", "latency_ms_p99")


class BenchError(ValueError):
    """Bad benchmark arguments, or a model / engine that cannot be benchmarked."""


# --------------------------------------------------------------------------------- arguments
def parse_batches(text: str) -> list[int]:
    """``"1,8"`` -> ``[1, 8]`` (sorted, unique); each in 1..MAX_BATCH. Raises BenchError."""
    try:
        batches = sorted({int(part) for part in str(text).split(",") if part.strip()})
    except ValueError:
        raise BenchError(f"--batch must be a comma list of integers, e.g. 1,8; got {text!r}") from None
    if not batches or any(not 1 <= b <= MAX_BATCH for b in batches):
        raise BenchError(f"--batch sizes must be in 1..{MAX_BATCH}, got {text!r}")
    return batches


def default_threads() -> int:
    """CPUs this process may run on (affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="trained checkpoint (.pt): torch, and the ONNX export when no --engine")
    p.add_argument("--engine", help="exported ONNX engine (.onnx with its manifest) for onnxruntime/tensorrt")
    p.add_argument("--backend", choices=BACKEND_CHOICES,
                   help="default: all with --model (torch + onnxruntime [+ tensorrt]), onnxruntime with --engine")
    p.add_argument("--batch", default=DEFAULT_BATCHES, help=f"comma list of batch sizes (default {DEFAULT_BATCHES})")
    p.add_argument("--iters", type=int, default=DEFAULT_ITERS, help="timed batches per case")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed batches per case first")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch and onnxruntime (0: all CPUs)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--breakdown", action="store_true",
                   help="time teacher / OCBE / decoder / cosine maps / map head separately (torch)")
    p.add_argument("--blas-threads", type=int, default=0,
                   help="limit numpy's BLAS threads (the map head) to N; 0: leave the library default")
    p.add_argument("--teacher-weights", help="teacher weights file (resnet teachers)")


def resolve_backends(backend: str | None, model: str | None, engine: str | None) -> tuple[list[str], bool]:
    """(backends to run, whether missing ones are skipped rather than errors). Raises BenchError."""
    if not model and not engine:
        raise BenchError("give --model MODEL (checkpoint) and/or --engine FILE (ONNX engine)")
    backend = backend or ("all" if model else "onnxruntime")
    if backend == "all":
        return ["torch", "onnxruntime", "tensorrt"], True
    if backend == "torch" and not model:
        raise BenchError("--backend torch needs --model (a checkpoint)")
    return [backend], False


def check_counts(iters: int, warmup: int, threads: int, blas_threads: int = 0) -> None:
    if blas_threads < 0:
        raise BenchError(f"--blas-threads must be >= 0 (0: library default), got {blas_threads}")
    if iters < 1:
        raise BenchError(f"--iters must be >= 1, got {iters}")
    if warmup < 0:
        raise BenchError(f"--warmup must be >= 0, got {warmup}")
    if threads < 0:
        raise BenchError(f"--threads must be >= 0 (0: all CPUs), got {threads}")


# --------------------------------------------------------------------------------- timing
def synthetic_batch(batch: int, image_size: tuple[int, int], seed: int = SEED) -> np.ndarray:
    """uint8 ``batch x h x w x 3`` random RGB images (0..255), C-contiguous, from ``seed``."""
    h, w = image_size
    return np.random.default_rng([seed, batch]).integers(0, 256, size=(batch, h, w, 3), dtype=np.uint8)


def time_engine(engine, images: np.ndarray, iters: int, warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """Run tiling + ``scale_maps`` + stitching + ``head`` (scores only) on fitted ``images``:
    ``warmup`` untimed times, then ``iters`` timed. Returns (total seconds per batch, head seconds
    per batch), float64 (iters,). Raises BenchError if the engine returns non-finite scores or the
    wrong number of them."""
    def once() -> tuple[int, int]:
        t0 = time.perf_counter_ns()
        maps = engine.grid.stitch(engine.run_tiles(engine.grid.cut(images)))
        t1 = time.perf_counter_ns()
        scores = engine.head(maps, None, want_maps=False).scores
        t2 = time.perf_counter_ns()
        if np.shape(scores) != (len(images),) or not np.all(np.isfinite(scores)):
            raise BenchError(f"{engine.backend}: engine returned bad scores {np.asarray(scores)[:4]} "
                             f"(shape {np.shape(scores)}) for a batch of {len(images)}")
        return t2 - t0, t2 - t1

    for _ in range(warmup):
        once()
    samples = np.array([once() for _ in range(iters)], dtype=np.float64) / 1e9
    return samples[:, 0], samples[:, 1]


def summarize(backend: str, batch: int, total_s: np.ndarray, head_s: np.ndarray, **extra) -> dict:
    """One result row from per-batch timings (seconds)."""
    total = float(total_s.sum())
    h, w = extra.get("image_size", (0, 0))
    return {
        "backend": backend,
        "batch": int(batch),
        "images_per_s": batch * len(total_s) / total,
        "megapixels_per_s": batch * len(total_s) * h * w / 1e6 / total,
        "latency_ms_p50": float(np.percentile(total_s, 50)) * 1e3,
        "latency_ms_p99": float(np.percentile(total_s, 99)) * 1e3,
        "latency_ms_mean": float(total_s.mean()) * 1e3,
        "head_ms_per_image": float(head_s.sum()) / (batch * len(head_s)) * 1e3,
        "head_percent": 100.0 * float(head_s.sum()) / total,
        **extra,
    }


def bench_engine(eng, batches: list[int], iters: int, warmup: int, **extra) -> list[dict]:
    """Rows for one open engine, one per batch size."""
    rows = []
    for batch in batches:
        images = synthetic_batch(batch, tuple(eng.image_size))
        total_s, head_s = time_engine(eng, images, iters, warmup)
        row = summarize(eng.backend, batch, total_s, head_s, iters=iters, warmup=warmup,
                        image_size=list(eng.image_size), tiles_per_image=eng.grid.n_tiles,
                        tile_size=list(eng.grid.tile_size), **extra)
        log.info("%s batch %d: %.1f images/s, p50 %.1f ms", row["backend"], batch, row["images_per_s"],
                 row["latency_ms_p50"])
        rows.append(row)
    return rows


def breakdown_torch(engine, batches: list[int], iters: int, warmup: int) -> list[dict]:
    """Per-part times of the torch model (see module doc), one entry per batch size."""
    import torch

    from ..model.network import cosine_maps

    model = engine.model

    @torch.no_grad()
    def once(x: torch.Tensor) -> list[int]:
        stamps = [time.perf_counter_ns()]
        teacher = model.teacher_features(x)
        stamps.append(time.perf_counter_ns())
        z = model.student.ocbe(teacher)
        stamps.append(time.perf_counter_ns())
        student = model.student.decoder(z)
        stamps.append(time.perf_counter_ns())
        maps = engine.grid.stitch([m.float().cpu().numpy() for m in cosine_maps(teacher, student)])
        stamps.append(time.perf_counter_ns())
        engine.head(maps, None, want_maps=False)
        stamps.append(time.perf_counter_ns())
        return list(np.diff(stamps))

    out = []
    for batch in batches:
        x = torch.from_numpy(engine.grid.cut(synthetic_batch(batch, tuple(engine.image_size)))).to(engine.device)
        for _ in range(warmup):
            once(x)
        parts_s = np.array([once(x) for _ in range(iters)], dtype=np.float64).sum(axis=0) / 1e9
        per_image_ms = parts_s / (batch * iters) * 1e3
        total = float(per_image_ms.sum())
        out.append({"backend": "torch", "batch": batch, "iters": iters, "total_ms_per_image": total,
                    "parts": {name: {"ms_per_image": float(ms), "percent": 100.0 * float(ms) / total}
                              for name, ms in zip(BREAKDOWN_PARTS, per_image_ms)}})
    return out


HEADLINE_KEYS = ("backend", "batch", "images_per_s", "latency_ms_p50", "latency_ms_p99")


def headline(rows: list[dict]) -> dict:
    """The row a one-line summary quotes: among backends other than the torch reference (torch when
    it is the only one), the largest batch, then the highest images/s. Only the HEADLINE_KEYS."""
    if not rows:
        return {}
    candidates = [r for r in rows if r["backend"] != "torch"] or rows
    best = max(candidates, key=lambda r: (r["batch"], r["images_per_s"]))
    return {k: best[k] for k in HEADLINE_KEYS}


def speedups(rows: list[dict]) -> dict:
    """images/s of each non-torch backend over torch, per batch: {"X_vs_torch": {"N": ratio}}."""
    by_key = {(r["backend"], r["batch"]): r["images_per_s"] for r in rows}
    result: dict[str, dict[str, float]] = {}
    for (backend, batch), ips in sorted(by_key.items()):
        base = by_key.get(("torch", batch))
        if backend != "torch" and base:
            result.setdefault(f"{backend}_vs_torch", {})[str(batch)] = ips / base
    return result


# --------------------------------------------------------------------------------- environment
def setup_torch(threads: int) -> None:
    """No OpenMP spinning (unless OMP_WAIT_POLICY is set already), flush denormals and set the
    thread count, all before torch starts any thread. OMP_WAIT_POLICY is read when torch loads
    libgomp, so it only takes effect if torch was not imported before."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "torch" in sys.modules:
        log.warning("torch was imported before the benchmark set OMP_WAIT_POLICY=%s; it may not apply",
                    os.environ["OMP_WAIT_POLICY"])
    import torch

    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before any inter-op work
        torch.set_num_interop_threads(1)


@contextlib.contextmanager
def default_fp_mode(torch_loaded: bool) -> Iterator[None]:
    """Clear flush-to-zero on this thread while an ORT session is created (its threads inherit it),
    so onnxruntime runs as in the daemon; restore it after."""
    if not torch_loaded:
        yield
        return
    import torch

    torch.set_flush_denormal(False)
    try:
        yield
    finally:
        torch.set_flush_denormal(True)


def warn_if_untrained(model_path: str) -> list[str]:
    """Warnings for a checkpoint that was never trained (epoch 0): loud on stderr, returned for JSON."""
    from ..model.checkpoint import CheckpointError, load_checkpoint

    try:
        epoch = int(load_checkpoint(model_path).get("epoch", 0))
    except CheckpointError as exc:
        raise BenchError(str(exc)) from exc
    if epoch > 0:
        return []
    text = (f"{model_path} has never been trained (epoch 0): random weights make denormal floats, which "
            "distort CPU timings (eager PyTorch can be 10-100x slower); benchmark a trained model")
    print("\n" + "!" * 100 + f"\nWARNING: {text}\n" + "!" * 100 + "\n", file=sys.stderr)
    return [text]


@contextlib.contextmanager
def blas_limit(blas_threads: int) -> Iterator[None]:
    """Limit the BLAS libraries numpy uses to ``blas_threads`` threads (0: no change)."""
    if not blas_threads:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise BenchError("--blas-threads needs the threadpoolctl package (pip install threadpoolctl)") from None
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        yield


def thread_pools() -> list[dict]:
    """The native thread pools loaded in this process (BLAS, OpenMP) and their sizes, if known."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{**{k: pool.get(k) for k in ("user_api", "internal_api", "num_threads", "version")},
             "library": _library_label(pool.get("filepath"))} for pool in threadpool_info()]


def _library_label(filepath: str | None) -> str:
    """``.../numpy.libs/libscipy_openblas64_-32a4b2a6.so`` -> ``numpy.libs/libscipy_openblas64_``."""
    if not filepath:
        return "?"
    path = Path(filepath)
    return f"{path.parent.name}/{path.name.split('-')[0].split('.so')[0]}"


def machine_info() -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "cpus_allowed": default_threads(),
            "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "thread_pools": thread_pools()}
    for name in ("torch", "onnxruntime", "numpy"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = getattr(module, "__version__", "?")
    return info


# --------------------------------------------------------------------------------- output
def format_results(rows: list[dict]) -> str:
    lines = ["| backend | batch | images/s | MP/s | p50 ms | p99 ms | head ms/img | head % | threads |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['backend']} | {r['batch']} | {r['images_per_s']:.1f} | {r['megapixels_per_s']:.2f} | "
              f"{r['latency_ms_p50']:.2f} | "
              f"{r['latency_ms_p99']:.2f} | {r['head_ms_per_image']:.3f} | {r['head_percent']:.1f} | {r['threads']} |"
              for r in rows]
    return "\n".join(lines)


def format_breakdown(entries: list[dict]) -> str:
    header = "| part | " + " | ".join(f"batch {e['batch']} ms/img | %" for e in entries) + " |"
    lines = [header, "| --- |" + " ---: | ---: |" * len(entries)]
    for name in BREAKDOWN_PARTS:
        cells = " | ".join(f"{e['parts'][name]['ms_per_image']:.3f} | {e['parts'][name]['percent']:.1f}"
                           for e in entries)
        lines.append(f"| {name} | {cells} |")
    lines.append("| total | " + " | ".join(f"{e['total_ms_per_image']:.3f} | 100.0" for e in entries) + " |")
    return "\n".join(lines)


def format_speedups(speedup: dict) -> str:
    return "\n".join(f"speedup {name.replace('_vs_', ' vs ')}: " +
                     ", ".join(f"batch {b}: {x:.2f}x" for b, x in ratios.items())
                     for name, ratios in speedup.items())


def check_rows(rows: list[dict]) -> None:
    """Every row has the required keys with positive finite numbers (else BenchError)."""
    for row in rows:
        for key in ROW_KEYS[2:]:
            value = row.get(key)
            if not (isinstance(value, float) and math.isfinite(value) and value > 0):
                raise BenchError(f"{row.get('backend')} batch {row.get('batch')}: {key} = {value!r}")


# --------------------------------------------------------------------------------- run
class _Session:
    """One benchmark run: resolved inputs, the ONNX engine path (exported once, on demand)."""

    def __init__(self, args, batches: list[int], threads: int, tmp: Path):
        self.args, self.batches, self.threads, self.tmp = args, batches, threads, tmp
        self.rows: list[dict] = []
        self.breakdown: list[dict] = []
        self.skipped: list[dict] = []
        self.warnings: list[str] = []
        self._onnx: str | None = args.engine
        self.torch_loaded = False

    def onnx_path(self) -> str:
        if self._onnx is None:
            from ..engine.export import export_onnx

            path = self.tmp / "model.onnx"
            started = time.perf_counter()
            with warnings.catch_warnings():  # the exporter's constant-folding notes are not ours to act on
                warnings.simplefilter("ignore", UserWarning)
                export_onnx(self.args.model, path, teacher_weights=self.args.teacher_weights)
            log.info("exported %s to %s in %.1f s", self.args.model, path, time.perf_counter() - started)
            self._onnx = str(path)
        return self._onnx

    def open(self, backend: str):
        from ..engine import EngineError, open_engine

        max_batch = max(self.batches)
        try:
            if backend == "torch":
                return open_engine("torch", self.args.model, max_batch=max_batch,
                                   teacher_weights=self.args.teacher_weights)
            if backend == "onnxruntime":
                with default_fp_mode(self.torch_loaded):
                    return open_engine("onnxruntime", self.onnx_path(), threads=self.threads, max_batch=max_batch)
            return open_engine("tensorrt", self.onnx_path(), max_batch=max_batch)
        except EngineError as exc:
            raise BenchError(f"{backend}: {exc}") from exc

    def tensorrt_unavailable(self) -> str | None:
        """Why TensorRT cannot run here, without importing it; None when it may."""
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed (python package 'tensorrt'; GPU machines only)"
        if importlib.util.find_spec("inspector.engine.tensorrt_engine") is None:
            return "this build has no TensorRT backend (inspector/engine/tensorrt_engine.py)"
        return None

    def run_backend(self, backend: str, skip_missing: bool) -> None:
        if backend == "torch" and not self.args.model:
            self.skip(backend, "needs --model (a checkpoint)")
            return
        if backend == "tensorrt":
            reason = self.tensorrt_unavailable()
            if reason is None:
                try:
                    engine = self.open(backend)
                except Exception as exc:  # no GPU, driver, plan build failure...: skip as part of "all"
                    if not skip_missing:
                        raise BenchError(f"tensorrt: {exc}") from exc
                    reason = f"{type(exc).__name__}: {exc}"
            if reason is not None:
                if not skip_missing:
                    raise BenchError(f"tensorrt: {reason}")
                self.skip(backend, reason)
                return
        else:
            engine = self.open(backend)
        try:
            extra = {"threads": self.threads, "engine": self.engine_label(backend),
                     "precision": engine.manifest.get("precision", "fp32"),
                     "flush_denormal": backend == "torch"}
            self.rows += bench_engine(engine, self.batches, self.args.iters, self.args.warmup, **extra)
            if backend == "torch" and self.args.breakdown:
                self.breakdown = breakdown_torch(engine, self.batches, self.args.iters, self.args.warmup)
        finally:
            engine.close()

    def engine_label(self, backend: str) -> str:
        if backend == "torch":
            return str(self.args.model)
        return str(self.args.engine) if self.args.engine else "(exported from --model to a temp dir)"

    def skip(self, backend: str, reason: str) -> None:
        print(f"skipping {backend}: {reason}")
        self.skipped.append({"backend": backend, "reason": reason})


def run(args) -> int:
    batches = parse_batches(args.batch)
    check_counts(args.iters, args.warmup, args.threads, args.blas_threads)
    backends, skip_missing = resolve_backends(args.backend, args.model, args.engine)
    if args.breakdown and not args.model:
        raise BenchError("--breakdown times the torch model: it needs --model")
    threads = args.threads or default_threads()
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="inspector-bench-") as tmp, blas_limit(args.blas_threads):
        session = _Session(args, batches, threads, Path(tmp))
        if args.model:
            setup_torch(threads)  # before any torch thread exists
            session.torch_loaded = True
            session.warnings += warn_if_untrained(args.model)
        if args.model and args.engine:
            session.warnings += check_engine_matches(args.engine, args.model)
        if args.breakdown and "torch" not in backends:
            backends = ["torch"] + backends  # the breakdown runs on the torch engine
        for backend in backends:
            session.run_backend(backend, skip_missing)
        machine = machine_info()  # inside the BLAS limit: thread_pools shows what was used
    machine["load_average_1m_at_start"] = load_at_start
    check_rows(session.rows)
    report = {**headline(session.rows),
              "results": session.rows, "breakdown": session.breakdown, "speedup": speedups(session.rows),
              "skipped": session.skipped, "warnings": session.warnings, "machine": machine,
              "settings": {"batches": batches, "iters": args.iters, "warmup": args.warmup, "threads": threads,
                           "blas_threads": args.blas_threads or None,
                           "seed": SEED, "input": "uint8 random RGB at the model size",
                           "timed": "scale_maps + map head (scores), per batch"}}
    print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def check_engine_matches(engine_path: str, model_path: str) -> list[str]:
    """A warning when --engine was not exported from --model (the comparison would be between models)."""
    from ..engine.manifest import ManifestError, read_manifest, sha256_file

    try:
        manifest = read_manifest(engine_path)
    except ManifestError as exc:
        raise BenchError(str(exc)) from exc
    if manifest.get("model_sha256") == sha256_file(model_path):
        return []
    text = f"{engine_path} was not exported from {model_path}: torch and onnxruntime rows time different models"
    log.warning(text)
    return [text]


def _load(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def print_report(report: dict) -> None:
    machine = report["machine"]
    pools = ", ".join(f"{p['library']} {p['num_threads']}" for p in machine["thread_pools"]) or "?"
    print(f"machine: {machine['machine']}, {machine['cpus_allowed']} CPUs allowed, load average (1 min) "
          f"{_load(machine['load_average_1m_at_start'])} at start, {_load(machine['load_average_1m'])} at end; "
          f"torch {machine.get('torch', '-')}, onnxruntime {machine.get('onnxruntime', '-')}; "
          f"thread pools: {pools}; OMP_WAIT_POLICY={machine['omp_wait_policy']}")
    rows = report["results"]
    if rows:
        h, w = rows[0]["image_size"]
        print(f"end-to-end: prepared uint8 batch {w}x{h} RGB -> scores (model + map head); "
              f"{rows[0]['iters']} timed batches after {rows[0]['warmup']} warm-up\n")
        print(format_results(rows))
    if report["speedup"]:
        print("\n" + format_speedups(report["speedup"]))
    if report["breakdown"]:
        print("\ntorch breakdown (where the time goes):\n")
        print(format_breakdown(report["breakdown"]))
    for warning in report["warnings"]:
        print(f"\nWARNING: {warning}")


def _cli_main(argv: list[str] | None = None) -> int:  # python -m inspector.evaluation.bench
    parser = argparse.ArgumentParser(prog="inspector bench")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_cli_main())
