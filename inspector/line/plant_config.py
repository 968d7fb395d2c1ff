"""The box config's plant gateways: ``[gateways.NAME]`` sections with ``kind = "mqtt"`` (results
to an MQTT broker, ``inspector mqtt``) or ``kind = "opcua"`` (an OPC UA server, ``inspector opcua``).
Sections without ``kind`` (or ``kind = "plc"``) are PLC gateways (:class:`inspector.line.config.GatewaySection`).

Strict like every section (unknown keys are errors naming file, line and key); relative paths
resolve against the config file's folder, as everywhere in the box config. The shared string
checks are :mod:`inspector.line.config`'s, imported when a value is checked (that module imports
this one to build its ``[gateways]`` table). Reference: docs/plant.md.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

BROKER_RE = re.compile(r"^mqtts?://(\[[0-9A-Fa-f:.]+\]|[^/:\s?#\[\]]+)(:\d{1,5})?/?$")
OPCUA_RE = re.compile(r"^opc\.tcp://(\[[0-9A-Fa-f:.]+\]|[^/:\s]+):\d{1,5}(/\S*)?$")
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
GATEWAY_KINDS = ("plc", "mqtt", "opcua")


def gateway_kind(value: Any) -> str:
    """The discriminator of a ``[gateways.NAME]`` table: its ``kind`` ("plc" when absent)."""
    if isinstance(value, dict):
        return value.get("kind", "plc")
    return getattr(value, "kind", "plc")


def _resolved(value: str, info: ValidationInfo) -> str:
    from inspector.line.config import _resolve

    return _resolve(value, info)


def _host_port(value: str) -> str:
    from inspector.line.config import parse_host_port

    if value:
        parse_host_port(value)
    return value


def _endpoint(value: str) -> str:
    from inspector.line.config import _check_endpoint

    return _check_endpoint(value, allow_empty=True)


def _distinct(value: list[str]) -> list[str]:
    repeated = sorted({camera for camera in value if value.count(camera) > 1})
    if repeated:
        raise ValueError(f"camera id(s) {repeated} listed twice")
    return value


def _matching(pattern: re.Pattern, forms: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r}: expected {forms}")
        return value
    return AfterValidator(check)


ResolvedPath = Annotated[str, AfterValidator(_resolved)]
BrokerUrl = Annotated[str, _matching(BROKER_RE, "mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")]
OpcUaUrl = Annotated[str, _matching(OPCUA_RE, "opc.tcp://HOST:PORT[/PATH]")]
CameraList = Annotated[list[str], AfterValidator(_distinct)]
HostPort = Annotated[str, AfterValidator(_host_port)]
OptionalEndpoint = Annotated[str, AfterValidator(_endpoint)]


class _Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    cameras: CameraList = []                  # the cameras reported; [] = every daemon camera
    connect: OptionalEndpoint = ""            # the daemon's verdicts endpoint ("" = [daemon] verdicts)
    heartbeat_timeout_s: float = Field(2.0, gt=0.0, le=3600.0)   # daemon silent this long = line stop
    stats: ResolvedPath = ""                  # counts + health as JSON here on exit
    key: ResolvedPath = ""                    # with [curve]: this gateway's certificate (its secret: KEY_secret)


class MqttSection(_Section):
    """Verdicts, per-camera counts and health to an MQTT broker (QoS 1, persistent session,
    bounded on-disk buffer). ``inspector mqtt --config FILE --gateway NAME``."""

    kind: Literal["mqtt"]
    broker: BrokerUrl                         # mqtt://HOST[:1883] or mqtts://HOST[:8883] (TLS)
    client_id: str = ""                       # MQTT client id and the box's name in topics ("" = [daemon] id)
    topic_prefix: str = "inspector"
    username: str = ""
    password_file: ResolvedPath = ""          # first line = the password (never in this file)
    ca_file: ResolvedPath = ""                # CA that signed the broker's certificate ("" = system CAs)
    cert_file: ResolvedPath = ""              # client certificate (optional, with key_file)
    key_file: ResolvedPath = ""
    buffer: ResolvedPath = Field(min_length=1)    # the offline buffer (SQLite file)
    buffer_max: int = Field(100_000, ge=1, le=100_000_000)   # messages held; beyond: oldest dropped, counted
    inflight: int = Field(100, ge=1, le=65_535)              # QoS 1 messages awaiting PUBACK
    status_interval_s: float = Field(1.0, gt=0.0, le=3600.0)
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_max_s: float = Field(5.0, gt=0.0, le=3600.0)
    metrics: HostPort = ""                    # "HOST:PORT" of a Prometheus endpoint ("" = off)

    @field_validator("client_id", "topic_prefix")
    @classmethod
    def _name(cls, value: str, info: ValidationInfo) -> str:
        if value and not all(NAME_RE.match(part) for part in value.split("/")):
            raise ValueError(f"{info.field_name} {value!r}: 1..64 of A-Z a-z 0-9 . _ - (per topic level)")
        return value


class OpcUaSection(_Section):
    """An OPC UA server (asyncua) with the box's counters, last verdicts, health, line stop and
    calibration as nodes. ``inspector opcua --config FILE --gateway NAME``."""

    kind: Literal["opcua"]
    endpoint: OpcUaUrl = "opc.tcp://0.0.0.0:4840/inspector/"
    security: list[Literal["none", "sign", "sign_encrypt"]] = Field(["sign_encrypt"], min_length=1)   # Basic256Sha256
    certificate: ResolvedPath = ""            # server certificate (DER or PEM), needed unless security = ["none"]
    private_key: ResolvedPath = ""
    anonymous: bool = False                   # anonymous sessions (read-only: every node is read-only)
    users_file: ResolvedPath = ""             # "name:sha256(password)" lines; "" = no user logins
    namespace: str = "urn:inspector"

    @model_validator(mode="after")
    def _logins(self) -> "OpcUaSection":
        if self.security != ["none"] and not (self.certificate and self.private_key):
            raise ValueError("security other than \"none\" needs certificate and private_key")
        if not self.anonymous and not self.users_file:
            raise ValueError("anonymous = false needs users_file (else nobody can log in)")
        return self
