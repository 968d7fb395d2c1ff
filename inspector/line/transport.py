"""The one ZeroMQ socket policy of the line: every socket any process opens is made here.

Who opens what (docs/protocol.md has the message formats, :mod:`inspector.line.wire` the codec):

    frame_push    grabber, replay, benchmarks    PUSH -> the daemon's frames endpoint (connects)
    frame_pull    daemon, benchmarks             PULL <- grabbers (binds)
    publisher     daemon (verdicts, tap)         PUB (binds)
    subscriber    gateway, record, validate,     SUB to the verdicts or the tap (connects)
                  demo, benchmarks
    wake_pair     daemon (worker -> loop)        PAIR over inproc

The options, and why:

* **Receive limit** (``ZMQ_MAXMSGSIZE``) on every receiving socket, per socket: the largest part
  that socket can use. Verdict subscribers: ``wire.MAX_MESSAGE_BYTES``; the daemon's frame PULL:
  its largest allowed frame (the cameras' pixel budget, ``wire.frame_receive_limit``); others at
  most :data:`RECEIVE_LIMIT` (``wire.MAX_PAYLOAD_BYTES``). A peer that sends a bigger part could
  never be used; ZeroMQ disconnects it instead of buffering it.
* **High-water marks** (messages, not bytes): frames are big and short-lived, so their queues are
  short and set by the caller (the daemon's ``rcvhwm``, a grabber's ``hwm``); verdicts and
  heartbeats are ~200 bytes and must never be dropped for a briefly slow reader, so their queues
  hold :data:`VERDICT_HWM` on both sides (bounded: at most ``VERDICT_HWM * wire.MAX_MESSAGE_BYTES``).
  Tap subscribers (frames) hold :data:`TAP_SUB_HWM`.
* **IMMEDIATE** on frame PUSH sockets: queue only to a connected daemon, so a send blocks (and
  times out) while there is none instead of piling frames into a pipe nobody reads.
* **LINGER**: 0 for everything that receives (nothing to flush); senders pass theirs (a grabber's
  ``linger_ms``; the daemon closes its verdict PUB with its ``linger_ms``).
* **Timeouts**: a PUSH gets ``SNDTIMEO = send_timeout_ms`` so that a blocked send returns to its
  caller (which checks for stop or reports the failure); receivers poll and set none.
* **Reconnect**: every 100 ms; frame PUSH sockets back off to 2 s (a grabber may wait long for its
  daemon), subscribers do not (they connect before the daemon binds and must see its first
  heartbeat at once).
"""

from __future__ import annotations

import zmq

from inspector.line import wire

RECEIVE_LIMIT = wire.MAX_PAYLOAD_BYTES   # bytes per message part: the codec's largest part
VERDICT_HWM = 100_000                    # verdict/heartbeat messages queued per peer
TAP_SUB_HWM = 1000                       # frames a tap subscriber may queue
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 2000


def _make(context: zmq.Context, kind: int, *, linger_ms: int = 0, receive_limit: int = RECEIVE_LIMIT) -> zmq.Socket:
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, linger_ms)
    if kind in (zmq.PULL, zmq.SUB, zmq.PAIR):
        sock.setsockopt(zmq.MAXMSGSIZE, min(receive_limit, RECEIVE_LIMIT))
    return sock


def _connect(sock: zmq.Socket, endpoint: str, *, backoff: bool = False) -> zmq.Socket:
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS if backoff else 0)
    try:
        sock.connect(endpoint)
    except zmq.ZMQError:
        sock.close(linger=0)
        raise
    return sock


def frame_push(context: zmq.Context, endpoint: str, *, hwm: int, send_timeout_ms: int,
               linger_ms: int) -> zmq.Socket:
    """A PUSH connected to a daemon's frames endpoint: SNDHWM ``hwm`` (>= 1), IMMEDIATE, a send
    blocks at most ``send_timeout_ms`` (then raises ``zmq.Again``), close lingers ``linger_ms``.
    Raises zmq.ZMQError for a bad endpoint (the socket is closed)."""
    sock = _make(context, zmq.PUSH, linger_ms=linger_ms)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.SNDTIMEO, max(1, int(send_timeout_ms)))
    sock.setsockopt(zmq.IMMEDIATE, 1)
    return _connect(sock, endpoint, backoff=True)


def frame_pull(context: zmq.Context, *, hwm: int, receive_limit: int = RECEIVE_LIMIT) -> zmq.Socket:
    """An unbound PULL for frames: RCVHWM ``hwm``, the receive limit (``receive_limit`` bytes per
    part: the daemon's largest allowed frame), LINGER 0. The caller binds."""
    sock = _make(context, zmq.PULL, receive_limit=receive_limit)
    sock.setsockopt(zmq.RCVHWM, hwm)
    return sock


def publisher(context: zmq.Context, *, hwm: int = VERDICT_HWM) -> zmq.Socket:
    """An unbound PUB: SNDHWM ``hwm`` per subscriber (verdicts: :data:`VERDICT_HWM`; the tap: its
    own small bound), LINGER 0 (close it with an explicit linger to flush). The caller binds."""
    sock = _make(context, zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, hwm)
    return sock


def subscriber(context: zmq.Context, endpoint: str, topics: tuple[bytes, ...] | list[bytes], *,
               hwm: int = VERDICT_HWM, receive_limit: int = RECEIVE_LIMIT) -> zmq.Socket:
    """A SUB connected to ``endpoint`` and subscribed to ``topics``: RCVHWM ``hwm`` (verdicts:
    :data:`VERDICT_HWM`; tap frames: :data:`TAP_SUB_HWM`), the receive limit (``receive_limit``
    bytes per part), LINGER 0. Raises zmq.ZMQError for a bad endpoint (the socket is closed)."""
    sock = _make(context, zmq.SUB, receive_limit=receive_limit)
    sock.setsockopt(zmq.RCVHWM, hwm)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    return _connect(sock, endpoint)


def verdict_subscriber(context: zmq.Context, endpoint: str) -> zmq.Socket:
    """A SUB on a daemon's verdicts and heartbeats (what gateways, validate and the demo read):
    parts of at most ``wire.MAX_MESSAGE_BYTES`` (a bigger one could never decode)."""
    return subscriber(context, endpoint, (wire.TOPIC_VERDICT, wire.TOPIC_HEARTBEAT), receive_limit=wire.MAX_MESSAGE_BYTES)


def wake_pair(context: zmq.Context) -> zmq.Socket:
    """A PAIR for an inproc wake-up between two threads, LINGER 0."""
    return _make(context, zmq.PAIR)
