"""Shared by the plant tests: a real Mosquitto broker on a free port (started and stopped by the
test, persistence on so that sessions survive a restart), a subscriber that records every message,
a stand-in daemon (ZeroMQ PUB with heartbeats) and box configs for ``inspector mqtt``/``opcua``."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import closing
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import zmq

from conftest import free_port, wait_until
from inspector.line.harness import Processes
from inspector.line.wire import Heartbeat, Verdict, encode_heartbeat, encode_verdict

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def need_mosquitto() -> None:
    """Skip without Mosquitto on a developer's machine; in CI (``CI`` set) its absence fails:
    ``make test`` installs it (tools/test_deps.sh)."""
    if MOSQUITTO is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed (make test installs it: tools/test_deps.sh)")
        pytest.skip("mosquitto not installed (apt-get install mosquitto, or make test)")


class Mosquitto:
    """``mosquitto -c FILE`` on 127.0.0.1:``port`` with persistence in ``folder``; ``tls`` =
    (ca, cert, key) files for a TLS listener; ``users`` = {name: password} (anonymous off)."""

    def __init__(self, folder: Path, *, port: int | None = None, tls: tuple[Path, Path, Path] | None = None,
                 users: dict[str, str] | None = None) -> None:
        need_mosquitto()
        self.folder, self.port = folder, port or free_port()
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {folder}/",
                 "autosave_interval 0", "max_queued_messages 100000", "max_inflight_messages 100",
                 f"log_dest file {folder}/mosquitto.log", "log_type error", "log_type warning", "log_type notice"]
        if os.geteuid() == 0:
            lines.append("user root")   # keep access to the test's folder
        if tls:
            lines += [f"cafile {tls[0]}", f"certfile {tls[1]}", f"keyfile {tls[2]}"]
        if users:
            passwords = folder / "passwords"
            passwords.write_text("".join(f"{name}:{secret}\n" for name, secret in users.items()))
            subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Mosquitto":
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_until(self._listening, 10, f"mosquitto on port {self.port}")
        return self

    def _listening(self) -> bool:
        assert self.process is not None and self.process.poll() is None, (self.folder / "mosquitto.log").read_text()
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence file), wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


class Subscriber:
    """A plant system: persistent session (client id ``name``), QoS 1 on ``topic``; ``messages``
    keeps (topic, payload bytes, retain) in arrival order, across broker restarts."""

    def __init__(self, broker: Mosquitto, topic: str = "inspector/#", name: str = "plant-test") -> None:
        import paho.mqtt.client as paho

        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=name, clean_session=False)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10), "no SUBACK"

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def payloads(self, part: str) -> list[dict]:
        """JSON payloads of topics containing ``/part``."""
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if f"/{part}" in t and p.startswith(b"{")]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class FakeDaemon:
    """The daemon's PUB socket: ``beat()`` in a thread every 50 ms while ``alive`` is set."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.endpoint = f"tcp://127.0.0.1:{self.pub.bind_to_random_port('tcp://127.0.0.1')}"
        self.lock, self.alive, self.ready, self.closed = threading.Lock(), threading.Event(), True, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        counter = 0
        while not self.closed.wait(0.05):
            if self.alive.is_set():
                self.send(encode_heartbeat(Heartbeat("plant-daemon", counter, time.time_ns(), self.ready)))
                counter += 1

    def send(self, parts: list[bytes]) -> None:
        with self.lock:
            self.pub.send_multipart(parts)

    def judge(self, camera: str, seqs, decision: str = "OK", pause_s: float = 0.0) -> list[Verdict]:
        """Publish one verdict per seq (REJECT/FAULT carry a reason), ``pause_s`` apart."""
        reason = {"OK": "", "REJECT": "score_above_threshold", "FAULT": "deadline_missed"}[decision]
        sent = []
        for seq in seqs:
            now = time.time_ns()
            verdict = Verdict(camera, seq, f"P{seq}", now - 1_000_000, decision, reason, 0.3, 0.5, now)
            self.send(encode_verdict(verdict))
            sent.append(verdict)
            if pause_s:
                time.sleep(pause_s)
        return sent

    def close(self) -> None:
        self.closed.set()
        self.thread.join(1)
        self.context.destroy(linger=0)


def box_config(folder: Path, daemon_endpoint: str, gateways: dict[str, dict], cameras=("cam0", "cam1"),
               box: str = "box-a", camera_keys: dict[str, dict] | None = None) -> Path:
    """A box config whose daemon publishes at ``daemon_endpoint`` (not started here: the test
    plays it) with ``gateways`` {name: section} and ``camera_keys`` {camera: {key: value}};
    returns its path."""
    def value(v):
        return json.dumps(v) if isinstance(v, (str, list, bool)) else repr(v)

    lines = ["[daemon]", f'id = "{box}"', f'frames = "tcp://127.0.0.1:{free_port()}"', f'verdicts = "{daemon_endpoint}"',
             "", "[engine]", 'path = "engine.onnx"', ""]
    sections = {f"cameras.{camera}": (camera_keys or {}).get(camera, {}) for camera in cameras}
    sections.update({f"gateways.{name}": section for name, section in gateways.items()})
    for name, section in sections.items():
        lines += ["", f"[{name}]"] + [f"{key} = {value(v)}" for key, v in section.items()]
    path = folder / f"{box}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def daemon():
    """A :class:`FakeDaemon`, closed after the test."""
    with closing(FakeDaemon()) as publisher:
        yield publisher


@pytest.fixture
def procs(tmp_path):
    """The line harness (processes by name, logs under tmp_path/logs), everything stopped after."""
    harness = Processes(tmp_path / "logs")
    try:
        yield harness
    finally:
        harness.stop_all(grace_s=5)
