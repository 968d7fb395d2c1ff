"""The gateway's Prometheus metrics (prefix ``inspector_gateway_``, docs/plc.md)."""

from __future__ import annotations


class GatewayMetrics:
    """Prometheus metrics in a private registry; ``serve(port, host)`` exposes them over HTTP."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter as PCounter, Gauge, Histogram

        self.registry = CollectorRegistry()
        prefix = "inspector_gateway_"
        self.verdicts_written = PCounter(prefix + "verdicts_written", "verdicts written to the PLC", ["decision"], registry=self.registry)
        self.malformed = PCounter(prefix + "malformed_messages", "undecodable messages from the daemon", registry=self.registry)
        self.unknown_camera = PCounter(prefix + "unknown_camera_verdicts", "verdicts from cameras not in --cameras", registry=self.registry)
        self.lost = PCounter(prefix + "lost_verdicts", "camera sequence numbers never seen by the gateway", registry=self.registry)
        self.backlog_dropped = PCounter(prefix + "plc_backlog_dropped", "verdicts dropped because the PLC backlog was full", registry=self.registry)
        self.reconnects = PCounter(prefix + "plc_reconnects", "successful PLC reconnections", registry=self.registry)
        self.write_errors = PCounter(prefix + "plc_write_errors", "failed PLC requests", registry=self.registry)
        self.backlog = Gauge(prefix + "plc_backlog", "verdicts waiting to be written", registry=self.registry)
        self.line_stop = Gauge(prefix + "line_stop", "1 while the line-stop / fault coil is requested", registry=self.registry)
        self.refused_handshakes = PCounter(prefix + "refused_handshakes", "CURVE handshakes with the verdict publisher that failed (a spoofed daemon?)", ["reason"], registry=self.registry)
        self.daemon_alive = Gauge(prefix + "daemon_alive", "1 while daemon heartbeats arrive", registry=self.registry)
        buckets = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
        self.write_seconds = Histogram(prefix + "plc_write_seconds", "entry + header write round trip", buckets=buckets, registry=self.registry)
        self.capture_to_plc = Histogram(prefix + "capture_to_plc_seconds", "capture time to PLC write completed", buckets=buckets, registry=self.registry)

    def serve(self, port: int, host: str) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)
