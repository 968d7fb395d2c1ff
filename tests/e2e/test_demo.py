"""`inspector demo` end to end, small: every frame sent gets exactly one verdict at the PLC, and the
summary's counts agree with each other."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

pytestmark = pytest.mark.e2e

KEYS = ("frames_sent", "verdicts", "verdicts_at_plc", "ok", "reject", "fault", "false_rejects", "escapes",
        "latency_ms_p50", "latency_ms_p99")


def test_demo_runs_the_whole_line(tmp_path):
    out = tmp_path / "demo.json"
    proc = run_cli("demo", "--frames", "12", "--fps", "20", "--epochs", "2", "--quiet",
                   "--workdir", str(tmp_path / "work"), "--engines-dir", str(tmp_path / "engines"),
                   "--calibration-dir", str(tmp_path / "calibration"), "--json", str(out), timeout=600)
    assert "every frame got exactly one verdict" in proc.stdout
    s = json.loads(out.read_text())
    for key in KEYS:
        assert key in s, key
    assert s["frames_sent"] == 24 == s["verdicts"] == s["verdicts_at_plc"]
    assert s["duplicate_verdicts"] == 0
    assert s["ok"] + s["reject"] + s["fault"] == s["verdicts"]
    assert s["good_frames"] + s["defect_frames"] == s["verdicts"]
    assert 0 <= s["false_rejects"] <= s["good_frames"] and 0 <= s["escapes"] <= s["defect_frames"]
    assert s["latency_ms_p50"] > 0 and s["latency_ms_p99"] >= s["latency_ms_p50"]
    # the per-camera PLC counters add up to the same total
    assert sum(c["total"] for c in s["plc"].values()) == s["verdicts_at_plc"]
    # the station ran with it: the page's address, every REJECT / FAULT archived (or counted as lost)
    station = s["station"]
    assert station["url"].startswith("http://127.0.0.1:") and "operator page: http://127.0.0.1:" in proc.stdout
    assert station["stored_reject"] + station["stored_fault"] + station["lost_queue_full"] + station["store_failed"] \
        == s["reject"] + s["fault"]
    # a second run reuses the cached model, engine and profile
    proc = run_cli("demo", "--frames", "4", "--fps", "20", "--quiet", "--workdir", str(tmp_path / "work"),
                   "--engines-dir", str(tmp_path / "engines"), "--calibration-dir", str(tmp_path / "calibration"),
                   timeout=300)
    assert "training" not in proc.stdout and "every frame got exactly one verdict" in proc.stdout
