"""CURVE key files, and which keys each process of a box uses (docs/security.md).

A key pair is two ZeroMQ certificate files, as ``zmq.auth.create_certificates`` writes them (and
``inspector keys curve NAME`` makes them): ``NAME.key`` holds the public key (safe to copy to
every machine that must know it) and ``NAME.key_secret`` the public and the secret key (mode
0600, only on the machine that *is* NAME). Configs and options name the public file; a process
that needs its own secret reads ``NAME.key_secret`` next to it.

From a box config (``[curve]``, ``[cameras.ID] grabber_key``, ``[gateways.NAME] key``):

* :func:`link_security_problems` - what a config may declare: without ``[curve]`` nothing that
  leaves the machine; with it, a key for every grabber and gateway (run by ``load_config``);

* :func:`server_curve` - the daemon: its key pair; grabber key -> cameras; who may subscribe to
  verdicts (every gateway's key + ``verdict_clients``) and to the tap (``tap_clients``);
* :func:`grabber_curve`, :func:`gateway_curve`, :func:`station_curve` - a client's own pair + the
  daemon's key it pins.

Commands that connect without a box config (``grab``, ``gateway``, ``record``, ``replay``) take
``--curve-server-key FILE --curve-key FILE`` (:func:`add_arguments`, :func:`from_arguments`).
Every problem is a :class:`KeyFileError` naming the file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import zmq
import zmq.auth

from inspector.core.keyfiles import fresh_paths
from inspector.line.config import Config, parse_host_port
from inspector.line.transport import (ClientCurve, KeyPair, LinkError, LinkGuard, ServerCurve, is_local_endpoint,
                                      is_local_host)

SECRET_SUFFIX = "_secret"


class KeyFileError(LinkError, ValueError):
    """A key file is missing, unreadable, not a CURVE certificate, or has no secret key."""


def _load(path: Path) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise KeyFileError(f"CURVE key file not found: {path} (make key pairs with `inspector keys curve`)")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path} is not a ZeroMQ CURVE certificate: {exc}") from None
    if public is None or len(public) != 40:
        raise KeyFileError(f"{path} holds no Z85 public key")
    return public, secret


def public_key(path: str | Path) -> bytes:
    """The Z85 public key of the certificate at ``path`` (a ``.key`` or ``.key_secret`` file)."""
    return _load(Path(path))[0]


def secret_path(path: str | Path) -> Path:
    """``NAME.key_secret`` for ``NAME.key`` (a ``_secret`` path stays as it is)."""
    path = Path(path)
    return path if path.name.endswith(SECRET_SUFFIX) else path.with_name(path.name + SECRET_SUFFIX)


def key_pair(path: str | Path) -> KeyPair:
    """The key pair of the certificate named ``path`` (its public file; the secret is read from
    ``PATH_secret``). Raises KeyFileError."""
    public, secret = _load(secret_path(path))
    if not secret:
        raise KeyFileError(f"{secret_path(path)} holds no secret key")
    if Path(path) != secret_path(path) and Path(path).is_file() and public_key(path) != public:
        raise KeyFileError(f"{path} and {secret_path(path)} are not one key pair")
    return KeyPair(public, secret)


def make_pair(folder: str | Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair ``folder/NAME.key`` + ``folder/NAME.key_secret`` (mode 0600); refuses to
    overwrite. Returns both paths."""
    public, secret = fresh_paths(folder, (f"{name}.key", f"{name}.key{SECRET_SUFFIX}"), KeyFileError)
    old_umask = os.umask(0o077)
    try:
        zmq.auth.create_certificates(str(folder), name)
    finally:
        os.umask(old_umask)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return public, secret


# ------------------------------------------------------------------------------------------------
# From a box config
# ------------------------------------------------------------------------------------------------


def _named(path: str, names: dict[bytes, str]) -> bytes:
    key = public_key(path)
    names.setdefault(key, Path(path).name)
    return key


def server_curve(config: Config) -> ServerCurve | None:
    """The daemon's CURVE set-up from ``config`` (None without ``[curve]``). Raises KeyFileError."""
    if config.curve is None:
        return None
    names: dict[bytes, str] = {}
    cameras: dict[bytes, set[str]] = {}
    for camera, section in config.cameras.items():
        if section.grabber_key:
            cameras.setdefault(_named(section.grabber_key, names), set()).add(camera)
    verdicts = {_named(g.key, names) for g in config.gateways.values() if g.key}
    verdicts |= {_named(path, names) for path in config.curve.verdict_clients}
    tap = {_named(path, names) for path in config.curve.tap_clients}
    if config.archive is not None and config.archive.key:   # the reject archive reads both
        verdicts.add(_named(config.archive.key, names))
        tap.add(_named(config.archive.key, names))
    if config.ui is not None and config.ui.key:             # the operator page reads the verdicts
        verdicts.add(_named(config.ui.key, names))
    own = key_pair(config.curve.server_key)
    return ServerCurve(own, {key: frozenset(ids) for key, ids in cameras.items()}, frozenset(verdicts),
                       frozenset(tap), names)


def open_links(context: zmq.Context, config: Config, metric, count) -> LinkGuard:
    """The daemon's :class:`LinkGuard` for ``config`` (CURVE with ``[curve]``, else none). Raises
    KeyFileError."""
    return LinkGuard(context, server_curve(config), metric, count)


def client_curve(config: Config, own_key: str, what: str) -> ClientCurve | None:
    """A client of the daemon of ``config`` with the key pair named ``own_key`` (None without
    ``[curve]``). Raises KeyFileError (``what`` says whose key is missing)."""
    if config.curve is None:
        return None
    if not own_key:
        raise KeyFileError(f"{config.source}: {what} has no key, and [curve] needs one")
    return ClientCurve(key_pair(own_key), public_key(config.curve.server_key))


def grabber_curve(config: Config, camera: str) -> ClientCurve | None:
    return client_curve(config, config.cameras[camera].grabber_key, f"[cameras.{camera}] grabber_key")


def gateway_curve(config: Config, name: str) -> ClientCurve | None:
    return client_curve(config, config.gateways[name].key, f"[gateways.{name}] key")


def station_curve(config: Config, section: str) -> ClientCurve | None:
    """The reject archive's (``section`` = "archive") or the operator page's ("ui") client."""
    return client_curve(config, getattr(config, section).key, f"[{section}] key")


def key_problems(config: Config) -> list[str]:
    """``--check-config``: the key files the daemon needs (its own pair, every client's public
    certificate), readable and of the right kind. Clients' secrets live on their own machines and
    are checked when they start."""
    try:
        server_curve(config)
    except KeyFileError as exc:
        return [f"{config.source} [curve]: {exc}"]
    return []


def link_security_problems(config: Config, where=lambda section, key: f"[{section}] {key}") -> list[str]:
    """Without ``[curve]``: every endpoint the box binds or connects to, and every HTTP server, must
    be loopback or ipc (anything else lets any machine on the network send frames, read verdicts
    or pose as the daemon). With ``[curve]``: every camera names its grabber's key and every
    gateway its own key. ``where(section, key)`` says where a key is (config.locator: file and line)."""
    problems: list[str] = []
    if config.curve is None:
        fix = "add a [curve] section (docs/security.md) or use a loopback address or ipc://"
        links = [("daemon", key, getattr(config.daemon, key)) for key in ("frames", "verdicts", "tap")]
        links += [(f"gateways.{name}", "connect", g.connect) for name, g in config.gateways.items()]
        for section, key, endpoint in links:
            if endpoint and not is_local_endpoint(endpoint):
                problems.append(f"{where(section, key)}: {endpoint} is reachable from other machines without "
                                f"authentication or encryption; {fix}")
        servers = [("daemon", "health", config.daemon.health)]
        servers += [(f"gateways.{name}", "metrics", getattr(g, "metrics", "")) for name, g in config.gateways.items()]
        for section, key, address in servers:
            if address and not is_local_host(parse_host_port(address)[0]):
                problems.append(f"{where(section, key)}: {address} serves metrics to other machines; "
                                f"without [curve] only a loopback address is allowed ({fix})")
        return problems
    for name, camera in config.cameras.items():
        if not camera.grabber_key:
            problems.append(f"{where(f'cameras.{name}', 'grabber_key')}: required with [curve]: the certificate "
                            f"of the grabber that may send camera {name!r}'s frames")
    for name, gateway in config.gateways.items():
        if not gateway.key:
            problems.append(f"{where(f'gateways.{name}', 'key')}: required with [curve]: this gateway's "
                            "certificate (its secret next to it as KEY_secret)")
    for section, what in (("archive", "the archiver's"), ("ui", "the operator page's")):
        if getattr(config, section) is not None and not getattr(config, section).key:
            problems.append(f"{where(section, 'key')}: required with [curve]: {what} certificate "
                            "(its secret next to it as KEY_secret)")
    return problems


# ------------------------------------------------------------------------------------------------
# Command-line options (commands that connect without a box config)
# ------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--curve-server-key", metavar="FILE", type=Path,
                        help="CURVE: the daemon's public certificate (NAME.key) to pin; needs --curve-key")
    parser.add_argument("--curve-key", metavar="FILE", type=Path,
                        help="CURVE: this client's certificate (NAME.key; its secret is read from NAME.key_secret)")


def from_arguments(args: argparse.Namespace) -> ClientCurve | None:
    """The ClientCurve the options name, or None when neither is given. Raises KeyFileError."""
    server, own = getattr(args, "curve_server_key", None), getattr(args, "curve_key", None)
    if server is None and own is None:
        return None
    if server is None or own is None:
        raise KeyFileError("--curve-server-key and --curve-key go together")
    return ClientCurve(key_pair(own), public_key(server))
