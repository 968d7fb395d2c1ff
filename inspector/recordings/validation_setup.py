"""Validation set-up: what the recording holds (the frames expected back) and the daemon
configurations a validation runs (:class:`RunSpec`, a generated TOML config with fresh loopback
ports). Part of `inspector validate` (:mod:`inspector.recordings.validate`)."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from inspector.core.ports import free_ports
from inspector.line.config import config_from_dict, engine_manifest, load_config
from inspector.recordings.recording import open_recording

log = logging.getLogger(__name__)


FORMAT = "inspector.validation/1"
DEFAULT_DEADLINE_MS = 5000.0     # generated configs: deadline of frames that carry none
DEFAULT_TIMEOUT_S = 60.0         # longest wait for verdicts after the last frame was sent
DEFAULT_START_TIMEOUT_S = 120.0  # longest wait for the daemon's first ready heartbeat
GENERATED_MAX_QUEUE = 4096       # generated configs: frames waiting for the engine before overload drops
HEARTBEAT_MS = 100               # heartbeat period of validation daemons (readiness is seen fast)
SCORES_ONLY_THRESHOLD = 1e30     # --engine without --calibration: a threshold no score reaches
STOP_GRACE_S = 15.0              # after drain_ms + linger_ms: how long SIGTERM may take before SIGKILL
POLL_MS = 50
REPLAY_SEND_TIMEOUT_S = 10.0     # a frame the daemon does not take within this long fails the replay
REPLAY_ERROR_WAIT_S = 2.0        # a replay that failed: how long to wait for verdicts of what it sent
BIND_ATTEMPTS = 3                # fresh ports when a daemon could not bind (a port taken meanwhile)
MAX_REPORT_ROWS = 200            # changed frames listed in report.md / on stdout (all are in the JSON)
GOOD_LABEL = "good"


class ValidationError(RuntimeError):
    """Validation could not run: bad arguments, an unusable config, a daemon that did not start."""


# ------------------------------------------------------------------------------------------------
# The recording's frames
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedFrame:
    """One frame of the recording, in file order (``index`` 0..n-1): who it is and its label."""

    index: int
    camera_id: str
    seq: int
    part_id: str
    label: str | None
    source: str | None

    @property
    def key(self) -> tuple[str, int]:
        return self.camera_id, self.seq

    @property
    def label_class(self) -> str:
        return label_class(self.label)


def label_class(label: str | None) -> str:
    """"good" for label "good", "unlabelled" for no label (None or ""), else "defect"."""
    if not label:
        return "unlabelled"
    return "good" if label == GOOD_LABEL else "defect"


def read_frames(recording: str | Path) -> tuple[list[ExpectedFrame], dict[str, Any]]:
    """Every frame of ``recording`` (headers checked, images not decoded) and a description of the
    recording (path, n_frames, cameras, labels, truncated, truncation). A truncated file yields
    the frames before the cut. Raises RecordingError for a missing, foreign or damaged file and
    ValidationError when it holds no frame."""
    rec = open_recording(recording)
    frames: list[ExpectedFrame] = []
    for f in rec.iter_frames(decode_images=False):
        h = f.header
        frames.append(ExpectedFrame(len(frames), h.camera_id, h.seq, h.part_id, h.label, h.source))
    truncation = rec.info()["truncation"] if rec.truncated else ""
    if not frames:
        raise ValidationError(f"{recording}: the recording holds no (complete) frame to validate")
    description = {
        "path": str(recording),
        "n_frames": len(frames),
        "cameras": dict(sorted(Counter(f.camera_id for f in frames).items())),
        "labels": dict(sorted(Counter(f.label or "(none)" for f in frames).items())),
        "truncated": rec.truncated,
        "truncation": truncation,
    }
    return frames, description


# ------------------------------------------------------------------------------------------------
# Daemon configurations
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """What one validation run judges with. ``config``: a daemon config as a dict (absolute paths;
    the sockets are replaced for the run). ``scores_only``: the profile is a placeholder that
    rejects nothing (``--engine`` without ``--calibration``): decisions and rates mean nothing,
    scores and AUROC do. ``description``: for reports."""

    config: dict[str, Any]
    description: str
    scores_only: bool = False


def free_tcp_endpoints(count: int, host: str = "127.0.0.1") -> list[str]:
    """``count`` distinct ``tcp://HOST:PORT`` endpoints on ports that were free a moment ago."""
    return [f"tcp://{host}:{port}" for port in free_ports(count, host)]


def spec_from_config_file(path: str | Path) -> RunSpec:
    """The config at ``path`` (schema-checked, relative paths resolved) as a RunSpec. Raises
    ConfigError."""
    config = load_config(path)
    return RunSpec(config.model_dump(), f"config {path}")


def spec_from_engine(engine: str | Path, calibration: str | Path | None = None, *, backend: str = "onnxruntime",
                     deadline_ms: float = DEFAULT_DEADLINE_MS, trusted_keys: list[str] | None = None) -> RunSpec:
    """A generated config for ``engine`` judged with ``calibration`` as the default profile (every
    camera). Without a calibration the run is scores-only (see RunSpec); the placeholder profile is
    written when the run starts. ``deadline_ms``: deadline of frames that carry none.
    ``trusted_keys``: the public keys engine and profile must be signed by (default
    ``$INSPECTOR_TRUSTED_KEYS``; none is a ValidationError: nothing runs unverified)."""
    from inspector.core.signing import TRUSTED_KEYS_ENV, trust_paths

    keys = [str(Path(p).resolve()) for p in trust_paths(trusted_keys)]
    if not keys:
        raise ValidationError(f"validate verifies the engine and its profile: pass --trusted-keys PATH (or set "
                              f"{TRUSTED_KEYS_ENV}) naming the site's public key(s) (docs/security.md)")
    engine = Path(engine).resolve()
    config = {
        "daemon": {"id": "inspector-validate", "frames": "tcp://127.0.0.1:1", "verdicts": "tcp://127.0.0.1:2"},
        "engine": {"path": str(engine), "backend": backend},
        "defaults": {"deadline_ms": float(deadline_ms),
                     "calibration": str(Path(calibration).resolve()) if calibration else ""},
        "overload": {"max_queue": GENERATED_MAX_QUEUE},
        "trust": {"keys": keys},
    }
    what = f"engine {engine.name} ({backend})" + (f" + calibration {Path(calibration).name}" if calibration
                                                   else " without calibration (scores only)")
    return RunSpec(config, what, scores_only=calibration is None)


def spec_variant(base: RunSpec, *, engine: str | Path | None = None, calibration: str | Path | None = None) -> RunSpec:
    """``base`` with another engine file and/or every profile (default and per camera) replaced by
    ``calibration``. A scores-only base given a calibration becomes a calibrated run."""
    config = json.loads(json.dumps(base.config))
    parts = []
    if engine is not None:
        config["engine"]["path"] = str(Path(engine).resolve())
        parts.append(f"engine {Path(engine).name}")
    scores_only = base.scores_only
    if calibration is not None:
        path = str(Path(calibration).resolve())
        config.setdefault("defaults", {})["calibration"] = path
        for section in config.get("cameras", {}).values():
            section["calibration"] = path
        parts.append(f"calibration {Path(calibration).name}")
        scores_only = False
    return RunSpec(config, f"A with {' and '.join(parts)}", scores_only=scores_only)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} to TOML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write a {type(value).__name__} to the daemon config")


NAMED_SECTIONS = ("cameras", "gateways")   # tables of named tables: [cameras.ID], [gateways.NAME]


def _table(header: str, body: dict[str, Any]) -> list[str]:
    """``[header]`` and its keys; None values are left out (TOML has no null: unset = default)."""
    return [f"[{header}]", *(f"{key} = {_toml_value(value)}" for key, value in body.items() if value is not None), ""]


def dump_toml(config: dict[str, Any]) -> str:
    """A config dict (sections of scalars and lists; ``cameras`` and ``gateways`` of named
    sections) as TOML text."""
    lines: list[str] = []
    for name, body in config.items():
        if name not in NAMED_SECTIONS and body is not None:   # an optional section that is not set
            lines += _table(name, body)
    for name in NAMED_SECTIONS:
        for key, body in config.get(name, {}).items():
            lines += _table(f"{name}.{json.dumps(key)}", body)
    return "\n".join(lines)


def _scores_only_profile(config: dict[str, Any], out: Path) -> Path:
    """Write a profile for the configured engine (its signature verified first) whose threshold
    no score reaches, signed by a key made for this run only, whose public half the run's
    ``[trust]`` lists (it signs nothing else, and its private half never touches the disk)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from inspector.core.signing import SigningKey
    from inspector.judge.profile import engine_block, new_profile, save_profile

    manifest = engine_manifest(config_from_dict(config))
    backend = config["engine"].get("backend", "onnxruntime")
    data = new_profile(engine_block(manifest, backend),
                       {"image": SCORES_ONLY_THRESHOLD, "pixel": None, "min_defect_area": None},
                       note="written by inspector validate: scores only, rejects nothing")
    key = SigningKey(Ed25519PrivateKey.generate(), "inspector-validate-scores-only")
    public = out.with_suffix(".pub")
    public.write_bytes(key.public_pem())
    config["trust"] = {"keys": [*(config.get("trust") or {}).get("keys", []), str(public)]}
    return save_profile(out, data, signing_key=key)


def _run_config(spec: RunSpec, name: str, workdir: Path) -> dict[str, Any]:
    """The config a run's daemon gets: ``spec.config`` with fresh loopback sockets, no tap, no
    health server, fast heartbeats (and the placeholder profile when scores-only); a box
    config's gateways and ``[curve]`` are left out (a validation runs the daemon alone, on
    loopback); its ``[trust]`` stays: the daemon verifies engine and profiles as on the line."""
    config = json.loads(json.dumps(spec.config))
    config.pop("gateways", None)
    config.pop("curve", None)   # fresh loopback ports, the daemon alone: no link leaves the machine
    daemon = config.setdefault("daemon", {})
    frames, verdicts = free_tcp_endpoints(2)   # distinct: the config refuses equal endpoints
    daemon.update({"id": f"inspector-validate-{name}", "frames": frames, "verdicts": verdicts,
                   "tap": "", "health": "", "heartbeat_ms": HEARTBEAT_MS, "log_format": "json"})
    if spec.scores_only:
        placeholder = _scores_only_profile(config, workdir / f"{name}-scores-only.json")
        config.setdefault("defaults", {})["calibration"] = str(placeholder)
    return config
