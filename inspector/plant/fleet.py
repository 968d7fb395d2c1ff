"""``inspector fleet --broker URL``: every box and camera of a line, read from the plant's MQTT
broker (the retained status each box's ``inspector mqtt`` publishes: docs/plant.md).

A line larger than one box is several boxes, each with its own daemon, camera group and PLC, all
publishing to one broker under ``PREFIX/BOX/...``; this view puts them side by side: per camera
OK / REJECT / FAULT / lost counts, per box online, line stop, daemon alive, buffered and dropped
messages and the last broker error, and the line's totals.

Messages on the subscribed topics that are not a box's (bad JSON, wrong schema, negative counts)
are counted and shown (``malformed``), never fatal. :class:`Tally` is the consumer side of the
verdict stream: it drops repeats of ``(box, n)`` (QoS 1 delivers at least once) and reports gaps in
each camera's ``seq`` and each box's ``n``.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from inspector.core.files import write_json_atomic
from inspector.plant import messages
from inspector.plant.broker import BrokerSettings, describe_failure, make_client

log = logging.getLogger(__name__)


class Tally:
    """Verdict messages of many boxes: each ``(box, n)`` counted once; gaps reported."""

    def __init__(self) -> None:
        self.numbers: dict[str, set[int]] = defaultdict(set)
        self.seqs: dict[tuple[str, str], set[int]] = defaultdict(set)
        self.duplicates: Counter[str] = Counter()

    def add(self, body: dict[str, Any]) -> bool:
        """A parsed verdict (:func:`messages.parse_verdict`); False for a repeat."""
        box, n = body["box"], body["n"]
        if n in self.numbers[box]:
            self.duplicates[box] += 1
            return False
        self.numbers[box].add(n)
        self.seqs[(box, body["camera"])].add(body["seq"])
        return True

    @staticmethod
    def _gaps(values: set[int], start: int | None = None) -> list[int]:
        if not values:
            return []
        first = min(values) if start is None else start
        return sorted(set(range(first, max(values) + 1)) - values)

    def missing_seqs(self, box: str, camera: str, start: int | None = None) -> list[int]:
        """Seqs of ``camera`` never received between ``start`` (default: the first seen) and the last."""
        return self._gaps(self.seqs[(box, camera)], start)

    def missing_numbers(self, box: str) -> list[int]:
        """Message numbers of ``box`` never received between the first and the last seen."""
        return self._gaps(self.numbers[box])


class FleetView:
    """Subscribes to every box's status and online flag under ``prefix`` (and, with
    ``verdicts``, to their verdicts, tallied); thread safe."""

    def __init__(self, settings: BrokerSettings, prefix: str = messages.DEFAULT_PREFIX, *, verdicts: bool = False) -> None:
        self.prefix = prefix
        self.settings = settings
        self.lock = threading.Lock()
        self.statuses: dict[str, dict[str, Any]] = {}
        self.online: dict[str, bool] = {}
        self.tally = Tally()
        self.malformed: Counter[str] = Counter()
        self.last_malformed = ""
        self.topics = [f"{prefix}/+/status", f"{prefix}/+/online"] + ([f"{prefix}/+/verdict/+"] if verdicts else [])
        self.client = make_client(settings, persistent_session=False)
        self.client.reconnect_delay_set(0.1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect (ValueError with the reason when the broker cannot be reached in time)."""
        host, port, _ = self.settings.address
        try:
            self.client.connect(host, port, keepalive=self.settings.keepalive_s)
        except Exception as exc:   # OSError, ssl errors
            raise ValueError(f"broker {self.settings.url}: {describe_failure(exc)[1]}") from None
        self.client.loop_start()
        if not self.connected.wait(timeout_s):
            self.client.loop_stop()
            raise ValueError(f"broker {self.settings.url}: no answer in {timeout_s:g} s")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the fleet view: %s", self.settings.url, reason_code)
            return
        for topic in self.topics:
            client.subscribe(topic, qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, message) -> None:
        kind = message.topic.rsplit("/", 2)[-1] if "/verdict/" not in message.topic else "verdict"
        try:
            if kind == "status":
                body = messages.parse_status(bytes(message.payload))
                with self.lock:
                    self.statuses[body["box"]] = body
            elif kind == "online":
                box = message.topic.split("/")[-2]
                if bytes(message.payload) not in (b"true", b"false"):
                    raise messages.MessageError("online: expected true or false")
                with self.lock:
                    self.online[box] = bytes(message.payload) == b"true"
            else:
                body = messages.parse_verdict(bytes(message.payload))
                with self.lock:
                    self.tally.add(body)
        except messages.MessageError as exc:
            with self.lock:
                self.malformed[message.topic] += 1
                self.last_malformed = f"{message.topic}: {exc}"
            total = sum(self.malformed.values())
            if total <= 10 or total % 1000 == 0:
                log.warning("malformed message #%d on %s ignored: %s", total, message.topic, exc)

    def snapshot(self) -> dict[str, Any]:
        """``boxes`` {box: {online, line_stop, daemon, publisher, cameras}}, ``totals`` over every
        camera of every box, ``malformed`` count and the last malformed message's reason."""
        with self.lock:
            statuses = {box: dict(body) for box, body in self.statuses.items()}
            online = dict(self.online)
            malformed, last = sum(self.malformed.values()), self.last_malformed
        boxes = {}
        for box, body in sorted(statuses.items()):
            segment = messages.topic_segment(box)
            boxes[box] = {"online": online.get(segment, False), "line_stop": body["line_stop"],
                          "daemon": body["daemon"], "publisher": body["publisher"], "cameras": body["cameras"],
                          "sent_ns": body.get("sent_ns")}
        totals = {key: sum(c[key] for b in boxes.values() for c in b["cameras"].values()) for key in messages.COUNT_KEYS}
        return {"boxes": boxes, "totals": totals, "cameras": sum(len(b["cameras"]) for b in boxes.values()),
                "malformed": malformed, "last_malformed": last}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def render(snapshot: dict[str, Any]) -> str:
    """The fleet as a text table: one row per camera, box health beside it, totals last."""
    rows = [f"{'box':<14} {'camera':<10} {'ok':>8} {'reject':>8} {'fault':>8} {'lost':>6}  state"]
    for box, info in snapshot["boxes"].items():
        publisher = info["publisher"]
        state = ("online" if info["online"] else "OFFLINE") + (" LINE-STOP" if info["line_stop"] else "")
        state += f" buffered {publisher.get('buffer_depth', 0)} dropped {publisher.get('buffer_dropped', 0)}"
        if publisher.get("last_error"):
            state += f" ({publisher['last_error']})"
        for camera, c in info["cameras"].items():
            rows.append(f"{box:<14} {camera:<10} {c['ok']:>8} {c['reject']:>8} {c['fault']:>8} {c['lost']:>6}  {state}")
    t = snapshot["totals"]
    rows.append(f"{'total':<14} {snapshot['cameras']:<10} {t['ok']:>8} {t['reject']:>8} {t['fault']:>8} {t['lost']:>6}"
                f"  {len(snapshot['boxes'])} boxes, {snapshot['malformed']} malformed messages")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------- command

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", required=True, help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    parser.add_argument("--prefix", default=messages.DEFAULT_PREFIX, help="topic prefix of the boxes (default inspector)")
    parser.add_argument("--username", default="")
    parser.add_argument("--password-file", default="", help="file whose first line is the password")
    parser.add_argument("--ca-file", default="", help="CA of the broker's certificate (mqtts://)")
    parser.add_argument("--cert-file", default="")
    parser.add_argument("--key-file", default="")
    parser.add_argument("--wait", type=float, default=2.0, help="seconds to collect before printing (default 2)")
    parser.add_argument("--boxes", type=int, default=0, help="wait (up to --wait) until this many boxes reported")
    parser.add_argument("--watch", type=float, default=0.0, metavar="S", help="reprint every S seconds until Ctrl-C")
    parser.add_argument("--json", type=Path, default=None, help="write the fleet (boxes, totals) as JSON to FILE")


def run(args: argparse.Namespace) -> int:
    settings = BrokerSettings(url=args.broker, client_id=f"inspector-fleet-{os.getpid()}", username=args.username,
                              password_file=args.password_file, ca_file=args.ca_file, cert_file=args.cert_file,
                              key_file=args.key_file)
    view = FleetView(settings, args.prefix)
    view.start()
    try:
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline and not (args.boxes and len(view.snapshot()["boxes"]) >= args.boxes):
            time.sleep(0.05)
        if args.boxes:   # every box reported: one status interval more, so that its counts are the newest
            time.sleep(min(args.wait, 1.2))
        while True:
            snapshot = view.snapshot()
            print(render(snapshot), flush=True)
            if args.json is not None:
                write_json_atomic(args.json, snapshot)
            if not args.watch:
                break
            time.sleep(args.watch)
            print()
    except KeyboardInterrupt:
        pass
    finally:
        view.close()
    return 0 if not args.boxes or len(snapshot["boxes"]) >= args.boxes else 1

