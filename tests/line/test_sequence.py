"""SequenceTracker (inspector.line.sequence): the one gap logic of the daemon and the gateway."""

from __future__ import annotations

import pytest

from inspector.line.sequence import SequenceTracker

pytestmark = pytest.mark.unit


def test_sequence_tracker_gaps_restarts_and_huge_gaps():
    t = SequenceTracker(max_itemised=5)
    assert t.observe("cam0", 10).missing == 0            # first frame starts tracking
    assert t.observe("cam0", 11).missing == 0
    gap = t.observe("cam0", 14)
    assert (gap.missing, gap.fault_seqs, gap.previous) == (2, (12, 13), 11)
    assert t.observe("cam1", 0).missing == 0             # cameras are independent
    back = t.observe("cam0", 3)                          # grabber restarted
    assert back.restarted and back.went_back and not back.duplicate and back.missing == 0
    assert t.observe("cam0", 4).missing == 0             # tracking continues from the restart
    huge = t.observe("cam0", 1004)
    assert huge.missing == 999 and huge.fault_seqs == (1003,)   # one FAULT summarises the gap
    same = t.observe("cam0", 1004)
    assert same.duplicate and same.went_back and not same.restarted and same.missing == 0


def test_tracking_memory_is_bounded():
    t = SequenceTracker(max_cameras=3)
    for seq, camera in enumerate(("a", "b", "c")):
        t.observe(camera, seq)
    t.observe("d", 0)                                    # a fourth camera: everything forgotten
    assert set(t.last) == {"d"}
    assert t.observe("a", 100).missing == 0              # "a" starts over, no made-up gap


@pytest.mark.parametrize("kwargs", [dict(max_itemised=0), dict(max_cameras=0)])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SequenceTracker(**kwargs)
