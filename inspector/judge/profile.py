"""Calibration profiles: the thresholds a daemon judges with, tied to the engine they came from.

A profile is one JSON file (``calibration/NAME.json``) written by ``inspector calibrate`` and read
by the daemon. No torch and no numpy here: the daemon imports this module.

Required content (validated strictly by :func:`load_profile`)::

    format          "inspector.calibration/1"
    camera          camera id (string) or null = any camera
    engine          sha256 (64 hex: the engine file's manifest["engine_sha256"]; for the torch
                    backend the checkpoint's sha256), backend, precision, image_size [h, w]
    thresholds      image (finite number): reject when score >= image;
                    pixel (finite number or null) and min_defect_area (int >= 1 or null), both set
                    or both null: reject when the largest 8-connected region with map >= pixel has
                    area >= min_defect_area

Optional but type-checked when present: ``target_frr`` (in (0, 1)), ``n_good`` (int >= 1).
``signature``: the Ed25519 signature of everything else by the site key that calibrated it
(:mod:`inspector.core.signing`, ``inspector calibrate --sign-key``); a loader given trusted keys
(the daemon, ``--check-config``, SIGHUP) refuses an unsigned, foreign-signed or altered profile:
a threshold or an ``engine.sha256`` edited by hand is refused.
Everything else (method, params, score statistics, FRR estimate, hold-out and separation results,
versions, command line) is a record for people and is kept verbatim in ``CalibrationProfile.raw``.

Fail closed: any problem raises :class:`ProfileError` naming the file; a profile that does not
match the engine in use (other engine hash, image size, backend, precision, camera, inspection or
ROI) is refused by :func:`check_profile_matches`. Profiles are made in one place,
:func:`new_profile` (with :func:`engine_block`), and written by :func:`save_profile`, which
validates before writing and writes atomically (temp file + fsync + rename), so a daemon reloading on SIGHUP never reads half a file.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.signing import SignatureError, SigningKey, TrustedKeys, digest

FORMAT = "inspector.calibration/1"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ProfileError(ValueError):
    """A calibration profile is missing, malformed, or does not match the engine / camera in use."""


@dataclass(frozen=True)
class CalibrationProfile:
    """A validated calibration profile (see the module docstring for the rules it encodes)."""

    camera: str | None            # None = any camera
    engine_sha256: str            # manifest["engine_sha256"]; torch backend: the checkpoint's sha256
    backend: str
    precision: str
    image_size: tuple[int, int]   # (h, w)
    image_threshold: float        # reject when score >= image_threshold
    pixel_threshold: float | None  # region rule pixel level (None: no region rule)
    min_defect_area: int | None   # region rule area in pixels (None: no region rule)
    raw: dict = field(repr=False, compare=False)  # the whole JSON
    path: Path | None = field(default=None, compare=False)  # where it was loaded from, if anywhere
    key_id: str = field(default="", compare=False)  # the trusted key that signed it ("" = not verified)

    @property
    def sha256(self) -> str:
        """The identity of the profile's content (core.signing.digest: canonical JSON, signature excluded)."""
        return digest(self.raw)

    @property
    def has_region_rule(self) -> bool:
        return self.pixel_threshold is not None and self.min_defect_area is not None

    @property
    def target_frr(self) -> float | None:
        value = self.raw.get("target_frr")
        return None if value is None else float(value)


# --------------------------------------------------------------------------------------------
# field validation (all raise ProfileError with a dotted field name)
# --------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(data: dict, key: str, where: str) -> Any:
    if key not in data:
        raise ProfileError(f"missing field '{where}{key}'")
    return data[key]


def _dict_field(data: dict, key: str, where: str = "") -> dict:
    value = _require(data, key, where)
    if not isinstance(value, dict):
        raise ProfileError(f"'{where}{key}' must be an object, got {type(value).__name__}")
    return value


def _str_field(data: dict, key: str, where: str = "") -> str:
    value = _require(data, key, where)
    if not isinstance(value, str) or not value.strip():
        raise ProfileError(f"'{where}{key}' must be a non-empty string, got {value!r}")
    return value


def _finite(value: Any, name: str) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise ProfileError(f"'{name}' must be a finite number, got {value!r}")
    return float(value)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProfileError(f"'{name}' must be an integer >= 1, got {value!r}")
    return value


def _image_size(value: Any, name: str) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ProfileError(f"'{name}' must be [height, width], got {value!r}")
    return _positive_int(value[0], name + "[0]"), _positive_int(value[1], name + "[1]")


def _camera(data: dict) -> str | None:
    camera = _require(data, "camera", "")
    if camera is None:
        return None
    if not isinstance(camera, str) or not camera.strip():
        raise ProfileError(f"'camera' must be a non-empty string or null, got {camera!r}")
    return camera


def _region_rule(thresholds: dict) -> tuple[float | None, int | None]:
    pixel = _require(thresholds, "pixel", "thresholds.")
    area = _require(thresholds, "min_defect_area", "thresholds.")
    if (pixel is None) != (area is None):
        raise ProfileError("'thresholds.pixel' and 'thresholds.min_defect_area' must both be set or "
                           f"both be null, got {pixel!r} and {area!r}")
    if pixel is None:
        return None, None
    return _finite(pixel, "thresholds.pixel"), _positive_int(area, "thresholds.min_defect_area")


def _optional_checks(data: dict) -> None:
    target = data.get("target_frr")
    if target is not None and not (_is_number(target) and 0.0 < target < 1.0):
        raise ProfileError(f"'target_frr' must be a number in (0, 1), got {target!r}")
    n_good = data.get("n_good")
    if n_good is not None:
        _positive_int(n_good, "n_good")


def profile_from_dict(data: Any, path: str | Path | None = None) -> CalibrationProfile:
    """Validate a profile dict (the parsed JSON) -> CalibrationProfile. Raises ProfileError (the
    message names ``path`` when given)."""
    try:
        if not isinstance(data, dict):
            raise ProfileError(f"a profile must be a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ProfileError(f"not a calibration profile: format {data.get('format')!r}, expected {FORMAT!r}")
        engine = _dict_field(data, "engine")
        thresholds = _dict_field(data, "thresholds")
        sha = _str_field(engine, "sha256", "engine.")
        if not _SHA256.fullmatch(sha):
            raise ProfileError(f"'engine.sha256' must be 64 lowercase hex digits, got {sha!r}")
        pixel, area = _region_rule(thresholds)
        _optional_checks(data)
        return CalibrationProfile(
            camera=_camera(data),
            engine_sha256=sha,
            backend=_str_field(engine, "backend", "engine."),
            precision=_str_field(engine, "precision", "engine."),
            image_size=_image_size(_require(engine, "image_size", "engine."), "engine.image_size"),
            image_threshold=_finite(_require(thresholds, "image", "thresholds."), "thresholds.image"),
            pixel_threshold=pixel,
            min_defect_area=area,
            raw=data,
            path=Path(path) if path is not None else None,
        )
    except ProfileError as exc:
        if path is None:
            raise
        raise ProfileError(f"calibration profile {path}: {exc}") from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in a calibration profile")


def load_profile(path: str | Path, trusted: TrustedKeys | None = None) -> CalibrationProfile:
    """Read and validate a profile file; with ``trusted``, its signature first. Raises ProfileError
    naming the file when it is missing, unreadable, not JSON (NaN / Infinity literals included),
    unsigned / altered / signed by an untrusted key (with ``trusted``), of another format, or has a
    missing or invalid field."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"calibration profile not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text, parse_constant=_reject_constant)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ProfileError(f"calibration profile {path} is not readable JSON: {exc}") from None
    if trusted is None:
        return profile_from_dict(data, path)
    try:
        key = trusted.verify(data, f"calibration profile {path}")
    except SignatureError as exc:
        raise ProfileError(str(exc)) from None
    return replace(profile_from_dict(data, path), key_id=key)


def engine_block(manifest: dict, backend: str, *, engine_file: str | Path | None = None,
                 image_size: tuple[int, int] | list[int] | None = None) -> dict[str, Any]:
    """A profile's ``engine`` block for the engine with ``manifest`` run by ``backend``: its
    identity (:func:`engine_identity`), backend, precision, image size (``image_size``, default the
    manifest's), teacher, model hash, file and inspection (:func:`inspection_identity`). Raises
    ProfileError when the engine cannot be identified."""
    manifest = dict(manifest)
    manifest.setdefault("backend", backend)
    sha = engine_identity(manifest)
    teacher = manifest.get("teacher") or {}
    size = image_size if image_size is not None else manifest.get("image_size")
    if size is None:
        raise ProfileError("the engine's manifest has no image_size")
    return {
        "sha256": sha,
        "backend": backend,
        "precision": manifest.get("precision", "fp32"),
        "image_size": [int(v) for v in size],
        "teacher": {"name": teacher.get("name"), "weights_sha256": teacher.get("weights_sha256")},
        "model_sha256": manifest.get("model_sha256", sha if backend == "torch" else None),
        "file": None if engine_file is None else str(Path(engine_file).resolve()),
        "inspection": inspection_identity(manifest),
    }


def new_profile(engine: dict, thresholds: dict, *, camera: str | None = None, roi: dict | None = None,
                **record: Any) -> dict[str, Any]:
    """The one way a profile is made. ``engine``: :func:`engine_block`. ``thresholds``: ``image``,
    ``pixel``, ``min_defect_area`` (the rules; more keys are kept as a record). ``camera``: None =
    any camera. ``roi``: :meth:`inspector.core.roi.Roi.identity` of the ROI calibrated with (None:
    the whole image). ``record``: everything else (method, statistics, versions...), kept
    verbatim. Returns the validated dict (write it with :func:`save_profile`); raises ProfileError."""
    data = {"format": FORMAT, "camera": camera, "roi": roi, "engine": engine, "thresholds": dict(thresholds),
            **record}
    profile_from_dict(data)
    return data


def save_profile(path: str | Path, data: dict, signing_key: SigningKey | None = None) -> Path:
    """Validate ``data``, sign it with ``signing_key`` (a daemon refuses it unsigned) and write it
    to ``path`` as JSON, atomically (temp file in the same folder, fsync, rename). Creates the
    parent folder. Raises ProfileError for invalid data (nothing is written then) or non-JSON
    values (NaN included); OSError for write failures."""
    path = Path(path)
    profile_from_dict(data, path)
    if signing_key is not None:
        try:
            data = signing_key.sign(data)
        except SignatureError as exc:
            raise ProfileError(f"calibration profile {path}: {exc}") from None
    try:
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"calibration profile {path}: not JSON-serialisable: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------------------------
# matching a profile to the engine in use
# --------------------------------------------------------------------------------------------


def engine_identity(manifest: dict) -> str:
    """The sha256 that identifies an engine, as profiles record it: ``manifest["engine_sha256"]``,
    or for the torch backend's manifest (which has ``model`` = checkpoint path) the checkpoint's
    sha256 (``model_sha256`` when recorded, else computed from the file). Raises ProfileError when
    the engine cannot be identified (fail closed)."""
    sha = manifest.get("engine_sha256")
    if isinstance(sha, str) and sha:
        return sha
    if manifest.get("backend") == "torch":
        if isinstance(manifest.get("model_sha256"), str):
            return manifest["model_sha256"]
        model = manifest.get("model")
        if model and Path(model).is_file():
            from ..core.hashing import sha256_file
            return sha256_file(model)
    raise ProfileError("cannot identify the engine (its manifest has no engine_sha256 and no readable "
                       "model checkpoint); refusing to judge with an unverified calibration")


def inspection_identity(manifest: dict) -> dict:
    """What a score means besides the network: geometry, score rule and good-part statistics hash
    (``manifest["geometry"]`` / ``["head"]``; engines made before these existed give the defaults)."""
    geometry = manifest.get("geometry") or {}
    head = manifest.get("head") or {}
    stats = head.get("stats") or {}
    return {"fit": geometry.get("fit", "squash"), "margin": int(geometry.get("margin", 0)),
            "tile_size": geometry.get("tile_size"), "score": head.get("score") or {"rule": "max"},
            "stats_sha256": stats.get("sha256")}


def check_profile_matches(profile: CalibrationProfile, manifest: dict, *, backend: str | None = None,
                          camera: str | None = None, roi: dict | None = None) -> None:
    """Refuse (ProfileError) a profile made for another engine or camera.

    Checks: engine hash (:func:`engine_identity`), image size, backend (``backend`` argument, else
    ``manifest["backend"]``; skipped when neither names one), precision (when the manifest states
    it), camera (when both the profile and ``camera`` name one; a profile with camera null fits any
    camera), the inspection (:func:`inspection_identity`: geometry, score rule, statistics; a
    profile that predates it fits only an engine with the defaults) and the region of interest
    (``roi``: :meth:`inspector.core.roi.Roi.identity` or None; must equal the profile's ``roi``).
    All mismatches are listed in one message."""
    problems = []
    sha = engine_identity(manifest)
    if sha != profile.engine_sha256:
        problems.append(f"engine sha256 {sha[:12]}... != calibrated {profile.engine_sha256[:12]}...")
    size = manifest.get("image_size")
    if size is None or [int(v) for v in size] != list(profile.image_size):
        problems.append(f"image size {size} != calibrated {list(profile.image_size)}")
    running_backend = backend or manifest.get("backend")
    if running_backend is not None and running_backend != profile.backend:
        problems.append(f"backend {running_backend!r} != calibrated {profile.backend!r}")
    precision = manifest.get("precision")
    if precision is not None and precision != profile.precision:
        problems.append(f"precision {precision!r} != calibrated {profile.precision!r}")
    if profile.camera is not None and camera is not None and camera != profile.camera:
        problems.append(f"camera {camera!r} != calibrated {profile.camera!r}")
    engine_block = profile.raw.get("engine") if isinstance(profile.raw.get("engine"), dict) else {}
    expected = inspection_identity(manifest)
    recorded = engine_block.get("inspection", inspection_identity({}))
    if recorded != expected:
        problems.append(f"inspection {recorded} != the engine's {expected} (geometry, score rule or "
                        "good-part statistics changed)")
    if profile.raw.get("roi") != roi:
        calibrated = profile.raw.get("roi")
        problems.append(f"region of interest {roi or 'none (the whole image)'} != calibrated "
                        f"{calibrated or 'none (the whole image)'} (calibrate this camera with the same "
                        f"{'--roi' if roi else 'no --roi'})")
    if problems:
        where = f" {profile.path}" if profile.path else ""
        raise ProfileError(f"calibration profile{where} does not fit: " + "; ".join(problems)
                           + ". Re-run `inspector calibrate` for this engine/camera.")
