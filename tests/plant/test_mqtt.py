"""``inspector mqtt`` against a real Mosquitto broker that the tests start, restart and stop; the
test plays the daemon (ZeroMQ PUB) and a plant system (a persistent QoS 1 subscriber).

What is checked where the results arrive: every verdict's camera seq exactly once after dropping
repeated ``(box, n)`` (QoS 1 is at least once; repeats are counted), through a broker restart in the
middle of the stream and through a broker that is down when the gateway starts; what a full buffer
cannot hold is counted and reported in the retained status; the status carries per-camera counts
and health; the buffer itself keeps messages and counts across a restart of the gateway.
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import wait_until
from inspector.plant.fleet import Tally
from inspector.plant.messages import parse_status, parse_verdict
from inspector.plant.offline_buffer import OfflineBuffer
from plant_helpers import Mosquitto, Subscriber, box_config, daemon, procs  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def mqtt_section(server: Mosquitto, folder, **extra) -> dict:
    return {"kind": "mqtt", "broker": server.url, "client_id": "box-a", "buffer": str(folder / "buffer.db"),
            "status_interval_s": 0.2, "reconnect_max_s": 0.3, "stats": str(folder / "mqtt-stats.json"), **extra}


def tally_of(subscriber: Subscriber) -> Tally:
    tally = Tally()
    for body in subscriber.payloads("verdict/"):
        tally.add(parse_verdict(json.dumps(body).encode()))
    return tally


def received_seqs(subscriber: Subscriber, camera: str) -> list[int]:
    return sorted(body["seq"] for body in subscriber.payloads(f"verdict/{camera}"))


def test_offline_buffer_is_bounded_counts_what_it_drops_and_survives_reopening(tmp_path):
    buffer = OfflineBuffer(tmp_path / "b.db", max_messages=5)
    stored = buffer.append([("t/a", b"%d" % i) for i in range(3)], payload_for=lambda n, p: p + b"#%d" % n,
                           state={"cameras": {"cam0": {"ok": 3}}})
    assert [s.n for s in stored] == [1, 2, 3] and stored[0].payload == b"0#1"
    buffer.append([("t/b", b"x")] * 4)
    assert buffer.depth() == 5 and buffer.dropped == 2   # the two oldest pushed out, counted
    assert [s.n for s in buffer.after(0, 10)] == [3, 4, 5, 6, 7]
    buffer.acknowledge([3, 4, 99])
    buffer.close()
    again = OfflineBuffer(tmp_path / "b.db", max_messages=5)
    assert again.depth() == 3 and again.dropped == 2 and again.get_state("cameras") == {"cam0": {"ok": 3}}
    assert [s.n for s in again.append([("t/c", b"y")])] == [8]   # numbers are never reused
    again.close()


def test_broker_restart_mid_stream_loses_no_verdict(tmp_path, daemon, procs):
    broker = Mosquitto(tmp_path / "broker").start()
    subscriber = Subscriber(broker)
    try:
        config = box_config(tmp_path, daemon.endpoint, {"mes": mqtt_section(broker, tmp_path)})
        gateway = procs.start("mqtt", "mqtt", "--config", str(config), "--gateway", "mes")
        daemon.alive.set()
        wait_until(lambda: any(s["daemon"]["alive"] for s in subscriber.payloads("status")), 60, "status: daemon alive")

        sent = daemon.judge("cam0", range(0, 150), pause_s=0.002)
        broker.stop()                                  # the broker goes away mid-stream ...
        sent += daemon.judge("cam0", range(150, 250), pause_s=0.002)
        sent += daemon.judge("cam1", range(0, 20), "REJECT")
        broker.start()                                 # ... and comes back (its persisted sessions with it)
        sent += daemon.judge("cam0", range(250, 300), pause_s=0.002)

        wait_until(lambda: len(set(received_seqs(subscriber, "cam0"))) == 300, 30, "all 300 cam0 verdicts")
        wait_until(lambda: len(set(received_seqs(subscriber, "cam1"))) == 20, 10, "all 20 cam1 verdicts")
        tally = tally_of(subscriber)
        assert tally.missing_seqs("box-a", "cam0", start=0) == [] and tally.missing_seqs("box-a", "cam1", start=0) == []
        assert sorted(tally.seqs[("box-a", "cam0")]) == list(range(300))   # each exactly once after dedupe
        assert tally.missing_numbers("box-a") == [] and len(tally.numbers["box-a"]) == 320
        raw = len(subscriber.payloads("verdict/"))
        assert raw == 320 + tally.duplicates["box-a"]                       # repeats, if any, are counted

        status = wait_until(lambda: next((s for s in reversed(subscriber.payloads("status"))
                                          if s["totals"]["ok"] == 300), None), 10, "status with every count")
        parse_status(json.dumps(status).encode())
        assert status["cameras"]["cam0"]["ok"] == 300 and status["cameras"]["cam1"]["reject"] == 20
        assert status["publisher"]["buffer_dropped"] == 0 and status["publisher"]["connection_lost"] >= 1
        assert status["line_stop"] is False and status["daemon"]["ready"] is True
        gateway.signal(15)
        assert gateway.wait(15) == 0
        stats = json.loads((tmp_path / "mqtt-stats.json").read_text())
        assert stats["verdicts_buffered"] == 320 and stats["buffer_depth"] == 0 and stats["malformed_messages"] == 0
    finally:
        subscriber.close()
        broker.stop()


def test_broker_down_at_start_a_full_buffer_drops_the_oldest_and_says_so(tmp_path, daemon, procs):
    broker = Mosquitto(tmp_path / "broker").start()
    subscriber = Subscriber(broker)        # the plant system's session exists before the outage
    broker.stop()
    try:
        config = box_config(tmp_path, daemon.endpoint, {"mes": mqtt_section(broker, tmp_path, buffer_max=50)})
        procs.start("mqtt", "mqtt", "--config", str(config), "--gateway", "mes")
        daemon.alive.set()
        wait_until(lambda: "ready: the daemon's heartbeats reach" in procs.children["mqtt"].output(), 60, "gateway ready")
        daemon.judge("cam0", range(80), pause_s=0.001)
        wait_until(lambda: "refused" in procs.children["mqtt"].output(), 10, "the refusal logged")
        time.sleep(0.3)
        broker.start()
        wait_until(lambda: len(received_seqs(subscriber, "cam0")) >= 50, 20, "the buffered verdicts")
        status = wait_until(lambda: next((s for s in reversed(subscriber.payloads("status"))
                                          if s["publisher"]["buffer_depth"] == 0), None), 10, "status, buffer empty")
        assert sorted(set(received_seqs(subscriber, "cam0"))) == list(range(30, 80))   # the newest 50
        assert status["publisher"]["buffer_dropped"] == 30                           # the 30 oldest: counted, reported
        assert status["cameras"]["cam0"]["ok"] == 80                                 # counts are not lost
        assert status["publisher"]["connect_errors"].get("refused", 0) >= 1
    finally:
        subscriber.close()
        broker.stop()


def test_tls_login_expired_certificate_and_malformed_daemon_messages(tmp_path, daemon, procs):
    from certs import make_cert

    ca_file, _, ca_cert, ca_key = make_cert(tmp_path / "certs", "ca")
    expired = make_cert(tmp_path / "certs", "expired", ca=(ca_cert, ca_key), expired=True)
    valid = make_cert(tmp_path / "certs", "valid", ca=(ca_cert, ca_key))
    (tmp_path / "password").write_text("s3cret\n")
    broker = Mosquitto(tmp_path / "broker", tls=(ca_file, expired[0], expired[1]), users={"box": "s3cret"}).start()
    section = mqtt_section(broker, tmp_path, broker=f"mqtts://127.0.0.1:{broker.port}", ca_file=str(ca_file),
                           username="box", password_file=str(tmp_path / "password"))
    config = box_config(tmp_path, daemon.endpoint, {"mes": section})
    gateway = procs.start("mqtt", "mqtt", "--config", str(config), "--gateway", "mes")
    try:
        daemon.alive.set()
        wait_until(lambda: "ready: the daemon's heartbeats reach" in gateway.output(), 60, "gateway ready")
        daemon.send([b"verdict", b"\xc1 not msgpack"])                         # malformed: counted, not fatal
        daemon.judge("cam0", range(10), "FAULT")
        wait_until(lambda: "TLS certificate has expired" in gateway.output(), 15, "a clear error for the expired certificate")
        broker.stop()                                                          # the broker gets a valid certificate
        broker = Mosquitto(tmp_path / "broker", port=broker.port, tls=(ca_file, valid[0], valid[1]),
                           users={"box": "s3cret"}).start()
        wait_until(lambda: "MQTT connected to mqtts://" in gateway.output(), 20, "TLS + login accepted")
        gateway.signal(15)
        assert gateway.wait(15) == 0
        stats = json.loads((tmp_path / "mqtt-stats.json").read_text())
        assert stats["connect_errors"]["certificate_expired"] >= 1 and stats["malformed_messages"] == 1
        assert stats["verdicts_buffered"] == 10 and stats["buffer_depth"] == 0 and stats["acknowledged"] >= 10
        assert stats["cameras"]["cam0"]["fault"] == 10 and stats["buffer_dropped"] == 0
    finally:
        broker.stop()
