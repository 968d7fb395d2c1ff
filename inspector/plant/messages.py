"""What a box publishes to the plant's MQTT broker: topics and JSON payloads (docs/plant.md).

Topics, under a prefix (``inspector`` by default) and the box's name (its ``client_id``)::

    PREFIX/BOX/verdict/CAMERA   one message per verdict          QoS 1, not retained
    PREFIX/BOX/status           counts per camera + health       QoS 1, retained (the latest)
    PREFIX/BOX/online           true / false (false = the will)  QoS 1, retained

Payloads are UTF-8 JSON objects with a ``schema`` string. A verdict carries ``n``, the box's
message number (increasing, from the publisher's on-disk buffer): a consumer drops a repeated
``(box, n)`` (QoS 1 delivers at least once) and reports a gap in ``n`` as missing messages.
:func:`parse_status` / :func:`parse_verdict` validate what a consumer receives and raise
:class:`MessageError` for anything else (counted by the fleet view, never fatal).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from inspector.line.wire import Verdict

VERDICT_SCHEMA = "inspector.verdict/1"
STATUS_SCHEMA = "inspector.status/1"
DEFAULT_PREFIX = "inspector"
MAX_PAYLOAD_BYTES = 1 << 20
TOPIC_UNSAFE = re.compile(r"[/+#\x00]")
COUNT_KEYS = ("ok", "reject", "fault", "lost")


class MessageError(ValueError):
    """A message on a subscribed topic that is not what a box publishes."""


def topic_segment(name: str) -> str:
    """A box or camera name as one topic level: ``/``, ``+``, ``#`` and NUL become ``_`` (the
    payload keeps the real name)."""
    return TOPIC_UNSAFE.sub("_", name) or "_"


def verdict_topic(prefix: str, box: str, camera: str) -> str:
    return f"{prefix}/{topic_segment(box)}/verdict/{topic_segment(camera)}"


def status_topic(prefix: str, box: str) -> str:
    return f"{prefix}/{topic_segment(box)}/status"


def online_topic(prefix: str, box: str) -> str:
    return f"{prefix}/{topic_segment(box)}/online"


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def verdict_payload(box: str, verdict: Verdict, n: int = 0) -> bytes:
    """One verdict as JSON; ``n`` = its message number (0 until the buffer numbered it)."""
    return _dumps({
        "schema": VERDICT_SCHEMA, "box": box, "n": n, "camera": verdict.camera_id, "seq": verdict.seq,
        "part_id": verdict.part_id, "decision": verdict.decision, "reason": verdict.reason,
        "score": _finite(verdict.score), "threshold": _finite(verdict.threshold),
        "capture_ns": verdict.capture_ns, "decided_ns": verdict.decided_ns,
    })


def number_verdict(payload: bytes, n: int) -> bytes:
    """The payload of :func:`verdict_payload` with its message number set to ``n``."""
    body = json.loads(payload)
    body["n"] = n
    return _dumps(body)


def status_payload(box: str, state: dict[str, Any], publisher: dict[str, Any], sent_ns: int) -> bytes:
    """The box's status: ``state`` is :meth:`LineState.snapshot`, ``publisher`` the publisher's
    own health (buffer, broker connection, errors)."""
    return _dumps({"schema": STATUS_SCHEMA, "box": box, "online": True, "sent_ns": sent_ns, **state,
                   "publisher": publisher})


def online_payload(online: bool) -> bytes:
    return b"true" if online else b"false"


# ---------------------------------------------------------------------------------- consumers

def _object(payload: bytes, schema: str) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageError(f"payload of {len(payload)} bytes (limit {MAX_PAYLOAD_BYTES})")
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MessageError(f"not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("schema") != schema:
        raise MessageError(f"not a {schema} object")
    if not isinstance(body.get("box"), str) or not body["box"]:
        raise MessageError("no box name")
    return body


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MessageError(f"{what}: expected a count, got {value!r}")
    return value


def parse_status(payload: bytes) -> dict[str, Any]:
    """A status payload, checked: box, cameras {id: {ok, reject, fault, lost >= 0, ...}},
    line_stop, daemon, publisher. Raises MessageError."""
    body = _object(payload, STATUS_SCHEMA)
    cameras = body.get("cameras")
    if not isinstance(cameras, dict):
        raise MessageError("cameras: expected an object")
    for name, counts in cameras.items():
        if not isinstance(counts, dict):
            raise MessageError(f"camera {name!r}: expected an object")
        for key in COUNT_KEYS:
            _count(counts.get(key), f"camera {name!r} {key}")
    if not isinstance(body.get("line_stop"), bool) or not isinstance(body.get("daemon"), dict):
        raise MessageError("line_stop / daemon missing")
    if not isinstance(body.get("publisher"), dict):
        raise MessageError("publisher: expected an object")
    return body


def parse_verdict(payload: bytes) -> dict[str, Any]:
    """A verdict payload, checked: box, n >= 1, camera, seq >= 0, decision. Raises MessageError."""
    body = _object(payload, VERDICT_SCHEMA)
    _count(body.get("n"), "n")
    _count(body.get("seq"), "seq")
    if not isinstance(body.get("camera"), str) or body.get("decision") not in ("OK", "REJECT", "FAULT"):
        raise MessageError("camera / decision missing or invalid")
    return body
