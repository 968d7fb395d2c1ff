"""The one way this package connects to an MQTT broker (paho-mqtt 2.x): broker URLs, TLS, user
name and password, and a clear sentence for every way a connection fails.

``mqtt://HOST[:PORT]`` (default port 1883) or ``mqtts://HOST[:PORT]`` (TLS, default 8883). With
TLS the broker's certificate is always verified (against ``ca_file``, or the system's CAs when
empty) and its host name checked; a client certificate (``cert_file`` + ``key_file``) is optional.
The password is read from ``password_file`` (its first line), never written in the box config.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as paho

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how to log in. ``url``: mqtt:// or mqtts://."""

    url: str
    client_id: str
    username: str = ""
    password_file: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive_s: int = 30

    @property
    def address(self) -> tuple[str, int, bool]:
        """(host, port, tls) of ``url``; ValueError for anything but mqtt:// / mqtts://."""
        return parse_broker_url(self.url)


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    """``mqtt://HOST[:PORT]`` / ``mqtts://HOST[:PORT]`` -> (host, port, tls). Raises ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"broker {url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"broker {url!r}: bad port ({exc})") from None
    return parts.hostname, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts"


def make_client(settings: BrokerSettings, *, persistent_session: bool, inflight: int = 100) -> paho.Client:
    """A paho client (MQTT 3.1.1, callback API 2) set up for ``settings``; not connected.
    ``persistent_session``: the broker keeps our session (subscriptions, QoS 1 messages) while
    we are away. Raises ValueError for a bad URL or an unreadable password / certificate file."""
    host, port, tls = settings.address
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                         clean_session=not persistent_session, protocol=paho.MQTTv311)
    client.max_inflight_messages_set(inflight)
    if settings.username:
        client.username_pw_set(settings.username, _read_password(settings.password_file))
    if tls:
        client.tls_set_context(tls_context(settings))
    return client


def _read_password(path: str) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()[0] if Path(path).stat().st_size else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"password_file {path}: {exc}") from None


def tls_context(settings: BrokerSettings) -> ssl.SSLContext:
    """TLS 1.2+ client context: the broker's certificate verified against ``ca_file`` (or the
    system's CAs) with its host name; the client certificate when configured."""
    try:
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"TLS files ({settings.ca_file or 'system CAs'}, {settings.cert_file or 'no client cert'}): {exc}") from None
    return context


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(kind, sentence) for an exception raised while connecting: kind is one of
    ``certificate_expired``, ``certificate_invalid``, ``tls``, ``refused``, ``unreachable``,
    ``timeout``, ``other`` (a metric label); the sentence says what to check."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if "expired" in str(exc):
            return "certificate_expired", f"the broker's TLS certificate has expired ({exc.verify_message}): renew it"
        return "certificate_invalid", f"the broker's TLS certificate was not accepted ({exc.verify_message or exc})"
    if isinstance(exc, ssl.SSLError):
        return "tls", f"TLS handshake failed ({exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "connection refused (is the broker running, and on this port?)"
    if isinstance(exc, (TimeoutError, ssl.SSLZeroReturnError)):
        return "timeout", f"no answer from the broker ({exc})"
    if isinstance(exc, OSError):
        return "unreachable", f"broker unreachable ({exc})"
    return "other", f"{type(exc).__name__}: {exc}"


def describe_refusal(reason_code) -> tuple[str, str]:
    """(kind, sentence) for a CONNACK that refused us (bad user name / password, not authorised,
    client id rejected...)."""
    text = str(reason_code)
    if "not authori" in text.lower() or "bad user" in text.lower():
        return "not_authorized", f"the broker refused the login ({text}): check username / password_file"
    return "refused_connack", f"the broker refused the connection ({text})"
