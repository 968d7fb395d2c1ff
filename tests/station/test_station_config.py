"""The box config's station sections: [archive], [ui], [daemon] tap_maps, and what they need; the
composition root starts the archive and the page with the box."""

from __future__ import annotations

import pytest

from inspector.app import layout
from inspector.line.config import ConfigError, load_config

BASE = """
[daemon]
frames = "tcp://127.0.0.1:5555"
verdicts = "tcp://127.0.0.1:5556"
{tap}
[engine]
path = "e.onnx"
"""


def write(tmp_path, tap: str, extra: str):
    path = tmp_path / "box.toml"
    path.write_text(BASE.format(tap=tap) + extra)
    return path


def test_archive_and_ui_sections_load_and_join_the_layout(tmp_path):
    path = write(tmp_path, 'tap = "tcp://127.0.0.1:5557"\ntap_maps = true',
                 '[archive]\npath = "arch"\nok_every = 10\n\n[ui]\nlisten = "127.0.0.1:0"\n')
    config = load_config(path)
    assert config.archive.path == str(tmp_path / "arch") and config.archive.ok_every == 10
    assert config.ui.listen == "127.0.0.1:0" and config.ui.secure_cookies
    specs = {spec.name: spec for spec in layout(config, path)}
    assert specs["archive"].role == specs["ui"].role == "station"
    assert specs["archive"].argv[-3:] == ("archive", "--config", str(path.resolve()))
    from inspector.line.systemd import unit_name, write_units

    units = {p.name: p.read_text() for p in write_units(list(specs.values()), tmp_path / "units", working_dir=tmp_path)}
    archive_unit = units[unit_name(specs["archive"])]
    assert "Type=notify" in archive_unit and unit_name(specs["daemon"]) in archive_unit.split("After=")[1].split("\n")[0]


@pytest.mark.parametrize("tap, extra, message", [
    ("", '[archive]\npath = "a"\n', "the archive needs the daemon's tap"),
    ('tap = "tcp://127.0.0.1:5557"', '[ui]\n', "the operator page needs an [archive]"),
    ("tap_maps = true", "", "tap_maps = true needs a tap endpoint"),
    ('tap = "tcp://127.0.0.1:5557"', '[archive]\npath = "a"\nquota_gb = 3\n', "unknown key"),
    ('tap = "tcp://127.0.0.1:5557"', '[archive]\npath = "a"\n[ui]\nsecure_cookies = "no"\n', "bool"),
])
def test_what_the_station_sections_need(tmp_path, tap, extra, message):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, tap, extra))
    assert message in str(error.value)
