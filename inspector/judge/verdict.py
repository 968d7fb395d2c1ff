"""Score + thresholds -> decision: the verdict step (pure functions, numpy only, no torch).

Decision convention (the same as :mod:`inspector.calibration.thresholds` and :mod:`inspector.judge.profile`):

* image rule: **REJECT when ``score >= image_threshold``** (reason ``score_above_threshold``);
* region rule (only when both ``region_area`` and ``min_defect_area`` are given): **REJECT when
  ``region_area >= min_defect_area``** (reason ``defect_area``), where ``region_area`` is the area
  in pixels of the largest 8-connected region with ``map >= pixel_threshold``
  (:func:`inspector.judge.regions.largest_region_areas`);
* otherwise OK (reason ``""``).

Fail closed: a score that is not a finite number (NaN, +-inf, None, not a number) is never
compared: it is ``FAULT``/``engine_error``; a threshold that is not finite is
``FAULT``/``no_calibration``. When both rules reject, the image rule names the reason.

Every reason the daemon emits and the decision it goes with are in the one table,
:mod:`inspector.judge.reasons` (docs/protocol.md, "Reason codes"): everything that is not a judgement of the part is a FAULT,
which the PLC treats as a reject.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from inspector.judge.reasons import FAULT, OK, REASON_DECISIONS, REJECT  # noqa: F401 (re-exported)


def decision_for(reason: str) -> str:
    """The decision that goes with a daemon reason code (KeyError for an unknown code)."""
    return REASON_DECISIONS[reason]


def finite_or_none(value: Any) -> float | None:
    """``value`` as a Python float when it is a finite real number, else None (never NaN/inf,
    which the wire refuses)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def decide(
    score: Any,
    image_threshold: Any,
    *,
    region_area: Any = None,
    min_defect_area: Any = None,
) -> tuple[str, str]:
    """One frame's (decision, reason).

    ``score``: the image anomaly score (float-like, may be a numpy scalar). ``image_threshold``:
    the calibrated image threshold. ``region_area`` (int pixels >= 0) and ``min_defect_area`` (int
    >= 1): the region rule, applied only when both are given.

    Returns ``("OK", "")``, ``("REJECT", "score_above_threshold")``, ``("REJECT", "defect_area")``,
    ``("FAULT", "engine_error")`` (score not finite) or ``("FAULT", "no_calibration")`` (threshold
    not finite). Raises ValueError for a negative / non-integer ``region_area`` or a
    ``min_defect_area`` below 1 (caller bugs; the daemon turns any exception into a FAULT).
    """
    value = finite_or_none(score)
    if value is None:
        return FAULT, "engine_error"
    threshold = finite_or_none(image_threshold)
    if threshold is None:
        return FAULT, "no_calibration"
    if value >= threshold:
        return REJECT, "score_above_threshold"
    if region_area is not None and min_defect_area is not None:
        area = _count(region_area, "region_area", minimum=0)
        min_area = _count(min_defect_area, "min_defect_area", minimum=1)
        if area >= min_area:
            return REJECT, "defect_area"
    return OK, ""


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def effective_deadline_ns(capture_ns: int, deadline_ns: int, default_deadline_ms: float) -> int:
    """The absolute ``time.time_ns()`` deadline of a frame: its own ``deadline_ns``, or
    ``capture_ns + default_deadline_ms`` when the frame says 0 (no deadline)."""
    if deadline_ns:
        return int(deadline_ns)
    return int(capture_ns) + int(round(default_deadline_ms * 1_000_000))


def apply_deadline(decision: str, reason: str, decided_ns: int, deadline_ns: int) -> tuple[str, str]:
    """A judgement made after ``deadline_ns`` becomes ``FAULT``/``deadline_missed`` (the PLC must
    never get a late OK); FAULTs keep their own reason; on-time decisions are unchanged."""
    if decided_ns > deadline_ns and decision != FAULT:
        return FAULT, "deadline_missed"
    return decision, reason
