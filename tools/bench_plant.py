"""Verdicts/s and added latency through the plant paths: ``inspector mqtt`` (daemon PUB -> buffer
-> Mosquitto -> a QoS 1 subscriber) and ``inspector gateway`` on a Siemens S7 PLC (snap7's server),
with the Modbus gateway beside it for reference.

A stand-in daemon publishes wire-encoded verdicts (``decided_ns`` = when it sent each); for each
path it measures

* **rate** (verdicts/s): a burst of ``--burst`` verdicts, first publish to the last one delivered
  (received by the subscriber / counted in the PLC's camera header);
* **latency** p50 / p99 (ms): at ``--rate`` verdicts/s, publish to delivery: the subscriber's
  arrival time (MQTT), or the gateway's own ``latency_ms`` (publish to the PLC's acknowledgement
  of the header write, from ``--stats``).

    python tools/bench_plant.py --json runs/bench_plant.json

Needs ``mosquitto`` (apt-get install mosquitto). Prints one table row per path.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inspector.core.ports import free_port  # noqa: E402
from inspector.core.stats import summarize_ms  # noqa: E402
from inspector.line import transport  # noqa: E402
from inspector.line.harness import Processes, wait_until  # noqa: E402
from inspector.line.wire import Heartbeat, Verdict, encode_heartbeat, encode_verdict  # noqa: E402
from inspector.plc import modbus_map as mm  # noqa: E402


class Publisher:
    """The daemon's PUB with heartbeats every 50 ms; ``send(n, rate)`` publishes n verdicts."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.pub = transport.publisher(self.context)      # the daemon's own socket policy
        port = self.pub.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.lock, self.done, self.seq = threading.Lock(), threading.Event(), 0
        threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self) -> None:
        counter = 0
        while not self.done.wait(0.05):
            with self.lock:
                self.pub.send_multipart(encode_heartbeat(Heartbeat("bench", counter, time.time_ns(), True)))
            counter += 1

    def send(self, count: int, rate: float | None) -> float:
        """Publish ``count`` verdicts of cam0 (every 4th a REJECT), at ``rate``/s or at once;
        returns the start time (time.time())."""
        start = time.time()
        for i in range(count):
            if rate:
                delay = start + i / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            now = time.time_ns()
            decision = "REJECT" if self.seq % 4 == 3 else "OK"
            verdict = Verdict("cam0", self.seq, str(self.seq), now, decision, "score_above_threshold" if decision == "REJECT" else "",
                              0.3, 0.5, now)
            with self.lock:
                self.pub.send_multipart(encode_verdict(verdict))
            self.seq += 1
        return start

    def close(self) -> None:
        self.done.set()
        self.context.destroy(linger=0)


def start_broker(folder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n"
                    "max_inflight_messages 1000\nuser root\n")
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 10, "mosquitto")
    return broker, port


def box_config(folder: Path, endpoint: str, gateway: str) -> Path:
    path = folder / "box.toml"
    path.write_text(f'[daemon]\nid = "bench"\nframes = "tcp://127.0.0.1:{free_port()}"\nverdicts = "{endpoint}"\n\n'
                    f'[engine]\npath = "engine.onnx"\n\n[cameras.cam0]\n\n[gateways.g]\n{gateway}\n')
    return path


def bench_mqtt(folder: Path, daemon: Publisher, burst: int, rate: float, samples: int) -> dict:
    import paho.mqtt.client as paho

    broker, port = start_broker(folder)
    arrivals: list[tuple[int, int]] = []   # (decided_ns, arrival_ns)
    subscriber = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-sub", clean_session=False)
    subscriber.on_message = lambda c, u, m: arrivals.append((json.loads(m.payload)["decided_ns"], time.time_ns()))
    subscriber.connect("127.0.0.1", port)
    subscriber.subscribe("inspector/+/verdict/+", qos=1)
    subscriber.loop_start()
    procs = Processes(folder / "logs", cwd=REPO)
    config = box_config(folder, daemon.endpoint, f'kind = "mqtt"\nbroker = "mqtt://127.0.0.1:{port}"\n'
                        f'buffer = "{folder}/buffer.db"\ninflight = 1000\nbuffer_max = 1000000')
    try:
        gateway = procs.start("mqtt", "mqtt", "--config", str(config), "--gateway", "g")
        wait_until(lambda: "ready: the daemon's heartbeats" in gateway.output(), 120, "mqtt gateway ready")
        daemon.send(samples, rate)
        wait_until(lambda: len(arrivals) >= samples, 60, "latency samples")
        latency = summarize_ms([(a - d) / 1e6 for d, a in arrivals[:samples]])
        arrivals.clear()
        start = daemon.send(burst, None)
        wait_until(lambda: len(arrivals) >= burst, 120, "the burst")
        elapsed = arrivals[burst - 1][1] / 1e9 - start
    finally:
        procs.stop_all(grace_s=10)
        subscriber.loop_stop()
        broker.terminate()
        broker.wait(10)
    return {"path": "MQTT (inspector mqtt -> Mosquitto -> QoS 1 subscriber)", "rate": burst / elapsed, "latency_ms": latency}


def plc_reader(plc: str, port: int):
    """A function that returns camera 0's write count as the PLC holds it (S7 or Modbus)."""
    if plc.startswith("s7"):
        from inspector.plc.s7_device import S7Device

        device = S7Device("127.0.0.1", port)
        wait_until(lambda: _try(device.connect), 20, "the S7 PLC")
        return lambda: mm.CameraHeader.from_registers(device.read_registers(mm.camera_base(0), mm.CAMERA_HEADER_SIZE, "header")).write_count
    from inspector.plc.client import PlcClient

    client = PlcClient(port)
    wait_until(lambda: _try(client.client.connect), 20, "the Modbus PLC")
    return lambda: client.header(0).write_count


def _try(connect) -> bool:
    try:
        return bool(connect())
    except Exception:
        return False


def plc_run(folder: Path, daemon: Publisher, kind: str, count: int, rate: float | None) -> tuple[float, dict]:
    """One gateway with its own simulated PLC of ``kind`` (s7sim, sim): ``count`` verdicts at
    ``rate``/s (None: at once); returns (seconds from the first publish until a reader polling
    every 10 ms saw the last one in the PLC, the gateway's stats)."""
    port = free_port()
    procs = Processes(folder / "logs", cwd=REPO)
    stats = folder / "stats.json"
    try:
        gateway = procs.start("gateway", "gateway", "--connect", daemon.endpoint, "--plc", f"{kind}://127.0.0.1:{port}",
                              "--stats", str(stats), "--backlog", "1000000")
        wait_until(lambda: "ready: the daemon's heartbeats" in gateway.output(), 120, "PLC gateway ready")
        write_count = plc_reader(kind, port)
        start = daemon.send(count, rate)
        wait_until(lambda: write_count() >= count, 120, f"{count} verdicts written", interval=0.01)
        elapsed = time.time() - start
        procs.stop("gateway")
    finally:
        procs.stop_all(grace_s=10)
    return elapsed, json.loads(stats.read_text())


def bench_plc(folder: Path, daemon: Publisher, kind: str, name: str, burst: int, rate: float, samples: int) -> dict:
    """Latency: the gateway's own latency_ms (publish -> the PLC's acknowledgement of the header
    write) at ``rate``; verdicts/s: a burst, until the PLC's write count shows the last one."""
    _, paced = plc_run(folder, daemon, kind, samples, rate)
    elapsed, _ = plc_run(folder, daemon, kind, burst, None)
    return {"path": f"{name} (inspector gateway, simulated PLC)", "rate": burst / elapsed, "latency_ms": paced["latency_ms"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=3000, help="verdicts in the throughput burst (default 3000)")
    parser.add_argument("--rate", type=float, default=100.0, help="verdicts/s for the latency run (default 100)")
    parser.add_argument("--samples", type=int, default=500, help="verdicts in the latency run (default 500)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_plant_") as tmp:
        folder = Path(tmp)
        for sub in ("mqtt", "S7", "Modbus"):
            (folder / sub).mkdir()
        daemon = Publisher()
        try:
            rows.append(bench_mqtt(folder / "mqtt", daemon, args.burst, args.rate, args.samples))
            for kind, name in (("s7sim", "S7"), ("sim", "Modbus")):
                rows.append(bench_plc(folder / name, daemon, kind, name, args.burst, args.rate, args.samples))
        finally:
            daemon.close()
    print(f"{'path':<60} {'verdicts/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(f"{row['path']:<60} {row['rate']:>11.0f} {row['latency_ms']['p50']:>8.2f} {row['latency_ms']['p99']:>8.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
