"""The composition root: how one box config (``inspector.toml``) becomes a running line.

Read top to bottom, this is the process layout of a box (docs/architecture.md)::

    daemon          inspector serve   --config FILE                 frames in, verdicts out
    gateway-NAME    inspector gateway --config FILE --gateway NAME  one per [gateways.NAME]: verdicts -> PLC
                    inspector mqtt    ...                           kind = "mqtt": results -> MQTT broker
                    inspector opcua   ...                           kind = "opcua": an OPC UA server
    grab-CAMERA     inspector grab    --config FILE --camera ID     one per camera with a source
    archive         inspector archive --config FILE                 with [archive]: the reject archive
    ui              inspector ui      --config FILE                 with [ui]: the operator page

Each process is declared by one small function (``*_process``: its command line) and built by one
small function from (config, stop event) (``*_component``: what that command runs in its
process). ``inspector line --config FILE`` supervises the processes
(:mod:`inspector.line.supervisor`), ``--check-config`` validates the whole file (cross-references
included) and ``--systemd DIR`` writes the production units (:mod:`inspector.line.systemd`).
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from inspector.line.config import Config, command_config
from inspector.line.processes import inspector_command
from inspector.line.supervisor import ProcessSpec, Supervisor

SUPERVISOR_GRACE_MARGIN_S = 5.0   # on top of the daemon's drain_ms + linger_ms


# ---------------------------------------------------------------------------------- the layout

def daemon_process(config_path: Path) -> ProcessSpec:
    return ProcessSpec("daemon", "daemon", tuple(inspector_command("serve", "--config", str(config_path))))


# the command that runs each kind of [gateways.NAME] (docs/plant.md for mqtt and opcua)
GATEWAY_COMMANDS = {"plc": "gateway", "mqtt": "mqtt", "opcua": "opcua"}


def gateway_process(config_path: Path, name: str, kind: str = "plc") -> ProcessSpec:
    return ProcessSpec(f"gateway-{name}", "gateway",
                       tuple(inspector_command(GATEWAY_COMMANDS[kind], "--config", str(config_path), "--gateway", name)))


def grabber_process(config_path: Path, camera: str) -> ProcessSpec:
    return ProcessSpec(f"grab-{camera}", "grabber",
                       tuple(inspector_command("grab", "--config", str(config_path), "--camera", camera)))


def archive_process(config_path: Path) -> ProcessSpec:
    return ProcessSpec("archive", "station", tuple(inspector_command("archive", "--config", str(config_path))))


def ui_process(config_path: Path) -> ProcessSpec:
    return ProcessSpec("ui", "station", tuple(inspector_command("ui", "--config", str(config_path))))


def layout(config: Config, config_path: str | Path) -> list[ProcessSpec]:
    """Every process of the box, in start order."""
    path = Path(config_path).resolve()
    return [daemon_process(path),
            *(gateway_process(path, name, section.kind) for name, section in config.gateways.items()),
            *([archive_process(path)] if config.archive is not None else []),
            *([ui_process(path)] if config.ui is not None else []),
            *(grabber_process(path, camera) for camera, section in config.cameras.items() if section.source)]


# ---------------------------------------------------------------------------------- the components

def daemon_component(config: Config, stop: threading.Event) -> dict[str, Any]:
    """The daemon: engine + profiles, serving until ``stop``; returns its summary."""
    from inspector.line.serve import run_daemon

    return run_daemon(config, stop)


def gateway_component(config: Config, name: str, stop: threading.Event) -> dict[str, Any]:
    """Gateway ``name``: the daemon's verdicts -> its PLC (or, by its kind, the MQTT broker or
    an OPC UA server) until ``stop``; returns its stats."""
    kind = config.gateways[name].kind if name in config.gateways else "plc"
    if kind == "mqtt":
        from inspector.plant.mqtt_gateway import run_mqtt_gateway

        return run_mqtt_gateway(config, name, stop)
    if kind == "opcua":
        from inspector.plant.opcua_server import run_opcua_gateway

        return run_opcua_gateway(config, name, stop)
    from inspector.plc.gateway import run_gateway, settings_from_config

    return run_gateway(settings_from_config(config, name), stop)


def grabber_component(config: Config, camera: str, stop: threading.Event) -> dict[str, Any]:
    """Camera ``camera``'s grabber: its source -> the daemon until the source ends or ``stop``."""
    from inspector.line.grabber import grabber_settings, run_grabber

    return run_grabber(**grabber_settings(config, camera), stop_event=stop)


def archive_component(config: Config, stop: threading.Event) -> dict[str, Any]:
    """The reject archive: the daemon's tap and verdicts -> ``[archive] path`` until ``stop``; its summary."""
    from inspector.station.archiver import run_archiver

    return run_archiver(config, stop)


def ui_component(config: Config, stop: threading.Event) -> dict[str, Any]:
    """The operator page on ``[ui] listen`` until ``stop``; its summary."""
    from inspector.station.ui import run_ui

    return run_ui(config, stop)


# ---------------------------------------------------------------------------------- `inspector line`

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="box config, e.g. inspector.toml (docs/daemon.md)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check-config", action="store_true",
                        help="validate the whole file (schema, cross-references, engine, profiles); exit 0 / 2")
    action.add_argument("--systemd", type=Path, metavar="DIR",
                        help="write one systemd unit per process and inspector-line.target into DIR")
    parser.add_argument("--grace", type=float, default=None,
                        help="seconds a process gets after SIGTERM before it is killed "
                             "(default: the daemon's drain_ms + linger_ms + 5 s)")


def run(args: argparse.Namespace) -> int:
    config = command_config(args.config, check_only=args.check_config)
    if isinstance(config, int):
        return config
    specs = layout(config, args.config)
    if args.systemd is not None:
        from inspector.line.systemd import write_units

        for path in write_units(specs, args.systemd, working_dir=Path.cwd()):
            print(path)
        return 0
    grace = args.grace if args.grace is not None else \
        (config.daemon.drain_ms + config.daemon.linger_ms) / 1000.0 + SUPERVISOR_GRACE_MARGIN_S
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    Supervisor(specs, grace_s=grace).run(stop)
    return 0
