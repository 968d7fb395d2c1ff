"""``inspector ui --config FILE``: the live operator page (docs/station.md).

What the page shows comes from four places, each read by one part of :class:`Station`:

* the daemon's verdicts and heartbeats (:class:`~inspector.station.live.LiveLine`): counts, rates,
  latency, health;
* the gateways' PLCs (:class:`~inspector.station.line_status.LineStatus`): line stop and its causes;
* the archive (:class:`~inspector.station.archive.Archive`, ``[archive] path``): the last rejects
  with their pictures, marks, counters;
* the calibration profiles of the config: thresholds, estimated FRR, the report.

Served by uvicorn on ``[ui] listen`` (port 0: a free port); prints ``ui ready: http://HOST:PORT/``
once it answers and the daemon's first heartbeat has reached it (so that its counts miss no
verdict), and tells systemd / ``inspector line`` READY=1. ``--add-user NAME`` creates an
operator account in ``[ui] users`` instead (the password from stdin, or asked twice on a terminal).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from inspector.line import keys
from inspector.line.config import Config, command_config, connectable, parse_host_port
from inspector.line.readiness import notify_ready
from inspector.station.archive import Archive
from inspector.station.auth import Authenticator, UsersError, add_user
from inspector.station.line_status import LineStatus
from inspector.station.live import LiveLine

log = logging.getLogger("inspector.ui")

SECRET_BYTES = 32
READY_WAIT_S = 30.0      # READY=1 waits this long for the daemon's first heartbeat


def session_secret(path: Path) -> bytes:
    """The session-signing key in ``path``, created (random, mode 0600) when missing."""
    if path.exists():
        data = path.read_bytes()
        if len(data) >= SECRET_BYTES:
            return data[:SECRET_BYTES]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(SECRET_BYTES))
    return path.read_bytes()[:SECRET_BYTES]


def calibration_in_force(config: Config) -> dict[str, Any]:
    """Per camera (and "*" for the default): the profile file, thresholds and its report's figures
    (estimated FRR with its CI, target, method, parts), or the reason it cannot be read."""
    from inspector.judge.profile import ProfileError, load_profile

    out: dict[str, Any] = {}
    for camera, (path, where) in config.profile_paths().items():
        key = camera or "*"
        try:
            raw = load_profile(path).raw
        except ProfileError as exc:
            out[key] = {"path": path, "where": where, "error": str(exc)}
            continue
        out[key] = {"path": path, "where": where, "camera": raw.get("camera"), "method": raw.get("method"),
                    "target_frr": raw.get("target_frr"), "estimated_frr": raw.get("estimated_frr"),
                    "thresholds": raw.get("thresholds"), "n_fit": raw.get("n_fit"), "n_heldout": raw.get("n_heldout"),
                    "holdout": raw.get("holdout"), "score_stats": raw.get("score_stats"),
                    "created": raw.get("created") or raw.get("created_at"),
                    "report": report_png(path) is not None}
    return out


def report_png(profile_path: str) -> Path | None:
    """``report.png`` of ``inspector calibrate --report DIR`` when DIR sits beside the profile as
    ``NAME_report/`` or ``NAME/`` (the README's convention); None otherwise."""
    base = Path(profile_path)
    for folder in (base.with_name(base.stem + "_report"), base.with_suffix("")):
        if (folder / "report.png").is_file():
            return folder / "report.png"
    return None


class Station:
    """Everything the page reads; closed with :meth:`close`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stopping = threading.Event()
        self.archive = Archive(config.archive.path, recover=False)
        heartbeat_timeout = min((g.heartbeat_timeout_s for g in config.gateways.values()), default=2.0)
        self.live = LiveLine(connectable(config.daemon.verdicts), heartbeat_timeout, keys.station_curve(config, "ui"))
        self.line_status = LineStatus(config)
        self.calibration = calibration_in_force(config)
        self.auth = Authenticator(config.ui.users or None)

    def archive_last_id(self) -> int:
        newest = self.archive.query(limit=1, include_corrupt=True)
        return newest[0].id if newest else 0

    def report_png(self, camera: str) -> Path | None:
        info = self.calibration.get(camera)
        return report_png(info["path"]) if info and "error" not in info else None

    def state(self) -> dict[str, Any]:
        from inspector.station.web import public_state

        live = self.live.snapshot()
        return public_state({**live, "line": self.line_status.snapshot(), "line_stop": self.line_status.line_stopped(),
                             "archive": {"entries": len(self.archive), "bytes": self.archive.total_bytes(),
                                         "quota_bytes": int(self.config.archive.quota_mb * 2**20),
                                         **self.archive.counters()}})

    def close(self) -> None:
        self.stopping.set()
        self.live.close()
        self.line_status.close()
        self.archive.close()


def run_ui(config: Config, stop: threading.Event) -> dict[str, Any]:
    """Serve the page until ``stop``; returns a summary."""
    import uvicorn

    from inspector.station.web import build_app

    section = config.ui
    station = Station(config)
    secret = session_secret(Path(section.secret) if section.secret else Path(config.archive.path) / "ui_secret")
    app = build_app(station, secret=secret, secure_cookies=section.secure_cookies, session_hours=section.session_hours)
    host, port = parse_host_port(section.listen)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive() and not stop.is_set():
            time.sleep(0.02)
        end = time.monotonic() + READY_WAIT_S
        while station.live.heartbeat is None and time.monotonic() < end and not stop.is_set():
            time.sleep(0.02)  # the first heartbeat: the page's verdict subscription is in place
        if server.started:
            shown = f"[{host}]" if ":" in host else host
            notify_ready()
            print(f"ui ready: http://{shown}:{sock.getsockname()[1]}/", flush=True)
        stop.wait()
    finally:
        station.stopping.set()
        server.should_exit = True
        thread.join(10)
        station.close()
        sock.close()
    return {"ui": section.listen, "stopped": True}


# ---------------------------------------------------------------------------------- `inspector ui`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="box config with [archive] and [ui] sections")
    parser.add_argument("--add-user", metavar="NAME", help="create (or reset) operator NAME in [ui] users; the "
                                                           "password is read from stdin (asked twice on a terminal)")


def read_password() -> str:
    if sys.stdin.isatty():
        first, second = getpass.getpass("password: "), getpass.getpass("again: ")
        if first != second:
            raise UsersError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def run(args: argparse.Namespace) -> int:
    config = command_config(args.config)
    if isinstance(config, int):
        return config
    if config.ui is None or config.archive is None:
        print(f"{args.config}: no [ui] section", file=sys.stderr)
        return 2
    if args.add_user:
        if not config.ui.users:
            print(f"{args.config}: [ui] users is not set: where should the account go?", file=sys.stderr)
            return 2
        add_user(config.ui.users, args.add_user, read_password())
        print(f"operator {args.add_user} written to {config.ui.users}")
        return 0
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(json.dumps(run_ui(config, stop)), flush=True)
    return 0
