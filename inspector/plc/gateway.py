"""Gateway: the daemon's verdicts (ZeroMQ SUB) -> a PLC over Modbus TCP.

``inspector gateway --connect ENDPOINT --plc modbus://HOST:PORT|sim [--cameras cam0,cam1] ...``, or
``inspector gateway --config inspector.toml --gateway NAME`` (every setting from the box config's
``[gateways.NAME]``, docs/daemon.md).

Two threads, one job each:

* the **receive loop** (main thread, ``Gateway``) subscribes to the daemon's PUB socket (topics
  verdict + heartbeat), decodes with ``wire.decode_message`` (malformed messages are counted and
  logged, never fatal), maps camera ids to camera blocks, runs the daemon heartbeat watchdog
  (and notes daemon restarts: a new epoch), and hands verdicts to the writer;
* the **writer thread** (``PlcWriter``, :mod:`inspector.plc.writer`) owns the only Modbus connection,
  does all PLC I/O and applies the sequence rules against what the PLC holds.

The register map and the handshake are in ``inspector/plc/modbus_map.py`` and ``docs/plc.md``.
Fail-closed rules: the line-stop coil is set while the daemon is not alive or not ready, after
verdicts were dropped (backlog overflow) or a verdict's seq did not advance its grabber session
(both latched until the PLC acknowledges with the fault-reset coil and the cause has been quiet),
and as the last write of a gateway that stops; it is read back every 500 ms and re-asserted.
Sequence gaps (verdicts lost in a killed daemon or while the gateway was down) become FAULT
entries, checked against the last seq the PLC holds (:mod:`inspector.plc.sequencing`).
Never imports torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zmq

from inspector.plc import modbus_map as mm
from inspector.line import keys, transport
from inspector.line.config import Config, connectable, load_config, parse_host_port
from inspector.line.readiness import notify_ready
from inspector.line.wire import Heartbeat, Verdict, WireError, decode_message
from inspector.plc.metrics import GatewayMetrics
from inspector.plc.sequencing import pending_for
from inspector.plc.writer import PlcWriter

log = logging.getLogger(__name__)

DEFAULT_MODBUS_PORT = 502


# ------------------------------------------------------------------------------------------------
# Configuration parsing
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlcTarget:
    """Where the PLC is. kind "modbus": a real server; kind "sim": start an in-process simulator
    on host:port (port 0 = any free port)."""

    kind: str
    host: str
    port: int


def parse_plc_target(text: str) -> PlcTarget:
    """``modbus://HOST[:PORT]`` (PORT defaults to 502), ``sim`` or ``sim://HOST:PORT``; S7 targets
    (``s7://...``, ``s7sim``...) give an :class:`inspector.plc.s7_device.S7Target`.

    Raises ValueError with the accepted forms for anything else.
    """
    if text == "sim":
        return PlcTarget("sim", "127.0.0.1", 0)
    if text.partition(":")[0] in ("s7", "s7sim"):   # Siemens S7: inspector.plc.s7_device
        from inspector.plc.s7_device import parse_s7_target

        return parse_s7_target(text)
    parts = urlsplit(text)
    if parts.scheme not in ("modbus", "sim") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"--plc {text!r}: expected modbus://HOST:PORT, sim or sim://HOST:PORT")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"--plc {text!r}: bad port ({exc})") from None
    if port is None:
        port = DEFAULT_MODBUS_PORT if parts.scheme == "modbus" else 0
    return PlcTarget(parts.scheme, parts.hostname, port)


def parse_cameras(text: str) -> tuple[str, ...]:
    """``cam0,cam1`` -> ("cam0", "cam1"); index in the tuple = camera block in the PLC.

    Raises ValueError for an empty list, empty or duplicate names, or more than MAX_CAMERAS.
    """
    names = tuple(name.strip() for name in text.split(","))
    if not names or any(not name for name in names):
        raise ValueError(f"--cameras {text!r}: expected a comma-separated list of camera ids")
    if len(set(names)) != len(names):
        raise ValueError(f"--cameras {text!r}: duplicate camera id")
    if len(names) > mm.MAX_CAMERAS:
        raise ValueError(f"--cameras: {len(names)} cameras, the register map holds {mm.MAX_CAMERAS}")
    return names


# ------------------------------------------------------------------------------------------------
# The receive loop
# ------------------------------------------------------------------------------------------------


class Gateway:
    """Decodes daemon messages and feeds the writer; judges daemon liveness.

    Not thread safe: one thread calls ``handle`` and ``check_heartbeat``.
    """

    MAX_REPORTED_UNKNOWN = 64  # distinct unknown camera ids logged at WARNING

    def __init__(self, cameras: tuple[str, ...], writer: PlcWriter, heartbeat_timeout_s: float,
                 metrics: GatewayMetrics | None = None) -> None:
        if heartbeat_timeout_s <= 0:
            raise ValueError("heartbeat timeout must be > 0")
        self.camera_index = {name: i for i, name in enumerate(cameras)}
        self.writer = writer
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.metrics = metrics
        self.last_heartbeat_at: float | None = None
        self.daemon_id: str | None = None
        self.daemon_epoch: int | None = None
        self.daemon_ready = False
        self.daemon_counter = 0
        self.alive = False
        self.said_ready = False   # READY=1 sent (systemd / inspector line): verdicts reach us from now on
        self.counts: Counter[str] = Counter()
        self.unknown_ids: set[str] = set()

    def handle(self, parts: list[bytes], now: float) -> None:
        """One ZeroMQ message; never raises for bad input (counted as malformed)."""
        try:
            message = decode_message(parts)
        except WireError as exc:
            self._malformed(exc)
            return
        except Exception as exc:  # decode_message promises WireError only; fail safe anyway
            self._malformed(exc)
            return
        if isinstance(message, Heartbeat):
            self._on_heartbeat(message, now)
        else:
            self._on_verdict(message)

    def check_heartbeat(self, now: float) -> None:
        """Declare the daemon lost when its last heartbeat is older than the timeout."""
        if self.alive and self.last_heartbeat_at is not None and now - self.last_heartbeat_at > self.heartbeat_timeout_s:
            self.alive = False
            self.counts["heartbeat_lost_events"] += 1
            log.error("daemon heartbeat lost for > %.2f s: line stop (fail closed)", self.heartbeat_timeout_s)
            self.writer.set_daemon_state(False, False, self.daemon_counter)

    def refused_handshake(self, socket: str, reason: str) -> None:
        """A CURVE handshake with the verdict publisher failed (watch thread): whoever binds the
        daemon's port does not hold the key this gateway pins, so nothing it sends is read."""
        self.counts["refused_handshakes"] += 1
        if self.metrics:
            self.metrics.refused_handshakes.labels(reason).inc()
        n = self.counts["refused_handshakes"]
        if n <= 10 or n % 1000 == 0:
            log.error("refused the verdict publisher (CURVE handshake %s, %d so far): not the daemon whose key "
                      "is pinned; its messages are not read", reason, n)

    def _malformed(self, exc: Exception) -> None:
        self.counts["malformed_messages"] += 1
        self.writer.note_malformed()
        if self.metrics:
            self.metrics.malformed.inc()
        count = self.counts["malformed_messages"]
        if count <= 10 or count % 1000 == 0:
            log.warning("malformed message #%d ignored: %s", count, exc)

    def _on_heartbeat(self, beat: Heartbeat, now: float) -> None:
        self.counts["heartbeats_received"] += 1
        if self.daemon_id != beat.daemon_id:
            log.info("daemon %r is publishing (counter %d, ready=%s)", beat.daemon_id, beat.counter, beat.ready)
            self.daemon_id = beat.daemon_id
        if self.daemon_epoch != beat.epoch:
            if self.daemon_epoch is not None:
                self.counts["daemon_restarts"] += 1
                log.warning("daemon %r restarted (epoch %d -> %d): verdicts it had not published are gaps, "
                            "written as FAULT sequence_gap", beat.daemon_id, self.daemon_epoch, beat.epoch)
            self.daemon_epoch = beat.epoch
        if not self.alive:
            log.info("daemon heartbeat present")
        if not self.said_ready:
            self.said_ready = True
            notify_ready()
            log.info("ready: the daemon's heartbeats reach this gateway, so its verdicts will")
        self.last_heartbeat_at = now
        self.alive = True
        self.daemon_ready = beat.ready
        self.daemon_counter = beat.counter & mm.U32_MAX
        self.writer.set_daemon_state(True, beat.ready, self.daemon_counter)

    def _on_verdict(self, verdict: Verdict) -> None:
        self.counts["verdicts_received"] += 1
        camera = self.camera_index.get(verdict.camera_id)
        if camera is None:
            self._unknown_camera(verdict)
            return
        self.writer.submit(pending_for(camera, verdict))  # sequence rules: inspector.plc.sequencing

    def _unknown_camera(self, verdict: Verdict) -> None:
        self.counts["unknown_camera_verdicts"] += 1
        self.writer.note_unknown_camera()
        if self.metrics:
            self.metrics.unknown_camera.inc()
        if verdict.camera_id not in self.unknown_ids and len(self.unknown_ids) < self.MAX_REPORTED_UNKNOWN:
            self.unknown_ids.add(verdict.camera_id)
            log.warning("verdict from camera %r, which this gateway does not write (not in --cameras %s): counted",
                        verdict.camera_id, list(self.camera_index))
        else:
            log.debug("verdict from unknown camera %r", verdict.camera_id)


# ------------------------------------------------------------------------------------------------
# Command
# ------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="box config (inspector.toml): take every setting from its "
                        "[gateways.NAME] section (with --gateway NAME)")
    parser.add_argument("--gateway", metavar="NAME", help="with --config: which [gateways.NAME] section")
    parser.add_argument("--connect", metavar="ENDPOINT", help="daemon PUB endpoint, e.g. tcp://127.0.0.1:5556 (required without --config)")
    parser.add_argument("--plc", help="modbus://HOST:PORT, or sim / sim://HOST:PORT for an in-process simulated PLC; "
                        "s7://HOST[:PORT][?db=N&rack=R&slot=S] or s7sim[://HOST:PORT] for Siemens S7 (required without --config)")
    parser.add_argument("--cameras", default="cam0", help="comma-separated camera ids; position = camera block (default cam0)")
    parser.add_argument("--device-id", type=int, default=1, help="Modbus device (unit) id (default 1)")
    parser.add_argument("--heartbeat-timeout", type=float, default=2.0, help="s without daemon heartbeat before line stop (default 2.0)")
    parser.add_argument("--pulse-ms", type=float, default=50.0, help="reject coil pulse width and minimum gap, ms (default 50)")
    parser.add_argument("--backlog", type=int, default=1024, help="verdicts kept while the PLC is unreachable (default 1024)")
    parser.add_argument("--timeout", type=float, default=1.0, help="Modbus connect/response timeout, s (default 1.0)")
    parser.add_argument("--reconnect-max", type=float, default=5.0, help="longest reconnect backoff, s (default 5.0)")
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    parser.add_argument("--metrics-host", default="127.0.0.1", help="address for the metrics server (default 127.0.0.1; another address exposes the metrics to the network)")
    parser.add_argument("--stats", type=Path, default=None, help="write counts and latency percentiles as JSON to FILE on exit")
    keys.add_arguments(parser)


def settings_from_config(config: Config, name: str) -> argparse.Namespace:
    """The settings of ``[gateways.NAME]`` as the namespace the command line gives. Raises
    ValueError for an unknown gateway."""
    if name not in config.gateways:
        raise ValueError(f"{config.source}: no [gateways.{name}] section (have: {sorted(config.gateways)})")
    g = config.gateways[name]
    if g.kind != "plc":
        raise ValueError(f"{config.source}: [gateways.{name}] is a {g.kind} gateway: run it with inspector {g.kind}")
    metrics_host, metrics_port = parse_host_port(g.metrics) if g.metrics else ("127.0.0.1", None)
    return argparse.Namespace(
        connect=connectable(g.connect or config.daemon.verdicts), plc=g.plc, cameras=",".join(g.cameras),
        device_id=g.device_id, heartbeat_timeout=g.heartbeat_timeout_s, pulse_ms=g.pulse_ms, backlog=g.backlog,
        timeout=g.timeout_s, reconnect_max=g.reconnect_max_s, metrics_port=metrics_port, metrics_host=metrics_host,
        stats=Path(g.stats) if g.stats else None, curve=keys.gateway_curve(config, name))


def _settings(args: argparse.Namespace) -> argparse.Namespace:
    """The command line's settings, or with --config those of the file's gateway section."""
    if args.config is None:
        if args.connect is None or args.plc is None:
            raise ValueError("--connect and --plc are required (or --config FILE --gateway NAME)")
        args.curve = keys.from_arguments(args)
        return args
    if not args.gateway:
        raise ValueError("--config needs --gateway NAME")
    return settings_from_config(load_config(args.config), args.gateway)


def _validate(args: argparse.Namespace) -> tuple[PlcTarget, tuple[str, ...]]:
    target = parse_plc_target(args.plc)
    cameras = parse_cameras(args.cameras)
    if not 0 <= args.device_id <= 255:
        raise ValueError(f"--device-id {args.device_id}: expected 0..255")
    for name in ("heartbeat_timeout", "pulse_ms", "timeout", "reconnect_max"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0")
    if args.backlog < 1:
        raise ValueError("--backlog must be >= 1")
    return target, cameras


def _write_stats(path: Path, stats: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _receive_loop(socket: zmq.Socket, gateway: Gateway, stop: threading.Event) -> None:
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    while not stop.is_set():
        if poller.poll(50):
            for _ in range(1000):  # drain, but come back to the watchdog regularly
                try:
                    parts = socket.recv_multipart(zmq.NOBLOCK, copy=True)
                except zmq.Again:
                    break
                gateway.handle(parts, time.monotonic())
        gateway.check_heartbeat(time.monotonic())


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not getattr(args, "verbose", False):
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # we log connection trouble ourselves
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    run_gateway(settings, stop)
    return 0


def run_gateway(args: argparse.Namespace, stop: threading.Event) -> dict[str, Any]:
    """Run one gateway with ``args`` (the command line's settings, or :func:`settings_from_config`)
    until ``stop`` is set; returns the stats (also written to ``args.stats`` when set). Raises
    ValueError for bad settings."""
    target, cameras = _validate(args)
    sim = device = None
    if target.kind in ("s7", "s7sim"):   # the same writer on an S7 data block (inspector.plc.s7_device)
        from inspector.plc.s7_device import open_s7

        device, sim = open_s7(target, timeout_s=args.timeout)
        target = PlcTarget("s7", device.host, device.port)
    elif target.kind == "sim":
        from inspector.plc.plc_sim import start_sim_in_thread

        sim = start_sim_in_thread(target.host, target.port)
        target = PlcTarget("modbus", sim.host, sim.port)
        log.info("simulated PLC on %s:%d", sim.host, sim.port)
    metrics = GatewayMetrics()
    if args.metrics_port is not None:
        metrics.serve(args.metrics_port, args.metrics_host)
    writer = PlcWriter(
        target.host, target.port, len(cameras), device_id=args.device_id, pulse_s=args.pulse_ms / 1e3,
        backlog_limit=args.backlog, timeout_s=args.timeout, reconnect_max_s=args.reconnect_max, metrics=metrics,
        device=device,
    )
    gateway = Gateway(cameras, writer, args.heartbeat_timeout, metrics)
    context = zmq.Context()
    curve = getattr(args, "curve", None)   # CURVE: pin the daemon's key (docs/security.md)
    try:
        socket = transport.verdict_subscriber(context, args.connect, curve=curve)
    except zmq.ZMQError as exc:
        context.term()
        if sim is not None:
            sim.stop()
        raise ValueError(f"--connect {args.connect!r}: {exc}") from None
    watch = transport.HandshakeWatch(socket, "verdicts", gateway.refused_handshake) if curve is not None else None
    started_ns = time.time_ns()
    try:
        writer.start()
        log.info("gateway: %s -> PLC %s:%d, cameras %s", args.connect, target.host, target.port, list(cameras))
        _receive_loop(socket, gateway, stop)
        log.info("gateway stopping")
    finally:
        if watch is not None:
            watch.close()
        socket.close(0)
        context.term()
        writer.stop()
        if sim is not None:
            sim.stop()
    stats = {
        "started_ns": started_ns,
        "stopped_ns": time.time_ns(),
        "cameras": list(cameras),
        "plc": f"{target.host}:{target.port}",
        "verdicts_received": gateway.counts["verdicts_received"],
        "heartbeats_received": gateway.counts["heartbeats_received"],
        "heartbeat_lost_events": gateway.counts["heartbeat_lost_events"],
        "daemon_restarts": gateway.counts["daemon_restarts"],
        "refused_handshakes": gateway.counts["refused_handshakes"],
        **writer.stats(),
    }
    if args.stats is not None:
        _write_stats(args.stats, stats)
        log.info("stats written to %s", args.stats)
    return stats
