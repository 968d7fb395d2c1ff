"""station/joiner.py: verdicts meet their frames and maps in any order; which OK frames are kept;
nothing waits forever and nothing is held without bound."""

from __future__ import annotations

from inspector.station.joiner import Joiner
from station_helpers import frame, hot_map, verdict


def test_any_arrival_order_gives_one_complete_entry():
    orders = [("frame", "map", "verdict"), ("verdict", "frame", "map"), ("map", "verdict", "frame"),
              ("verdict", "map", "frame")]
    for order in orders:
        joiner = Joiner(wait_s=1.0)
        header, image = frame("cam0", 5)
        ready = []
        for kind in order:
            ready += {"frame": lambda: joiner.add_frame(header, image, 0.0),
                      "map": lambda: joiner.add_map(hot_map("cam0", 5), 0.0),
                      "verdict": lambda: joiner.add_verdict(verdict("cam0", 5, "REJECT"), 0.0)}[kind]()
        assert len(ready) == 1, order
        assert ready[0].image is image and ready[0].amap.seq == 5 and ready[0].verdict.seq == 5
        assert joiner.poll(100.0) == [] and not joiner.waiting


def test_a_verdict_whose_map_never_comes_is_stored_after_the_wait():
    joiner = Joiner(wait_s=0.5)
    header, image = frame("cam0", 1)
    joiner.add_frame(header, image, 0.0)
    assert joiner.add_verdict(verdict("cam0", 1, "REJECT"), 0.1) == []
    assert joiner.poll(0.5) == []
    late = joiner.poll(0.6)
    assert len(late) == 1 and late[0].image is image and late[0].amap is None
    assert joiner.counts["stored_without_map"] == 1


def test_a_fault_without_score_does_not_wait_for_a_map():
    joiner = Joiner(wait_s=5.0)
    header, image = frame("cam0", 2)
    joiner.add_frame(header, image, 0.0)
    assert len(joiner.add_verdict(verdict("cam0", 2, "FAULT", score=None), 0.0)) == 1


def test_ok_frames_are_sampled_one_in_n_per_camera():
    joiner = Joiner(wait_s=1.0, ok_every=3)
    kept = []
    for seq in range(9):
        for camera in ("cam0", "cam1"):
            header, image = frame(camera, seq)
            joiner.add_frame(header, image, 0.0)
            kept += [(p.verdict.camera_id, p.verdict.seq) for p in joiner.add_verdict(verdict(camera, seq, "OK"), 0.0)]
    assert kept == [(c, s) for s in (0, 3, 6) for c in ("cam0", "cam1")]
    assert not joiner.frames                                   # the other OK frames were released at once
    assert Joiner(wait_s=1.0).add_verdict(verdict("cam0", 0, "OK"), 0.0) == []


def test_frames_without_verdicts_are_bounded_and_counted():
    joiner = Joiner(wait_s=0.1, hold_s=2.0, max_held=4)
    for seq in range(10):
        joiner.add_frame(*frame("cam0", seq), 0.0)
    assert len(joiner.frames) == 4 and joiner.counts["unmatched"] == 6
    joiner.poll(2.0)
    assert not joiner.frames and joiner.counts["unmatched"] == 10
