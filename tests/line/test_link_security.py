"""Which links a box config may declare (docs/security.md): without ``[curve]`` nothing may be
reachable from another machine; with it, every grabber and gateway has a key, and key files are
checked by ``--check-config``. Also the CURVE key files and options (inspector.line.keys)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import run_cli
from inspector.line.config import ConfigError, load_config
from inspector.line.keys import KeyFileError, key_pair, make_pair, public_key, server_curve
from inspector.line.transport import is_local_endpoint

pytestmark = pytest.mark.unit

BOX = """\
[daemon]
frames = "{frames}"
verdicts = "tcp://127.0.0.1:7556"
health = "{health}"

[engine]
path = "engine.onnx"

[cameras.cam0]
source = "images"
{cam0}

[gateways.plc]
plc = "sim"
cameras = ["cam0"]
metrics = "{metrics}"
{gateway}
{curve}
"""


def box(tmp_path: Path, *, frames="tcp://127.0.0.1:7555", health="127.0.0.1:9108", metrics="127.0.0.1:9109",
        cam0="", gateway="", curve="") -> Path:
    path = tmp_path / "inspector.toml"
    path.write_text(BOX.format(frames=frames, health=health, metrics=metrics, cam0=cam0, gateway=gateway, curve=curve))
    return path


def problems(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return "\n".join(info.value.problems)


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.4.5:5555", True), ("tcp://localhost:5555", True),
    ("tcp://[::1]:5555", True), ("ipc:///run/inspector/frames", True), ("inproc://x", True),
    ("tcp://*:5555", False), ("tcp://0.0.0.0:5555", False), ("tcp://[::]:5555", False),
    ("tcp://192.168.0.10:5555", False), ("tcp://eth0:5555", False), ("tcp://plc.example:5555", False)])
def test_which_endpoints_stay_on_this_machine(endpoint, local):
    assert is_local_endpoint(endpoint) is local


def test_without_curve_wildcard_binds_and_public_http_are_refused_with_their_line(tmp_path):
    text = problems(box(tmp_path, frames="tcp://*:5555", health="0.0.0.0:9108", metrics="0.0.0.0:9109"))
    assert re.search(r"inspector\.toml:2 \[daemon\] frames: tcp://\*:5555 is reachable from other machines without "
                     r"authentication or encryption; add a \[curve\] section", text), text
    assert re.search(r"inspector\.toml:4 \[daemon\] health: 0\.0\.0\.0:9108 serves metrics to other machines", text), text
    assert re.search(r"\[gateways\.plc\] metrics: 0\.0\.0\.0:9109 serves metrics", text), text
    assert load_config(box(tmp_path, frames="ipc:///tmp/frames")).curve is None   # local: fine


def test_check_config_refuses_tcp_star_without_curve(tmp_path):
    proc = run_cli("line", "--config", str(box(tmp_path, frames="tcp://*:5555")), "--check-config", check=False)
    assert proc.returncode == 2 and "[daemon] frames: tcp://*:5555 is reachable from other machines" in proc.stdout


def test_with_curve_wildcards_are_allowed_and_every_grabber_and_gateway_needs_a_key(tmp_path):
    curve = '[curve]\nserver_key = "keys/daemon.key"\n'
    text = problems(box(tmp_path, frames="tcp://*:5555", health="0.0.0.0:9108", curve=curve))
    assert "[cameras.cam0] grabber_key: required with [curve]" in text
    assert "[gateways.plc] key: required with [curve]" in text
    assert "reachable" not in text and "serves metrics" not in text
    config = load_config(box(tmp_path, frames="tcp://*:5555", health="0.0.0.0:9108", curve=curve,
                             cam0='grabber_key = "keys/cam0.key"', gateway='key = "keys/gateway.key"'))
    assert config.curve.server_key == str(tmp_path / "keys" / "daemon.key")   # relative to the config's folder
    assert config.cameras["cam0"].grabber_key == str(tmp_path / "keys" / "cam0.key")


def test_key_files_bind_grabbers_to_their_cameras_and_bad_files_are_named(tmp_path):
    keys = tmp_path / "keys"
    for name in ("daemon", "cam0", "gateway"):
        make_pair(keys, name)
    assert (keys / "daemon.key_secret").stat().st_mode & 0o777 == 0o600
    with pytest.raises(KeyFileError, match="exists; not overwriting"):
        make_pair(keys, "cam0")
    curve = '[curve]\nserver_key = "keys/daemon.key"\ntap_clients = ["keys/gateway.key"]\n'
    path = box(tmp_path, curve=curve, cam0='grabber_key = "keys/cam0.key"', gateway='key = "keys/gateway.key"')
    server = server_curve(load_config(path))
    assert server.cameras == {public_key(keys / "cam0.key"): frozenset({"cam0"})}
    assert server.verdicts == server.tap == frozenset({public_key(keys / "gateway.key")})
    assert server.own == key_pair(keys / "daemon.key")
    (keys / "cam0.key").write_text("not a certificate")
    with pytest.raises(KeyFileError, match=r"cam0\.key is not a ZeroMQ CURVE certificate|holds no Z85 public key"):
        server_curve(load_config(path))
    (keys / "daemon.key_secret").unlink()
    with pytest.raises(KeyFileError, match=r"daemon\.key_secret"):
        key_pair(keys / "daemon.key")


def test_the_station_and_plant_gateways_are_curve_clients_with_keys_of_their_own(tmp_path):
    """The reject archive reads the tap and the verdicts, the operator page and an MQTT gateway the
    verdicts: under [curve] each needs its own key, and the daemon lets exactly those keys in."""
    keys = tmp_path / "keys"
    for name in ("daemon", "cam0", "gateway", "archive", "ui", "mes"):
        make_pair(keys, name)
    curve = '[curve]\nserver_key = "keys/daemon.key"\n'
    station = ('[gateways.mes]\nkind = "mqtt"\nbroker = "mqtt://127.0.0.1:1883"\nbuffer = "mes.db"\n{mes}\n'
               '[archive]\npath = "archive"\n{archive}\n[ui]\n{ui}\n')
    base = dict(cam0='grabber_key = "keys/cam0.key"', gateway='key = "keys/gateway.key"')
    path = box(tmp_path, **base, curve=curve + station.format(mes="", archive="", ui=""))
    text = problems(path).replace(str(tmp_path), "")
    assert "[gateways.mes] key: required with [curve]" in text
    assert "[archive] key: required with [curve]" in text and "[ui] key: required with [curve]" in text
    path = box(tmp_path, **base, curve=curve + station.format(
        mes='key = "keys/mes.key"', archive='key = "keys/archive.key"', ui='key = "keys/ui.key"'))
    path.write_text(path.read_text().replace('health = "127.0.0.1:9108"', 'health = "127.0.0.1:9108"\ntap = "tcp://127.0.0.1:7557"'))
    server = server_curve(load_config(path))
    wanted = {public_key(keys / f"{name}.key") for name in ("gateway", "mes", "archive", "ui")}
    assert server.verdicts == frozenset(wanted)
    assert server.tap == frozenset({public_key(keys / "archive.key")})


def test_client_options_name_the_pinned_server_key_and_the_own_pair(tmp_path):
    """--curve-server-key / --curve-key (grab, gateway, record, replay): both or neither."""
    import argparse

    from inspector.line.keys import add_arguments, from_arguments

    for name in ("daemon", "cam0"):
        make_pair(tmp_path, name)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    curve = from_arguments(parser.parse_args(["--curve-server-key", str(tmp_path / "daemon.key"),
                                              "--curve-key", str(tmp_path / "cam0.key")]))
    assert curve.server_key == public_key(tmp_path / "daemon.key") and curve.own == key_pair(tmp_path / "cam0.key")
    assert from_arguments(parser.parse_args([])) is None
    with pytest.raises(KeyFileError, match="go together"):
        from_arguments(parser.parse_args(["--curve-key", str(tmp_path / "cam0.key")]))
