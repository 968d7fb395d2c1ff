"""Tests for inspector.line.wire, messages: frame taps, verdicts and heartbeats over real sockets,
malformed messages, a seeded fuzz loop over every decoder, and the protocol doc's example."""

from __future__ import annotations

import math
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from inspector.line import wire
from inspector.line.wire import Heartbeat, WireError
from wire_helpers import (_DROP, _endpoint, _expect, _header, _header_map, _image,
                          _jpeg_parts, _pack, _pair, _verdict, _verdict_map)
from wire_helpers import ctx  # noqa: F401 (the fixture)


# ------------------------------------------------------------------------------------------
# taps
# ------------------------------------------------------------------------------------------


def _wait_subscribed(pub: zmq.Socket, sub: zmq.Socket, parts: list, timeout_s: float = 5.0) -> list:
    """Publish ``parts`` until the subscriber gets a message (PUB/SUB slow-joiner)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.send_multipart(parts)
        if sub.poll(50):
            return sub.recv_multipart(copy=False)
    raise AssertionError("subscriber never received anything")


def test_tap_mirrors_received_frames(ctx, tmp_path):
    pull, push = _pair(ctx, zmq.PULL, zmq.PUSH, "tcp", tmp_path)
    tap_pub, recorder = _pair(ctx, zmq.PUB, zmq.SUB, "ipc", tmp_path)
    recorder.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_FRAME)

    probe = wire.encode_tap(wire.encode_frame(_header(seq=0), _image((2, 2, 3))))
    _wait_subscribed(tap_pub, recorder, probe)
    while recorder.poll(100):  # drain extra probes
        recorder.recv_multipart()

    image = _image((30, 40, 3), seed=3)
    wire.send_frame(push, _header(seq=1, label="crack"), image)
    frames = pull.recv_multipart(copy=False)
    wire.decode_frame(frames)  # the daemon decodes, then mirrors the very same frames
    tap_pub.send_multipart(wire.encode_tap(frames), copy=False)
    header, mirrored = wire.decode_tap(recorder.recv_multipart(copy=False))
    assert header.seq == 1 and header.label == "crack"
    np.testing.assert_array_equal(mirrored, image)


def test_malformed_taps():
    header_bytes, payload = wire.encode_frame(_header(), _image((2, 2, 3)))
    _expect("bad_parts", wire.encode_tap, [header_bytes])
    _expect("bad_parts", wire.decode_tap, [header_bytes, payload])
    _expect("bad_parts", wire.decode_tap, [b"verdict", header_bytes, payload])
    _expect("size_mismatch", wire.decode_tap, [wire.TOPIC_FRAME, header_bytes, b"\x00"])


# ------------------------------------------------------------------------------------------
# verdicts and heartbeats
# ------------------------------------------------------------------------------------------


def test_verdict_and_heartbeat_over_pub_sub(ctx, tmp_path):
    pub, sub = _pair(ctx, zmq.PUB, zmq.SUB, "tcp", tmp_path)
    sub.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_VERDICT)
    sub.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_HEARTBEAT)
    beat = Heartbeat(daemon_id="daemon-a", counter=3, sent_ns=time.time_ns(), ready=True)
    assert wire.decode_message(_wait_subscribed(pub, sub, wire.encode_heartbeat(beat))) == beat
    while sub.poll(100):
        sub.recv_multipart()

    sent = [
        _verdict(),
        _verdict(seq=6, decision="OK", reason="", score=0.1, label=None, defect_area_px=None),
        _verdict(seq=7, decision="FAULT", reason="deadline_missed", score=None, threshold=None),
    ]
    for verdict in sent:
        pub.send_multipart(wire.encode_verdict(verdict))
    received = [wire.decode_message(sub.recv_multipart()) for _ in sent]
    assert received == sent


def test_verdict_encoding_normalises_numpy_values():
    verdict = _verdict(score=np.float32(0.25), threshold=np.float64(0.5), seq=np.int64(9), defect_area_px=np.int32(4))
    decoded = wire.decode_message(wire.encode_verdict(verdict))
    assert decoded.score == 0.25 and type(decoded.score) is float and decoded.seq == 9 and decoded.defect_area_px == 4
    assert type(decoded.seq) is int and type(decoded.defect_area_px) is int
    beat = wire.decode_message(wire.encode_heartbeat(Heartbeat("d", np.int64(1), 2, np.bool_(False))))
    assert beat.ready is False and beat.counter == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"decision": "MAYBE"},
        {"decision": "ok"},
        {"decision": "OK", "reason": "score_above_threshold"},
        {"decision": "REJECT", "reason": ""},
        {"reason": "Not A Code"},
        {"score": math.nan},
        {"threshold": math.inf},
        {"score": True},
        {"score": "0.5"},
        {"seq": -1},
        {"seq": False},
        {"decided_ns": 1.5},
        {"defect_area_px": -3},
        {"camera_id": ""},
        {"label": "l" * 200},
        {"schema": 3},
    ],
)
def test_malformed_verdicts_are_refused_on_both_sides(overrides):
    reason = "bad_version" if "schema" in overrides else "bad_field"
    decision = overrides.get("decision", "REJECT")
    base = {"decision": decision, "reason": "" if decision == "OK" and "reason" not in overrides else "defect_area"}
    fields = {**base, **overrides}
    _expect(reason, wire.encode_verdict, _verdict(**fields))
    error = _expect(reason, wire.decode_message, [wire.TOPIC_VERDICT, _pack(_verdict_map(**fields))])
    assert isinstance(error.header, dict)


def test_malformed_messages():
    good = wire.encode_verdict(_verdict())
    _expect("bad_parts", wire.decode_message, good[:1])
    _expect("bad_parts", wire.decode_message, good + [b""])
    _expect("bad_parts", wire.decode_message, [b"verdicts", good[1]])
    _expect("bad_parts", wire.decode_message, [wire.TOPIC_FRAME, good[1]])
    _expect("bad_header", wire.decode_message, [wire.TOPIC_VERDICT, b"\xc1\xc1"])
    _expect("bad_header", wire.decode_message, [wire.TOPIC_VERDICT, _pack([1, 2])])
    _expect("bad_header", wire.decode_message, [wire.TOPIC_VERDICT, good[1] + b"\x01"])
    _expect("bad_field", wire.decode_message, [wire.TOPIC_VERDICT, _pack(_verdict_map(extra=1))])
    _expect("bad_field", wire.decode_message, [wire.TOPIC_VERDICT, _pack(_verdict_map(decided_ns=_DROP))])
    _expect("too_large", wire.decode_message, [wire.TOPIC_VERDICT, b"\x00" * (wire.MAX_MESSAGE_BYTES + 1)])
    # optional fields may be absent
    minimal = wire.decode_message([wire.TOPIC_VERDICT, _pack(_verdict_map(label=_DROP, defect_area_px=_DROP))])
    assert minimal.label is None and minimal.defect_area_px is None and minimal.decision == "OK"

    beat = {"schema": 2, "daemon_id": "d", "counter": 1, "sent_ns": 5, "ready": True, "epoch": 0}
    assert wire.decode_message([wire.TOPIC_HEARTBEAT, _pack(beat)]) == Heartbeat("d", 1, 5, True)
    for overrides, reason in (({"ready": 1}, "bad_field"), ({"counter": True}, "bad_field"),
                              ({"counter": -1}, "bad_field"), ({"daemon_id": ""}, "bad_field"),
                              ({"schema": 3}, "bad_version"), ({"x": 1}, "bad_field")):
        _expect(reason, wire.decode_message, [wire.TOPIC_HEARTBEAT, _pack({**beat, **overrides})])
    _expect("bad_field", wire.encode_heartbeat, Heartbeat("d", 1, 5, "yes"))
    _expect("bad_header", wire.encode_verdict, beat)


# ------------------------------------------------------------------------------------------
# fuzz: decoders raise WireError and nothing else
# ------------------------------------------------------------------------------------------


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.random()
        if action < 0.5 and buffer:
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
        elif action < 0.7 and buffer:
            del buffer[rng.randrange(len(buffer)) :]
        elif action < 0.85:
            buffer.insert(rng.randrange(len(buffer) + 1), rng.randrange(256))
        elif buffer:
            del buffer[rng.randrange(len(buffer))]
    return bytes(buffer)


_FUZZ_VALUES = [None, True, False, 0, -1, 1, 2**63, 2**64 - 1, 1.5, math.nan, "", "x", "bgr8", "jpeg", "uint8",
                [], [1, 2, 3], [16, 16, 3], [16, 16, 1], {}, {"a": 1}, "é" * 70]


def _random_map(rng: random.Random, good: dict) -> dict:
    """Keys of ``good``, mostly with their good value, some random or missing, sometimes an extra."""
    result = {}
    for key, value in good.items():
        roll = rng.random()
        if roll < 0.6:
            result[key] = value
        elif roll < 0.95:
            result[key] = rng.choice(_FUZZ_VALUES)
    if rng.random() < 0.05:
        result["extra"] = 1
    return result


def _assert_only_wire_errors(fn, *args):
    try:
        return fn(*args)
    except WireError as error:
        assert error.reason in wire.WIRE_ERROR_REASONS
        return None


def test_fuzz_decoders_raise_only_wire_error():
    rng = random.Random(20240517)
    raw_parts = [bytes(p) for p in wire.encode_frame(_header(), _image((16, 16, 3)))]
    jpeg_parts = list(_jpeg_parts(16, 16))
    message = wire.encode_verdict(_verdict())[1]
    beat = wire.encode_heartbeat(Heartbeat("d", 1, 2, True))[1]
    decoded_ok = 0
    for _ in range(3000):
        junk = rng.randbytes(rng.randrange(64))
        _assert_only_wire_errors(wire.decode_frame, [junk, rng.randbytes(rng.randrange(1024))])
        _assert_only_wire_errors(wire.decode_message, [rng.choice([wire.TOPIC_VERDICT, wire.TOPIC_HEARTBEAT]), junk])

        header_bytes, payload = rng.choice([raw_parts, jpeg_parts])
        result = _assert_only_wire_errors(wire.decode_frame, [_mutate(header_bytes, rng), payload])
        if result is not None:
            header, image = result
            assert image.dtype == np.uint8 and image.shape == header.shape
            decoded_ok += 1
        _assert_only_wire_errors(wire.decode_frame, [header_bytes, _mutate(payload, rng)])
        _assert_only_wire_errors(wire.decode_frame, [_pack(_random_map(rng, _header_map(shape=[16, 16, 3]))), raw_parts[1]])

        _assert_only_wire_errors(wire.decode_message, [wire.TOPIC_VERDICT, _mutate(message, rng)])
        _assert_only_wire_errors(wire.decode_message, [wire.TOPIC_HEARTBEAT, _mutate(beat, rng)])
        _assert_only_wire_errors(wire.decode_message, [wire.TOPIC_VERDICT, _pack(_random_map(rng, _verdict_map()))])
    assert decoded_ok > 0  # some mutations (e.g. in string contents) still decode


def test_protocol_doc_example_runs(tmp_path):
    """The Python example in docs/protocol.md runs as written (on an ipc endpoint instead of the
    fixed TCP port)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks, "docs/protocol.md lost its Python example"
    endpoint = _endpoint("ipc", tmp_path)
    code = blocks[0].replace("tcp://127.0.0.1:5555", endpoint)
    assert endpoint in code
    namespace: dict = {}
    try:
        exec(compile(code, "docs/protocol.md", "exec"), namespace)
        assert namespace["received"].camera_id == "cam0" and namespace["frame"].shape == (480, 640, 3)
    finally:
        if "ctx" in namespace:
            namespace["ctx"].destroy(linger=0)
