"""Per-camera sequence tracking: what one (camera, seq) observation means. Pure, not thread safe.

Used twice with one meaning: the daemon observes every received frame (a gap becomes
``sequence_gap`` FAULT verdicts for the frames that never arrived), the gateway observes every
verdict (a gap is counted as lost verdicts; a duplicate is not written to the PLC again).

Rules, for a camera whose last seq was ``previous``:

* first observation of a camera: tracking starts (nothing before it can be known);
* ``seq == previous + 1``: normal;
* ``seq > previous + 1``: a gap of ``seq - previous - 1`` missing seqs;
* ``seq == previous``: a duplicate;
* ``seq < previous``: the sender restarted (tracking restarts at ``seq``, no gap).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ITEMISED_GAP = 64            # a gap of up to this many seqs lists every missing seq
MAX_TRACKED_CAMERAS = 4096       # beyond this many camera ids, tracking forgets everything (bounded memory)


@dataclass(frozen=True)
class SequenceEvent:
    """What one observation means.

    ``missing``: seqs skipped just before this one (0 normally). ``fault_seqs``: the seqs that
    stand for the gap: every missing one when ``missing <= max_itemised``, else only ``seq - 1``
    (one entry summarising the gap; the count is in ``missing``). ``duplicate``: seq equals the
    previous one. ``restarted``: seq went back. ``previous``: the camera's last seq (None at the
    first observation).
    """

    missing: int = 0
    fault_seqs: tuple[int, ...] = ()
    restarted: bool = False
    duplicate: bool = False
    previous: int | None = None

    @property
    def went_back(self) -> bool:
        """seq did not increase (a duplicate or a restart)."""
        return self.restarted or self.duplicate


class SequenceTracker:
    """Per-camera last ``seq``; see the module doc for the rules. Not thread safe."""

    def __init__(self, max_itemised: int = MAX_ITEMISED_GAP, max_cameras: int = MAX_TRACKED_CAMERAS) -> None:
        if max_itemised < 1 or max_cameras < 1:
            raise ValueError("max_itemised and max_cameras must be >= 1")
        self.max_itemised = max_itemised
        self.max_cameras = max_cameras
        self.last: dict[str, int] = {}

    def observe(self, camera: str, seq: int) -> SequenceEvent:
        previous = self.last.get(camera)
        if previous is None and len(self.last) >= self.max_cameras:
            self.last.clear()  # bounded memory against a flood of made-up camera ids
        self.last[camera] = seq
        if previous is None:
            return SequenceEvent()
        if seq == previous:
            return SequenceEvent(duplicate=True, previous=previous)
        if seq < previous:
            return SequenceEvent(restarted=True, previous=previous)
        missing = seq - previous - 1
        if missing == 0:
            return SequenceEvent(previous=previous)
        if missing <= self.max_itemised:
            return SequenceEvent(missing, tuple(range(previous + 1, seq)), previous=previous)
        return SequenceEvent(missing, (seq - 1,), previous=previous)
