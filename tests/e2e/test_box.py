"""One box, one config, one command: ``inspector line --config FILE`` runs a two-camera line.

The box config is ``examples/two_cameras.toml`` with its paths and ports replaced for the test:

    grab-cam0 (8 good images, ROI) --+                                 +--> gateway-plc --Modbus--> simulated PLC
    grab-cam1 (4 defect images) -----+--PUSH--> daemon (tiny engine) --+

Every link runs CURVE as the example declares it (keys made here with ``inspector keys curve``;
the grabbers and the gateway take theirs from the file), and the profiles are signed with the
run's site key, which ``[trust]`` lists.

Checked where the line ends, in the PLC: every frame of both cameras has exactly one verdict, and
each is a judgement (OK / REJECT, no FAULT: cam0's profile was calibrated with cam0's ROI, so the
daemon accepts it). Then SIGTERM stops every process cleanly (the supervisor exits 0, the daemon's
summary says every received frame got its verdict). The ROI's other side: a profile calibrated
without the camera's ROI is refused, by ``--check-config`` and by the running daemon.
"""

from __future__ import annotations

import re
import signal
import tomllib
from pathlib import Path

import pytest

from conftest import REPO, SITE_PUBLIC, PlcClient, free_port, run_cli, wait_until
from inspector.line.harness import Processes
from line_helpers import calibrate, render_good_parts

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROI = "8,8,48,48"   # on the 64 x 64 synthetic images


def toml_dump(data: dict) -> str:
    """The tiny TOML writer this test needs: [section] / [section.sub] tables of scalars and lists."""
    import json

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, str)):
            return json.dumps(v)
        return repr(v)

    lines = []

    def table(prefix: str, body: dict) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        if scalars or not body:
            lines.append(f"[{prefix}]")
            lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
            lines.append("")
        for k, v in body.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}", v)

    for name, body in data.items():
        table(name, body)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def box(tiny_dataset, tiny_engine, tmp_path_factory):
    """The example config made runnable: the tiny engine, profiles calibrated here, image folders,
    free ports, a simulated PLC inside the gateway."""
    root = tmp_path_factory.mktemp("box")
    good = render_good_parts(root / "good")
    calibrate(tiny_engine, good, root / "cam0.json", "--camera", "cam0", "--roi", ROI)
    calibrate(tiny_engine, good, root / "cam1.json", "--camera", "cam1")
    defect_dir = sorted(p for p in (tiny_dataset / "test").iterdir() if p.name != "good")[0]
    config = tomllib.loads((REPO / "examples" / "two_cameras.toml").read_text())
    plc_port = free_port()
    config["daemon"].update(frames=f"tcp://127.0.0.1:{free_port()}", verdicts=f"tcp://127.0.0.1:{free_port()}",
                            health="", heartbeat_ms=100, log_format="text")
    config["engine"].update(path=str(tiny_engine), threads=1)
    config["defaults"].update(fps=20.0, deadline_ms=30000.0)
    config["cameras"]["cam0"].update(source=str(tiny_dataset / "test" / "good"), calibration=str(root / "cam0.json"),
                                     roi=ROI)
    config["cameras"]["cam1"].update(source=str(defect_dir), calibration=str(root / "cam1.json"), deadline_ms=30000.0)
    config["gateways"]["plc"].update(plc=f"sim://127.0.0.1:{plc_port}", stats=str(root / "gateway.json"))
    keys = root / "keys"
    run_cli("keys", "curve", "daemon", "cam0", "cam1", "gateway", "--out", str(keys))
    for camera in ("cam0", "cam1"):
        config["cameras"][camera]["grabber_key"] = str(keys / f"{camera}.key")
    config["gateways"]["plc"]["key"] = str(keys / "gateway.key")
    config["curve"]["server_key"] = str(keys / "daemon.key")
    config["trust"]["keys"] = [str(SITE_PUBLIC)]
    path = root / "inspector.toml"
    path.write_text(toml_dump(config))
    n_frames = {"cam0": len(list((tiny_dataset / "test" / "good").glob("*.png"))),
                "cam1": len(list(defect_dir.glob("*.png")))}
    return {"path": path, "config": config, "plc_port": plc_port, "n": n_frames, "root": root}


def test_the_example_box_config_is_valid_as_written():
    from inspector.line.config import load_config

    config = load_config(REPO / "examples" / "two_cameras.toml")
    assert set(config.cameras) == {"cam0", "cam1"} and config.gateways["plc"].cameras == ["cam0", "cam1"]
    assert config.curve is not None and config.cameras["cam1"].grabber_key == str(REPO / "keys" / "cam1.key")
    assert config.camera("cam1").deadline_ms == 800 and config.camera("cam0").grabber.fps == 10


def test_check_config_accepts_the_box(box):
    proc = run_cli("line", "--config", str(box["path"]), "--check-config")
    assert "configuration OK" in proc.stdout


def test_two_cameras_one_command_verdicts_at_the_plc_and_a_clean_sigterm(box):
    procs = Processes(box["root"] / "logs", cwd=REPO)
    line = procs.start("line", "line", "--config", str(box["path"]))
    log_path = procs.log_path("line")
    plc = None
    try:
        wait_until(lambda: "gateway: " in line.output(), 90, "the gateway to run")
        plc = PlcClient(box["plc_port"])
        wanted = [box["n"]["cam0"], box["n"]["cam1"]]

        def written():
            headers = [plc.header(0), plc.header(1)]
            return headers if [h.write_count for h in headers] == wanted else None

        headers = wait_until(written, 90, f"{wanted} verdicts at the PLC")
        for header, n in zip(headers, wanted):
            assert header.ok_count + header.reject_count == n and header.fault_count == 0, header
        assert_cam0_judged_inside_its_roi(plc, box)
        for camera in ("cam0", "cam1"):   # finite sources: the grabbers end, and are not restarted
            wait_until(lambda: f"grab-{camera} exited 0: done, not restarted" in line.output(), 30,
                       f"grab-{camera} to finish")
        line.signal(signal.SIGTERM)
        assert line.wait(60) == 0
    finally:
        if plc is not None:
            plc.close()
        procs.stop_all(grace_s=5)
    text = log_path.read_text()
    for name in ("daemon", "gateway-plc", "grab-cam0", "grab-cam1"):
        assert re.search(rf"^{re.escape(name)} +\| ", text, re.M), f"no log line of {name}:\n{text[-3000:]}"
    summary_line = [line for line in text.splitlines() if line.startswith("daemon") and '"frames_without_verdict"' in line]
    assert summary_line and '"frames_without_verdict": 0' in summary_line[-1]
    assert '"messages_received": %d' % sum(wanted) in summary_line[-1]
    assert '"refused_frames": 0' in summary_line[-1] and '"refused_handshakes": 0' in summary_line[-1]
    assert "restarting" not in text


def assert_cam0_judged_inside_its_roi(plc: PlcClient, box: dict) -> None:
    """cam0's scores at the PLC are the engine's scores inside the ROI, not over the whole image
    (they differ for most of these parts: the test checks there is at least one such part)."""
    import cv2
    import numpy as np

    from inspector.core.roi import Roi
    from inspector.engine import open_engine

    files = sorted(Path(box["config"]["cameras"]["cam0"]["source"]).glob("*.png"))   # the folder source's order
    images = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]
    engine = open_engine("onnxruntime", box["config"]["engine"]["path"], threads=1)
    try:
        masks = [Roi.parse(ROI).mask_for(image.shape[:2]) for image in images]
        inside = np.round(engine.infer(images, ["bgr8"] * len(images), rois=masks).scores * 1000)
        whole = np.round(engine.infer(images, ["bgr8"] * len(images)).scores * 1000)
    finally:
        engine.close()
    at_plc = {entry.seq: entry.score_milli for entry in plc.ring(0) if entry.tag}
    assert sorted(at_plc) == list(range(len(files)))
    assert all(abs(at_plc[i] - inside[i]) <= 2 for i in range(len(files))), (at_plc, inside)
    assert any(abs(inside[i] - whole[i]) > 5 for i in range(len(files)))


def test_a_profile_calibrated_without_the_cameras_roi_is_refused(box, tmp_path):
    config = box["config"]
    config["cameras"]["cam1"]["roi"] = ROI       # cam1's profile was calibrated on the whole image
    path = tmp_path / "inspector.toml"
    path.write_text(toml_dump(config))
    proc = run_cli("line", "--config", str(path), "--check-config", check=False)
    assert proc.returncode == 2
    assert re.search(r"\[cameras\.cam1\] calibration: .*region of interest \{'rect': \[8, 8, 48, 48\]\} != "
                     r"calibrated none", proc.stdout), proc.stdout
    assert "cam0" not in proc.stdout   # cam0's profile has the ROI it is judged with


def test_the_same_box_composed_in_one_process(box):
    """inspector.app's components, each built from (config, stop event), run as threads: the
    same verdicts at the PLC as the processes give."""
    import threading

    from inspector.app import daemon_component, gateway_component, grabber_component
    from inspector.line.config import load_config

    config = load_config(box["path"])
    stops = {name: threading.Event() for name in ("daemon", "gateway", "cam0", "cam1")}
    results: dict = {}

    def run(name, component, *args):
        results[name] = component(config, *args, stops[name])

    threads = {"daemon": threading.Thread(target=run, args=("daemon", daemon_component), daemon=True),
               "gateway": threading.Thread(target=run, args=("gateway", gateway_component, "plc"), daemon=True)}
    for thread in threads.values():
        thread.start()
    plc = PlcClient(box["plc_port"])

    def ready() -> bool:
        try:
            return plc.status()["ready"]
        except Exception:  # the gateway's simulated PLC is not listening yet
            return False

    try:
        wait_until(ready, 90, "the daemon ready at the PLC")
        for camera in ("cam0", "cam1"):
            threads[camera] = threading.Thread(target=run, args=(camera, grabber_component, camera), daemon=True)
            threads[camera].start()
        wanted = [box["n"]["cam0"], box["n"]["cam1"]]
        wait_until(lambda: [plc.header(0).write_count, plc.header(1).write_count] == wanted, 90,
                   f"{wanted} verdicts at the PLC")
    finally:
        for name in ("cam0", "cam1", "daemon", "gateway"):   # the supervisor's stop order
            stops[name].set()
            if name in threads:
                threads[name].join(30)
        plc.close()
    assert results["cam0"]["frames_sent"] == wanted[0] and results["cam1"]["frames_sent"] == wanted[1]
    assert results["daemon"]["frames_without_verdict"] == 0 and results["daemon"]["exit"] == "drained"
    assert results["gateway"]["verdicts_written"] == sum(wanted)
