"""The MQTT session of a box: one thread that owns the paho client, (re)connects with backoff,
publishes the offline buffer's messages in order with QoS 1 and deletes each one when the broker
acknowledged it.

Delivery: at least once. A message leaves the buffer only on its PUBACK; messages in flight when
the connection breaks are sent again by paho after the reconnect (persistent session, MQTT 3.1.1
``clean_session = 0``), and after a restart of this process everything still in the buffer is sent
again. So a consumer may see a message twice (same ``(box, n)``) and must drop the repeat; it never
misses one that the buffer held. What the buffer could not hold is counted (``dropped``).

Failures (broker down at start or gone mid-run, TLS refused, certificate expired, login refused)
are counted by kind (:func:`inspector.plant.broker.describe_failure`), logged with a sentence that
says what to check (the first time and every 100th), and retried with backoff; nothing is lost
meanwhile and nothing here ever stops the line: the PLC gateways do not depend on the broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import paho.mqtt.client as paho

from inspector.plant import messages
from inspector.plant.broker import BrokerSettings, describe_failure, describe_refusal, make_client
from inspector.plant.offline_buffer import BufferError, OfflineBuffer

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.1
LOOP_TIMEOUT_S = 0.02


class MqttPublisher:
    """Publishes ``buffer`` to the broker of ``settings`` under ``prefix/box``; ``publish_status``
    sends the retained status (not buffered: only the latest one matters)."""

    def __init__(self, settings: BrokerSettings, buffer: OfflineBuffer, *, box: str, prefix: str,
                 inflight: int = 100, reconnect_max_s: float = 5.0) -> None:
        self.settings, self.buffer, self.box, self.prefix = settings, buffer, box, prefix
        self.inflight = inflight
        self.reconnect_max_s = reconnect_max_s
        self.client = make_client(settings, persistent_session=True, inflight=inflight)
        self.client.will_set(messages.online_topic(prefix, box), messages.online_payload(False), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._lock = threading.Lock()
        self._status: bytes | None = None          # the next status to send (latest wins)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        # --- the MQTT thread's own (read by stats() under the lock) ---
        self.connected = False
        self._in_flight: dict[int, int] = {}        # paho mid -> buffer n
        self._acked: list[int] = []
        self._last_sent_n = 0
        self._backoff = RECONNECT_MIN_S
        self._next_attempt = 0.0
        self._refused = False                       # the last CONNACK said no (counted in on_connect)
        self.counts: Counter[str] = Counter()       # published, acknowledged, connects, errors by kind
        self.last_error = ""

    # ---------------------------------------------------------------- any thread
    def start(self) -> None:
        self._thread.start()

    def publish_status(self, payload: bytes) -> None:
        with self._lock:
            self._status = payload

    def stop(self, flush_s: float = 2.0) -> None:
        """Send what the broker can still take (for at most ``flush_s``), then go offline
        cleanly (retained online = false) and disconnect."""
        deadline = time.monotonic() + flush_s
        while time.monotonic() < deadline and self.connected and (self._in_flight or self._has_unsent()):
            time.sleep(0.02)
        self._stop.set()
        self._thread.join(5.0)

    def stats(self) -> dict[str, Any]:
        """Health of the session: connected, buffer depth / dropped, counts, last error."""
        with self._lock:
            counts = dict(self.counts)
            in_flight, last_error = len(self._in_flight), self.last_error
        return {"broker": self.settings.url, "client_id": self.settings.client_id, "connected": self.connected,
                "buffer_depth": self.buffer.depth(), "buffer_dropped": self.buffer.dropped, "in_flight": in_flight,
                "published": counts.get("published", 0), "acknowledged": counts.get("acknowledged", 0),
                "broker_connects": counts.get("connects", 0), "connection_lost": counts.get("connection_lost", 0),
                "connect_errors": {k.removeprefix("error:"): v for k, v in counts.items() if k.startswith("error:")},
                "last_error": last_error}

    # ---------------------------------------------------------------- the MQTT thread
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.connected:
                    self._try_connect()
                    continue
                if self.client.loop(LOOP_TIMEOUT_S) != paho.MQTT_ERR_SUCCESS and self.connected:
                    self._lost("connection lost")
                self._flush_acks()
                if self.connected:
                    self._send_status()
                    self._send_buffered()
        except Exception:   # a bug must not leave a zombie thread: log it, the stats say disconnected
            log.exception("MQTT publisher crashed")
        finally:
            self._go_offline()

    def _try_connect(self) -> None:
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            self._stop.wait(min(wait, 0.1))
            return
        host, port, _ = self.settings.address
        self._refused = False
        try:
            self.client.connect(host, port, keepalive=self.settings.keepalive_s)
            deadline = time.monotonic() + 5.0
            while not self.connected and time.monotonic() < deadline and not self._stop.is_set():
                if self.client.loop(0.05) != paho.MQTT_ERR_SUCCESS:
                    break
            if not self.connected and not self._refused and not self._stop.is_set():
                self._failure("timeout", "the broker closed the connection or sent no CONNACK within 5 s")
        except Exception as exc:  # OSError, ssl errors, paho's own: all mean "try again later"
            self._failure(*describe_failure(exc))
        if not self.connected:
            self.client.socket() and self.client.disconnect()
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        self._next_attempt = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.reconnect_max_s)

    def _failure(self, kind: str, sentence: str) -> None:
        with self._lock:
            self.counts[f"error:{kind}"] += 1
            self.last_error = sentence
            count = self.counts[f"error:{kind}"]
        if count == 1 or count % 100 == 0:
            log.error("MQTT broker %s: %s (%d times; buffering, %d messages held)", self.settings.url, sentence,
                      count, self.buffer.depth())

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = True
            self._failure(*describe_refusal(reason_code))
            return
        with self._lock:
            self.connected = True
            self.counts["connects"] += 1
            self.last_error = ""
        self._backoff = RECONNECT_MIN_S
        # messages in flight before are re-sent by paho itself; continue after the highest one
        client.publish(messages.online_topic(self.prefix, self.box), messages.online_payload(True), qos=1, retain=True)
        log.info("MQTT connected to %s as %r (session present: %s; %d messages buffered)", self.settings.url,
                 self.settings.client_id, flags.session_present, self.buffer.depth())

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected and not self._stop.is_set():
            self._lost(f"disconnected ({reason_code})")

    def _lost(self, why: str) -> None:
        with self._lock:
            self.connected = False
            self.counts["connection_lost"] += 1
            self.last_error = f"broker connection lost: {why}"
        log.error("MQTT broker %s: %s; buffering (%d messages held)", self.settings.url, why, self.buffer.depth())
        self._schedule_retry()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        n = self._in_flight.pop(mid, None)
        if n is not None:
            self._acked.append(n)

    def _flush_acks(self) -> None:
        if self._acked:
            acked, self._acked = self._acked, []
            try:
                self.buffer.acknowledge(acked)
            except BufferError as exc:   # they will be sent again: at least once still holds
                log.error("%s", exc)
            with self._lock:
                self.counts["acknowledged"] += len(acked)

    def _has_unsent(self) -> bool:
        return bool(self.buffer.after(self._last_sent_n, 1))

    def _send_buffered(self) -> None:
        room = self.inflight - len(self._in_flight)
        if room <= 0:
            return
        for stored in self.buffer.after(self._last_sent_n, room):
            info = self.client.publish(stored.topic, stored.payload, qos=1, retain=stored.retain)
            if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                break           # refused by paho (e.g. payload too large): tried again next round
            # NO_CONN: the connection just went away; paho holds the message and sends it after the reconnect
            self._in_flight[info.mid] = stored.n
            self._last_sent_n = stored.n
            with self._lock:
                self.counts["published"] += 1

    def _send_status(self) -> None:
        with self._lock:
            payload, self._status = self._status, None
        if payload is not None:
            self.client.publish(messages.status_topic(self.prefix, self.box), payload, qos=1, retain=True)

    def _go_offline(self) -> None:
        if self.connected:
            try:
                info = self.client.publish(messages.online_topic(self.prefix, self.box), messages.online_payload(False),
                                           qos=1, retain=True)
                deadline = time.monotonic() + 1.0
                while not info.is_published() and time.monotonic() < deadline:
                    self.client.loop(0.02)
                self.client.disconnect()
            except Exception as exc:   # best effort: the will says offline anyway
                log.warning("MQTT: could not say offline cleanly: %s", exc)
        self.connected = False
