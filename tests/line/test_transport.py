"""The one socket policy (inspector.line.transport): real sockets, options read back."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from inspector.line import transport, wire

pytestmark = pytest.mark.unit


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def test_receive_limit_is_the_codecs_largest_part() -> None:
    assert transport.RECEIVE_LIMIT == max(wire.MAX_PAYLOAD_BYTES, wire.MAX_HEADER_BYTES, wire.MAX_MESSAGE_BYTES)


def test_every_receiving_socket_is_bounded_by_what_it_can_use(ctx: zmq.Context) -> None:
    limit = wire.frame_receive_limit(640 * 480)
    pull = transport.frame_pull(ctx, hwm=4, receive_limit=limit)
    sub = transport.verdict_subscriber(ctx, "tcp://127.0.0.1:1")
    tap = transport.subscriber(ctx, "tcp://127.0.0.1:1", (wire.TOPIC_FRAME,), hwm=transport.TAP_SUB_HWM)
    assert 2 * 640 * 480 * 3 < limit < 2 * 640 * 480 * 3 + 2**17
    for sock, hwm, most in ((pull, 4, limit), (sub, transport.VERDICT_HWM, wire.MAX_MESSAGE_BYTES),
                            (tap, transport.TAP_SUB_HWM, transport.RECEIVE_LIMIT)):
        assert sock.getsockopt(zmq.MAXMSGSIZE) == most
        assert sock.getsockopt(zmq.RCVHWM) == hwm
        assert sock.getsockopt(zmq.LINGER) == 0
        sock.close()


def test_frame_push_blocks_without_a_daemon_then_times_out(ctx: zmq.Context) -> None:
    push = transport.frame_push(ctx, "tcp://127.0.0.1:1", hwm=2, send_timeout_ms=50, linger_ms=0)
    assert push.getsockopt(zmq.IMMEDIATE) == 1
    assert push.getsockopt(zmq.SNDHWM) == 2
    with pytest.raises(zmq.Again):  # IMMEDIATE: nothing is queued for a peer that is not there
        push.send(b"x")
    push.close()


def test_a_frame_travels_push_to_pull(ctx: zmq.Context) -> None:
    pull = transport.frame_pull(ctx, hwm=4)
    pull.bind("tcp://127.0.0.1:*")
    endpoint = pull.getsockopt(zmq.LAST_ENDPOINT).decode()
    push = transport.frame_push(ctx, endpoint, hwm=4, send_timeout_ms=5000, linger_ms=1000)
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    header = wire.FrameHeader(camera_id="c", seq=1, part_id="p", capture_ns=1, deadline_ns=0, shape=(2, 2, 3))
    wire.send_frame(push, header, image)
    assert pull.poll(5000)
    got_header, got = wire.recv_frame(pull)
    assert got_header.seq == 1 and np.array_equal(got, image)
    push.close()
    pull.close()


def test_a_bad_endpoint_is_an_error_and_leaks_no_socket(ctx: zmq.Context) -> None:
    with pytest.raises(zmq.ZMQError):
        transport.verdict_subscriber(ctx, "nonsense")
    with pytest.raises(zmq.ZMQError):
        transport.frame_push(ctx, "nonsense", hwm=1, send_timeout_ms=1, linger_ms=0)
    ctx.term()  # would hang on an unclosed socket
