"""`inspector serve`: open the engine, warm it up, run the daemon (:mod:`inspector.line.daemon`)
until SIGTERM, print its summary.

``run_daemon(config, stop_event)`` does the same in-process (tests, the validation harness). The
command reads a daemon config (docs/daemon.md) or the daemon's part of a box config
(``inspector.toml``, :mod:`inspector.line.box`). Exit status: 0 after a clean stop, 2 when the
config is unusable or the daemon cannot start.

Never imports torch (unless the config asks for the reference ``torch`` backend, and then only
inside the engine module).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from inspector.engine import Engine, open_engine
from inspector.core.signing import SignatureError
from inspector.line.config import Config, command_config, load_config, trusted_keys
from inspector.line.daemon import Daemon, StartupError
from inspector.line.logs import configure_logging
from inspector.line.transport import LinkError

log = logging.getLogger("inspector.daemon")


def open_configured_engine(config: Config) -> Engine:
    """Open the configured engine. onnxruntime gets ``threads`` (0 = all cores) and ``max_batch``;
    the other backends ``max_batch``; onnxruntime and tensorrt verify the manifest's signature
    against ``[trust] keys``. Raises StartupError."""
    kwargs: dict[str, Any] = {"max_batch": config.engine.max_batch}
    if config.engine.backend == "onnxruntime":
        kwargs["threads"] = config.engine.threads or None
    if config.engine.backend != "torch":   # torch: the checkpoint's identity is what the signed profiles name
        try:
            kwargs["trusted"] = trusted_keys(config)
        except SignatureError as exc:
            raise StartupError(str(exc)) from None
    try:
        return open_engine(config.engine.backend, config.engine.path, **kwargs)
    except Exception as exc:  # EngineError, missing runtime, bad file...
        raise StartupError(f"cannot open the {config.engine.backend} engine {config.engine.path}: {exc}") from exc


def warm_up(engine: Engine, max_batch: int, want_maps: bool = True) -> float:
    """Run the engine twice on black images (first call: lazy initialisation) and return the
    seconds of a full ``max_batch`` batch (with maps by default: the slower path), the first
    engine-time estimate. Proves the engine runs before READY. Raises StartupError."""
    h, w = engine.image_size
    image = np.zeros((h, w, 3), np.uint8)
    try:
        engine.infer([image], ["bgr8"], want_maps=want_maps)
        started = time.perf_counter()
        result = engine.infer([image] * max_batch, ["bgr8"] * max_batch, want_maps=want_maps)
        elapsed = time.perf_counter() - started
    except Exception as exc:
        raise StartupError(f"engine warm-up failed: {exc}") from exc
    if np.asarray(result.scores).shape != (max_batch,):
        raise StartupError(f"engine warm-up returned scores of shape {np.asarray(result.scores).shape}, expected ({max_batch},)")
    return elapsed


def engine_start_problems(config: Config) -> list[str]:
    """What ``inspector serve`` would hit opening and warming up the engine (a manifest that does
    not fit its graph, e.g. an edited stride, fails here and not only at start)."""
    try:
        engine = open_configured_engine(config)
    except StartupError as exc:
        return [f"{config.source} [engine] path: {exc}"]
    try:
        warm_up(engine, config.engine.max_batch, want_maps=True)
    except StartupError as exc:
        return [f"{config.source} [engine] path: {exc}"]
    finally:
        engine.close()
    return []


def run_daemon(config: Config | str | Path, stop_event: threading.Event | None = None, *,
               reload_event: threading.Event | None = None, context: zmq.Context | None = None) -> dict[str, Any]:
    """Load the engine and the profiles, serve until ``stop_event`` is set, drain, return the
    summary counts. ``config``: a Config or the path of a TOML file. Raises ConfigError /
    StartupError when it cannot start."""
    if not isinstance(config, Config):
        config = load_config(config)
    stop_event = stop_event or threading.Event()
    engine = open_configured_engine(config)
    try:
        log.info("engine loaded", extra={"backend": engine.backend, "path": config.engine.path,
                                         "engine_sha256": engine.manifest.get("engine_sha256"),
                                         "image_size": list(engine.image_size)})
        estimate = warm_up(engine, config.engine.max_batch, want_maps=True)
        log.info("engine warmed up: %.1f ms per batch of %d", estimate * 1e3, config.engine.max_batch)
        daemon = Daemon(config, engine, stop_event=stop_event, reload_event=reload_event, context=context,
                        engine_estimate_s=estimate)
        return daemon.serve()
    finally:
        engine.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="TOML configuration file (see docs/daemon.md)")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration (schema, engine, profiles vs engine), print every problem, exit 0/2")


def run(args: argparse.Namespace) -> int:
    config = command_config(args.config, check_only=args.check_config)
    if isinstance(config, int):
        return config
    configure_logging(config.daemon.log_format, getattr(args, "verbose", False))
    stop, reload = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    try:
        summary = run_daemon(config, stop, reload_event=reload)
    except (StartupError, LinkError) as exc:   # LinkError: a port in use, an unusable key file
        log.error("cannot start: %s", exc)
        return 2
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0
