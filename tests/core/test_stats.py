"""The one percentile (inspector.core.stats): the linear method, and its users agree."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.core.stats import percentile, summarize_ms

pytestmark = pytest.mark.unit


def test_linear_interpolation_between_ranks():
    values = [1, 2, 3, 4, 6]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 90) == pytest.approx(4 + 0.6 * 2)     # rank 3.6: between 4 and 6
    assert percentile([5], 99) == 5.0
    assert percentile([], 50) is None
    sample = np.random.default_rng(0).normal(size=101)
    assert percentile(sample, 99) == np.sort(sample)[99]           # rank 0.99 * 100 = 99 exactly


def test_nearest_rank_would_differ():
    """The reason there is one definition: nearest-rank p50 of [1, 2, 3, 4] is 2, linear is 2.5."""
    assert percentile([4, 1, 3, 2], 50) == 2.5


@pytest.mark.parametrize("q", [-1, 100.5])
def test_q_out_of_range_is_refused(q):
    with pytest.raises(ValueError):
        percentile([1.0], q)


def test_summary():
    s = summarize_ms([10.0, 20.0, 30.0])
    assert s == {"count": 3, "p50": 20.0, "p90": pytest.approx(28.0), "p99": pytest.approx(29.8), "max": 30.0,
                 "mean": 20.0}
    assert summarize_ms([])["p99"] is None


def test_the_gateways_writer_and_validate_use_it():
    from inspector.plc import writer
    from inspector.recordings import validation_metrics

    assert writer.summarize_ms is summarize_ms
    assert validation_metrics.percentile is percentile
