"""The daemon's verdicts and heartbeats, as a plant publisher reads them: one SUB socket made by
the one socket policy (:func:`inspector.line.transport.verdict_subscriber`, so its options and
security are the gateway's), decoded by the wire codec, fed into a :class:`LineState`.

Malformed messages are counted and logged (the first 10, then every 1000th), never fatal.
Not thread safe: one thread calls :meth:`DaemonFeed.poll`.
"""

from __future__ import annotations

import logging
import time

import zmq

from inspector.line import transport
from inspector.line.wire import Heartbeat, Verdict, WireError, decode_message
from inspector.plant.line_state import LineState

log = logging.getLogger(__name__)

MAX_BATCH = 1000   # messages taken per poll (then the caller gets control back: timers, stop)


class DaemonFeed:
    """SUB on the daemon's verdicts endpoint ``endpoint`` (a CURVE client with ``curve``: the
    gateway's own key pair, pinning the daemon's); ``poll`` returns the new verdicts."""

    def __init__(self, endpoint: str, state: LineState, curve: transport.ClientCurve | None = None) -> None:
        self.state = state
        self.malformed = 0
        self.context = zmq.Context()
        try:
            self.socket = transport.verdict_subscriber(self.context, endpoint, curve=curve)
        except zmq.ZMQError as exc:
            self.context.term()
            raise ValueError(f"daemon verdicts endpoint {endpoint!r}: {exc}") from None

    def poll(self, timeout_ms: int) -> tuple[list[Verdict], bool]:
        """Wait up to ``timeout_ms`` for messages and take up to MAX_BATCH of them. Returns the
        verdicts the state counted (in arrival order) and whether the daemon's liveness changed
        (a heartbeat after silence, ``ready`` flipped, or the heartbeat timed out)."""
        verdicts: list[Verdict] = []
        changed = False
        if self.socket.poll(timeout_ms):
            for _ in range(MAX_BATCH):
                try:
                    parts = self.socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                message = self._decode(parts)
                if isinstance(message, Heartbeat):
                    changed |= self.state.on_heartbeat(message, time.monotonic())
                elif isinstance(message, Verdict) and self.state.on_verdict(message):
                    verdicts.append(message)
        changed |= self.state.check(time.monotonic())
        return verdicts, changed

    def _decode(self, parts: list[bytes]) -> Heartbeat | Verdict | None:
        try:
            return decode_message(parts)
        except (WireError, Exception) as exc:   # the codec promises WireError; fail safe anyway
            self.malformed += 1
            if self.malformed <= 10 or self.malformed % 1000 == 0:
                log.warning("malformed daemon message #%d ignored: %s", self.malformed, exc)
            return None

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()
