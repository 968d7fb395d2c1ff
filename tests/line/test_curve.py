"""Hostile peers against a real `inspector serve` with CURVE on (docs/security.md), on loopback.

The daemon runs as a process with the tiny engine and a ``[curve]`` box config: grabber keys for
cam0 and cam1 (each bound to its camera), a gateway key that may read verdicts, a recorder key that
may read the tap. Attackers are real sockets: no key at all, a key nobody listed, cam1's valid key
sending for cam0 (the "verdict substitution" attack of issue 9), and a process posing as the
daemon on the verdict port (the "spoofed daemon" attack) against a real `inspector gateway` and
its simulated PLC. Each is refused, and counted in the daemon's (or gateway's) metrics and summary.
Expected decisions come from the engine's own scores: cam0's "defect" frame scores above the
threshold, the attacker's "good" frame below it.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from conftest import REPO, PlcClient, free_port, wait_until
from daemon_helpers import extreme_images, http_get, metric_value, profile_dict, save_signed, serve, stop, write_toml
from inspector.line import transport, wire
from inspector.line.keys import key_pair, make_pair, public_key
from inspector.plc.plc_sim import start_sim_in_thread

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

NAMES = ("daemon", "cam0", "cam1", "gateway", "recorder", "stranger")


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("curve")
    for name in NAMES:
        make_pair(folder, name)
    return folder


def client(keys: Path, name: str, server: str = "daemon") -> transport.ClientCurve:
    return transport.ClientCurve(key_pair(keys / f"{name}.key"), public_key(keys / f"{server}.key"))


@pytest.fixture(scope="module")
def images(tiny_dataset, tiny_engine):
    return extreme_images(tiny_dataset, tiny_engine)


@pytest.fixture(scope="module")
def line(tmp_path_factory, keys, images, tiny_engine):
    """`inspector serve` with CURVE on every socket; yields endpoints, ports and the process."""
    root = tmp_path_factory.mktemp("line")
    save_signed(root / "p.json", profile_dict(images["manifest"], images["threshold"]))
    ports = {name: free_port() for name in ("frames", "verdicts", "tap", "health")}
    endpoints = {name: f"tcp://127.0.0.1:{port}" for name, port in ports.items() if name != "health"}
    config = write_toml(root / "inspector.toml", {
        "daemon": {"id": "curve-daemon", **endpoints, "health": f"127.0.0.1:{ports['health']}", "heartbeat_ms": 50,
                   "tap_hwm": 1000, "log_format": "json"},
        "engine": {"path": str(tiny_engine), "threads": 1, "max_batch": 4, "max_wait_ms": 2},
        "defaults": {"deadline_ms": 20000, "calibration": "p.json"},
        "cameras.cam0": {"grabber_key": str(keys / "cam0.key")},
        "cameras.cam1": {"grabber_key": str(keys / "cam1.key")},
        "curve": {"server_key": str(keys / "daemon.key"), "verdict_clients": [str(keys / "gateway.key")],
                  "tap_clients": [str(keys / "recorder.key")]}})
    proc = serve(config, root)
    yield {"endpoints": endpoints, "ports": ports, "proc": proc, "root": root, "config": config}
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


class Subscriber:
    """A SUB made by the one socket policy (a gateway's or recorder's), collecting in a thread."""

    def __init__(self, endpoint: str, topics: tuple[bytes, ...], curve: transport.ClientCurve | None) -> None:
        import threading

        self.context = zmq.Context()
        self.sock = transport.subscriber(self.context, endpoint, topics, curve=curve)
        self.watch = transport.HandshakeWatch(self.sock, "sub")
        self.messages: list[list[bytes]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            if self.sock.poll(20):
                self.messages.append(self.sock.recv_multipart())

    def verdicts(self) -> list[wire.Verdict]:
        decoded = [wire.decode_message(m) for m in list(self.messages) if m[0] == wire.TOPIC_VERDICT]
        return [m for m in decoded if isinstance(m, wire.Verdict)]

    def close(self) -> None:
        self.done.set()
        self.thread.join(2)
        self.watch.close()
        self.sock.close(0)
        self.context.term()


def push(context: zmq.Context, endpoint: str, curve: transport.ClientCurve | None) -> zmq.Socket:
    return transport.frame_push(context, endpoint, hwm=100, send_timeout_ms=200, linger_ms=0, curve=curve)


def frame(camera: str, seq: int, image: np.ndarray) -> tuple[wire.FrameHeader, np.ndarray]:
    now = time.time_ns()
    return wire.FrameHeader(camera_id=camera, seq=seq, part_id=f"P{seq}", capture_ns=now, deadline_ns=0,
                            shape=(), pixel_format="bgr8"), image


def try_send(sock: zmq.Socket, camera: str, seq: int, image: np.ndarray) -> bool:
    """True when ZeroMQ took the frame (a CURVE client with no completed handshake never does)."""
    try:
        wire.send_frame(sock, *frame(camera, seq, image))
        return True
    except zmq.Again:
        return False


def refused(line, socket_name: str, reason: str | None = None) -> float:
    """The daemon's count of refusals on ``socket_name`` (for ``reason``, or all reasons)."""
    _, text = http_get(line["ports"]["health"], "/metrics")
    reasons = [reason] if reason else ["no_curve", "wrong_key", "key_refused", "handshake_failed", "protocol_error",
                                       "camera_not_allowed"]
    return sum(metric_value(text, "inspector_daemon_refused_total", socket=socket_name, reason=r) or 0.0
               for r in reasons)


def test_listed_keys_send_frames_read_verdicts_and_the_tap(line, keys, images):
    gateway = Subscriber(line["endpoints"]["verdicts"], (wire.TOPIC_VERDICT, wire.TOPIC_HEARTBEAT),
                         client(keys, "gateway"))
    recorder = Subscriber(line["endpoints"]["tap"], (wire.TOPIC_FRAME,), client(keys, "recorder"))
    context = zmq.Context()
    cam0 = push(context, line["endpoints"]["frames"], client(keys, "cam0"))
    try:
        wait_until(lambda: any(m[0] == wire.TOPIC_HEARTBEAT for m in gateway.messages), 60, "a heartbeat via CURVE")
        time.sleep(0.3)   # the tap subscription travels too
        wait_until(lambda: try_send(cam0, "cam0", 0, images["defect"]), 10, "cam0's frame taken")
        verdict = wait_until(lambda: next(iter(gateway.verdicts()), None), 20, "cam0's verdict")
        assert (verdict.camera_id, verdict.seq, verdict.decision) == ("cam0", 0, "REJECT")
        wait_until(lambda: recorder.messages, 10, "the frame on the tap")
        header, _ = wire.decode_tap(recorder.messages[0])
        assert (header.camera_id, header.seq) == ("cam0", 0)
        assert gateway.watch.total == recorder.watch.total == 0
    finally:
        cam0.close(0)
        context.term()
        gateway.close()
        recorder.close()


def test_no_key_and_an_unlisted_key_are_refused_and_counted(line, keys, images):
    context = zmq.Context()
    stranger = transport.ClientCurve(key_pair(keys / "stranger.key"), public_key(keys / "daemon.key"))
    before = refused(line, "frames")
    null_push = context.socket(zmq.PUSH)          # no CURVE at all: NULL mechanism
    null_push.setsockopt(zmq.LINGER, 0)
    null_push.connect(line["endpoints"]["frames"])
    null_push.send_multipart(wire.encode_frame(*frame("cam0", 900, images["good"])), zmq.NOBLOCK)
    wrong = spy = tap_spy = None
    try:
        wait_until(lambda: refused(line, "frames") > before, 20, "the NULL peer refused")
        wrong = push(context, line["endpoints"]["frames"], stranger)
        spy = Subscriber(line["endpoints"]["verdicts"], (b"",), stranger)          # a key not allowed to read verdicts
        tap_spy = Subscriber(line["endpoints"]["tap"], (b"",), client(keys, "gateway"))   # listed for verdicts, not tap
        wait_until(lambda: refused(line, "frames", "key_refused") >= 1, 20, "the unlisted key refused")
        wait_until(lambda: refused(line, "verdicts", "key_refused") >= 1, 20, "the unlisted reader refused")
        wait_until(lambda: refused(line, "tap", "key_refused") >= 1, 20, "the gateway key refused on the tap")
        assert not try_send(wrong, "cam0", 901, images["good"])   # never connected: nothing queued
        time.sleep(0.5)
        assert spy.messages == [] and tap_spy.messages == []       # not even a heartbeat
        assert spy.watch.failures["key_refused"] >= 1
    finally:
        for sock in (null_push, wrong):
            if sock is not None:
                sock.close(0)
        context.term()
        for sub in (spy, tap_spy):
            if sub is not None:
                sub.close()


def test_verdict_substitution_with_another_cameras_key_is_refused(line, keys, images):
    """Issue 9: after each real cam0 frame k (a defect) an attacker pushes a good image as cam0
    seq k+1. Before, the daemon took it as a grabber restart and the gateway dropped the real
    REJECT as a duplicate. Here the attacker holds cam1's valid key: every injected frame is
    refused and counted, every real frame keeps its REJECT, no sequence restart happens."""
    gateway = Subscriber(line["endpoints"]["verdicts"], (wire.TOPIC_VERDICT, wire.TOPIC_HEARTBEAT),
                         client(keys, "gateway"))
    context = zmq.Context()
    cam0 = push(context, line["endpoints"]["frames"], client(keys, "cam0"))
    attacker = push(context, line["endpoints"]["frames"], client(keys, "cam1"))
    before = refused(line, "frames", "camera_not_allowed")
    base, n = 2, 6
    try:
        wait_until(lambda: any(m[0] == wire.TOPIC_HEARTBEAT for m in gateway.messages), 30, "a heartbeat")
        wait_until(lambda: try_send(attacker, "cam1", 0, images["good"]), 10, "cam1's key connected")
        wait_until(lambda: try_send(cam0, "cam0", base - 1, images["defect"]), 10, "cam0's key connected")
        wait_until(lambda: any(v.camera_id == "cam1" for v in gateway.verdicts()), 20, "cam1's own frame judged")
        for k in range(n):
            seq = base + 2 * k
            assert try_send(cam0, "cam0", seq, images["defect"])
            assert try_send(attacker, "cam0", seq + 1, images["good"])   # taken by ZeroMQ, refused by the daemon
            assert try_send(cam0, "cam0", seq + 1, images["defect"])     # the real next frame
        wait_until(lambda: len([v for v in gateway.verdicts() if v.camera_id == "cam0" and v.seq >= base]) >= 2 * n,
                   30, "every real cam0 frame's verdict")
        time.sleep(0.3)
        got = [(v.seq, v.decision) for v in gateway.verdicts() if v.camera_id == "cam0" and v.seq >= base]
        assert sorted(got) == [(seq, "REJECT") for seq in range(base, base + 2 * n)]   # one each, none OK
        assert refused(line, "frames", "camera_not_allowed") - before == n
    finally:
        cam0.close(0)
        attacker.close(0)
        context.term()
        gateway.close()


def test_a_spoofed_daemon_on_the_verdict_port_is_refused_by_the_gateway(tmp_path, keys):
    """Issue 9: a process bound the verdict port while the daemon was down and cleared the line
    stop with forged heartbeats and OKs. With the daemon's key pinned, the real gateway refuses
    its handshake: the PLC never sees it alive, no verdict is written, the refusals are counted.
    A recorder pinning the key records nothing from it either."""
    plc_sim = start_sim_in_thread("127.0.0.1", 0)
    plc = PlcClient(plc_sim.port)
    context = zmq.Context()
    fake = context.socket(zmq.PUB)   # its own key pair, posing as the daemon
    fake_pair = key_pair(keys / "stranger.key")
    fake.curve_server, fake.curve_publickey, fake.curve_secretkey = True, fake_pair.public, fake_pair.secret
    fake.setsockopt(zmq.LINGER, 0)
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    stats, log = tmp_path / "gateway.json", tmp_path / "gateway.log"
    with open(log, "wb") as out:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "inspector.cli", "gateway", "--connect", f"tcp://127.0.0.1:{port}", "--plc",
             f"modbus://127.0.0.1:{plc_sim.port}", "--cameras", "cam0", "--curve-server-key",
             str(keys / "daemon.key"), "--curve-key", str(keys / "gateway.key"), "--stats", str(stats)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "gateway: tcp://" in log.read_text(), 30, "the gateway to run")
        end = time.monotonic() + 3.0
        seq = 0
        while time.monotonic() < end:   # forged heartbeats (ready) and OK verdicts, 20 per second
            fake.send_multipart(wire.encode_heartbeat(wire.Heartbeat("fake", seq, time.time_ns(), True)))
            fake.send_multipart(wire.encode_verdict(wire.Verdict("cam0", seq, str(seq), time.time_ns(), "OK", "",
                                                                 0.1, 0.5, time.time_ns())))
            seq += 1
            time.sleep(0.05)
        assert plc.status()["alive"] is False and plc.header(0).write_count == 0
        from inspector.recordings.record import record_live   # a recorder pins the daemon's key too

        spy = record_live(f"tcp://127.0.0.1:{port}", tmp_path / "spy.mcap", verdict_endpoint=f"tcp://127.0.0.1:{port}",
                          duration_s=1.5, verdict_grace_s=0, curve=client(keys, "recorder"))
        assert spy["n_frames"] == spy["n_verdicts"] == 0 and spy["refused_handshakes"] >= 1
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(20)
        fake.close(0)
        context.term()
        plc.close()
        plc_sim.stop()
    counts = json.loads(stats.read_text())
    assert counts["refused_handshakes"] >= 1 and counts["verdicts_received"] == counts["heartbeats_received"] == 0
    assert "refused the verdict publisher" in log.read_text()


def test_the_daemon_summary_counts_the_refusals_and_a_port_in_use_is_one_clear_line(line, tmp_path):
    """Stop the CURVE daemon (its summary counts what was refused; every frame it accepted got a
    verdict), then start a second daemon on a verdict port someone else holds."""
    summary = stop(line["proc"])
    assert summary["refused_frames"] >= 6 and summary["refused_handshakes"] >= 3
    assert summary["frames_without_verdict"] == 0 and summary["sequence_restarts"] == 0
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    text = Path(line["config"]).read_text().replace(line["endpoints"]["verdicts"], f"tcp://127.0.0.1:{busy}")
    config = tmp_path / "busy.toml"
    config.write_text(text)
    try:
        proc = subprocess.run([sys.executable, "-m", "inspector.cli", "serve", "--config", str(config)], cwd=REPO,
                              capture_output=True, text=True, timeout=90)
    finally:
        holder.close()
    assert proc.returncode == 2
    assert f"cannot bind the verdicts socket to tcp://127.0.0.1:{busy}: Address already in use" in proc.stderr
    assert "another process is bound there" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
