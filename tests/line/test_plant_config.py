"""The plant gateway kinds in the box config: [gateways.NAME] with kind = "mqtt" / "opcua" next to
PLC gateways (Modbus or S7), strict like every section, their processes in the box's layout."""

from __future__ import annotations

import pytest

from conftest import REPO
from inspector.app import layout
from inspector.line.config import ConfigError, load_config

pytestmark = pytest.mark.unit

BOX = """\
[engine]
path = "engine.onnx"

[daemon]
frames = "tcp://127.0.0.1:7555"
verdicts = "tcp://127.0.0.1:7556"

[cameras.cam0]
[cameras.cam1]

[gateways.plc]
plc = "s7sim"
cameras = ["cam0", "cam1"]

[gateways.mes]
kind = "mqtt"
broker = "mqtt://127.0.0.1:1883"
buffer = "state/buffer.db"
"""


def test_the_example_plant_box_is_valid_and_lays_out_one_process_per_gateway():
    path = REPO / "examples" / "plant_box.toml"
    config = load_config(path)
    assert {name: g.kind for name, g in config.gateways.items()} == {"plc": "plc", "mes": "mqtt", "scada": "opcua"}
    commands = {spec.name: spec.argv[3:] for spec in layout(config, path)}
    assert commands["gateway-plc"] == ("gateway", "--config", str(path.resolve()), "--gateway", "plc")
    assert commands["gateway-mes"][0] == "mqtt" and commands["gateway-scada"][0] == "opcua"


def test_plant_sections_resolve_paths_and_report_every_problem_with_its_place(tmp_path):
    (tmp_path / "box.toml").write_text(BOX)
    config = load_config(tmp_path / "box.toml")
    assert config.gateways["mes"].buffer == str(tmp_path / "state" / "buffer.db")
    assert config.gateways["plc"].plc == "s7sim"
    bad = BOX.replace('buffer = "state/buffer.db"', 'buffer = "b.db"\nbufer_max = 3\ncameras = ["cam9"]') \
        .replace('broker = "mqtt://127.0.0.1:1883"', 'broker = "http://x"') + '\n[gateways.x]\nkind = "bogus"\n'
    (tmp_path / "bad.toml").write_text(bad)
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "bad.toml")
    text = "\n".join(error.value.problems)
    assert "bad.toml:19 [gateways.mes] bufer_max: unknown key" in text
    assert "bad.toml:17 [gateways.mes] broker: 'http://x': expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]" in text
    assert "[gateways] x: Input tag 'bogus'" in text and "'mqtt', 'opcua'" in text


def test_plant_gateways_report_daemon_cameras_but_do_not_stand_in_for_a_plc_gateway(tmp_path):
    text = BOX.replace('buffer = "state/buffer.db"', 'buffer = "b.db"\ncameras = ["cam9"]')
    (tmp_path / "box.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"camera 'cam9' is not a daemon camera"):
        load_config(tmp_path / "box.toml")
    only_plc_cam0 = BOX.replace('cameras = ["cam0", "cam1"]', 'cameras = ["cam0"]')
    (tmp_path / "box2.toml").write_text(only_plc_cam0)
    with pytest.raises(ConfigError, match=r"no gateway writes camera 'cam1'"):   # an MQTT gateway does not eject
        load_config(tmp_path / "box2.toml")
