"""``inspector opcua --config FILE --gateway NAME``: a box as an OPC UA server (asyncua) that SCADA
and MES browse and subscribe to.

Address space (namespace ``urn:inspector`` by default; every variable read-only)::

    Objects/BOX/                       the box (its daemon id)
        LineStop, DaemonAlive, DaemonReady (Boolean), DaemonId (String),
        MalformedMessages, HeartbeatLostEvents, UnknownCameraVerdicts (UInt64)
        Cameras/CAMERA/
            Ok, Reject, Fault, Lost (UInt64)          counts since counting began
            LastSeq (UInt64), LastDecision, LastReason, LastPartId (String),
            LastScore, LastThreshold (Double; NaN = none), LastCaptureNs (Int64)
            Calibration/ Threshold (Double), TargetFrr (Double), EngineSha256, Backend,
                         Profile (String: the file), Loaded (Boolean)

The values come from the daemon's verdicts and heartbeats (:class:`inspector.plant.feed.DaemonFeed`
-> :class:`inspector.plant.line_state.LineState`: line stop judged as the PLC gateway judges it),
the calibration from each camera's profile file (re-read when it changes, as the daemon reloads on
SIGHUP). Security: the policies of ``security`` (``none``, ``sign``, ``sign_encrypt`` =
Basic256Sha256 Sign / SignAndEncrypt) with the server's certificate; anonymous sessions when
``anonymous = true``; user logins from ``users_file`` (``name:sha256(password)`` per line).

Failure behaviour: malformed daemon messages are counted (MalformedMessages); an unreadable or
invalid profile shows ``Loaded = false`` and NaN thresholds (logged once per change); a client
that writes gets BadNotWritable. Nothing here drives the ejector.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
from pathlib import Path
from functools import partial
from typing import Any

from inspector.core.files import write_json_atomic
from inspector.judge.profile import ProfileError, load_profile
from inspector.line import keys
from inspector.line.config import Config, connectable
from inspector.line.readiness import notify_ready
from inspector.plant.feed import DaemonFeed
from inspector.plant.line_state import LineState
from inspector.plant import gateway_command
from inspector.plant.gateway_command import box_cameras, plant_section

log = logging.getLogger(__name__)

POLL_S = 0.02
PROFILE_CHECK_S = 1.0
LINE_VARIABLES = {"LineStop": "Boolean", "DaemonAlive": "Boolean", "DaemonReady": "Boolean", "DaemonId": "String",
                  "MalformedMessages": "UInt64", "HeartbeatLostEvents": "UInt64", "UnknownCameraVerdicts": "UInt64"}
CAMERA_VARIABLES = {"Ok": "UInt64", "Reject": "UInt64", "Fault": "UInt64", "Lost": "UInt64", "LastSeq": "UInt64",
                    "LastDecision": "String", "LastReason": "String", "LastPartId": "String", "LastScore": "Double",
                    "LastThreshold": "Double", "LastCaptureNs": "Int64"}
CALIBRATION_VARIABLES = {"Threshold": "Double", "TargetFrr": "Double", "EngineSha256": "String", "Backend": "String",
                         "Profile": "String", "Loaded": "Boolean"}


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def line_values(state: LineState, malformed: int) -> dict[str, Any]:
    return {"LineStop": state.line_stop, "DaemonAlive": state.daemon_alive, "DaemonReady": state.daemon_ready,
            "DaemonId": state.daemon_id, "MalformedMessages": malformed,
            "HeartbeatLostEvents": state.heartbeat_lost_events, "UnknownCameraVerdicts": state.unknown_camera_verdicts}


def camera_values(counts) -> dict[str, Any]:
    return {"Ok": counts.ok, "Reject": counts.reject, "Fault": counts.fault, "Lost": counts.lost,
            "LastSeq": counts.last_seq or 0, "LastDecision": counts.last_decision, "LastReason": counts.last_reason,
            "LastPartId": counts.last_part_id, "LastScore": _number(counts.last_score),
            "LastThreshold": _number(counts.last_threshold), "LastCaptureNs": counts.last_capture_ns}


def calibration_values(path: str) -> dict[str, Any]:
    """The calibration profile at ``path`` as node values (Loaded = false when it cannot be used)."""
    values = {"Threshold": math.nan, "TargetFrr": math.nan, "EngineSha256": "", "Backend": "", "Profile": path,
              "Loaded": False}
    if not path:
        return values
    try:
        profile = load_profile(path)
    except (ProfileError, OSError, ValueError) as exc:
        log.error("calibration profile %s not usable: %s", path, exc)
        return values
    return {**values, "Threshold": profile.image_threshold, "TargetFrr": _number(profile.target_frr),
            "EngineSha256": profile.engine_sha256, "Backend": profile.backend, "Loaded": True}


class UserFile:
    """asyncua user manager: ``name:sha256hex(password)`` lines; every user is read-only (the
    address space has nothing writable)."""

    def __init__(self, path: str) -> None:
        self.users: dict[str, str] = {}
        if path:
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                name, sep, digest = line.strip().partition(":")
                if sep and name:
                    self.users[name] = digest.lower()

    def get_user(self, iserver, username=None, password=None, certificate=None):
        from asyncua.crypto.permission_rules import User, UserRole

        if username is None:
            return User(role=UserRole.Anonymous)
        digest = hashlib.sha256((password or "").encode("utf-8")).hexdigest()
        if self.users.get(username) == digest:
            return User(role=UserRole.User, name=username)
        log.warning("OPC UA login refused for user %r", username)
        return None


class ReadOnlyRules:
    """asyncua permission ruleset: every session (anonymous or user) may browse, read and
    subscribe; nobody may write or change the address space."""

    def __init__(self) -> None:
        from asyncua import ua
        from asyncua.crypto.permission_rules import USER_TYPES

        refused = {ua.ObjectIds.WriteRequest_Encoding_DefaultBinary, ua.ObjectIds.CallRequest_Encoding_DefaultBinary}
        self.allowed = {ua.NodeId(request) for request in USER_TYPES if request not in refused}

    def check_validity(self, user, action_type, body) -> bool:
        return action_type in self.allowed


class OpcUaGateway:
    """The server and its nodes; :meth:`serve` runs until ``stop`` is set."""

    def __init__(self, config: Config, name: str) -> None:
        self.section = plant_section(config, name, "opcua")
        self.config = config
        self.box = config.daemon.id
        self.state = LineState(self.box, box_cameras(config, self.section), self.section.heartbeat_timeout_s)
        self.feed = DaemonFeed(connectable(self.section.connect or config.daemon.verdicts), self.state,
                               keys.gateway_curve(config, name))
        self.nodes: dict[tuple[str, ...], Any] = {}
        self.written: dict[tuple[str, ...], Any] = {}
        self.profile_stamps: dict[str, tuple[float, int] | None] = {}
        self.updates = 0

    async def _server(self):
        from asyncua import Server, ua

        server = Server(user_manager=UserFile(self.section.users_file))
        await server.init()
        server.set_endpoint(self.section.endpoint)
        server.set_server_name(f"inspector {self.box}")
        policies = {"none": ua.SecurityPolicyType.NoSecurity,
                    "sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
                    "sign_encrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt}
        server.set_security_policy([policies[name] for name in self.section.security], permission_ruleset=ReadOnlyRules())
        server.set_identity_tokens(([ua.AnonymousIdentityToken] if self.section.anonymous else []) + [ua.UserNameIdentityToken])
        if self.section.certificate:
            await server.load_certificate(self.section.certificate)
            await server.load_private_key(self.section.private_key)
        index = await server.register_namespace(self.section.namespace)
        box = await server.nodes.objects.add_object(index, self.box)
        await self._variables(box, index, (), LINE_VARIABLES)
        cameras = await box.add_folder(index, "Cameras")
        for camera in self.state.cameras:
            node = await cameras.add_object(index, camera)
            await self._variables(node, index, (camera,), CAMERA_VARIABLES)
            calibration = await node.add_object(index, "Calibration")
            await self._variables(calibration, index, (camera, "Calibration"), CALIBRATION_VARIABLES)
        return server

    async def _variables(self, parent, index: int, path: tuple[str, ...], types: dict[str, str]) -> None:
        from asyncua import ua

        for name, type_name in types.items():
            variant = getattr(ua.VariantType, type_name)
            initial = {"Boolean": False, "String": "", "Double": math.nan}.get(type_name, 0)
            self.nodes[(*path, name)] = (await parent.add_variable(index, name, ua.Variant(initial, variant)), variant)

    async def _write(self, path: tuple[str, ...], values: dict[str, Any]) -> None:
        from asyncua import ua

        for name, value in values.items():
            key = (*path, name)
            old = self.written.get(key)
            if key in self.written and (old == value or (isinstance(value, float) and math.isnan(value)
                                                         and isinstance(old, float) and math.isnan(old))):
                continue
            node, variant = self.nodes[key]
            await node.write_value(ua.Variant(value, variant))
            self.written[key] = value
            self.updates += 1

    async def _refresh(self, check_profiles: bool) -> None:
        await self._write((), line_values(self.state, self.feed.malformed))
        for camera, counts in self.state.cameras.items():
            await self._write((camera,), camera_values(counts))
            if check_profiles:
                path = self.config.calibration_for(camera)[0]
                stamp = _stamp(path)
                if self.profile_stamps.get(camera, "unset") != stamp:
                    self.profile_stamps[camera] = stamp
                    await self._write((camera, "Calibration"), calibration_values(path))

    async def serve(self, stop: threading.Event) -> None:
        server = await self._server()
        async with server:
            log.info("opcua: box %r, cameras %s at %s (security %s, anonymous %s)", self.box, list(self.state.cameras),
                     self.section.endpoint, self.section.security, self.section.anonymous)
            said_ready, next_profile_check = False, 0.0
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                self.feed.poll(0)
                if self.state.heartbeats and not said_ready:
                    said_ready = True
                    notify_ready()
                    log.info("ready: the daemon's heartbeats reach this gateway, so its verdicts will")
                check = loop.time() >= next_profile_check
                if check:
                    next_profile_check = loop.time() + PROFILE_CHECK_S
                await self._refresh(check)
                await asyncio.sleep(POLL_S)

    def stats(self) -> dict[str, Any]:
        return {"box": self.box, "endpoint": self.section.endpoint, "node_updates": self.updates,
                "malformed_messages": self.feed.malformed, **self.state.snapshot()}


def _stamp(path: str) -> tuple[float, int] | None:
    try:
        info = Path(path).stat()
    except OSError:
        return None
    return info.st_mtime, info.st_size


def run_opcua_gateway(config: Config, name: str, stop: threading.Event) -> dict[str, Any]:
    """Serve OPC UA for gateway ``name`` until ``stop``; returns its stats (also written to the
    section's ``stats`` file). Raises ValueError for bad settings."""
    logging.getLogger("asyncua").setLevel(logging.WARNING)   # its INFO lines are per request
    gateway = OpcUaGateway(config, name)
    try:
        asyncio.run(gateway.serve(stop))
    finally:
        gateway.feed.close()
    stats = gateway.stats()
    if gateway.section.stats:
        write_json_atomic(gateway.section.stats, stats)
    return stats


# the command: ``inspector opcua --config FILE --gateway NAME`` (runs until SIGTERM / SIGINT)
add_arguments = partial(gateway_command.add_arguments, kind="opcua")
run = partial(gateway_command.run, runner=run_opcua_gateway)
