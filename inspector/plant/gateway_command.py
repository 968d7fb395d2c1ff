"""What the plant gateway commands share (``inspector mqtt``, ``inspector opcua``): the
``[gateways.NAME]`` section of their kind, the cameras they report, the arguments, and running
until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any, Callable

from inspector.line.config import Config, command_config


def plant_section(config: Config, name: str, kind: str):
    """``[gateways.NAME]`` of ``kind``; ValueError naming what the file has instead."""
    section = config.gateways.get(name)
    if section is None:
        raise ValueError(f"{config.source}: no [gateways.{name}] section (have: {sorted(config.gateways)})")
    if section.kind != kind:
        raise ValueError(f"{config.source}: [gateways.{name}] is kind {section.kind!r}, not {kind!r}")
    return section


def box_cameras(config: Config, section) -> tuple[str, ...]:
    """The cameras a plant gateway reports: its own list, or every daemon camera."""
    return tuple(section.cameras or config.cameras)


def add_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("--config", required=True, type=Path, help="box config (inspector.toml)")
    parser.add_argument("--gateway", required=True, metavar="NAME", help=f"its [gateways.NAME] section, kind = \"{kind}\"")


def run(args: argparse.Namespace, runner: Callable[[Config, str, threading.Event], Any]) -> int:
    """Load the config (exit 2 with every problem printed), run ``runner(config, name, stop)``
    until SIGTERM / SIGINT sets ``stop``."""
    config = command_config(args.config)
    if isinstance(config, int):
        return config
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    runner(config, args.gateway, stop)
    return 0
