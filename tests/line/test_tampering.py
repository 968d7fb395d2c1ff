"""Tamper-evident artifacts (issue 9, "Artifacts"; docs/security.md), against the real commands.

Every case here was accepted before: a profile whose threshold was raised to 5.0 by hand, a
profile of another engine with its ``engine.sha256`` edited to match, an ONNX file with zeroed
weights and its hashes recomputed, a manifest with an edited stride, a checkpoint with 64 flipped
bytes. Now ``--check-config``, ``serve``, ``eval`` and SIGHUP refuse them, and a threshold change
that *is* signed by the site is an audit event (JSON log line with old and new values, metrics).
The engine and profiles are the tiny fixtures, signed with the run's site key (conftest).
"""

from __future__ import annotations

import json
import shutil
import signal
import struct
import time
import zipfile
from pathlib import Path

import pytest
import zmq

from conftest import free_port, run_cli, site_key, wait_until
from daemon_helpers import (Listener, extreme_images, http_get, make_push, metric_value, profile_dict, save_signed,
                            send, serve, stop, write_toml)
from inspector.core.hashing import sha256_file
from inspector.core.signing import SigningKey, make_site_key
from inspector.line.config import check_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def images(tiny_dataset, tiny_engine):
    return extreme_images(tiny_dataset, tiny_engine)


def copy_engine(tiny_engine: Path, folder: Path) -> Path:
    """The tiny engine's files (engine, manifest, statistics) copied into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in tiny_engine.parent.glob(f"{tiny_engine.stem}.*"):
        shutil.copy(path, folder / path.name)
    return folder / tiny_engine.name


def edit_manifest(engine: Path, change, *, resign: SigningKey | None = None) -> None:
    manifest = json.loads(engine.with_suffix(".json").read_text())
    change(manifest)
    if resign is not None:
        manifest = resign.sign(manifest)
    engine.with_suffix(".json").write_text(json.dumps(manifest))


def box(folder: Path, engine: Path, profile: Path) -> Path:
    return write_toml(folder / "inspector.toml", {
        "daemon": {"frames": f"tcp://127.0.0.1:{free_port()}", "verdicts": f"tcp://127.0.0.1:{free_port()}"},
        "engine": {"path": str(engine), "threads": 1, "max_batch": 2},
        "defaults": {"calibration": str(profile)}})


def zero_weights(engine: Path) -> None:
    """Zero the largest initializer of the ONNX graph and recompute the manifest's engine_sha256
    (what an attacker without the site key can do)."""
    import onnx
    import numpy as np
    from onnx import numpy_helper

    model = onnx.load(str(engine))
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    biggest.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(biggest)), biggest.name))
    onnx.save(model, str(engine))
    edit_manifest(engine, lambda m: m.update(engine_sha256=sha256_file(engine)))


def test_tampered_engines_are_refused_by_check_config_serve_and_eval(tmp_path, tiny_engine, tiny_dataset, images):
    other = SigningKey.load(make_site_key(tmp_path / "other", "other")[0])
    cases = {
        "zeroed": (zero_weights, "altered after it was signed"),
        "stride": (lambda e: edit_manifest(e, lambda m: m["outputs"][2].update(stride=32)), "altered after it was signed"),
        "unsigned": (lambda e: edit_manifest(e, lambda m: m.pop("signature")), "is not signed"),
        "foreign": (lambda e: edit_manifest(e, lambda m: None, resign=other), "not a trusted key"),
    }
    configs = {}
    for name, (tamper, message) in cases.items():
        engine = copy_engine(tiny_engine, tmp_path / name)
        tamper(engine)
        profile = save_signed(tmp_path / name / "p.json", profile_dict(json.loads(
            engine.with_suffix(".json").read_text()), images["threshold"]))   # profile hashes recomputed, signed
        configs[name] = box(tmp_path / name, engine, profile)
        problems = "\n".join(check_config(configs[name]))
        assert f"[engine] path: engine not usable: engine manifest {engine.with_suffix('.json')}" in problems, problems
        assert message in problems, problems
    zeroed = tmp_path / "zeroed" / tiny_engine.name
    for command in (["serve", "--config", str(configs["zeroed"])], ["serve", "--config", str(configs["zeroed"]),
                                                                     "--check-config"],
                    ["eval", "--engine", str(zeroed), "--data", str(tiny_dataset)]):
        proc = run_cli(*command, check=False, timeout=120)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert "altered after it was signed" in proc.stdout + proc.stderr, (command, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_check_config_opens_the_engine_as_serve_does(tmp_path, tiny_engine, images):
    """A stride edited and signed again with the site's own key passes every signature; the
    engine it describes cannot run. --check-config finds it (it opens and warms up the engine),
    not only `serve`."""
    engine = copy_engine(tiny_engine, tmp_path / "e")
    edit_manifest(engine, lambda m: m["outputs"][2].update(stride=32), resign=site_key())
    profile = save_signed(tmp_path / "e" / "p.json", profile_dict(json.loads(engine.with_suffix(".json").read_text()),
                                                                  images["threshold"]))
    problems = check_config(box(tmp_path, engine, profile))
    assert problems and all("[engine] path:" in p for p in problems), problems
    assert any("warm-up" in p or "cannot open" in p for p in problems), problems
    good = copy_engine(tiny_engine, tmp_path / "good")
    profile = save_signed(tmp_path / "good" / "p.json", profile_dict(images["manifest"], images["threshold"]))
    assert check_config(box(tmp_path / "good", good, profile)) == []


def test_a_checkpoint_with_64_flipped_bytes_is_refused(tmp_path, tiny_model, tiny_dataset):
    broken = tmp_path / "flipped.pt"
    shutil.copy(tiny_model, broken)
    with zipfile.ZipFile(broken) as archive:                      # the largest tensor's stored bytes
        record = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(broken.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[record.header_offset + 26:record.header_offset + 30])
    start = record.header_offset + 30 + name_length + extra_length + record.file_size // 2
    data[start:start + 64] = bytes(b ^ 0xFF for b in data[start:start + 64])
    broken.write_bytes(data)
    proc = run_cli("eval", "--model", str(broken), "--data", str(tiny_dataset), check=False, timeout=120)
    assert proc.returncode == 2 and "tensors do not match their recorded sha256" in proc.stderr, proc.stderr
    from inspector.model.checkpoint import CheckpointError, load_checkpoint   # every loader (export, torch backend...)

    with pytest.raises(CheckpointError, match="altered or damaged weights"):
        load_checkpoint(broken)
    load_checkpoint(tiny_model)


def test_profiles_at_start_and_on_sighup_refused_unless_signed_and_each_change_audited(tmp_path, tiny_engine, images):
    manifest, threshold = images["manifest"], images["threshold"]
    profile = tmp_path / "p.json"

    def tampered(image: float) -> None:   # the file signed for `threshold`, then edited by hand
        data = json.loads(save_signed(profile, profile_dict(manifest, threshold)).read_text())
        data["thresholds"]["image"] = image
        profile.write_text(json.dumps(data))

    tampered(5.0)
    ports = {name: free_port() for name in ("frames", "verdicts", "health")}
    endpoints = {name: f"tcp://127.0.0.1:{ports[name]}" for name in ("frames", "verdicts")}
    config = write_toml(tmp_path / "inspector.toml", {
        "daemon": {**endpoints, "health": f"127.0.0.1:{ports['health']}", "heartbeat_ms": 50, "log_format": "json"},
        "engine": {"path": str(tiny_engine), "threads": 1, "max_batch": 2},
        "defaults": {"calibration": "p.json", "deadline_ms": 20000}})
    problems = "\n".join(check_config(config))
    assert "[defaults] calibration: calibration profile" in problems and "altered after it was signed" in problems

    context = zmq.Context()
    listener = Listener(context, endpoints["verdicts"])
    proc = serve(config, tmp_path)
    push = make_push(context, endpoints["frames"])
    seq = iter(range(1000))

    def judged(image) -> str:
        n = next(seq)
        send(push, "cam0", n, image)
        verdict = wait_until(lambda: next((v for v in listener.snapshot()[0] if v.seq == n), None), 30, f"verdict {n}")
        return f"{verdict.decision} {verdict.reason}".strip()

    def reload(n: int) -> str:   # the n-th SIGHUP, done
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: metric_value(http_get(ports["health"], "/metrics")[1], "inspector_daemon_profile_reloads_total")
                   == n, 20, "the reload")
        return http_get(ports["health"], "/metrics")[1]

    try:
        wait_until(lambda: listener.snapshot()[1], 60, "a heartbeat")
        assert not listener.snapshot()[1][-1].ready and http_get(ports["health"], "/readyz")[0] == 503
        assert judged(images["defect"]) == "FAULT no_calibration"          # never judged with the edited 5.0
        save_signed(profile, profile_dict(manifest, threshold))
        metrics = reload(1)
        assert metric_value(metrics, "inspector_daemon_threshold", camera="*", rule="image") == pytest.approx(threshold)
        assert judged(images["defect"]) == "REJECT score_above_threshold"
        tampered(5.0)                                                      # SIGHUP with a hand-edited profile
        metrics = reload(2)
        assert metric_value(metrics, "inspector_daemon_profile_reload_errors_total") == 1
        assert metric_value(metrics, "inspector_daemon_threshold", camera="*", rule="image") == pytest.approx(threshold)
        assert judged(images["defect"]) == "REJECT score_above_threshold"  # the signed one stays in force
        save_signed(profile, profile_dict(manifest, 5.0))                  # a change the site signed: applied, audited
        metrics = reload(3)
        assert metric_value(metrics, "inspector_daemon_threshold", camera="*", rule="image") == 5.0
        assert metric_value(metrics, "inspector_daemon_threshold_changes_total", camera="*") == 2   # none -> t -> 5
        assert time.time() - metric_value(metrics, "inspector_daemon_threshold_changed_timestamp_seconds",
                                          camera="*") < 60
        assert judged(images["defect"]) == "OK"
    finally:
        summary = stop(proc) if proc.poll() is None else {}
        push.close(0)
        listener.close()
        context.term()
    assert summary["profile_reload_errors"] == 1
    events = [json.loads(line)["audit"] for line in (tmp_path / "daemon.log").read_text().splitlines()
              if line.startswith("{") and '"audit"' in line]
    # at start (no usable profile), the signed profile applied, the signed change; the refused edit is none
    assert [((e["old"] or {}).get("image"), (e["new"] or {}).get("image")) for e in events] == \
        [(None, None), (None, threshold), (threshold, 5.0)]
    change = events[-1]
    assert change["camera"] == "*" and change["new"]["key_id"] == site_key().key_id
    assert len(change["old"]["profile_sha256"]) == len(change["new"]["profile_sha256"]) == 64
    assert change["old"]["profile_sha256"] != change["new"]["profile_sha256"] and change["time_ns"] > 0
