"""Which calibration profile judges which camera: the daemon's per-camera profile table.

:func:`load_thresholds` loads every profile the config names, verifies its signature against the
config's trusted keys (``[trust] keys``, docs/security.md) and checks it against the running
engine (:func:`inspector.judge.profile.check_profile_matches`: engine hash, image size, backend,
precision, camera, ROI). A profile that fails is a problem (logged; the camera's frames get FAULT
``no_calibration``), never a crash; on a reload it keeps the previous table's entry.

:func:`audit_thresholds` makes every change of a camera's thresholds an audit event: logged as
JSON on the ``inspector.audit`` logger (camera, old and new thresholds, profile and engine hashes,
signing key, time) and kept in the daemon's metrics (the thresholds in force, a change counter and
the time of the last change per camera).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.core.roi import Roi, RoiError
from inspector.core.signing import SignatureError, TrustedKeys
from inspector.judge.profile import CalibrationProfile, ProfileError, check_profile_matches, load_profile
from inspector.line.config import Config, trusted_keys

audit_log = logging.getLogger("inspector.audit")


@dataclass(frozen=True)
class ThresholdTable:
    """Which profile judges which camera. ``cameras``: cameras with a section of their own (None =
    their profile is unusable: FAULT no_calibration; they never fall back to the default).
    Immutable: a reload builds a new table and swaps the reference."""

    default: CalibrationProfile | None
    cameras: dict[str, CalibrationProfile | None]
    rois: dict[str | None, Roi | None] = field(default_factory=dict)  # camera (None = default) -> ROI

    def for_camera(self, camera: str) -> CalibrationProfile | None:
        if camera in self.cameras:
            return self.cameras[camera]
        return self.default

    def roi_mask(self, camera: str, shape_hw: tuple[int, int]) -> np.ndarray | None:
        """The bool H x W mask of ``camera``'s ROI for an image of ``shape_hw`` (None: the whole
        image). Raises RoiError when the ROI does not fit the image (a mask of another size)."""
        roi = self.rois.get(camera if camera in self.cameras else None)
        return None if roi is None else roi.mask_for(shape_hw)

    @property
    def present(self) -> bool:
        return self.default is not None or any(p is not None for p in self.cameras.values())

    def describe(self) -> dict[str, Any]:
        def one(profile: CalibrationProfile | None) -> Any:
            if profile is None:
                return None
            return {"image": profile.image_threshold, "pixel": profile.pixel_threshold,
                    "min_defect_area": profile.min_defect_area, "path": str(profile.path)}
        return {"default": one(self.default), **{name: one(p) for name, p in self.cameras.items()}}


def _load_one(config: Config, camera: str | None, path: str, manifest: dict, backend: str,
              trusted: TrustedKeys) -> tuple[CalibrationProfile, Roi | None]:
    """One camera's profile and ROI, the profile's signature verified and the profile checked
    against the engine and that ROI. Raises ProfileError / RoiError / OSError."""
    spec = config.roi_for(camera)
    roi = Roi.parse(spec) if spec else None
    profile = load_profile(path, trusted)
    check_profile_matches(profile, manifest, backend=backend, camera=camera,
                          roi=None if roi is None else roi.identity())
    return profile, roi


def load_thresholds(config: Config, manifest: dict, backend: str,
                    previous: ThresholdTable | None = None) -> tuple[ThresholdTable, list[str]]:
    """Load and check every configured profile against the engine and the camera's ROI. A
    profile that fails keeps ``previous``'s entry (None at start). Returns (table, problems), each
    problem ``"[section] key: message"``."""
    problems: list[str] = []
    loaded: dict[str | None, CalibrationProfile | None] = {}
    rois: dict[str | None, Roi | None] = {}
    try:
        trusted = trusted_keys(config)   # read again on every reload: a key added or removed counts at once
    except SignatureError as exc:
        trusted, refusal = None, exc
    for camera, (path, where) in config.profile_paths().items():
        try:
            if trusted is None:
                raise ProfileError(f"calibration profile {path} cannot be verified: {refusal}")
            loaded[camera], rois[camera] = _load_one(config, camera, path, manifest, backend, trusted)
        except (ProfileError, RoiError, OSError) as exc:
            problems.append(f"{where}: {exc}")
            loaded[camera] = None if previous is None else (
                previous.default if camera is None else previous.cameras.get(camera))
            rois[camera] = None if previous is None else previous.rois.get(camera)
    table = ThresholdTable(loaded.get(None), {name: loaded.get(name) for name in config.cameras}, rois)
    return table, problems


def _rules(profile: CalibrationProfile | None) -> dict[str, Any] | None:
    if profile is None:
        return None
    return {"image": profile.image_threshold, "pixel": profile.pixel_threshold,
            "min_defect_area": profile.min_defect_area, "profile_sha256": profile.sha256,
            "engine_sha256": profile.engine_sha256, "key_id": profile.key_id,
            "path": None if profile.path is None else str(profile.path)}


def threshold_changes(old: ThresholdTable | None, new: ThresholdTable) -> list[dict[str, Any]]:
    """One event per camera (``"*"`` = cameras without a section) whose profile content differs
    between ``old`` (None: the daemon starts) and ``new``: camera, old and new (thresholds, profile
    and engine sha256, signing key id, path; None = no usable profile), time (Unix ns)."""
    now = time.time_ns()
    entries = {"*": (None if old is None else old.default, new.default)}
    entries.update({name: (None if old is None else old.cameras.get(name), profile)
                    for name, profile in new.cameras.items()})
    events = []
    for camera, (before, after) in entries.items():
        was, now_rules = _rules(before), _rules(after)
        if old is not None and was == now_rules:
            continue
        events.append({"event": "threshold_change", "camera": camera, "old": was, "new": now_rules, "time_ns": now})
    return events


def audit_thresholds(old: ThresholdTable | None, new: ThresholdTable, metrics) -> list[dict[str, Any]]:
    """Log every :func:`threshold_changes` event on the ``inspector.audit`` logger (WARNING for a
    change while running, INFO at start) and record it in ``metrics`` (a DaemonMetrics: the
    thresholds in force, changes, time of the last change). Returns the events."""
    events = threshold_changes(old, new)
    for event in events:
        level = logging.INFO if old is None else logging.WARNING
        verb = "thresholds in force" if old is None else "thresholds changed"
        audit_log.log(level, "%s for camera %s: %s -> %s", verb, event["camera"],
                      _brief(event["old"]), _brief(event["new"]), extra={"audit": event})
        metrics.record_thresholds(event["camera"], event["new"], event["time_ns"], changed=old is not None)
    return events


def _brief(rules: dict[str, Any] | None) -> str:
    if rules is None:
        return "none"
    return (f"image {rules['image']:.6g}, pixel {rules['pixel']}, area {rules['min_defect_area']} "
            f"(profile {rules['profile_sha256'][:12]}, key {rules['key_id'] or '-'})")
