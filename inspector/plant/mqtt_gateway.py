"""``inspector mqtt --config FILE --gateway NAME``: a box's results to the plant's MQTT broker.

The process reads as the data flows::

    daemon PUB --verdicts, heartbeats--> DaemonFeed -> LineState (counts, liveness, line stop)
        -> OfflineBuffer (SQLite, one fsync per batch) -> MqttPublisher (QoS 1) -> broker
        + every status_interval_s: the retained status (counts per camera + health)

Topics and payloads: :mod:`inspector.plant.messages` (docs/plant.md). Settings: the box config's
``[gateways.NAME]`` with ``kind = "mqtt"`` (:class:`inspector.line.plant_config.MqttSection`).

Failure behaviour: the broker being down at start or going away, TLS or login refused, an expired
certificate: logged with what to check, counted by kind (status message, ``--stats``, Prometheus
``inspector_mqtt_connect_errors_total{kind}``), retried with backoff; verdicts wait in the buffer
meanwhile. A full buffer drops the oldest message (counted: ``buffer_dropped``). Malformed daemon
messages are counted. None of it touches the PLC gateways, which drive the ejector on their own.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial
from typing import Any

from inspector.core.files import write_json_atomic
from inspector.line import keys
from inspector.line.config import Config, connectable, parse_host_port
from inspector.line.readiness import notify_ready
from inspector.plant import gateway_command, messages
from inspector.plant.gateway_command import box_cameras, plant_section
from inspector.plant.broker import BrokerSettings
from inspector.plant.feed import DaemonFeed
from inspector.plant.line_state import LineState
from inspector.plant.mqtt_publisher import MqttPublisher
from inspector.plant.offline_buffer import BufferError, OfflineBuffer

log = logging.getLogger(__name__)

POLL_MS = 50


class MqttGateway:
    """One box's feed -> buffer -> broker; :meth:`step` does one round, :meth:`close` flushes."""

    def __init__(self, config: Config, name: str) -> None:
        section = plant_section(config, name, "mqtt")
        self.section = section
        self.box = section.client_id or config.daemon.id
        self.state = LineState(self.box, box_cameras(config, section), section.heartbeat_timeout_s)
        self.buffer = OfflineBuffer(section.buffer, section.buffer_max)
        self.state.restore(self.buffer.get_state("cameras", {}))
        broker = BrokerSettings(url=section.broker, client_id=self.box, username=section.username,
                                password_file=section.password_file, ca_file=section.ca_file,
                                cert_file=section.cert_file, key_file=section.key_file, keepalive_s=section.keepalive_s)
        broker.address  # noqa: B018  (a bad URL is an error now, not at the first connect)
        self.publisher = MqttPublisher(broker, self.buffer, box=self.box, prefix=section.topic_prefix,
                                       inflight=section.inflight, reconnect_max_s=section.reconnect_max_s)
        self.feed = DaemonFeed(connectable(section.connect or config.daemon.verdicts), self.state,
                               keys.gateway_curve(config, name))
        self.counts = {"verdicts_buffered": 0, "buffer_write_errors": 0, "not_buffered": 0}
        self.said_ready = False
        self._next_status = 0.0

    def start(self) -> None:
        self.publisher.start()
        log.info("mqtt: box %r, cameras %s -> %s (buffer %s, %d messages held)", self.box, list(self.state.cameras),
                 self.section.broker, self.section.buffer, self.buffer.depth())

    def step(self) -> None:
        """Take what the daemon sent (up to POLL_MS of waiting), buffer it, publish the status
        when it is due or the daemon's liveness changed."""
        verdicts, changed = self.feed.poll(POLL_MS)
        if self.state.heartbeats and not self.said_ready:
            self.said_ready = True
            notify_ready()
            log.info("ready: the daemon's heartbeats reach this gateway, so its verdicts will")
        if verdicts:
            self._buffer(verdicts)
        if changed or time.monotonic() >= self._next_status:
            self.publisher.publish_status(self.status())
            self._next_status = time.monotonic() + self.section.status_interval_s

    def _buffer(self, verdicts) -> None:
        batch = [(messages.verdict_topic(self.section.topic_prefix, self.box, v.camera_id),
                  messages.verdict_payload(self.box, v)) for v in verdicts]
        try:
            self.buffer.append(batch, payload_for=lambda n, payload: messages.number_verdict(payload, n),
                               state={"cameras": self.state.snapshot()["cameras"]})
            self.counts["verdicts_buffered"] += len(batch)
        except BufferError as exc:   # the disk refused: these verdicts reach the PLC, not the broker
            self.counts["buffer_write_errors"] += 1
            self.counts["not_buffered"] += len(batch)
            log.error("%s: %d verdicts not buffered for MQTT (%d so far)", exc, len(batch), self.counts["not_buffered"])

    def health(self) -> dict[str, Any]:
        """The publisher's own health: session, buffer, errors, malformed daemon messages."""
        return {**self.publisher.stats(), **self.counts, "malformed_messages": self.feed.malformed,
                "heartbeat_lost_events": self.state.heartbeat_lost_events}

    def status(self) -> bytes:
        return messages.status_payload(self.box, self.state.snapshot(), self.health(), time.time_ns())

    def close(self) -> dict[str, Any]:
        """Last status, flush what the broker takes (2 s at most), close; returns the stats."""
        self.publisher.publish_status(self.status())
        self.publisher.stop(flush_s=2.0)
        self.feed.close()
        stats = {"box": self.box, **self.health(), **self.state.snapshot()}
        self.buffer.close()
        return stats


# ---------------------------------------------------------------------------------------- metrics

class MqttMetrics:
    """Prometheus collector (prefix ``inspector_mqtt_``) reading the gateway's health at scrape time."""

    def __init__(self, gateway: MqttGateway) -> None:
        self.gateway = gateway

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        health, totals = self.gateway.health(), self.gateway.state.snapshot()["totals"]
        p = "inspector_mqtt_"
        yield GaugeMetricFamily(p + "broker_connected", "1 while connected to the broker", value=int(health["connected"]))
        yield GaugeMetricFamily(p + "buffer_depth", "messages waiting for the broker's PUBACK", value=health["buffer_depth"])
        yield GaugeMetricFamily(p + "line_stop", "1 while the daemon is not alive and ready", value=int(self.gateway.state.line_stop))
        for name, value, text in (("buffer_dropped", health["buffer_dropped"], "messages the full buffer pushed out"),
                                  ("published", health["published"], "messages published (QoS 1)"),
                                  ("acknowledged", health["acknowledged"], "messages acknowledged by the broker"),
                                  ("malformed_messages", health["malformed_messages"], "undecodable daemon messages"),
                                  ("not_buffered", health["not_buffered"], "verdicts the buffer could not store")):
            yield CounterMetricFamily(p + name, text, value=value)
        errors = CounterMetricFamily(p + "connect_errors", "failed broker connections by kind", labels=["kind"])
        for kind, count in health["connect_errors"].items():
            errors.add_metric([kind], count)
        yield errors
        verdicts = CounterMetricFamily(p + "verdicts", "verdicts counted per decision", labels=["decision"])
        for decision in ("ok", "reject", "fault"):
            verdicts.add_metric([decision.upper()], totals[decision])
        yield verdicts


def serve_metrics(gateway: MqttGateway, host_port: str) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    host, port = parse_host_port(host_port)
    registry = CollectorRegistry()
    registry.register(MqttMetrics(gateway))
    start_http_server(port, addr=host, registry=registry)


# ---------------------------------------------------------------------------------------- running

def run_mqtt_gateway(config: Config, name: str, stop: threading.Event) -> dict[str, Any]:
    """Run the MQTT gateway ``name`` until ``stop``; returns its stats (also written to the
    section's ``stats`` file). Raises ValueError for bad settings."""
    gateway = MqttGateway(config, name)
    if gateway.section.metrics:
        serve_metrics(gateway, gateway.section.metrics)
    gateway.start()
    try:
        while not stop.is_set():
            gateway.step()
    finally:
        stats = gateway.close()
    if gateway.section.stats:
        write_json_atomic(gateway.section.stats, stats)
    log.info("mqtt stopping: %d verdicts buffered, %d still held, %d dropped", stats["verdicts_buffered"],
             stats["buffer_depth"], stats["buffer_dropped"])
    return stats


# the command: ``inspector mqtt --config FILE --gateway NAME`` (runs until SIGTERM / SIGINT)
add_arguments = partial(gateway_command.add_arguments, kind="mqtt")
run = partial(gateway_command.run, runner=run_mqtt_gateway)
