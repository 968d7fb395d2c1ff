"""The tap's anomaly-map message (wire.AnomalyMap, encode_map / decode_map): round trip through a
real socket, quantisation error, and the strict decoder refusing what does not fit."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import zmq

from inspector.line import wire
from inspector.line.wire import AnomalyMap, WireError


def a_map(**changes) -> AnomalyMap:
    amap = np.linspace(-0.5, 2.0, 24 * 40, dtype=np.float32).reshape(24, 40)
    m = AnomalyMap.quantise("cam0", 12, 1_700_000_000_000_000_000, amap, "letterbox", pixel_threshold=0.7)
    return AnomalyMap(**{**m.__dict__, **changes})


def test_round_trip_over_a_socket_keeps_every_field_within_the_quantisation_step():
    context = zmq.Context()
    try:
        pub, sub = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
        pub.bind("inproc://maps")
        sub.connect("inproc://maps")
        sent = a_map()
        pub.send_multipart(wire.encode_map(sent), copy=False)
        got = wire.decode_map(sub.recv_multipart(copy=False))
    finally:
        context.destroy(linger=0)
    assert (got.camera_id, got.seq, got.capture_ns, got.fit, got.pixel_threshold) == ("cam0", 12, sent.capture_ns,
                                                                                      "letterbox", 0.7)
    original = np.linspace(-0.5, 2.0, 24 * 40, dtype=np.float32).reshape(24, 40)
    assert np.abs(got.floats() - original).max() <= (2.5 / 255) / 2 + 1e-6
    assert got.values.dtype == np.uint8 and not got.values.flags.writeable


def test_a_flat_map_encodes():
    m = AnomalyMap.quantise("cam0", 0, 0, np.full((4, 4), 0.3, np.float32), "squash")
    assert np.allclose(wire.decode_map(wire.encode_map(m)).floats(), 0.3)


def test_the_decoder_refuses_malformed_maps():
    topic, header, payload = wire.encode_map(a_map())
    fields = msgpack.unpackb(header)
    bad = {
        "short payload": [topic, header, bytes(payload)[:-1]],
        "unknown key": [topic, msgpack.packb({**fields, "extra": 1}), payload],
        "lo above hi": [topic, msgpack.packb({**fields, "lo": 3.0}), payload],
        "unknown fit": [topic, msgpack.packb({**fields, "fit": "crop"}), payload],
        "zero height": [topic, msgpack.packb({**fields, "height": 0}), payload],
        "nan threshold": [topic, msgpack.packb({**fields, "pixel_threshold": float("nan")}), payload],
        "wrong topic": [wire.TOPIC_FRAME, header, payload],
        "two parts": [topic, header],
    }
    for what, parts in bad.items():
        with pytest.raises(WireError):
            wire.decode_map(parts)
            pytest.fail(what)


def test_a_non_finite_map_does_not_encode():
    with pytest.raises(WireError):
        AnomalyMap.quantise("cam0", 0, 0, np.array([[0.0, np.nan]], np.float32), "squash")
