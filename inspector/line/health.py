"""A tiny HTTP server for operations: ``/metrics``, ``/healthz``, ``/readyz``.

* ``GET /metrics``: Prometheus text format (``prometheus_client.generate_latest`` of the given
  registry).
* ``GET /healthz``: liveness. 200 ``ok`` while ``liveness()`` says healthy, else 503 with the
  reason. A supervisor (Kubernetes, a watchdog script) restarts the process on 503.
* ``GET /readyz``: readiness. 200 ``ready`` while ``readiness()`` says ready (engine loaded,
  thresholds present, not draining), else 503 with the reason.
* anything else: 404.

The server runs in a daemon thread of its own (``ThreadingHTTPServer``), so a slow HTTP client
never stalls the frame loop; the callbacks must be cheap and thread safe (they read a few
attributes). Never imports torch.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, str]]  # -> (ok, reason)


class HealthServer:
    """``HealthServer(host, port, registry, liveness, readiness)``; ``start()`` binds (port 0 = any
    free port, see ``.port``) and serves in the background; ``close()`` stops it. Raises OSError
    when the address cannot be bound."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, liveness: Probe, readiness: Probe) -> None:
        self.host = host
        self.requested_port = port
        self.registry = registry
        self.liveness = liveness
        self.readiness = readiness
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.requested_port

    def start(self) -> "HealthServer":
        self._server = ThreadingHTTPServer((self.host, self.requested_port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="health-http", daemon=True)
        self._thread.start()
        log.info("health/metrics HTTP on %s:%d", self.host, self.port)
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of ``path``; never raises."""
        route = path.split("?", 1)[0]
        try:
            if route == "/metrics":
                return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
            if route in ("/healthz", "/readyz"):
                ok, reason = (self.liveness if route == "/healthz" else self.readiness)()
                word = "ok" if route == "/healthz" else "ready"
                return (200, "text/plain; charset=utf-8", f"{word}\n".encode()) if ok else (
                    503, "text/plain; charset=utf-8", f"{reason or 'not ok'}\n".encode())
            return 404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz, /readyz\n"
        except Exception as exc:  # a probe bug must not kill the server; report unhealthy
            log.exception("health endpoint %s failed", route)
            return 500, "text/plain; charset=utf-8", f"error: {exc}\n".encode()


def _handler_for(server: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            status, content_type, body = server.respond(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server signature)
            log.debug("http %s - " + format, self.address_string(), *args)

    return Handler
