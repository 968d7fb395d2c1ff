"""The daemon's TOML configuration: strict pydantic v2 models plus the deep checks behind
``inspector serve --config FILE --check-config``.

Every section is a strict model with ``extra="forbid"``: a wrong type (``max_batch = "8"``,
``heartbeat_ms = 2.5``) or an unknown key (a typo) is an error, never silently ignored. Relative
paths (engine, calibration profiles) resolve against the folder of the config file. The full
reference is docs/daemon.md; ``examples/inspector.toml`` is a commented example.

Two levels of checking:

* :func:`load_config` - TOML syntax and the schema (types, ranges, unknown keys, endpoint syntax,
  distinct endpoints). Raises :class:`ConfigError` listing every problem with its location
  (``FILE:LINE [section] key: message``).
* :func:`check_config` - the schema plus every check the daemon runs at start (docs/daemon.md):
  key files, the engine's manifest signed by a trusted key (``[trust]``) and its hash, every
  calibration profile signed and matching the engine
  (:func:`inspector.judge.profile.check_profile_matches`), and the engine opened and warmed up as
  ``inspector serve`` does. Returns the list of problems (empty = OK). Never imports torch unless
  the config asks for the ``torch`` backend.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from inspector.line.plant_config import GATEWAY_KINDS, MqttSection, OpcUaSection, gateway_kind

ENDPOINT_RE = re.compile(r"^(?:tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\s]+):(?P<port>\d+)|ipc://\S+|inproc://\S+)$")
HOST_PORT_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\s]+):(?P<port>\d+)$")
MAX_CAMERA_ID_BYTES = 128  # wire.MAX_STR
DEFAULT_MAX_PIXELS = 4096 * 4096      # [defaults] max_pixels: 16.8 MP (50 MiB as bgr8)
MAX_PIXELS_LIMIT = 16384 * 16384 // 3   # what the wire can carry as bgr8 (wire.MAX_PAYLOAD_BYTES)


class ConfigError(ValueError):
    """The configuration is unusable. ``problems``: one line per problem, with its location."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


def _check_endpoint(value: str, *, allow_empty: bool) -> str:
    if value == "" and allow_empty:
        return value
    match = ENDPOINT_RE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a ZeroMQ endpoint (tcp://HOST:PORT, ipc://PATH or inproc://NAME)")
    if match.group("port") is not None and not 1 <= int(match.group("port")) <= 65535:
        raise ValueError(f"{value!r}: port must be in 1..65535")
    return value


def connectable(endpoint: str) -> str:
    """The endpoint a peer on this machine connects to for a bound ``endpoint``: a wildcard host
    (``*``, ``0.0.0.0``, ``[::]``) becomes loopback; anything else is unchanged."""
    for wildcard, loopback in (("tcp://*:", "tcp://127.0.0.1:"), ("tcp://0.0.0.0:", "tcp://127.0.0.1:"),
                               ("tcp://[::]:", "tcp://[::1]:")):
        if endpoint.startswith(wildcard):
            return loopback + endpoint[len(wildcard):]
    return endpoint


def parse_host_port(value: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``[v6]:PORT`` too; PORT 0..65535, 0 = any free port) -> (host, port).
    Raises ValueError."""
    match = HOST_PORT_RE.match(value)
    if not match or not 0 <= int(match.group("port")) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (PORT 0..65535)")
    return match.group("host").strip("[]"), int(match.group("port"))


def _resolve(value: str, info: ValidationInfo) -> str:
    """Relative path -> absolute, against the config file's folder (validation context)."""
    if not value:
        return value
    base = (info.context or {}).get("base_dir")
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return os.path.normpath(path)


def _resolve_roi_spec(value: str, info: ValidationInfo) -> str:
    """A ROI rectangle "x,y,w,h" stays as it is; a mask file path resolves like other paths."""
    if not value or re.fullmatch(r"\s*\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+\s*", value):
        return value
    return _resolve(value, info)


def _resolve_source_spec(value: str, info: ValidationInfo) -> str:
    """A grabber source: URLs and ``kind:...`` specs (``cam:0``, ``mvtec:PATH``, ``genicam:...``,
    ``rtsp://...``) stay as they are (``mvtec:`` gets its path resolved); anything else is a
    file or folder path, resolved against the config file's folder."""
    if not value:
        return value
    kind, sep, rest = value.partition(":")
    if sep and kind == "mvtec":
        return f"mvtec:{_resolve(rest, info)}"
    if sep and len(kind) > 1:  # a scheme (not a Windows drive letter)
        return value
    return _resolve(value, info)


def _optional_host_port(value: str) -> str:
    if value:
        parse_host_port(value)
    return value


# string types with their checks (one definition each; relative paths resolve against the file)
Endpoint = Annotated[str, AfterValidator(lambda v: _check_endpoint(v, allow_empty=False))]
OptionalEndpoint = Annotated[str, AfterValidator(lambda v: _check_endpoint(v, allow_empty=True))]
HostPort = Annotated[str, AfterValidator(_optional_host_port)]      # "HOST:PORT" or "" (off)
ResolvedPath = Annotated[str, AfterValidator(_resolve)]
RoiSpec = Annotated[str, AfterValidator(_resolve_roi_spec)]         # "x,y,w,h" or a mask file, "" = none
SourceSpec = Annotated[str, AfterValidator(_resolve_source_spec)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class DaemonSection(_Strict):
    id: str = Field("inspector-1", min_length=1)
    frames: Endpoint                   # PULL, bound by the daemon; grabbers connect
    verdicts: Endpoint                 # PUB, bound by the daemon; gateways / recorders connect
    tap: OptionalEndpoint = ""         # optional PUB mirroring received frames
    health: HostPort = ""              # "HOST:PORT" of the HTTP server; "" = off
    heartbeat_ms: int = Field(250, ge=10, le=60_000)
    log_format: Literal["json", "text"] = "json"
    rcvhwm: int = Field(4, ge=1, le=100_000)          # frames ZeroMQ may hold before the daemon takes them
    tap_hwm: int = Field(16, ge=1, le=100_000)        # frames queued per tap subscriber before the tap drops
    tap_maps: bool = False                            # also publish REJECT/FAULT anomaly maps on the tap (archive)
    drain_ms: int = Field(2000, ge=0, le=600_000)     # SIGTERM: longest wait for in-flight frames
    linger_ms: int = Field(1000, ge=0, le=60_000)     # at exit: time to flush published verdicts

    @field_validator("id")
    @classmethod
    def _daemon_id(cls, value: str) -> str:
        _check_wire_text(value, "daemon id")
        return value




    @model_validator(mode="after")
    def _distinct_endpoints(self) -> "DaemonSection":
        endpoints = [e for e in (self.frames, self.verdicts, self.tap) if e]
        if len(set(endpoints)) != len(endpoints):
            raise ValueError(f"frames, verdicts and tap endpoints must differ, got {endpoints}")
        if self.tap_maps and not self.tap:
            raise ValueError("tap_maps = true needs a tap endpoint")
        return self


class EngineSection(_Strict):
    path: ResolvedPath = Field(min_length=1)
    backend: Literal["onnxruntime", "tensorrt", "torch"] = "onnxruntime"
    threads: int = Field(0, ge=0, le=1024)        # 0 = all cores (onnxruntime only)
    max_batch: int = Field(8, ge=1, le=1024)
    max_wait_ms: float = Field(4.0, ge=0.0, le=10_000.0)



class GrabberSettings(_Strict):
    """How a camera's grabber process sends frames (``inspector grab``); in ``[defaults]`` for
    every camera, overridden per camera."""

    fps: float | None = Field(None, gt=0.0, le=100_000.0)    # None = as fast as the HWM lets
    loop: bool = False                                       # repeat file sources forever
    max_frames: int | None = Field(None, ge=0)               # stop after N frames (None = never)
    jpeg: bool = False
    jpeg_quality: int = Field(95, ge=1, le=100)
    hwm: int = Field(4, ge=1, le=100_000)
    seed: int | None = None                                  # MVTec sources: shuffle with this seed


class DefaultsSection(GrabberSettings):
    deadline_ms: float = Field(500.0, gt=0.0, le=3_600_000.0)
    calibration: ResolvedPath = ""   # profile for cameras without their own ("" = none)
    roi: RoiSpec = ""                # region of interest for cameras without their own ("" = the whole image)
    # resource bounds (docs/daemon.md, "Bounded resources")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, le=MAX_PIXELS_LIMIT)   # H x W of a frame, checked before decoding
    max_deadline_ms: float = Field(60_000.0, gt=0.0, le=3_600_000.0)       # a frame's deadline is at most receive + this




class CameraSection(_Strict):
    """One camera, declared once: its calibration profile, ROI, deadline and, when the box runs
    its grabber, the frame source. Unset keys take ``[defaults]`` (see :meth:`Config.camera`)."""

    calibration: ResolvedPath = ""       # "" = [defaults] calibration
    roi: RoiSpec | None = None           # "x,y,w,h" or a mask file; None = [defaults] roi; "" = none
    deadline_ms: float | None = Field(None, gt=0.0, le=3_600_000.0)
    source: SourceSpec = ""              # grabber source (inspector grab --source); "" = no grabber here
    fps: float | None = Field(None, gt=0.0, le=100_000.0)
    loop: bool | None = None
    max_frames: int | None = Field(None, ge=0)
    jpeg: bool | None = None
    jpeg_quality: int | None = Field(None, ge=1, le=100)
    hwm: int | None = Field(None, ge=1, le=100_000)
    seed: int | None = None
    max_pixels: int | None = Field(None, ge=1, le=MAX_PIXELS_LIMIT)   # None = [defaults] max_pixels
    grabber_key: ResolvedPath = ""       # with [curve]: certificate of the only grabber that may send for it




PLC_RE = re.compile(r"^(?:sim|sim://\S+:\d+|modbus://[^/\s]+|s7sim|s7sim://\S+:\d+(?:\?\S*)?|s7://[^/\s]+)$")
MAX_PLC_CAMERAS = 16   # camera blocks in the register map (inspector.plc.modbus_map.MAX_CAMERAS)


class GatewaySection(_Strict):
    """One gateway process (``inspector gateway``) and its PLC. ``cameras``: the camera ids it
    writes, position = camera block in the PLC; every one must be a daemon camera."""

    kind: Literal["plc"] = "plc"          # other kinds: mqtt, opcua (inspector.line.plant_config)
    plc: str                              # modbus://HOST[:PORT], sim, sim://HOST:PORT, s7://HOST[:PORT][?db=N&rack=R&slot=S], s7sim
    cameras: list[str] = Field(min_length=1, max_length=MAX_PLC_CAMERAS)
    connect: OptionalEndpoint = ""        # the daemon's verdicts endpoint ("" = [daemon] verdicts)
    device_id: int = Field(1, ge=0, le=255)
    heartbeat_timeout_s: float = Field(2.0, gt=0.0, le=3600.0)
    pulse_ms: float = Field(50.0, gt=0.0, le=60_000.0)
    backlog: int = Field(1024, ge=1, le=1_000_000)
    timeout_s: float = Field(1.0, gt=0.0, le=600.0)
    reconnect_max_s: float = Field(5.0, gt=0.0, le=3600.0)
    metrics: HostPort = ""                # "HOST:PORT" of a Prometheus endpoint ("" = off)
    stats: ResolvedPath = ""              # write counts + latency percentiles as JSON here on exit
    key: ResolvedPath = ""                # with [curve]: this gateway's certificate (its secret: KEY_secret)

    @field_validator("plc")
    @classmethod
    def _plc(cls, value: str) -> str:
        if not PLC_RE.match(value):
            raise ValueError(f"{value!r}: expected modbus://HOST[:PORT], sim, sim://HOST:PORT, s7://HOST[:PORT][?db=N], "
                             "s7sim or s7sim://HOST:PORT")
        return value

    @field_validator("cameras")
    @classmethod
    def _cameras(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate camera id in {value}")
        return value





@dataclass(frozen=True)
class CameraSettings:
    """A camera's section merged with ``[defaults]``: what its grabber and the daemon use."""

    id: str
    calibration: str        # "" = none
    calibration_where: str  # "[cameras.X] calibration" or "[defaults] calibration"
    roi: str                # "" = the whole image
    deadline_ms: float
    source: str             # "" = no grabber in this box
    grabber: GrabberSettings


class CurveSection(_Strict):
    """ZeroMQ CURVE on the frames, verdicts and tap sockets (docs/security.md). Every path names a
    *public* certificate (``NAME.key``, ``inspector keys curve``); the process that is ``NAME``
    reads its secret from ``NAME.key_secret`` next to it. Grabber keys are per camera
    (``[cameras.ID] grabber_key``), gateway keys per gateway (``[gateways.NAME] key``)."""

    server_key: ResolvedPath = Field(min_length=1)   # the daemon's certificate: every client pins it
    verdict_clients: list[ResolvedPath] = []         # may subscribe to verdicts too (recorders, monitoring)
    tap_clients: list[ResolvedPath] = []             # may subscribe to the tap (recorders)


class TrustSection(_Strict):
    """Who may sign engines and calibration profiles (docs/security.md): Ed25519 public key files
    (``NAME.pub``, ``inspector keys site``) or folders of them. The daemon uses only artifacts
    signed by one of these keys."""

    keys: list[ResolvedPath] = Field(min_length=1)


class ArchiveSection(_Strict):
    """The reject archive (``inspector archive``, docs/station.md): every REJECT and FAULT frame with
    its pixels, anomaly map, overlay and verdict, and a sample of OK frames, under a disk quota."""

    path: ResolvedPath = Field(min_length=1)             # folder: index.sqlite + entries/
    ok_every: int = Field(0, ge=0, le=1_000_000)         # keep 1 OK frame in N per camera (0 = none)
    quota_mb: float = Field(1024.0, gt=0.0)              # oldest entries go first beyond this
    retention_days: float = Field(30.0, gt=0.0)          # and beyond this age
    thumbnail_px: int = Field(160, ge=16, le=2048)       # longest side of a thumbnail
    wait_ms: int = Field(1000, ge=0, le=60_000)          # how long a verdict waits for its frame and map
    queue: int = Field(64, ge=1, le=100_000)             # entries waiting for the disk; beyond: counted, lost
    key: ResolvedPath = ""                               # with [curve]: the archiver's certificate (tap + verdicts)


class UiSection(_Strict):
    """The operator page (``inspector ui``, docs/station.md)."""

    listen: HostPort = Field("127.0.0.1:8080", min_length=1)   # HOST:PORT (0 = a free port, announced)
    users: ResolvedPath = ""             # operator accounts (inspector ui --add-user); "" = nobody can log in
    secret: ResolvedPath = ""            # session signing key (created 0600); "" = ARCHIVE/ui_secret
    secure_cookies: bool = True          # Secure flag on the session cookie (HTTPS, or http://localhost)
    session_hours: float = Field(8.0, gt=0.0, le=24.0 * 30)
    key: ResolvedPath = ""             # with [curve]: the page's certificate (it reads the verdicts)
# [gateways.NAME]: a PLC gateway, or by its ``kind`` an MQTT publisher or an OPC UA server (docs/plant.md)
AnyGateway = Annotated[Annotated[GatewaySection, Tag("plc")] | Annotated[MqttSection, Tag("mqtt")]
                       | Annotated[OpcUaSection, Tag("opcua")], Discriminator(gateway_kind)]


class OverloadSection(_Strict):
    max_queue: int = Field(64, ge=1, le=1_000_000)
    policy: Literal["reject_oldest", "reject_newest"] = "reject_oldest"
    max_queue_bytes: int = Field(512 * 2**20, ge=2**20, le=2**40)   # payload bytes waiting for the engine


class Config(_Strict):
    daemon: DaemonSection
    engine: EngineSection
    defaults: DefaultsSection = DefaultsSection()
    cameras: dict[str, CameraSection] = {}
    overload: OverloadSection = OverloadSection()
    gateways: dict[str, AnyGateway] = {}
    curve: CurveSection | None = None     # None: NULL security, loopback / ipc endpoints only
    trust: TrustSection | None = None     # None: nothing can be verified, so the daemon uses nothing
    archive: ArchiveSection | None = None
    ui: UiSection | None = None
    _source: str = PrivateAttr("<dict>")  # the file this came from (for messages)

    @property
    def source(self) -> str:
        return self._source

    @field_validator("cameras")
    @classmethod
    def _camera_ids(cls, value: dict[str, CameraSection]) -> dict[str, CameraSection]:
        for name in value:
            _check_wire_text(name, f"camera id {name!r}")
        return value

    @field_validator("gateways")
    @classmethod
    def _gateway_names(cls, value: dict[str, GatewaySection]) -> dict[str, GatewaySection]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
                raise ValueError(f"gateway name {name!r}: 1..64 of A-Z a-z 0-9 _ - (it names a process)")
        return value

    def camera(self, name: str) -> CameraSettings:
        """Camera ``name`` (declared or not) merged with ``[defaults]``."""
        section = self.cameras.get(name, CameraSection())
        d = self.defaults
        grabber = GrabberSettings(**{key: d.model_dump()[key] if getattr(section, key) is None else getattr(section, key)
                                     for key in GrabberSettings.model_fields})
        own = name in self.cameras and bool(section.calibration)
        return CameraSettings(
            id=name,
            calibration=section.calibration if own else d.calibration,
            calibration_where=f"[cameras.{name}] calibration" if own else "[defaults] calibration",
            roi=d.roi if section.roi is None else section.roi,
            deadline_ms=d.deadline_ms if section.deadline_ms is None else section.deadline_ms,
            source=section.source,
            grabber=grabber,
        )

    def calibration_for(self, camera: str) -> tuple[str, str]:
        """(profile path, where it is configured) for ``camera``; path "" when none."""
        settings = self.camera(camera)
        return settings.calibration, settings.calibration_where

    def roi_for(self, camera: str | None) -> str:
        """The ROI spec of ``camera`` (None: cameras without a section); "" = the whole image."""
        return self.defaults.roi if camera is None else self.camera(camera).roi

    def max_pixels_for(self, camera: str) -> int:
        """The pixel budget (H x W) of ``camera``'s frames: its own ``max_pixels`` or [defaults]'."""
        section = self.cameras.get(camera)
        return self.defaults.max_pixels if section is None or section.max_pixels is None else section.max_pixels

    def deadline_ms_for(self, camera: str) -> float:
        """The deadline (ms after capture) for ``camera``'s frames that carry none."""
        section = self.cameras.get(camera)
        if section is None or section.deadline_ms is None:
            return self.defaults.deadline_ms
        return section.deadline_ms

    def profile_paths(self) -> dict[str | None, tuple[str, str]]:
        """{camera (None = default): (path, location)} for every configured profile."""
        paths: dict[str | None, tuple[str, str]] = {}
        if self.defaults.calibration:
            paths[None] = (self.defaults.calibration, "[defaults] calibration")
        for name in self.cameras:
            settings = self.camera(name)
            if settings.calibration:
                paths[name] = (settings.calibration, settings.calibration_where)
        return paths


def _check_wire_text(value: str, what: str) -> None:
    if not value or len(value.encode("utf-8")) > MAX_CAMERA_ID_BYTES or not value.isprintable():
        raise ValueError(f"{what} must be 1..{MAX_CAMERA_ID_BYTES} bytes of printable text")


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


def _key_line(text: str, loc: tuple) -> int | None:
    """Best-effort line number (1-based) of the key at ``loc`` (e.g. ("engine", "max_batch")) in
    the TOML text; the section header's line when the key itself is absent."""
    if not loc:
        return None
    section_names = [".".join(str(p) for p in loc[:i]) for i in range(len(loc) - 1, 0, -1)]
    key = str(loc[-1])
    current = ""
    header_line = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("["):
            current = line.strip("[] ").replace('"', "")
            if section_names and current == section_names[0]:
                header_line = number
            continue
        name = line.split("=", 1)[0].strip().strip('"') if "=" in line else None
        if name == key and current == (section_names[0] if section_names else ""):
            return number
    if len(loc) == 1:  # an unknown / missing top-level section
        for number, raw in enumerate(text.splitlines(), start=1):
            if raw.strip().strip("[] ").split(".")[0] == key:
                return number
    return header_line


_FRIENDLY = {
    "extra_forbidden": "unknown key (not part of the configuration schema; a typo?)",
    "missing": "required key is missing",
}


def _format_location(path: Path, text: str, loc: tuple) -> str:
    if len(loc) >= 3 and loc[0] == "gateways" and loc[2] in GATEWAY_KINDS:
        loc = loc[:2] + loc[3:]   # pydantic names the gateway's kind (the union's tag) in the location
    line = _key_line(text, loc)
    where = f"{path}:{line}" if line else str(path)
    parts = [str(p) for p in loc]
    if len(parts) >= 2:
        return f"{where} [{'.'.join(parts[:-1])}] {parts[-1]}"
    return f"{where} [{parts[0]}]" if parts else where


def load_config(path: str | Path) -> Config:
    """Read, parse and validate the TOML file at ``path``; relative paths inside are resolved
    against its folder. Raises ConfigError listing every problem with its location."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read the configuration: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: TOML syntax error: {exc}"]) from None
    return config_from_dict(data, base_dir=path.resolve().parent, source=str(path), text=text)


def config_from_dict(data: dict[str, Any], *, base_dir: str | Path | None = None, source: str = "<dict>",
                     text: str = "") -> Config:
    """Validate an already parsed config (e.g. from a test). Raises ConfigError."""
    try:
        config = Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = _format_location(Path(source), text, tuple(error["loc"]))
            message = _FRIENDLY.get(error["type"], error["msg"].removeprefix("Value error, "))
            problems.append(f"{location}: {message}")
        raise ConfigError(problems) from None
    config._source = source
    from inspector.line.keys import link_security_problems   # CURVE (docs/security.md); keys.py reads Config

    problems = cross_reference_problems(config, text) + link_security_problems(config, locator(config, text))
    if problems:
        raise ConfigError(problems)
    return config


def _section_line(text: str, section: str) -> int | None:
    """Line (1-based) of the ``[section]`` header (quotes around parts ignored)."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("[") and line.split("#", 1)[0].strip().strip("[] ").replace('"', "") == section:
            return number
    return None


def locator(config: Config, text: str):
    """``where(section, key)`` -> ``"FILE:LINE [section] key"`` in the config's text (for messages)."""
    def where(section: str, key: str) -> str:
        line = _key_line(text, (*section.split("."), key)) or _section_line(text, section)
        return f"{config.source}:{line} [{section}] {key}" if line else f"{config.source} [{section}] {key}"
    return where


def cross_reference_problems(config: Config, text: str = "") -> list[str]:
    """What must agree between sections of a box config: every camera a gateway writes is a
    daemon camera (``[cameras.X]``), and, once there are gateways, every daemon camera is written
    by one. Each problem names file, line and key."""
    problems: list[str] = []

    def where(section: str, key: str | None = None) -> str:
        line = (_key_line(text, (*section.split("."), key)) if key else None) or _section_line(text, section)
        return f"{config.source}:{line}" if line else config.source

    served: set[str] = set()
    for name, gateway in config.gateways.items():
        for camera in gateway.cameras:
            if gateway.kind == "plc":   # plant gateways (mqtt, opcua) report cameras, they do not eject
                served.add(camera)
            if camera not in config.cameras:
                problems.append(f"{where(f'gateways.{name}', 'cameras')} [gateways.{name}] cameras: camera {camera!r} "
                                f"is not a daemon camera (declare it once as [cameras.{camera}])")
    longest = config.defaults.max_deadline_ms
    for name, ms in [("defaults", config.defaults.deadline_ms)] + [
            (f"cameras.{c}", section.deadline_ms) for c, section in config.cameras.items() if section.deadline_ms]:
        if ms > longest:
            problems.append(f"{where(name, 'deadline_ms')} [{name}] deadline_ms: {ms:g} is longer than "
                            f"[defaults] max_deadline_ms = {longest:g}")
    if config.archive is not None and not config.daemon.tap:
        problems.append(f"{where('archive')} [archive]: the archive needs the daemon's tap ([daemon] tap, "
                        "and tap_maps = true for anomaly maps)")
    if config.ui is not None and config.archive is None:
        problems.append(f"{where('ui')} [ui]: the operator page needs an [archive] section")
    if any(gateway.kind == "plc" for gateway in config.gateways.values()):
        for camera in config.cameras:
            if camera not in served:
                problems.append(f"{where(f'cameras.{camera}')} [cameras.{camera}]: no gateway writes camera {camera!r} "
                                "(add it to the cameras of a [gateways.NAME] section)")
    return problems


# ------------------------------------------------------------------------------------------------
# Deep checks (--check-config)
# ------------------------------------------------------------------------------------------------


def trusted_keys(config: Config):
    """The keys (core.signing.TrustedKeys) the config's engine and profiles must be signed by
    (``[trust] keys``). Raises SignatureError when there is no ``[trust]`` section or a key file is
    unusable. (cryptography is imported here, not by every process that reads a config.)"""
    from inspector.core.signing import SignatureError, TrustedKeys

    if config.trust is None:
        raise SignatureError(f"{config.source} [trust] keys: not set: engines and calibration profiles cannot be "
                             "verified, so none is used (docs/security.md: `inspector keys site`)")
    return TrustedKeys.load(config.trust.keys)


def engine_manifest(config: Config) -> dict:
    """The manifest of the configured engine without running it (onnxruntime / tensorrt: the JSON
    next to the engine, its signature (``[trust]``) and hash verified; torch: the checkpoint is
    loaded and its tensor hash verified, which imports torch: its identity is what the signed
    profile names). Raises ValueError (ManifestError / EngineError / SignatureError) with the reason."""
    backend = config.engine.backend
    if backend == "torch":
        from inspector.engine import open_engine

        return dict(open_engine("torch", config.engine.path).manifest)
    from inspector.engine.manifest import read_manifest

    return read_manifest(config.engine.path, trusted=trusted_keys(config))


def check_profiles(config: Config, manifest: dict) -> list[str]:
    """Problems with the configured calibration profiles: each must load and match the engine
    (hash, image size, backend, precision, camera, ROI), exactly as the daemon checks them at start
    (:func:`inspector.line.profiles.load_thresholds`). Also a problem: no profile at all."""
    from inspector.line.profiles import load_thresholds

    problems = []
    if not config.profile_paths():
        problems.append(f"{config.source} [defaults] calibration: no calibration profile configured: "
                        "every frame would be FAULT no_calibration")
    _, unusable = load_thresholds(config, manifest, config.engine.backend)
    return problems + [f"{config.source} {problem}" for problem in unusable]


def check_config(path: str | Path) -> list[str]:
    """Every problem with the config at ``path``, found by the checks ``inspector serve`` runs
    before it binds (schema, key files, trusted keys, engine signature + hash, profiles, the
    engine opened and warmed up); [] = OK."""
    from inspector.line.keys import key_problems

    try:
        config = load_config(path)
    except ConfigError as exc:
        return list(exc.problems)
    problems = key_problems(config)
    engine_path = Path(config.engine.path)
    if not engine_path.is_file():
        return problems + [f"{config.source} [engine] path: engine file not found: {engine_path}"]
    try:
        manifest = engine_manifest(config)
    except Exception as exc:  # ManifestError, EngineError, SignatureError, a broken checkpoint...
        return problems + [f"{config.source} [engine] path: engine not usable: {exc}"]
    from inspector.line.serve import engine_start_problems

    problems.extend(check_profiles(config, manifest))
    return problems + engine_start_problems(config)


def print_check(path: str | Path) -> int:
    """``--check-config``: print every problem of the config at ``path`` (or that it is OK);
    returns the exit status, 0 (OK) or 2."""
    problems = check_config(path)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {path}")
        return 2
    print(f"configuration OK: {path}")
    return 0


def load_or_report(path: str | Path) -> Config | None:
    """The config at ``path``, or None after printing every problem to stderr (the commands then
    exit 2)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def command_config(path: str | Path, *, check_only: bool = False) -> Config | int:
    """What a command with ``--config`` (and ``--check-config``) starts from: the config, or the
    exit status to return (``--check-config``'s, or 2 after printing the problems)."""
    if check_only:
        return print_check(path)
    config = load_or_report(path)
    return 2 if config is None else config
