"""Which calibration profile judges which camera: the daemon's per-camera profile table.

:func:`load_thresholds` loads every profile the config names and checks each against the running
engine (:func:`inspector.judge.profile.check_profile_matches`: engine hash, image size, backend,
precision, camera, ROI). A profile that fails is a problem (logged; the camera's frames get FAULT
``no_calibration``), never a crash; on a reload it keeps the previous table's entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.core.roi import Roi, RoiError
from inspector.judge.profile import CalibrationProfile, ProfileError, check_profile_matches, load_profile
from inspector.line.config import Config


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


def _load_one(config: Config, camera: str | None, path: str, manifest: dict,
              backend: str) -> tuple[CalibrationProfile, Roi | None]:
    """One camera's profile and ROI, the profile checked against the engine and that ROI. Raises
    ProfileError / RoiError / OSError."""
    spec = config.roi_for(camera)
    roi = Roi.parse(spec) if spec else None
    profile = load_profile(path)
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
    for camera, (path, where) in config.profile_paths().items():
        try:
            loaded[camera], rois[camera] = _load_one(config, camera, path, manifest, backend)
        except (ProfileError, RoiError, OSError) as exc:
            problems.append(f"{where}: {exc}")
            loaded[camera] = None if previous is None else (
                previous.default if camera is None else previous.cameras.get(camera))
            rois[camera] = None if previous is None else previous.rois.get(camera)
    table = ThresholdTable(loaded.get(None), {name: loaded.get(name) for name in config.cameras}, rois)
    return table, problems
