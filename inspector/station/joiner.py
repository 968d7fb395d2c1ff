"""Which frames the archive keeps, and the pairing of each kept verdict with its frame and map.

The daemon sends three things about a frame on two sockets: the frame on its tap when it arrives,
the anomaly map on the tap (REJECT / FAULT frames that were judged, just before the verdict), and
the verdict on its verdict socket. They can arrive in any order. :class:`Joiner` holds frames and
maps by ``(camera, seq)`` until their verdict says whether they are kept:

* REJECT and FAULT: always kept, and ready as soon as the frame and (if one will come) the map are
  there, or when the verdict has waited ``wait_s``, with what arrived (missing parts are counted);
* OK: one in ``ok_every`` per camera (0 = none), with its frame (OK frames have no map);
* everything else is released at once.

Bounded: frames and maps without a verdict are dropped after ``hold_s`` (longer than any verdict
takes: the daemon answers every frame by its deadline), or when more than ``max_held`` are held,
counted as ``unmatched``. Pure logic: the caller passes the time.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any

import numpy as np

from inspector.judge.reasons import OK
from inspector.line import wire
from inspector.station.entry import Pending

Key = tuple[str, int]


class Joiner:
    def __init__(self, *, wait_s: float, ok_every: int = 0, maps_expected: bool = True,
                 hold_s: float = 10.0, max_held: int = 256) -> None:
        self.wait_s, self.ok_every, self.maps_expected = wait_s, ok_every, maps_expected
        self.hold_s, self.max_held = max(hold_s, wait_s), max_held
        self.frames: OrderedDict[Key, tuple[wire.FrameHeader, np.ndarray, float]] = OrderedDict()
        self.maps: OrderedDict[Key, tuple[wire.AnomalyMap, float]] = OrderedDict()
        self.waiting: OrderedDict[Key, tuple[Pending, float]] = OrderedDict()
        self.ok_seen: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    # ---------------------------------------------------------------------------------- arrivals
    def add_frame(self, header: wire.FrameHeader, image: np.ndarray, now: float) -> list[Pending]:
        key = (header.camera_id, header.seq)
        if key in self.waiting:
            pending = self.waiting[key][0]
            pending.header, pending.image = header, image
            return self._if_complete(key)
        self._hold(self.frames, key, (header, image, now))
        return []

    def add_map(self, m: wire.AnomalyMap, now: float) -> list[Pending]:
        key = (m.camera_id, m.seq)
        if key in self.waiting:
            self.waiting[key][0].amap = m
            return self._if_complete(key)
        self._hold(self.maps, key, (m, now))
        return []

    def add_verdict(self, verdict: wire.Verdict, now: float) -> list[Pending]:
        """The entries this verdict makes ready (0 or 1)."""
        key = (verdict.camera_id, verdict.seq)
        frame = self.frames.pop(key, None)
        held_map = self.maps.pop(key, None)
        if not self._keep(verdict):
            return []
        pending = Pending(verdict, *(frame[:2] if frame else (None, None)), held_map[0] if held_map else None)
        self.waiting[key] = (pending, now)
        return self._if_complete(key)

    def poll(self, now: float) -> list[Pending]:
        """Verdicts that waited ``wait_s`` (ready with what they have); frames and maps whose verdict
        never came are dropped."""
        ready = []
        while self.waiting and now - next(iter(self.waiting.values()))[1] >= self.wait_s:
            _, (pending, _) = self.waiting.popitem(last=False)
            self.counts["stored_without_frame" if pending.image is None else "complete_after_wait"] += 1
            if self._map_expected(pending.verdict) and pending.amap is None:
                self.counts["stored_without_map"] += 1
            ready.append(pending)
        for held in (self.frames, self.maps):
            while held and now - next(iter(held.values()))[-1] >= self.hold_s:
                held.popitem(last=False)
                self.counts["unmatched"] += 1
        return ready

    def drain(self) -> list[Pending]:
        """At exit: every waiting verdict, with what it has."""
        return self.poll(float("inf"))

    # ---------------------------------------------------------------------------------- rules
    def _keep(self, verdict: wire.Verdict) -> bool:
        if verdict.decision != OK:
            return True
        self.ok_seen[verdict.camera_id] += 1
        if self.ok_every and (self.ok_seen[verdict.camera_id] - 1) % self.ok_every == 0:
            self.counts["ok_sampled"] += 1
            return True
        return False

    def _map_expected(self, verdict: wire.Verdict) -> bool:
        """A map comes for judged REJECT / FAULT frames when the daemon taps maps."""
        return self.maps_expected and verdict.decision != OK and verdict.score is not None

    def _if_complete(self, key: Key) -> list[Pending]:
        pending = self.waiting[key][0]
        if pending.image is None or (self._map_expected(pending.verdict) and pending.amap is None):
            return []
        del self.waiting[key]
        return [pending]

    def _hold(self, held: OrderedDict, key: Key, value: Any) -> None:
        held[key] = value
        while len(held) > self.max_held:
            held.popitem(last=False)
            self.counts["unmatched"] += 1
