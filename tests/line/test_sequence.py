"""Sequence rules: SequenceTracker (the daemon), InOrder (verdicts in seq order) and the gateway's
plan against the PLC's camera header (inspector.plc.sequencing)."""

from __future__ import annotations

import pytest

from inspector.line.ordering import InOrder
from inspector.line.sequence import SequenceTracker, plausible_gap
from inspector.plc import modbus_map as mm
from inspector.plc.sequencing import GAP_ITEMISED, PendingVerdict, plan_entries

pytestmark = pytest.mark.unit

S1, S2 = 111, 222   # two grabber sessions


def test_gaps_replays_and_restarts_are_told_apart_by_the_session():
    t = SequenceTracker(max_itemised=5)
    assert t.observe("cam0", S1, 10) == t.observe("cam1", S1, 0)           # first frames start tracking
    assert t.observe("cam0", S1, 11).missing == 0
    gap = t.observe("cam0", S1, 14)
    assert (gap.missing, gap.fault_seqs, gap.previous) == (2, (12, 13), 11)
    for seq in (14, 12, 0):                                                  # repeated or backwards: replayed
        event = t.observe("cam0", S1, seq)
        assert event.replayed and event.missing == 0 and event.previous == 14
    assert t.observe("cam0", S1, 15).missing == 0                            # tracking stayed at 14
    restart = t.observe("cam0", S2, 0)                                       # a new session: the grabber restarted
    assert restart.new_session and not restart.replayed and restart.missing == 0
    assert t.observe("cam0", S2, 1).missing == 0
    stale = t.observe("cam0", S1, 16)                                        # the old session again: replayed
    assert stale.replayed and not stale.new_session
    huge = t.observe("cam0", S2, 1002)
    assert huge.missing == 1000 and huge.fault_seqs == (1001,)               # one FAULT summarises the gap


def test_gap_faults_are_itemised_only_as_far_as_the_frame_rate_allows():
    t = SequenceTracker()
    t.observe("cam0", S1, 0, now=100.0, fps=10.0)
    jump = t.observe("cam0", S1, 65, now=100.1, fps=10.0)       # 64 missing in 0.1 s at 10 fps: impossible
    assert jump.missing == 64 and jump.fault_seqs == (64,)
    slow = t.observe("cam0", S1, 70, now=100.6, fps=10.0)       # 4 missing in 0.5 s: possible, itemised
    assert slow.fault_seqs == (66, 67, 68, 69)
    assert t.observe("cam1", S1, 0, now=0.0).missing == 0
    assert t.observe("cam1", S1, 30, now=0.01).fault_seqs == tuple(range(1, 30))   # rate unknown: up to 64
    assert plausible_gap(1.0, 10.0, 64) == 14 and plausible_gap(0.0, 30.0, 64) == 1 and plausible_gap(5, None, 64) == 64


def test_tracking_memory_is_bounded():
    t = SequenceTracker(max_cameras=3)
    for seq, camera in enumerate(("a", "b", "c")):
        t.observe(camera, S1, seq)
    t.observe("d", S1, 0)                                        # a fourth camera: everything forgotten
    assert set(t.tracks) == {"d"}
    assert t.observe("a", S1, 100).missing == 0                  # "a" starts over, no made-up gap


@pytest.mark.parametrize("kwargs", [dict(max_itemised=0), dict(max_cameras=0)])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SequenceTracker(**kwargs)


def test_verdicts_leave_in_seq_order_per_camera_and_session():
    order: InOrder[str] = InOrder()
    key = ("cam0", S1)
    order.expect(key, 0)
    order.expect(key, 1)
    assert order.release(key, 3, "gap2", expected=False) == []               # waits for 0 and 1
    assert order.release(("cam1", S1), 0, "other camera", expected=False) == ["other camera"]
    assert order.release(key, 2, "gap1", expected=False) == []
    assert order.release(key, 1, "v1", expected=True) == []                   # 0 still waits
    assert order.release(key, 0, "v0", expected=True) == ["v0", "v1", "gap1", "gap2"]
    order.expect(key, 5)
    assert order.release(key, 5, "repeat of 5", expected=False) == ["repeat of 5"]   # nothing lower waits
    assert order.release(key, 9, "later", expected=False) == []
    assert order.held() == 1 and order.release_all() == ["later"] and order.held() == 0


def _header(seq: int, session: int, written: int = 3) -> mm.CameraHeader:
    return mm.CameraHeader(write_count=written, last_decision=1, ok_count=written, last_seq=seq, last_session=session)


def _item(seq: int, session: int, decision: str = "OK") -> PendingVerdict:
    entry = mm.RingEntry(seq=seq, part_code=seq, decision=mm.DECISION_CODES[decision], reason=0, score_milli=1,
                         threshold_milli=2, capture_ms=5, flags=0, tag=0)
    return PendingVerdict(0, entry, decision, 0, session)


def _plan(header, item, left=frozenset()):
    return [(p.entry.seq, p.decision, p.entry.reason, p.own, p.lost, p.replayed) for p in plan_entries(header, item, left)]


def test_the_gateway_plans_gap_faults_and_replays_against_the_plc_header():
    gap, replayed = mm.REASON_CODES["sequence_gap"], mm.REASON_CODES["sequence_replayed"]
    assert _plan(mm.CameraHeader(), _item(40, S1)) == [(40, "OK", 0, True, 0, False)]    # nothing in the PLC yet
    assert _plan(_header(9, S1), _item(10, S1)) == [(10, "OK", 0, True, 0, False)]
    assert _plan(_header(9, S1), _item(13, S1, "REJECT")) == [
        (10, "FAULT", gap, False, 1, False), (11, "FAULT", gap, False, 1, False), (12, "FAULT", gap, False, 1, False),
        (13, "REJECT", 0, True, 0, False)]
    big = 9 + GAP_ITEMISED + 2
    assert _plan(_header(9, S1), _item(big, S1)) == [(big - 1, "FAULT", gap, False, GAP_ITEMISED + 1, False),
                                                      (big, "OK", 0, True, 0, False)]
    for seq in (9, 4):                                     # a repeat or a step back never passes and never vanishes
        assert _plan(_header(9, S1), _item(seq, S1, "REJECT")) == [(seq, "FAULT", replayed, True, 0, True)]
    assert _plan(_header(9, S1), _item(0, S2)) == [(0, "OK", 0, True, 0, False)]           # grabber restart
    assert _plan(_header(9, S2), _item(10, S1), {S1}) == [(10, "FAULT", replayed, True, 0, True)]   # a session it left
    assert _plan(_header(2**32 - 1, S1), _item(0, S1))[0][:2] == (0, "OK")                 # 32-bit wrap is a step
