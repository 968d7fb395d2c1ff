"""Pure logic of the daemon: decide() (score + thresholds -> decision), the deadline rule, the
micro-batcher with a fake clock (max batch, max wait, deadline-aware early flush, expiry, EWMA,
overload policies) and per-camera sequence tracking. No sockets, no engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inspector.line.batching import EngineTimeEstimate, MicroBatcher
from inspector.judge.verdict import REASON_DECISIONS, apply_deadline, decide, effective_deadline_ns, finite_or_none
from inspector.line.wire import REASON_CODES

pytestmark = pytest.mark.timeout(30)


# ------------------------------------------------------------------------------------------ decide()
@pytest.mark.parametrize(
    "score, threshold, area, min_area, expected",
    [
        (0.49, 0.5, None, None, ("OK", "")),
        (0.5, 0.5, None, None, ("REJECT", "score_above_threshold")),          # == threshold rejects
        (np.nextafter(0.5, 0), 0.5, None, None, ("OK", "")),                  # just below passes
        (0.51, 0.5, None, None, ("REJECT", "score_above_threshold")),
        (np.float32(0.7), 0.5, None, None, ("REJECT", "score_above_threshold")),  # numpy scalar
        (-1.0, -0.5, None, None, ("OK", "")),                                 # negative scores are fine
        (0.1, 0.5, 9, 10, ("OK", "")),                                       # region below min area
        (0.1, 0.5, 10, 10, ("REJECT", "defect_area")),                       # == min area rejects
        (0.1, 0.5, np.int64(11), 10, ("REJECT", "defect_area")),
        (0.6, 0.5, 50, 10, ("REJECT", "score_above_threshold")),             # both: image rule named
        (0.1, 0.5, 50, None, ("OK", "")),                                    # no min area: no region rule
        (0.1, 0.5, None, 10, ("OK", "")),                                    # no area measured: no region rule
        (0.1, 0.5, 0, 1, ("OK", "")),
    ],
)
def test_decide_table(score, threshold, area, min_area, expected):
    assert decide(score, threshold, region_area=area, min_defect_area=min_area) == expected


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf, np.float32("nan"), None, "0.3", True])
def test_non_finite_or_non_numeric_score_is_engine_fault(score):
    assert decide(score, 0.5) == ("FAULT", "engine_error")
    assert decide(score, 0.5, region_area=100, min_defect_area=1) == ("FAULT", "engine_error")


@pytest.mark.parametrize("threshold", [math.nan, math.inf, None])
def test_unusable_threshold_is_no_calibration_fault(threshold):
    assert decide(0.1, threshold) == ("FAULT", "no_calibration")


@pytest.mark.parametrize("area, min_area", [(-1, 10), (1.5, 10), (5, 0), (True, 10)])
def test_bad_region_arguments_raise(area, min_area):
    with pytest.raises(ValueError):
        decide(0.1, 0.5, region_area=area, min_defect_area=min_area)


def test_reason_table_covers_the_wire_codes_and_only_judgements_reject():
    assert set(REASON_DECISIONS) == set(REASON_CODES)
    assert {r for r, d in REASON_DECISIONS.items() if d == "REJECT"} == {"score_above_threshold", "defect_area"}
    assert set(REASON_DECISIONS.values()) == {"REJECT", "FAULT"}


def test_finite_or_none():
    assert finite_or_none(np.float32(1.5)) == 1.5 and isinstance(finite_or_none(np.float32(1.5)), float)
    assert finite_or_none(math.nan) is None and finite_or_none(None) is None and finite_or_none(False) is None


def test_deadline_rules():
    assert effective_deadline_ns(1_000, 5_000, 500.0) == 5_000                 # the frame's own deadline
    assert effective_deadline_ns(1_000, 0, 500.0) == 1_000 + 500_000_000       # 0 -> capture + default
    assert apply_deadline("OK", "", 101, 100) == ("FAULT", "deadline_missed")   # a late pass never goes out
    assert apply_deadline("REJECT", "defect_area", 101, 100) == ("FAULT", "deadline_missed")
    assert apply_deadline("OK", "", 100, 100) == ("OK", "")                    # exactly on time is on time
    assert apply_deadline("FAULT", "engine_error", 101, 100) == ("FAULT", "engine_error")


# ------------------------------------------------------------------------------------------ batcher
def make(max_batch=4, max_wait_s=0.010, max_queue=16, policy="reject_oldest", initial_s=0.0):
    return MicroBatcher(max_batch, max_wait_s, max_queue, policy, estimate=EngineTimeEstimate(initial_s=initial_s),
                        slack_s=0.0005)


def test_full_batch_is_ready_at_once_and_keeps_fifo_order():
    b = make(max_batch=3)
    for i in range(5):
        b.add(i, now=0.0)
    assert b.ready(0.0)
    batch, expired = b.take_batch(0.0)
    assert (batch, expired) == ([0, 1, 2], [])
    assert len(b) == 2
    assert not b.ready(0.0)                               # 2 < max_batch, waited 0 s
    assert b.ready(0.010)                                 # max wait since the oldest (arrived at 0)
    assert b.take_batch(0.010) == ([3, 4], [])
    assert b.flush_at() is None and not b.ready(1.0)


def test_waits_at_most_max_wait_after_the_first_frame():
    b = make(max_wait_s=0.004)
    b.add("a", now=1.000)
    b.add("b", now=1.003)
    assert b.flush_at() == pytest.approx(1.004)           # from the first frame, not the latest
    assert not b.ready(1.0039)
    assert b.ready(1.004)


def test_deadline_aware_early_flush_uses_the_engine_estimate():
    b = make(max_wait_s=0.050, initial_s=0.010)
    b.add("relaxed", now=0.0, deadline=10.0)
    assert b.flush_at() == pytest.approx(0.050)           # max wait rules
    b.add("urgent", now=0.001, deadline=0.030)            # 30 ms deadline, 10 ms engine, 0.5 ms slack
    assert b.flush_at() == pytest.approx(0.030 - 0.010 - 0.0005)
    assert not b.ready(0.019)
    assert b.ready(0.0195)
    batch, expired = b.take_batch(0.0195)
    assert batch == ["relaxed", "urgent"] and expired == []   # flushed in time: nothing expired


def test_an_estimate_longer_than_every_deadline_is_corrected_by_a_probe():
    """A warm-up that measured 5 s per batch against 200 ms deadlines would expire every frame
    forever (nothing runs, so nothing is measured): after probe_after_s one frame whose deadline
    is still ahead goes to the engine, and its measured time corrects the estimate."""
    b = MicroBatcher(4, 0.010, 16, estimate=EngineTimeEstimate(initial_s=5.0), probe_after_s=1.0)
    t = 0.0
    for _ in range(10):                                   # the first second: expired, as the estimate says
        b.add("early", now=t, deadline=t + 0.2)
        assert b.take_batch(t) == ([], ["early"])
        t += 0.1
    assert b.probes == 0
    b.add("old", now=t, deadline=t + 0.2)
    b.add("probe", now=t + 0.05, deadline=t + 0.25)
    late = t + 0.201                                       # "old" is really late now; "probe" is not
    batch, expired = b.take_batch(late)
    assert (batch, expired) == (["probe"], ["old"]) and b.probes == 1
    b.observe_engine_time(0.030, now=late + 0.03)         # the probe measured the real engine time
    assert b.expected_engine_s == pytest.approx(0.030)
    b.add("fits", now=late + 0.05, deadline=late + 0.25)
    assert b.take_expired(late + 0.06) == []              # not expired any more: it waits for company
    assert not b.ready(late + 0.059) and b.ready(late + 0.05 + 0.010)
    assert b.take_batch(late + 0.06) == (["fits"], [])


def test_a_probe_expires_only_at_its_own_deadline_and_one_is_marked_per_interval():
    b = MicroBatcher(4, 10.0, 16, estimate=EngineTimeEstimate(initial_s=5.0), probe_after_s=1.0)
    b.add("x", now=0.0, deadline=0.1)                      # the first frame starts the probe clock
    assert b.take_expired(0.05) == ["x"] and b.probes == 0
    b.add("a", now=1.0, deadline=1.5)
    b.add("b", now=1.0, deadline=1.6)
    assert b.take_expired(1.1) == ["b"] and b.probes == 1  # "a" is the probe
    assert b.take_expired(1.4) == []                        # a probe waits until its deadline passes
    assert b.take_expired(1.51) == ["a"]                    # then it expires like any frame


def test_expiry_removes_frames_that_cannot_be_judged_in_time():
    b = make(max_wait_s=1.0, initial_s=0.020)
    b.add("late", now=0.0, deadline=0.050)
    b.add("fine", now=0.0, deadline=5.0)
    b.add("no deadline", now=0.0)
    assert b.take_expired(0.030) == []                   # 0.050 - 0.020 = 0.030 is not < 0.030
    assert b.take_expired(0.031) == ["late"]
    assert list(b.items()) == ["fine", "no deadline"]
    assert b.take_batch(2.0) == (["fine", "no deadline"], [])


def test_take_batch_returns_expired_separately_and_next_event():
    b = make(max_batch=3, max_wait_s=1.0, initial_s=0.010)
    b.add("x", now=0.0, deadline=0.015)
    b.add("y", now=0.0, deadline=9.0)
    b.add("z", now=0.0, deadline=9.0)
    assert b.next_event_at() == -math.inf                 # a full batch is waiting
    batch, expired = b.take_batch(0.004)                  # x: 0.015 - 0.010 = 0.005, not < 0.004: stays
    assert batch == ["x", "y", "z"] and expired == []
    b.add("w", now=0.1, deadline=0.2)
    b.add("v", now=0.1, deadline=9.0)
    assert b.next_event_at() == pytest.approx(min(0.1 + 1.0, 0.2 - 0.010 - 0.0005))
    batch, expired = b.take_batch(0.195)                  # w: 0.2 - 0.010 < 0.195: expired
    assert expired == ["w"] and batch == ["v"]


def test_ewma_engine_estimate():
    e = EngineTimeEstimate(alpha=0.5, initial_s=0.1)
    assert e.value_s == 0.1
    e.observe(0.02)                                       # the first measurement replaces the seed
    assert e.value_s == pytest.approx(0.02)
    e.observe(0.04)
    assert e.value_s == pytest.approx(0.03)
    e.observe(0.05)
    assert e.value_s == pytest.approx(0.04)
    e.observe(math.nan)                                   # ignored
    e.observe(-1.0)
    assert e.value_s == pytest.approx(0.04) and e.samples == 3
    b = make(initial_s=0.0)
    b.observe_engine_time(0.008)
    assert b.expected_engine_s == pytest.approx(0.008)
    with pytest.raises(ValueError):
        EngineTimeEstimate(alpha=0.0)


def test_overload_policies():
    oldest = make(max_batch=8, max_queue=3, policy="reject_oldest")
    assert [oldest.add(i, now=0.0) for i in range(3)] == [[], [], []]
    assert oldest.add(3, now=0.0) == [0]                  # the oldest goes, the new one stays
    assert oldest.add(4, now=0.0) == [1]
    assert list(oldest.items()) == [2, 3, 4]
    newest = make(max_batch=8, max_queue=3, policy="reject_newest")
    for i in range(3):
        newest.add(i, now=0.0)
    assert newest.add(3, now=0.0) == [3]                  # the new one is refused
    assert list(newest.items()) == [0, 1, 2]
    assert newest.drain_all() == [0, 1, 2] and len(newest) == 0


def test_the_queue_is_bounded_in_bytes_too():
    oldest = MicroBatcher(8, 0.01, 100, "reject_oldest", max_bytes=1000)
    assert [oldest.add(i, 0.0, nbytes=300) for i in range(3)] == [[], [], []]
    assert oldest.add(3, 0.0, nbytes=500) == [0, 1]        # the oldest go until the new one fits
    assert list(oldest.items()) == [2, 3] and oldest.queued_bytes == 800
    assert oldest.add(4, 0.0, nbytes=1001) == [4]           # never fits: refused, nothing else dropped
    assert oldest.take_batch(0.0)[0] == [2, 3] and oldest.queued_bytes == 0
    newest = MicroBatcher(8, 0.01, 100, "reject_newest", max_bytes=1000)
    newest.add(0, 0.0, nbytes=900)
    assert newest.add(1, 0.0, nbytes=200) == [1] and newest.queued_bytes == 900
    assert newest.drain_all() == [0] and newest.queued_bytes == 0


@pytest.mark.parametrize("kwargs", [dict(max_batch=0), dict(max_queue=0), dict(policy="drop_all"), dict(max_wait_s=-1.0)])
def test_batcher_rejects_bad_settings(kwargs):
    args = dict(max_batch=4, max_wait_s=0.01, max_queue=8, policy="reject_oldest") | kwargs
    with pytest.raises(ValueError):
        MicroBatcher(**args)
