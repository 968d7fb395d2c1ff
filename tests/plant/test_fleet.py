"""A line larger than one box: two boxes on this machine, each its own ``inspector line`` (daemon
with the tiny engine, one camera group, its PLC gateway, its MQTT gateway, its grabber), one
Mosquitto broker. Box A drives a Modbus PLC, box B a Siemens S7 PLC (both simulated inside their
gateways). ``inspector fleet`` reads the broker; its totals must equal the sum of both boxes' PLC
registers, camera by camera. Then a malformed message on a subscribed topic is counted, not fatal.
"""

from __future__ import annotations

import json

import pytest

from conftest import REPO, SITE_PUBLIC, PlcClient, free_port, run_cli, wait_until
from e2e.line_helpers import calibrate, render_good_parts
from inspector.line.harness import Processes
from inspector.plc import modbus_map as mm
from inspector.plc.s7_device import S7Device
from plant_helpers import Mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


def box_toml(name: str, camera: str, source, engine, profile, plc: str, broker: Mosquitto, folder) -> str:
    return f"""
[daemon]
id = "{name}"
frames = "tcp://127.0.0.1:{free_port()}"
verdicts = "tcp://127.0.0.1:{free_port()}"
heartbeat_ms = 100
log_format = "text"

[engine]
path = "{engine}"
threads = 1

[defaults]
fps = 20.0
deadline_ms = 30000.0
calibration = "{profile}"

[cameras.{camera}]
source = "{source}"

[gateways.plc]
plc = "{plc}"
cameras = ["{camera}"]

[gateways.mes]
kind = "mqtt"
broker = "{broker.url}"
buffer = "{folder}/{name}-buffer.db"
status_interval_s = 0.2

[trust]
keys = ["{SITE_PUBLIC}"]
"""


def connects(device: S7Device) -> bool:
    try:
        return device.connect()
    except device.errors:
        return False


def plc_counts(header: mm.CameraHeader) -> dict[str, int]:
    return {"ok": header.ok_count, "reject": header.reject_count, "fault": header.fault_count}


def test_two_boxes_one_broker_fleet_totals_equal_the_plcs(tiny_dataset, tiny_engine, tmp_path):
    profile = calibrate(tiny_engine, render_good_parts(tmp_path / "good"), tmp_path / "profile.json")
    good = tiny_dataset / "test" / "good"
    defects = sorted(p for p in (tiny_dataset / "test").iterdir() if p.name != "good")[0]
    wanted = {"a0": len(list(good.glob("*.png"))), "b0": len(list(defects.glob("*.png")))}
    broker = Mosquitto(tmp_path / "broker").start()
    modbus_port, s7_port = free_port(), free_port()
    paths = {}
    for name, camera, source, plc in (("box-a", "a0", good, f"sim://127.0.0.1:{modbus_port}"),
                                      ("box-b", "b0", defects, f"s7sim://127.0.0.1:{s7_port}")):
        paths[name] = tmp_path / f"{name}.toml"
        paths[name].write_text(box_toml(name, camera, source, tiny_engine, profile, plc, broker, tmp_path))
    procs = Processes(tmp_path / "logs", cwd=REPO)
    modbus, s7 = None, S7Device("127.0.0.1", s7_port)
    try:
        for name, path in paths.items():
            procs.start(name, "line", "--config", str(path))
        for name in paths:
            wait_until(lambda: "gateway: " in procs.children[name].output(), 90, f"{name}'s PLC gateway")
        modbus = PlcClient(modbus_port)
        wait_until(lambda: connects(s7), 20, "the S7 PLC of box-b")
        header_a = wait_until(lambda: (h := modbus.header(0)).write_count == wanted["a0"] and h, 90, "box-a's verdicts")
        header_b = wait_until(lambda: (h := mm.CameraHeader.from_registers(
            s7.read_registers(mm.camera_base(0), mm.CAMERA_HEADER_SIZE, "header"))).write_count == wanted["b0"] and h,
            90, "box-b's verdicts")
        at_plcs = {"a0": plc_counts(header_a), "b0": plc_counts(header_b)}
        expected_totals = {key: at_plcs["a0"][key] + at_plcs["b0"][key] for key in ("ok", "reject", "fault")}

        def fleet() -> dict | None:
            out = tmp_path / "fleet.json"
            proc = run_cli("fleet", "--broker", broker.url, "--boxes", "2", "--wait", "10", "--json", str(out))
            view = json.loads(out.read_text())
            totals = {key: view["totals"][key] for key in ("ok", "reject", "fault")}
            return (view, proc.stdout) if totals == expected_totals else None

        view, table = wait_until(fleet, 40, f"fleet totals {expected_totals}")
        assert sum(expected_totals.values()) == wanted["a0"] + wanted["b0"]
        assert set(view["boxes"]) == {"box-a", "box-b"} and view["cameras"] == 2
        for box, camera in (("box-a", "a0"), ("box-b", "b0")):
            counts = view["boxes"][box]["cameras"][camera]
            assert {key: counts[key] for key in ("ok", "reject", "fault")} == at_plcs[camera]
            assert view["boxes"][box]["online"] and not view["boxes"][box]["line_stop"]
        assert "box-a" in table and "box-b" in table and "total" in table

        import paho.mqtt.client as paho   # a stranger publishes junk on a subscribed topic
        junk = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="junk")
        junk.connect("127.0.0.1", broker.port)
        junk.publish("inspector/box-x/status", b"{not json", qos=1, retain=True).wait_for_publish(5)
        junk.disconnect()
        out = tmp_path / "fleet2.json"
        run_cli("fleet", "--broker", broker.url, "--boxes", "2", "--wait", "10", "--json", str(out))
        again = json.loads(out.read_text())
        assert again["malformed"] == 1 and "inspector/box-x/status" in again["last_malformed"]
        assert set(again["boxes"]) == {"box-a", "box-b"}
    finally:
        if modbus is not None:
            modbus.close()
        s7.close()
        procs.stop_all(grace_s=10)
        broker.stop()
