"""Shared fixtures: a tiny synthetic data set, a model trained on it through the CLI, and its ONNX
engine. Session-scoped and built once (about 20-40 s on 2 cores), so end-to-end tests run the real
pipeline on real (small) artifacts.

The run's site key (docs/security.md): :func:`pytest_configure` makes one Ed25519 key pair in a
temporary folder and exports it as ``INSPECTOR_SIGNING_KEY`` / ``INSPECTOR_TRUSTED_KEYS``, so every
``inspector export`` and ``calibrate`` the tests run signs with it and ``eval`` / ``validate``
trust it; daemon configs list :data:`SITE_PUBLIC` in ``[trust] keys`` (see
``tests/line/daemon_helpers.py``). Tests of refusals make keys of their own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_SIZE = "64"  # model input 64x64 (multiple of 32)
_KEY_DIR = Path(tempfile.mkdtemp(prefix="inspector-test-keys-"))
SITE_SIGNING, SITE_PUBLIC = _KEY_DIR / "site.signing", _KEY_DIR / "site.pub"


def pytest_configure(config):
    """The run's site key, in the environment of every subprocess (see the module docstring)."""
    from inspector.core.signing import SIGNING_KEY_ENV, TRUSTED_KEYS_ENV, make_site_key

    if not SITE_SIGNING.exists():
        make_site_key(_KEY_DIR, "site")
    os.environ[SIGNING_KEY_ENV] = str(SITE_SIGNING)
    os.environ[TRUSTED_KEYS_ENV] = str(SITE_PUBLIC)


def pytest_unconfigure(config):
    shutil.rmtree(_KEY_DIR, ignore_errors=True)


def site_key():
    """The run's signing key (core.signing.SigningKey)."""
    from inspector.core.signing import SigningKey
    return SigningKey.load(SITE_SIGNING)


def run_cli(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``inspector ARGS`` in a subprocess; assert success when ``check``."""
    proc = subprocess.run([sys.executable, "-m", "inspector.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"inspector {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the markers
def pytest_collection_modifyitems(config, items):
    """Every test that is not marked ``e2e`` (module-level ``pytestmark``) is ``unit``."""
    for item in items:
        if item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Synthetic MVTec-layout set: 24 good train images, 8 good + 4 per defect kind test, 64x64."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    run_cli("synth", "--out", str(out), "--product", "texture", "--n-train", "24", "--n-test-good", "8",
            "--n-defect", "4", "--size", "64", "--seed", "1")
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset, tmp_path_factory) -> Path:
    """A model trained through the CLI on the tiny set (default teacher, 3 epochs)."""
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    run_cli("train", "--data", str(tiny_dataset), "--out", str(out), "--epochs", "3", "--image-size", TINY_SIZE,
            "--batch-size", "8", "--no-progress", "--seed", "0")
    return out


@pytest.fixture(scope="session")
def tiny_engine(tiny_model, tmp_path_factory) -> Path:
    """The tiny model exported to ONNX (fp32) with its manifest."""
    out = tmp_path_factory.mktemp("engines") / "tiny.onnx"
    run_cli("export", "--model", str(tiny_model), "--out", str(out))
    return out


def free_port() -> int:
    from inspector.core.ports import free_port as _free_port
    return _free_port()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError after ``timeout`` s
    (:func:`inspector.line.harness.wait_until`, failing as a test does)."""
    from inspector.line.harness import HarnessError, wait_until as harness_wait_until
    try:
        return harness_wait_until(predicate, timeout, what, interval)
    except HarnessError as exc:
        raise AssertionError(str(exc)) from None


class PlcClient:
    """What a PLC programmer sees: a pymodbus client on the PLC's port, the register map decoded
    with inspector.plc.modbus_map (shared by the gateway and whole-line tests)."""

    def __init__(self, port: int) -> None:
        from pymodbus.client import ModbusTcpClient
        self.client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=1)

    def holding(self, address: int, count: int) -> list[int]:
        out: list[int] = []
        while count:
            chunk = min(count, 120)
            response = self.client.read_holding_registers(address, count=chunk, device_id=1)
            assert not response.isError(), response
            out += response.registers
            address, count = address + chunk, count - chunk
        return out

    def coils(self, address: int, count: int) -> list[bool]:
        response = self.client.read_coils(address, count=count, device_id=1)
        assert not response.isError(), response
        return list(response.bits[:count])

    def write_coil(self, address: int, value: bool) -> None:
        assert not self.client.write_coil(address, value, device_id=1).isError()

    def header(self, camera: int):
        from inspector.plc import modbus_map as mm
        return mm.CameraHeader.from_registers(self.holding(mm.camera_base(camera), mm.CAMERA_HEADER_SIZE))

    def globals(self):
        from inspector.plc import modbus_map as mm
        return mm.GlobalBlock.from_registers(self.holding(0, mm.GLOBAL_BLOCK_SIZE))

    def entry(self, camera: int, slot: int):
        from inspector.plc import modbus_map as mm
        return mm.RingEntry.from_registers(self.holding(mm.entry_address(camera, slot), mm.ENTRY_SIZE))

    def ring(self, camera: int) -> list:
        from inspector.plc import modbus_map as mm
        registers = self.holding(mm.entry_address(camera, 0), mm.RING_SIZE * mm.ENTRY_SIZE)
        return [mm.RingEntry.from_registers(registers[i * mm.ENTRY_SIZE:(i + 1) * mm.ENTRY_SIZE])
                for i in range(mm.RING_SIZE)]

    def status(self) -> dict[str, bool]:
        from inspector.plc import modbus_map as mm
        alive, stop, ready = self.coils(mm.COIL_DAEMON_ALIVE, 3)
        return {"alive": alive, "stop": stop, "ready": ready}

    def close(self) -> None:
        self.client.close()
