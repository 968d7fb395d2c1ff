"""The one percentile of the project, for every latency the line reports.

:func:`percentile` is the **linear** method (Hyndman & Fan type 7, numpy's default): the value at
rank ``q / 100 * (n - 1)`` of the ascending samples, interpolated between the two nearest ranks.
The gateway's stats, the validation report, the demo and ``tools/bench_line.py`` all use it, so a
p99 means the same thing everywhere. (The calibration's empirical quantile is the same method.)
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0 <= q <= 100) of ``values``, linear method; None when empty.
    Raises ValueError for q outside 0..100."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in 0..100, got {q}")
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        return None
    return float(np.percentile(array, q, method="linear"))


def summarize_ms(samples: Iterable[float]) -> dict[str, Any]:
    """{count, p50, p90, p99, max, mean} of millisecond samples (None values when empty)."""
    values = [float(v) for v in samples]
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    return {"count": len(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values), "mean": sum(values) / len(values)}
