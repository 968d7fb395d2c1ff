"""The operator's station on the real line, driven by a real browser.

One box config, one command (``inspector line``): two grabbers, the daemon (tiny ONNX engine, tap
with anomaly maps), a gateway with its simulated PLC, the reject archive and the operator page.
Headless Chromium (Debian's ``chromium`` + ``chromium-driver``, through selenium) opens the page
before the first frame and stays on it. Checked:

* every REJECT / FAULT at the PLC is in the archive with its pictures, the original's pixels equal
  to the camera's file, OK frames sampled one in ``ok_every``;
* the page's per-camera OK / REJECT / FAULT counts equal the PLC's registers;
* each reject appears on the page with its thumbnail within 1 s of its verdict (``decided_ns``
  against the moment the thumbnail's image loaded, one clock: the same machine);
* a click opens the original and the overlay side by side at the camera's resolution (the 64 px
  test images' overlays are enlarged 8x by whole pixels so that their caption is legible);
* marking a false reject is refused without a login (401) and without the CSRF token (403), and
  after logging in it lands in the archive with the operator's name;
* stopping the daemon raises the line stop on the page; acknowledging it writes the PLC's
  fault-reset coil (the gateway clears it) and is recorded.

``INSPECTOR_SCREENSHOTS=DIR`` keeps the page's and the reject viewer's screenshots there (the
README's pictures in docs/img/ come from this test).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, SITE_PUBLIC, PlcClient, free_port, wait_until
from inspector.line.harness import Processes
from inspector.station.archive import Archive
from line_helpers import calibrate, render_good_parts
from test_box import toml_dump

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PASSWORD = "correct horse battery"
FPS = 4.0
FRAMES = {"cam0": 16, "cam1": 8}
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1000")


def open_browser(user_data: Path):
    """A selenium Chrome driver on Debian's chromium, or None (with the reason) when it cannot run."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        return None, "chromium / chromedriver not installed (make test installs them: tools/test_deps.sh)"
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={user_data}"):
        options.add_argument(flag)
    try:
        return webdriver.Chrome(service=Service(driver_path), options=options), ""
    except Exception as exc:  # a browser that does not start here
        return None, f"chromium did not start: {exc}"


@pytest.fixture(scope="module")
def station(tiny_dataset, tiny_engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("station")
    good = render_good_parts(root / "good")
    profile = calibrate(tiny_engine, good, root / "tiny.json", "--report", str(root / "tiny_report"))
    defects = sorted(p for p in (tiny_dataset / "test").iterdir() if p.name != "good")[0]
    plc_port = free_port()
    config = {
        "daemon": {"id": "station", "frames": f"tcp://127.0.0.1:{free_port()}",
                   "verdicts": f"tcp://127.0.0.1:{free_port()}", "tap": f"tcp://127.0.0.1:{free_port()}",
                   "tap_maps": True, "heartbeat_ms": 100, "log_format": "text"},
        "engine": {"path": str(tiny_engine), "threads": 1},
        "defaults": {"calibration": str(profile), "deadline_ms": 30000.0, "fps": FPS},
        "cameras": {"cam0": {"source": f"mvtec:{tiny_dataset}", "max_frames": FRAMES["cam0"], "seed": 3},
                    "cam1": {"source": str(defects), "max_frames": FRAMES["cam1"], "loop": True}},
        "gateways": {"plc": {"plc": f"sim://127.0.0.1:{plc_port}", "cameras": ["cam0", "cam1"]}},
        "archive": {"path": str(root / "archive"), "ok_every": 4, "wait_ms": 500, "thumbnail_px": 64},
        "ui": {"listen": "127.0.0.1:0", "users": str(root / "users.json")},
        "trust": {"keys": [str(SITE_PUBLIC)]},
    }
    path = root / "inspector.toml"
    path.write_text(toml_dump(config))
    add = subprocess.run([sys.executable, "-m", "inspector.cli", "ui", "--config", str(path), "--add-user", "alice"],
                         input=PASSWORD + "\n", capture_output=True, text=True, cwd=REPO, timeout=60)
    assert add.returncode == 0, add.stderr
    driver, why = open_browser(root / "chromium-profile")
    procs = Processes(root / "logs", cwd=REPO)
    line = procs.start("line", "line", "--config", str(path))
    try:
        def page_address():
            procs.check_alive("line")
            return next((m.group(1) for m in re.finditer(r"ui ready: (\S+)", line.output())), None)

        url = wait_until(page_address, 120, "the operator page")
        if driver is not None:
            driver.get(url)
            wait_until(lambda: driver.execute_script("return document.body.dataset.ready") == "1", 30, "the page")
        plc = PlcClient(plc_port)
        expected = [FRAMES["cam0"], FRAMES["cam1"]]
        wait_until(lambda: [plc.header(0).write_count, plc.header(1).write_count] == expected, 120,
                   f"{expected} verdicts at the PLC")
        yield {"root": root, "config": config, "path": path, "url": url, "plc": plc, "driver": driver, "why": why,
               "procs": procs, "line": line, "archive": Archive(root / "archive", recover=False)}
    finally:
        if driver is not None:
            driver.quit()
        procs.stop_all(grace_s=10)


def archived_rejects(station) -> list:
    archive = station["archive"]
    return [e for e in archive.query(limit=1000) if e.decision != "OK"]


def test_every_reject_at_the_plc_is_archived_with_its_pictures(station, tiny_dataset):
    plc, archive = station["plc"], station["archive"]
    at_plc = {(camera, e.seq): e for i, camera in enumerate(("cam0", "cam1")) for e in plc.ring(i) if e.tag}
    not_ok = {key for key, e in at_plc.items() if e.decision != 1}
    assert not_ok, "the threshold should reject some parts"
    wait_until(lambda: {(e.camera, e.seq) for e in archived_rejects(station)} >= not_ok, 10, "every reject archived")
    for entry in archived_rejects(station):
        assert entry.files.keys() == {"original.png", "map.png", "overlay.jpg", "thumb.jpg"}, entry
        document = json.loads((archive.entries_dir / entry.dir / "entry.json").read_text())
        source = document["made_by"]["frame"]["source"]
        camera_file = (tiny_dataset / "test" / source) if entry.camera == "cam0" else \
            Path(station["config"]["cameras"]["cam1"]["source"]) / source
        stored = cv2.imdecode(np.frombuffer(archive.read(entry, "original.png"), np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(stored, cv2.imread(str(camera_file), cv2.IMREAD_COLOR)), entry
        assert document["made_by"]["map"]["fit"] in ("squash", "letterbox")
        assert document["made_by"]["calibration"]["sha256"] and document["made_by"]["engine"]["sha256"]
    oks = [e for e in archive.query(decision="OK", limit=1000)]
    n_ok = sum(1 for e in at_plc.values() if e.decision == 1)
    assert len(oks) == sum((n + 3) // 4 for n in (sum(1 for (c, _), e in at_plc.items() if c == cam and e.decision == 1)
                                                  for cam in ("cam0", "cam1"))) and len(oks) <= n_ok


def page_counts(driver) -> dict:
    return driver.execute_script("""
        const out = {};
        document.querySelectorAll('#cameras tbody tr').forEach((row) => {
          const cell = (k) => Number(row.querySelector(`[data-field="${k}"]`).textContent);
          out[row.dataset.camera] = {OK: cell('OK'), REJECT: cell('REJECT'), FAULT: cell('FAULT')};
        });
        return out;""")


def fetch(driver, method: str, url: str, csrf: bool = True) -> int:
    """The status of a fetch() from the page (same origin, the page's cookies)."""
    return driver.execute_async_script("""
        const [method, url, csrf, done] = arguments;
        fetch('/api/session').then((r) => r.json()).then((s) => fetch(url, {method, credentials: 'same-origin',
            headers: csrf ? {'X-CSRF-Token': s.csrf} : {}})).then((r) => done(r.status));""", method, url, csrf)


def screenshot(target, name: str) -> None:
    """The page (a driver) or one element as PNG in $INSPECTOR_SCREENSHOTS, when set."""
    folder = os.environ.get("INSPECTOR_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        target.screenshot(str(Path(folder) / name)) if hasattr(target, "tag_name") else \
            target.save_screenshot(str(Path(folder) / name))


@pytest.mark.browser
def test_the_operator_page_in_a_real_browser(station):
    driver, plc, archive = station["driver"], station["plc"], station["archive"]
    if driver is None:
        pytest.skip(station["why"])
    from selenium.webdriver.common.by import By

    # the page's counts are the PLC's registers
    def plc_counts():
        headers = {camera: plc.header(i) for i, camera in enumerate(("cam0", "cam1"))}
        return {c: {"OK": h.ok_count, "REJECT": h.reject_count, "FAULT": h.fault_count} for c, h in headers.items()}

    wait_until(lambda: page_counts(driver) == plc_counts(), 10, "the page's counts to reach the PLC's")
    assert page_counts(driver) == plc_counts()

    # every reject appeared, with its thumbnail, within 1 s of its verdict
    rejects = archived_rejects(station)
    shown = wait_until(lambda: (lambda s: s if len(s) >= len(rejects) else None)(driver.execute_script("""
        return [...document.querySelectorAll('#rejects .reject')].filter((f) => f.dataset.shownMs).map((f) =>
          [Number(f.dataset.id), Number(f.dataset.shownMs), Number(f.dataset.decidedNs) / 1e6,
           Math.max(f.querySelector('img').naturalWidth, f.querySelector('img').naturalHeight)]);""")), 10,
        "every reject on the page")
    delays = {entry_id: shown_ms - decided_ms for entry_id, shown_ms, decided_ms, _ in shown}
    assert {e.id for e in rejects} <= set(delays)
    assert all(longest == 64 for *_, longest in shown)         # the thumbnail loaded ([archive] thumbnail_px)
    print(f"reject -> thumbnail on the page: max {max(delays.values()):.0f} ms, "
          f"median {sorted(delays.values())[len(delays) // 2]:.0f} ms over {len(delays)} rejects")
    assert max(delays.values()) < 1000, delays
    assert driver.find_element(By.CSS_SELECTOR, "#calibration .estimated-frr").text.endswith(")")
    driver.set_window_size(1280, driver.execute_script("return document.documentElement.scrollHeight") + 140)
    screenshot(driver, "station_page.png")
    driver.set_window_size(1280, 1000)

    # a click: original and overlay side by side at full resolution
    first = rejects[0]
    driver.find_element(By.ID, f"reject-{first.id}").click()
    wait_until(lambda: driver.execute_script("""
        const o = document.getElementById('viewer-original'), v = document.getElementById('viewer-overlay');
        return o.complete && v.complete && o.naturalWidth === 64 && o.naturalHeight === 64 &&
               v.naturalWidth === 64 * 8 && document.getElementById('viewer').open;"""), 10, "the full-size pictures")
    screenshot(driver.find_element(By.ID, "viewer"), "station_reject.png")

    # marking it needs a login and the CSRF token
    assert not driver.find_element(By.ID, "false-reject-button").is_displayed()
    assert fetch(driver, "POST", f"/api/rejects/{first.id}/false-reject") == 401
    assert fetch(driver, "POST", f"/api/rejects/{first.id}/false-reject", csrf=False) == 403
    assert not archive.get(first.id).false_reject
    driver.find_element(By.ID, "viewer-close").click()
    driver.find_element(By.ID, "login-user").send_keys("alice")
    driver.find_element(By.ID, "login-password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-button").click()
    wait_until(lambda: driver.find_element(By.ID, "who").text == "operator alice", 10, "the login")
    driver.find_element(By.ID, f"reject-{first.id}").click()
    wait_until(lambda: driver.find_element(By.ID, "false-reject-button").is_displayed(), 5, "the mark button")
    driver.find_element(By.ID, "false-reject-button").click()
    wait_until(lambda: archive.get(first.id).false_reject, 5, "the mark in the archive")
    assert archive.get(first.id).marked_by == "alice"
    driver.find_element(By.ID, "viewer-close").click()

    # the line stops when the daemon goes; the operator acknowledges it at the PLC
    assert driver.find_element(By.ID, "line-stop").text == "line: running"
    daemon_pid = int(re.search(r"started daemon \(pid (\d+)\)", station["line"].output()).group(1))
    os.kill(daemon_pid, signal.SIGSTOP)                         # no heartbeats: the gateway stops the line
    try:
        wait_until(lambda: driver.find_element(By.ID, "line-stop").text == "LINE STOP", 15, "the line stop on the page")
        driver.find_element(By.CSS_SELECTOR, '#gateways tr[data-gateway="plc"] button').click()
        wait_until(lambda: any(e["kind"] == "line_stop_ack" and e["user"] == "alice" for e in archive.events()), 10,
                   "the acknowledgement recorded")
        wait_until(lambda: not plc.coils(3, 1)[0], 10, "the gateway to clear the fault-reset coil")
    finally:
        os.kill(daemon_pid, signal.SIGCONT)
    wait_until(lambda: driver.find_element(By.ID, "line-stop").text == "line: running", 15, "the line running again")
