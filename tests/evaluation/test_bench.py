"""Tests for `inspector bench` and tools/bench_transport.py: real runs through the CLI on the tiny
trained model / ONNX engine and over real ZeroMQ sockets between processes. The figures are
machine-dependent and not asserted; the tests check that each benchmark runs, measures what it
says (every case and part present, positive finite numbers, consistent derived figures) and fails
clearly on bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from inspector.evaluation.bench import BREAKDOWN_PARTS, ROW_KEYS, BenchError, parse_batches, speedups, summarize

from conftest import REPO, run_cli

pytestmark = pytest.mark.e2e

TRANSPORT_TOOL = REPO / "tools" / "bench_transport.py"


def _positive_finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _check_row(row: dict) -> None:
    for key in ROW_KEYS + ("head_ms_per_image", "threads", "image_size", "iters"):
        assert key in row, f"row lacks {key}: {row}"
    for key in ("images_per_s", "latency_ms_p50", "latency_ms_p99", "head_ms_per_image"):
        assert _positive_finite(row[key]), (key, row)
    assert row["latency_ms_p50"] <= row["latency_ms_p99"] + 1e-9
    assert 0 < row["head_percent"] < 100


# ------------------------------------------------------------------------------ inspector bench
def test_bench_model_runs_torch_and_onnxruntime_side_by_side(tiny_model, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "--model", str(tiny_model), "--batch", "1,2", "--iters", "3", "--warmup", "1",
                   "--json", str(out), "--breakdown", timeout=180)
    report = json.loads(out.read_text())

    rows = {(r["backend"], r["batch"]): r for r in report["results"]}
    assert {("torch", 1), ("torch", 2), ("onnxruntime", 1), ("onnxruntime", 2)} <= set(rows)
    assert (report["backend"], report["batch"]) == ("onnxruntime", 2)  # headline: engine, largest batch
    assert report["images_per_s"] == rows[("onnxruntime", 2)]["images_per_s"]
    for row in rows.values():
        _check_row(row)
        assert row["image_size"] == [64, 64] and row["iters"] == 3
        # images/s is N * iters / summed batch latency = N / mean latency
        assert row["images_per_s"] == pytest.approx(row["batch"] / (row["latency_ms_mean"] * 1e-3))
    assert rows[("torch", 1)]["flush_denormal"] is True
    assert rows[("onnxruntime", 1)]["flush_denormal"] is False

    ratios = report["speedup"]["onnxruntime_vs_torch"]
    for batch in ("1", "2"):
        expected = rows[("onnxruntime", int(batch))]["images_per_s"] / rows[("torch", int(batch))]["images_per_s"]
        assert ratios[batch] == pytest.approx(expected)

    # tensorrt is part of "all": measured where it runs, otherwise skipped with a reason (not an error)
    if ("tensorrt", 1) not in rows:
        assert any(s["backend"] == "tensorrt" and s["reason"] for s in report["skipped"])

    assert [e["batch"] for e in report["breakdown"]] == [1, 2]
    for entry in report["breakdown"]:
        assert set(entry["parts"]) == set(BREAKDOWN_PARTS)
        assert all(_positive_finite(p["ms_per_image"]) for p in entry["parts"].values())
        assert sum(p["ms_per_image"] for p in entry["parts"].values()) == pytest.approx(entry["total_ms_per_image"])
        assert sum(p["percent"] for p in entry["parts"].values()) == pytest.approx(100.0)

    assert report["warnings"] == []  # the fixture model is trained
    for text in ("| backend | batch | images/s", "| torch | 1 |", "| onnxruntime | 2 |", "speedup onnxruntime vs torch",
                 "| teacher |", "| map_head |"):
        assert text in proc.stdout, text


def test_bench_engine_onnxruntime_only(tiny_engine, tmp_path):
    out = tmp_path / "bench.json"
    run_cli("bench", "--engine", str(tiny_engine), "--backend", "onnxruntime", "--batch", "2", "--iters", "2",
            "--warmup", "0", "--threads", "1", "--json", str(out), timeout=120)
    report = json.loads(out.read_text())
    assert [(r["backend"], r["batch"]) for r in report["results"]] == [("onnxruntime", 2)]
    row = report["results"][0]
    _check_row(row)
    assert row["threads"] == 1 and row["precision"] == "fp32" and row["engine"] == str(tiny_engine)
    assert report["speedup"] == {} and report["breakdown"] == []
    # the headline keys sit at the top level too, and here they are the one row's
    assert {k: report[k] for k in ("backend", "batch", "images_per_s", "latency_ms_p50", "latency_ms_p99")} == \
        {k: row[k] for k in ("backend", "batch", "images_per_s", "latency_ms_p50", "latency_ms_p99")}


def test_bench_warns_loudly_about_an_untrained_checkpoint(tiny_model, tmp_path):
    import torch

    ckpt = torch.load(tiny_model, map_location="cpu", weights_only=True)
    ckpt["epoch"] = 0
    untrained = tmp_path / "untrained.pt"
    torch.save(ckpt, untrained)
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "--model", str(untrained), "--backend", "torch", "--batch", "1", "--iters", "1",
                   "--warmup", "0", "--json", str(out), timeout=120)
    assert "never been trained" in proc.stderr and "WARNING" in proc.stderr
    report = json.loads(out.read_text())
    assert len(report["warnings"]) == 1 and "denormal" in report["warnings"][0]
    assert [r["backend"] for r in report["results"]] == ["torch"]


@pytest.mark.parametrize("args, message", [
    (["--backend", "torch"], "needs --model"),
    (["--batch", "0"], "--batch sizes"),
    (["--batch", "1,x"], "comma list"),
    (["--iters", "0"], "--iters"),
    (["--breakdown"], "needs --model"),
])
def test_bench_refuses_bad_arguments(tiny_engine, args, message):
    proc = run_cli("bench", "--engine", str(tiny_engine), *args, check=False, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_bench_needs_a_model_or_an_engine():
    proc = run_cli("bench", check=False, timeout=60)
    assert proc.returncode == 2 and "--model" in proc.stderr and "--engine" in proc.stderr


def test_bench_tensorrt_by_name_is_an_error_where_unavailable(tiny_engine, tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    proc = run_cli("bench", "--engine", str(tiny_engine), "--backend", "tensorrt", "--iters", "1",
                   "--json", str(tmp_path / "x.json"), check=False, timeout=60)
    assert proc.returncode == 2 and "tensorrt" in proc.stderr.lower()
    assert not (tmp_path / "x.json").exists()


def test_parse_batches_and_summary_figures():
    assert parse_batches("8,1,8") == [1, 8]
    for bad in ("", "0", "-1", "a", "1,257"):
        with pytest.raises(BenchError):
            parse_batches(bad)
    total = np.array([0.010, 0.020, 0.030, 0.040])
    head = np.array([0.001, 0.001, 0.002, 0.004])
    row = summarize("x", 4, total, head)
    assert row["images_per_s"] == pytest.approx(4 * 4 / 0.1)
    assert row["latency_ms_p50"] == pytest.approx(25.0)
    assert 39.0 < row["latency_ms_p99"] <= 40.0
    assert row["head_ms_per_image"] == pytest.approx(8.0 / 16)
    assert row["head_percent"] == pytest.approx(8.0)
    rows = [{"backend": "torch", "batch": 1, "images_per_s": 10.0},
            {"backend": "onnxruntime", "batch": 1, "images_per_s": 15.0},
            {"backend": "onnxruntime", "batch": 8, "images_per_s": 20.0}]  # no torch row at 8: no ratio
    assert speedups(rows) == {"onnxruntime_vs_torch": {"1": 1.5}}


# ------------------------------------------------------------------------------ tools/bench_transport.py
def test_bench_transport_measures_every_case(tmp_path):
    out = tmp_path / "transport.json"
    proc = subprocess.run([sys.executable, str(TRANSPORT_TOOL), "--seconds", "0.3", "--sizes", "1mp", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    cases = json.loads(out.read_text())["cases"]
    seen = {(c["pixel_format"], c["transport"], c["mode"]) for c in cases}
    assert seen == {(f, t, m) for f in ("mono8", "bgr8") for t in ("ipc", "tcp") for m in ("max", "paced")}
    for case in cases:
        channels = 1 if case["pixel_format"] == "mono8" else 3
        assert (case["width"], case["height"]) == (1024, 1024)
        assert case["frame_bytes"] == 1024 * 1024 * channels
        assert case["frames"] >= 2 and case["lost"] == 0  # PUSH/PULL blocks at the HWM, never drops
        for key in ("frames_per_s", "mb_per_s", "latency_ms_p50", "latency_ms_p99", "latency_ms_max"):
            assert _positive_finite(case[key]), (key, case)
        assert case["latency_ms_p50"] <= case["latency_ms_p99"] <= case["latency_ms_max"]
        assert case["mb_per_s"] == pytest.approx(case["frames_per_s"] * case["frame_bytes"] / 1e6)
        assert case["target_fps"] == (30.0 if case["mode"] == "paced" else None)
    assert "| 1024x1024 (1mp) | bgr8 | tcp | null | paced 30 fps |" in proc.stdout


def test_bench_transport_measures_curve_too(tmp_path):
    out = tmp_path / "transport.json"
    proc = subprocess.run([sys.executable, str(TRANSPORT_TOOL), "--seconds", "0.3", "--sizes", "1mp", "--formats", "mono8",
                           "--transports", "tcp", "--fps", "0", "--security", "curve", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    [case] = json.loads(out.read_text())["cases"]
    assert case["security"] == "curve" and case["frames"] >= 2 and case["lost"] == 0
    assert "| 1024x1024 (1mp) | mono8 | tcp | curve | max |" in proc.stdout


def test_bench_transport_refuses_bad_arguments():
    for args in (["--sizes", "3mp"], ["--seconds", "0"], ["--transports", "udp"]):
        proc = subprocess.run([sys.executable, str(TRANSPORT_TOOL), *args], cwd=REPO, capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 2 and "error" in proc.stderr, (args, proc.stderr)
