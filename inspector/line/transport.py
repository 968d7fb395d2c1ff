"""The one ZeroMQ socket policy of the line: every socket any process opens is made here.

Who opens what (docs/protocol.md has the message formats, :mod:`inspector.line.wire` the codec):

    frame_push    grabber, replay, benchmarks    PUSH -> the daemon's frames endpoint (connects)
    frame_pull    daemon, benchmarks             PULL <- grabbers (binds)
    publisher     daemon (verdicts, tap)         PUB, or XPUB for the verdicts (binds)
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
* **CURVE** (docs/security.md), when the box config has a ``[curve]`` section: every bound socket
  is a CURVE server with the daemon's key pair and a ZAP domain of its own (``frames``,
  ``verdicts``, ``tap``); a ZAP handler (:class:`Gatekeeper`, pyzmq's ``ThreadAuthenticator``)
  lets in only the client keys listed for that domain. Every connecting socket is a CURVE client
  with its own key pair and *pins* the daemon's public key (``CURVE_SERVERKEY``): a process that
  binds the port without the daemon's secret key fails the handshake. The daemon reads the key of
  every accepted frame (its ``User-Id``, :func:`sender_key`) and :class:`CameraKeys` says which
  cameras that key may send for. Failed handshakes are counted on both sides
  (:class:`HandshakeWatch`, ZeroMQ's socket monitor). Without ``[curve]`` sockets use ZeroMQ's NULL
  mechanism; the config refuses that for any endpoint that is not loopback or ipc
  (:func:`is_local_endpoint`).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import zmq

from inspector.line import wire

log = logging.getLogger(__name__)

RECEIVE_LIMIT = wire.MAX_PAYLOAD_BYTES   # bytes per message part: the codec's largest part
VERDICT_HWM = 100_000                    # verdict/heartbeat messages queued per peer
TAP_SUB_HWM = 1000                       # frames a tap subscriber may queue
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 2000
SUBSCRIPTION_LIMIT = 4096          # bytes per message a verdict XPUB reads (subscriptions; CURVE handshake)


def _make(context: zmq.Context, kind: int, *, linger_ms: int = 0, receive_limit: int = RECEIVE_LIMIT) -> zmq.Socket:
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, linger_ms)
    if kind in (zmq.PULL, zmq.SUB, zmq.PAIR, zmq.XPUB):
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
               linger_ms: int, curve: "ClientCurve | None" = None) -> zmq.Socket:
    """A PUSH connected to a daemon's frames endpoint: SNDHWM ``hwm`` (>= 1), IMMEDIATE, a send
    blocks at most ``send_timeout_ms`` (then raises ``zmq.Again``), close lingers ``linger_ms``;
    a CURVE client when ``curve`` is given. Raises zmq.ZMQError for a bad endpoint (the socket is
    closed)."""
    sock = _make(context, zmq.PUSH, linger_ms=linger_ms)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.SNDTIMEO, max(1, int(send_timeout_ms)))
    sock.setsockopt(zmq.IMMEDIATE, 1)
    _curve_client(sock, curve)
    return _connect(sock, endpoint, backoff=True)


def frame_pull(context: zmq.Context, *, hwm: int, receive_limit: int = RECEIVE_LIMIT,
               curve: "ServerCurve | None" = None) -> zmq.Socket:
    """An unbound PULL for frames: RCVHWM ``hwm``, the receive limit (``receive_limit`` bytes per
    part: the daemon's largest allowed frame), LINGER 0; with ``curve`` a CURVE server in ZAP
    domain ``frames`` (the grabbers' keys). The caller binds."""
    sock = _make(context, zmq.PULL, receive_limit=receive_limit)
    sock.setsockopt(zmq.RCVHWM, hwm)
    _curve_server(sock, curve, FRAMES_DOMAIN)
    return sock


def publisher(context: zmq.Context, *, hwm: int = VERDICT_HWM, curve: "ServerCurve | None" = None,
              domain: str = "verdicts", subscriptions: bool = False) -> zmq.Socket:
    """An unbound PUB: SNDHWM ``hwm`` per subscriber (verdicts: :data:`VERDICT_HWM`; the tap: its
    own small bound), LINGER 0 (close it with an explicit linger to flush); with ``curve`` a CURVE
    server in ZAP domain ``domain`` (``"verdicts"`` or ``"tap"``). The caller binds.
    ``subscriptions``: an XPUB (XPUB_VERBOSE) instead, whose owner reads every subscription
    (``b"\\x01" + topic``) as a message: the daemon waits for its gateways to subscribe before
    it takes frames. Its receive limit, :data:`SUBSCRIPTION_LIMIT`, also bounds the CURVE
    handshake's commands (INITIATE carries the client's metadata), so it is not a topic's size."""
    if subscriptions:
        sock = _make(context, zmq.XPUB, receive_limit=SUBSCRIPTION_LIMIT)
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    else:
        sock = _make(context, zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, hwm)
    _curve_server(sock, curve, domain)
    return sock


def subscriber(context: zmq.Context, endpoint: str, topics: tuple[bytes, ...] | list[bytes], *,
               hwm: int = VERDICT_HWM, receive_limit: int = RECEIVE_LIMIT,
               curve: "ClientCurve | None" = None) -> zmq.Socket:
    """A SUB connected to ``endpoint`` and subscribed to ``topics``: RCVHWM ``hwm`` (verdicts:
    :data:`VERDICT_HWM`; tap frames: :data:`TAP_SUB_HWM`), the receive limit (``receive_limit``
    bytes per part), LINGER 0; a CURVE client pinning the daemon's key when ``curve`` is given.
    Raises zmq.ZMQError for a bad endpoint (the socket is closed)."""
    sock = _make(context, zmq.SUB, receive_limit=receive_limit)
    sock.setsockopt(zmq.RCVHWM, hwm)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    _curve_client(sock, curve)
    return _connect(sock, endpoint)


def verdict_subscriber(context: zmq.Context, endpoint: str, *, curve: "ClientCurve | None" = None) -> zmq.Socket:
    """A SUB on a daemon's verdicts and heartbeats (what gateways, validate and the demo read):
    parts of at most ``wire.MAX_MESSAGE_BYTES`` (a bigger one could never decode)."""
    return subscriber(context, endpoint, (wire.TOPIC_VERDICT, wire.TOPIC_HEARTBEAT),
                      receive_limit=wire.MAX_MESSAGE_BYTES, curve=curve)


def bind(sock: zmq.Socket, endpoint: str, what: str) -> None:
    """Bind ``sock`` to ``endpoint``; a port another process holds (or any other bind failure) is a
    :class:`BindError` that says so in one line."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        hint = (" (another process is bound there: a daemon already running, or something else; "
                "`ss -ltnp` shows which)") if exc.errno == zmq.EADDRINUSE else ""
        raise BindError(f"cannot bind the {what} socket to {endpoint}: {exc.strerror}{hint}") from None


def wake_pair(context: zmq.Context) -> zmq.Socket:
    """A PAIR for an inproc wake-up between two threads, LINGER 0."""
    return _make(context, zmq.PAIR)


class LinkError(RuntimeError):
    """A link cannot be set up: a socket that cannot bind, a key file that cannot be used. The
    commands report it in one line and exit 2."""


class BindError(LinkError):
    """A socket could not be bound (the port is in use, the address is not this machine's...)."""


# ------------------------------------------------------------------------------------------------
# Which endpoints leave the machine
# ------------------------------------------------------------------------------------------------


def is_local_host(host: str) -> bool:
    """True for loopback hosts (``localhost``, 127.0.0.0/8, ``::1``); wildcards and every other
    name or address are reachable from other machines (False)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_endpoint(endpoint: str) -> bool:
    """True when nothing outside this machine can reach ``endpoint``: ``ipc://``, ``inproc://`` or
    ``tcp://`` on a loopback host. ``tcp://*``, ``tcp://0.0.0.0``, interface names and other hosts
    are False."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0]
    return is_local_host(host)


# ------------------------------------------------------------------------------------------------
# CURVE: keys, the ZAP handler, senders, handshake failures
# ------------------------------------------------------------------------------------------------

FRAMES_DOMAIN, VERDICTS_DOMAIN, TAP_DOMAIN = "frames", "verdicts", "tap"


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair, both keys Z85-encoded (40 bytes each), as ``zmq.curve_keypair`` makes them."""

    public: bytes
    secret: bytes


@dataclass(frozen=True)
class ClientCurve:
    """What a connecting socket needs: its own key pair and the daemon's public key it pins."""

    own: KeyPair
    server_key: bytes


@dataclass(frozen=True)
class ServerCurve:
    """What the daemon's sockets need: its key pair and, per ZAP domain, the client keys let in.
    ``cameras``: grabber key -> the camera ids it may send frames for (the frames domain).
    ``names``: key -> a name for logs and metrics (the certificate's file name)."""

    own: KeyPair
    cameras: dict[bytes, frozenset[str]]
    verdicts: frozenset[bytes]
    tap: frozenset[bytes]
    names: dict[bytes, str] = field(default_factory=dict)

    def allowed(self, domain: str) -> frozenset[bytes]:
        if domain == FRAMES_DOMAIN:
            return frozenset(self.cameras)
        return self.verdicts if domain == VERDICTS_DOMAIN else self.tap if domain == TAP_DOMAIN else frozenset()

    def name(self, key: bytes | None) -> str:
        if key is None:
            return "(no key)"
        return self.names.get(key, key.decode("ascii", "replace")[:8] + "...")


def _curve_client(sock: zmq.Socket, curve: ClientCurve | None) -> None:
    if curve is None:
        return
    sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.own.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, curve.own.secret)
    sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_key)


def _curve_server(sock: zmq.Socket, curve: ServerCurve | None, domain: str) -> None:
    if curve is None:
        return
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.own.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, curve.own.secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())


class _DomainKeys:
    """pyzmq's credentials-provider protocol: ``callback(domain, z85 key) -> allowed``."""

    def __init__(self, keys: frozenset[bytes]) -> None:
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys


class Gatekeeper:
    """The ZAP handler of a context (one per context; start it before binding CURVE servers): for
    each domain, only the keys ``curve`` lists complete a handshake. The accepted key becomes the
    connection's ``User-Id`` (Z85), which :func:`sender_key` reads from every message. Refused
    handshakes are counted by the server socket's :class:`HandshakeWatch`, not here."""

    def __init__(self, context: zmq.Context, curve: ServerCurve) -> None:
        from zmq.auth.thread import ThreadAuthenticator   # only where a CURVE server runs

        self._auth = ThreadAuthenticator(context, log=logging.getLogger("inspector.zap"))
        self._auth.start()
        for domain in (FRAMES_DOMAIN, VERDICTS_DOMAIN, TAP_DOMAIN):
            self._auth.configure_curve_callback(domain, _DomainKeys(curve.allowed(domain)))

    def stop(self) -> None:
        self._auth.stop()


def sender_key(part) -> bytes | None:
    """The CURVE key (Z85) of the peer that sent a message part (a ``zmq.Frame`` received with
    ``copy=False``); None without CURVE."""
    try:
        user = part.get("User-Id")
    except (AttributeError, zmq.ZMQError):
        return None
    return user.encode("ascii") if user else None


class CameraKeys:
    """Which grabber key may send frames for which camera (the frames domain of a
    :class:`ServerCurve`). :meth:`refusal` is the daemon's check on every frame message."""

    def __init__(self, curve: ServerCurve) -> None:
        self.curve = curve

    def refusal(self, parts: list) -> str | None:
        """None when the sender's key may send for the camera the header names; else why not.
        A header that does not decode names no camera: it passes (the daemon answers it FAULT
        ``decode_error`` as ``unknown`` when no camera id can be read); a readable camera id from a
        malformed header is checked like a good one."""
        key = sender_key(parts[0]) if parts else None
        allowed = self.curve.cameras.get(key) if key is not None else None
        if allowed is None:
            return f"key {self.curve.name(key)} may send for no camera"
        camera = _claimed_camera(parts[0])
        if camera is None or camera in allowed:
            return None
        return f"key {self.curve.name(key)} may not send for camera {camera!r} (it may for {sorted(allowed)})"


def _claimed_camera(part) -> str | None:
    try:
        return wire.decode_header(part.buffer if isinstance(part, zmq.Frame) else part).camera_id
    except wire.WireError as exc:
        partial = exc.header
        camera = getattr(partial, "camera_id", None) if not isinstance(partial, dict) else partial.get("camera_id")
        return camera if isinstance(camera, str) else None


_HANDSHAKE_FAILURES = {zmq.EVENT_HANDSHAKE_FAILED_AUTH: "key_refused",
                       zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",
                       zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake_failed"}
_PROTOCOL_DETAIL = {zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "no_curve",
                    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "wrong_key"}


def handshake_failure(event: int, value: int) -> str | None:
    """A socket-monitor event -> why a handshake failed (None: not a failure). ``key_refused``: the
    ZAP handler refused the client's key; ``no_curve``: the peer speaks no CURVE; ``wrong_key``: the
    client pinned another server key (seen by the server); ``handshake_failed``: no detail (seen by
    a client: the server could not prove the pinned key, i.e. a spoofed daemon; seen by the daemon:
    usually a peer without CURVE)."""
    reason = _HANDSHAKE_FAILURES.get(event)
    if reason == "protocol":
        return _PROTOCOL_DETAIL.get(value, "protocol_error")
    return reason


class HandshakeWatch:
    """Counts the failed handshakes of one socket (ZeroMQ's socket monitor, read in a thread of its
    own). ``on_failure(socket_name, reason)`` is called from that thread for each; ``failures``
    counts them by reason. :meth:`close` before closing the socket."""

    EVENTS = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL

    def __init__(self, sock: zmq.Socket, name: str,
                 on_failure: Callable[[str, str], None] | None = None) -> None:
        self.name = name
        self.on_failure = on_failure
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._sock = sock
        self._monitor = sock.get_monitor_socket(self.EVENTS)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"handshakes-{name}", daemon=True)
        self._thread.start()

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.failures.values())

    def _run(self) -> None:
        from zmq.utils.monitor import recv_monitor_message   # imports asyncio: only where CURVE runs

        try:
            while not self._done.is_set():
                if not self._monitor.poll(100):
                    continue
                try:
                    event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
                except (zmq.Again, zmq.ZMQError):
                    continue
                reason = handshake_failure(int(event["event"]), int(event["value"]))
                if reason is None:
                    continue
                with self._lock:
                    self.failures[reason] += 1
                if self.on_failure is not None:
                    self.on_failure(self.name, reason)
        finally:
            self._monitor.close(0)

    def close(self) -> None:
        """Stop watching (call it from the socket's own thread, before closing the socket)."""
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._done.set()
        self._thread.join(10)   # it closes the monitor socket: a context cannot terminate before


class LinkGuard:
    """The daemon's side of CURVE in one object: the ZAP handler, a :class:`HandshakeWatch` on each
    bound socket and the camera check of every frame. Without CURVE (``curve`` None) it only binds.
    Every refusal (from the watch threads and the receive loop) is counted with
    ``count("refused_handshakes" | "refused_frames")``, in ``metric`` (a Prometheus counter labelled
    socket, reason) and logged (the first :data:`LOG_FIRST`, then every :data:`LOG_EVERY`-th).
    ``reason``: a handshake failure (:func:`handshake_failure`) or ``camera_not_allowed``."""

    LOG_FIRST, LOG_EVERY = 10, 1000

    def __init__(self, context: zmq.Context, curve: ServerCurve | None, metric,
                 count: Callable[[str], None]) -> None:
        self.curve = curve
        self.metric = metric
        self.count = count
        self.refusals: Counter[str] = Counter()
        self._watches: list[HandshakeWatch] = []
        self._gatekeeper = Gatekeeper(context, curve) if curve is not None else None
        self._cameras = CameraKeys(curve) if curve is not None else None

    def bind(self, sock: zmq.Socket, endpoint: str, what: str) -> None:
        """:func:`bind` ``sock`` as the ``what`` socket and count its failed handshakes. Raises
        BindError."""
        bind(sock, endpoint, what)
        if self.curve is not None:
            self._watches.append(HandshakeWatch(sock, what, lambda socket, reason: self._refused(
                socket, reason, f"a peer failed the CURVE handshake on the {socket} socket ({reason})")))

    def refuse(self, parts: list) -> bool:
        """True (and reported) when the frame message's sender may not send for its camera."""
        if self._cameras is None:
            return False
        why = self._cameras.refusal(parts)
        if why is None:
            return False
        self._refused(FRAMES_DOMAIN, "camera_not_allowed", why)
        return True

    def _refused(self, socket: str, reason: str, detail: str) -> None:
        self.count("refused_frames" if reason == "camera_not_allowed" else "refused_handshakes")
        self.metric.labels(socket, reason).inc()
        self.refusals[reason] += 1
        n = self.refusals[reason]
        if n <= self.LOG_FIRST or n % self.LOG_EVERY == 0:
            log.error("refused: %s (%d so far)", detail, n, extra={"socket": socket, "reason": reason})

    def close(self) -> None:
        """Stop the watches (before the sockets close) and the ZAP handler."""
        for watch in self._watches:
            watch.close()
        self._watches = []
        if self._gatekeeper is not None:
            self._gatekeeper.stop()
            self._gatekeeper = None
