"""`inspector validate`: run a labelled recording through the real daemon path and report.

    inspector validate --recording FILE (--engine FILE [--calibration FILE] [--backend B] | --config FILE)
                       [--config FILE2 | --config2 FILE2 | --calibration2 FILE2 | --engine2 FILE2]
                       [--json FILE] [--report DIR] [--speed X | --max] [--deadline-ms D]
                       [--timeout S] [--start-timeout S] [--allow-truncated]

For each configuration (A, and B when a second one is given) this module

1. writes a daemon config into a temporary folder: the given config's engine, batching, defaults,
   per-camera profiles and overload settings, or one generated from ``--engine`` +
   ``--calibration``; the sockets are always fresh TCP ports on 127.0.0.1 (tap and health off), so
   a validation never collides with a daemon running on the line; checks it like
   ``serve --check-config`` (engine hash, every profile against the engine) and fails with the
   problems before starting anything;
2. starts ``inspector serve`` as a subprocess, SUBscribes to its verdict PUB and waits (bounded)
   for a heartbeat with ``ready = true``;
3. replays the recording into the daemon's frame endpoint with :func:`inspector.recordings.replay.replay`
   in-process, credit-based (at most a batch plus a waiting batch of frames without a verdict, so
   frames never wait on the replay's haste: the verdicts measure the model, not the replay), as
   fast as that allows by default or at most at ``speed`` x the recorded timing, and collects
   verdicts until every replayed frame has one, or ``timeout_s`` after the last frame was sent, or
   the daemon died;
4. sends SIGTERM, keeps collecting while the daemon drains (verdicts it publishes then still
   count), and reads its summary.

Frames are matched to verdicts by (camera_id, seq), in recording order for repeated keys.
``sequence_gap`` verdicts (a recording with holes in ``seq``) are counted apart, never matched to a
frame. A frame without a verdict is ``missing`` and makes the exit status 1; so does a truncated
recording (``complete: false``; ``--allow-truncated`` accepts the frames before the cut).

Modules: :mod:`~inspector.recordings.validation_setup` (the frames, the configurations and their
TOML), :mod:`~inspector.recordings.validation_run` (one run: the daemon process, replay,
matching), :mod:`~inspector.recordings.validation_metrics` and
:mod:`~inspector.recordings.validation_report`; this one is the API and the command.

The metrics (:func:`summarise`) are pure functions of the recording's frames and the verdicts;
see docs/recordings.md ("Validation") for every key. No torch here (unless a config asks the
daemon for the torch backend, and then only in the daemon process).
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any


from inspector.line.config import ConfigError
from inspector.recordings.recording import RecordingError

from inspector.recordings.validation_metrics import changed_frames, frame_record, run_result, summarise  # noqa: F401
from inspector.recordings.validation_report import format_markdown, format_table, plot_scores, write_json, write_report  # noqa: F401
from inspector.recordings.validation_run import RunOutcome, _Collector, run_once  # noqa: F401
from inspector.recordings.validation_setup import (DEFAULT_START_TIMEOUT_S, DEFAULT_TIMEOUT_S, FORMAT,  # noqa: F401
                                                  ExpectedFrame, RunSpec, ValidationError, dump_toml, label_class,
                                                  read_frames, spec_from_config_file, spec_from_engine, spec_variant)

__all__ = ["ExpectedFrame", "FORMAT", "RunOutcome", "RunSpec", "ValidationError", "add_arguments", "changed_frames",
           "dump_toml", "exit_status", "format_markdown", "format_table", "frame_record", "label_class", "plot_scores",
           "read_frames", "run", "run_once", "run_result", "spec_from_config_file", "spec_from_engine", "spec_variant",
           "specs_from_args", "summarise", "validate", "validate_runs", "write_json", "write_report", "_Collector"]

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------


def _as_spec(config: str | Path | RunSpec | dict[str, Any]) -> RunSpec:
    if isinstance(config, RunSpec):
        return config
    if isinstance(config, dict):
        return RunSpec(config, "config (dict)")
    return spec_from_config_file(config)


def validate_runs(recording: str | Path, specs: list[RunSpec], *, speed: float | None = None, max_rate: bool = True,
                  deadline_ms: float | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                  start_timeout_s: float = DEFAULT_START_TIMEOUT_S, log_dir: str | Path | None = None,
                  allow_truncated: bool = False) -> dict[str, Any]:
    """Validate ``recording`` with one (A) or two (A, B) configurations, one after the other.

    Returns run A's result at the top level (see :func:`summarise` and :func:`run_result`) plus
    ``format``, ``recording`` and ``complete`` (every frame of every run has a verdict, the
    replays ran through, no run timed out, no daemon died, and the recording is not truncated
    unless ``allow_truncated``: a cut recording lacks frames, which is never a complete result);
    with B also ``b`` (B's result,
    same keys) and ``changed`` (see :func:`changed_frames`) with ``n_changed``. ``log_dir``: keep the daemons' logs there
    (``daemon-A.log``...). Raises RecordingError (bad recording), ValidationError / ConfigError
    (unusable configuration, daemon did not start), ValueError (bad arguments)."""
    if not 1 <= len(specs) <= 2:
        raise ValueError(f"validate one or two configurations, got {len(specs)}")
    if not max_rate and speed is not None and not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed!r}")
    if not timeout_s > 0 or not start_timeout_s > 0:
        raise ValueError("timeouts must be > 0")
    frames, description = read_frames(recording)
    results = []
    with tempfile.TemporaryDirectory(prefix="inspector-validate-") as tmp:
        for name, spec in zip("AB", specs):
            outcome = run_once(recording, frames, spec, name=name, workdir=Path(tmp), speed=speed, max_rate=max_rate,
                               deadline_ms=deadline_ms, timeout_s=timeout_s, start_timeout_s=start_timeout_s)
            outcome.daemon_log = _keep_log(Path(outcome.daemon_log), log_dir)
            results.append(run_result(frames, outcome, spec, name))
    result = {"format": FORMAT, "recording": description, **results[0]}
    if len(results) == 2:
        result["b"] = results[1]
        result["changed"] = changed_frames(results[0], results[1])
        result["n_changed"] = len(result["changed"])
    result["complete"] = all(r["missing"] == 0 and not (r["replay_error"] or r["timed_out"] or r["daemon_died"])
                             for r in results) and (allow_truncated or not description["truncated"])
    if description["truncated"]:
        log.error("%s is truncated (%s): the frames after the cut are not validated%s", recording,
                  description["truncation"], "" if allow_truncated else "; complete = false")
    return result


def _keep_log(path: Path, log_dir: str | Path | None) -> str:
    if log_dir is None:
        return ""
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    kept = Path(log_dir) / path.name
    try:
        shutil.copyfile(path, kept)
    except OSError as exc:
        log.warning("could not keep the daemon log %s: %s", path, exc)
        return ""
    return str(kept)


def validate(recording: str | Path, config_path: str | Path | RunSpec | dict[str, Any], *, speed: float | None = None,
             max_rate: bool = True, timeout_s: float = DEFAULT_TIMEOUT_S, deadline_ms: float | None = None,
             start_timeout_s: float = DEFAULT_START_TIMEOUT_S, log_dir: str | Path | None = None,
             allow_truncated: bool = False) -> dict[str, Any]:
    """Validate ``recording`` with one configuration: a daemon config file (its sockets are
    replaced by free loopback ports), a config dict, or a RunSpec (:func:`spec_from_engine`).
    ``speed``: replay at that multiple of the recorded timing (default: as fast as the daemon takes
    frames). ``deadline_ms``: override every frame's deadline (capture + D ms). ``timeout_s``:
    longest wait for verdicts after the last frame was sent. See :func:`validate_runs`."""
    return validate_runs(recording, [_as_spec(config_path)], speed=speed, max_rate=max_rate and speed is None,
                         deadline_ms=deadline_ms, timeout_s=timeout_s, start_timeout_s=start_timeout_s, log_dir=log_dir,
                         allow_truncated=allow_truncated)


def exit_status(result: dict[str, Any]) -> int:
    """0 when every frame of every run got a verdict in time (no timeout, no replay failure, no
    daemon death) and the recording was whole (or truncation allowed), 1 otherwise."""
    return 0 if result.get("complete") else 1


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", required=True, metavar="FILE", help="labelled MCAP recording (inspector record)")
    parser.add_argument("--engine", metavar="FILE", help="engine to validate (a config is generated; see docs/recordings.md)")
    parser.add_argument("--calibration", metavar="FILE", help="calibration profile for --engine (without it: scores only)")
    parser.add_argument("--backend", help="backend for --engine (default onnxruntime)")
    parser.add_argument("--trusted-keys", action="append", metavar="PATH",
                        help="--engine: public keys engine and profiles must be signed by (default $INSPECTOR_TRUSTED_KEYS)")
    parser.add_argument("--config", action="append", metavar="FILE",
                        help="daemon config (sockets are replaced by free loopback ports); give it twice for A/B")
    second = parser.add_argument_group("second configuration (A/B)")
    second.add_argument("--config2", metavar="FILE", help="config B")
    second.add_argument("--calibration2", metavar="FILE", help="B = A with this profile for every camera")
    second.add_argument("--engine2", metavar="FILE", help="B = A with this engine (usually with --calibration2)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--report", metavar="DIR", help="write validation.json, report.md, scores.png and daemon logs")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=_positive_float, help="replay at X times the recorded timing")
    pace.add_argument("--max", action="store_true", help="replay as fast as the daemon judges frames (default; "
                      "credit-based: at most a batch plus a waiting batch without a verdict)")
    parser.add_argument("--allow-truncated", action="store_true",
                        help="a truncated recording may still be complete (its frames before the cut); exit 0")
    parser.add_argument("--deadline-ms", type=_positive_float, metavar="D",
                        help="deadline of every frame = replayed capture + D ms (default: the recorded deadlines)")
    parser.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help=f"longest wait for verdicts after the last frame was sent (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--start-timeout", type=_positive_float, default=DEFAULT_START_TIMEOUT_S, metavar="S",
                        help=f"longest wait for the daemon to be ready (default {DEFAULT_START_TIMEOUT_S:g})")


def specs_from_args(args: argparse.Namespace) -> list[RunSpec]:
    """Run A (and B) from the command line. Raises ValidationError for contradictory options."""
    configs = list(args.config or [])
    if bool(args.engine) == bool(configs):
        raise ValidationError("give either --engine (with --calibration) or --config")
    if len(configs) > 2 or (len(configs) == 2 and args.config2):
        raise ValidationError("at most two configurations (A and B)")
    if (args.calibration or args.backend) and not args.engine:
        raise ValidationError("--calibration and --backend go with --engine; a --config names its own")
    b_options = [name for name, value in (("a second --config", configs[1:] or args.config2),
                                          ("--calibration2", args.calibration2), ("--engine2", args.engine2)) if value]
    if len(b_options) > 1 and not (set(b_options) == {"--calibration2", "--engine2"}):
        raise ValidationError(f"{' and '.join(b_options)}: give config B either as a config or as changes to A")
    try:
        if args.engine:
            a = spec_from_engine(args.engine, args.calibration, backend=args.backend or "onnxruntime",
                                 trusted_keys=args.trusted_keys)
        else:
            a = spec_from_config_file(configs[0])
        b_config = configs[1] if len(configs) == 2 else args.config2
        if b_config:
            return [a, spec_from_config_file(b_config)]
    except ConfigError as exc:
        raise ValidationError(str(exc)) from None
    if args.calibration2 or args.engine2:
        return [a, spec_variant(a, engine=args.engine2, calibration=args.calibration2)]
    return [a]


def run(args: argparse.Namespace) -> int:
    specs = specs_from_args(args)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # the finally blocks stop the daemon
    try:
        result = validate_runs(args.recording, specs, speed=args.speed, max_rate=args.speed is None,
                               deadline_ms=args.deadline_ms, timeout_s=args.timeout, start_timeout_s=args.start_timeout,
                               log_dir=args.report, allow_truncated=args.allow_truncated)
    except RecordingError as exc:
        raise ValidationError(f"unusable recording: {exc}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
    if args.report:
        paths = write_report(result, args.report)
        print(f"\nreport: {paths['markdown']}")
    return exit_status(result)


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
