"""The box config (inspector.line.config): one file, cameras declared once, strict validation with
file:line:key, cross-references between the daemon's cameras and the gateways, the systemd units
and the process layout written from it. (Unit tests: the CLI runs as a real subprocess, but no
engine is needed: every problem here is found before the engine is looked at.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inspector.app import layout
from inspector.line.config import ConfigError, connectable, load_config
from inspector.line.systemd import write_units

from conftest import run_cli

pytestmark = pytest.mark.unit

BOX = """\
[daemon]
frames = "tcp://127.0.0.1:7555"
verdicts = "tcp://127.0.0.1:7556"

[engine]
path = "engine.onnx"

[defaults]
deadline_ms = 400
fps = 5
calibration = "default.json"

[cameras.cam0]
source = "images/cam0"
calibration = "cam0.json"
roi = "1,2,30,40"

[cameras.cam1]
source = "mvtec:data/bottle"
deadline_ms = 900
fps = 2.5

[gateways.plc]
plc = "sim"
cameras = ["cam0", "cam1"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inspector.toml"
    path.write_text(text)
    return path


def test_cameras_merge_the_defaults_and_paths_resolve(tmp_path):
    config = load_config(write(tmp_path, BOX))
    cam0, cam1 = config.camera("cam0"), config.camera("cam1")
    assert (cam0.calibration, cam0.roi, cam0.deadline_ms, cam0.grabber.fps) == (
        str(tmp_path / "cam0.json"), "1,2,30,40", 400, 5)
    assert (cam1.calibration, cam1.calibration_where, cam1.deadline_ms, cam1.grabber.fps) == (
        str(tmp_path / "default.json"), "[defaults] calibration", 900, 2.5)
    assert cam0.source == str(tmp_path / "images" / "cam0") and cam1.source == f"mvtec:{tmp_path / 'data' / 'bottle'}"
    assert config.deadline_ms_for("cam1") == 900 and config.deadline_ms_for("other") == 400
    assert set(config.profile_paths()) == {None, "cam0", "cam1"}   # cam1 is checked with its own id and ROI


def test_every_process_reads_the_same_file(tmp_path):
    path = write(tmp_path, BOX)
    specs = layout(load_config(path), path)
    assert [(s.name, s.role) for s in specs] == [("daemon", "daemon"), ("gateway-plc", "gateway"),
                                                 ("grab-cam0", "grabber"), ("grab-cam1", "grabber")]
    assert specs[0].argv[-3:] == ("serve", "--config", str(path.resolve()))
    assert specs[2].argv[-5:] == ("grab", "--config", str(path.resolve()), "--camera", "cam0")
    assert connectable("tcp://0.0.0.0:7555") == "tcp://127.0.0.1:7555"


def test_unknown_keys_and_wrong_types_name_file_line_and_key(tmp_path):
    bad = BOX.replace("fps = 2.5", "fsp = 2.5").replace('cameras = ["cam0", "cam1"]', 'cameras = "cam0"')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, bad))
    text = "\n".join(info.value.problems)
    assert re.search(rf"{re.escape(str(tmp_path))}/inspector.toml:2\d \[cameras.cam1\] fsp: unknown key", text), text
    assert re.search(r"inspector.toml:\d+ \[gateways.plc\] cameras: ", text), text


def test_check_config_catches_a_gateway_camera_the_daemon_does_not_have(tmp_path):
    path = write(tmp_path, BOX.replace('cameras = ["cam0", "cam1"]', 'cameras = ["cam0", "cam1", "cam9"]'))
    proc = run_cli("line", "--config", str(path), "--check-config", check=False)
    assert proc.returncode == 2
    line = BOX.splitlines().index('cameras = ["cam0", "cam1"]') + 1
    assert f"{path}:{line} [gateways.plc] cameras: camera 'cam9' is not a daemon camera" in proc.stdout, proc.stdout


def test_check_config_catches_a_daemon_camera_no_gateway_writes(tmp_path):
    path = write(tmp_path, BOX.replace('cameras = ["cam0", "cam1"]', 'cameras = ["cam0"]'))
    proc = run_cli("line", "--config", str(path), "--check-config", check=False)
    assert proc.returncode == 2
    line = BOX.splitlines().index("[cameras.cam1]") + 1
    assert f"{path}:{line} [cameras.cam1]: no gateway writes camera 'cam1'" in proc.stdout, proc.stdout
    # serve, gateway and grab read the same file and refuse it the same way
    for command in (["serve", "--config", str(path)], ["grab", "--config", str(path), "--camera", "cam0"],
                    ["gateway", "--config", str(path), "--gateway", "plc"]):
        proc = run_cli(*command, check=False)
        assert proc.returncode == 2 and "no gateway writes camera 'cam1'" in proc.stdout + proc.stderr, command


def test_resource_bounds_merge_per_camera_and_no_deadline_exceeds_the_longest(tmp_path):
    config = load_config(write(tmp_path, BOX.replace('roi = "1,2,30,40"', 'roi = "1,2,30,40"\nmax_pixels = 1000')))
    assert (config.max_pixels_for("cam0"), config.max_pixels_for("cam1")) == (1000, 4096 * 4096)
    assert config.overload.max_queue_bytes == 512 * 2**20 and config.defaults.max_deadline_ms == 60_000
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BOX.replace("fps = 5\n", "fps = 5\nmax_deadline_ms = 800\n")))
    line = BOX.splitlines().index("deadline_ms = 900") + 2                  # + the inserted line
    assert info.value.problems == [f"{tmp_path}/inspector.toml:{line} [cameras.cam1] deadline_ms: 900 is longer than "
                                   "[defaults] max_deadline_ms = 800"]


def test_systemd_units_run_the_same_command_lines(tmp_path):
    path = write(tmp_path, BOX)
    specs = layout(load_config(path), path)
    written = write_units(specs, tmp_path / "units", working_dir=tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["inspector-daemon.service", "inspector-gateway-plc.service", "inspector-grab-cam0.service",
                     "inspector-grab-cam1.service", "inspector-line.target"]
    daemon = (tmp_path / "units" / "inspector-daemon.service").read_text()
    assert "Type=notify" in daemon and "Restart=on-failure" in daemon and "WatchdogSec=" in daemon
    grab = (tmp_path / "units" / "inspector-grab-cam0.service").read_text()
    assert "Type=simple" in grab
    assert "After=network-online.target inspector-daemon.service inspector-gateway-plc.service" in grab
    gateway = (tmp_path / "units" / "inspector-gateway-plc.service").read_text()
    assert "Type=notify" in gateway and "After=network-online.target inspector-daemon.service" in gateway
    assert f"ExecStart={' '.join(specs[2].argv)}" in grab
    target = (tmp_path / "units" / "inspector-line.target").read_text()
    assert all(name in target for name in names if name.endswith(".service"))
    proc = run_cli("line", "--config", str(path), "--systemd", str(tmp_path / "cli-units"))
    assert sorted(p.name for p in (tmp_path / "cli-units").iterdir()) == names and proc.stdout.count("\n") == 5


def test_the_register_map_and_the_config_agree_on_the_camera_count():
    from inspector.line.config import MAX_PLC_CAMERAS
    from inspector.plc.modbus_map import MAX_CAMERAS

    assert MAX_PLC_CAMERAS == MAX_CAMERAS


def test_grab_and_gateway_need_their_flags_or_the_file(tmp_path):
    path = write(tmp_path, BOX)
    cases = [(["grab", "--camera", "cam0"], "--source and --connect are required"),
             (["grab", "--config", str(path), "--camera", "cam7"], "no [cameras.cam7] section"),
             (["gateway", "--plc", "sim"], "--connect and --plc are required"),
             (["gateway", "--config", str(path)], "--config needs --gateway NAME"),
             (["gateway", "--config", str(path), "--gateway", "nope"], "no [gateways.nope] section")]
    for args, message in cases:
        proc = run_cli(*args, check=False, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
