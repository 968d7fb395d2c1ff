"""Per-camera sequence tracking: what one (camera, session, seq) observation means. Pure, not
thread safe.

A grabber numbers its frames ``seq`` = 0, 1, 2, ... within a *session*: a random id it picks at
start (``FrameHeader.session``). A restart is a new session; the same session never goes back.
That tells a restart apart from a replayed or injected frame:

* first observation of a camera: tracking starts (nothing before it can be known);
* same session, ``seq == previous + 1``: normal;
* same session, ``seq > previous + 1``: a gap of ``seq - previous - 1`` missing seqs;
* same session, ``seq <= previous``: **replayed** (a repeated or backwards seq: a copy, an
  injection, or a bug). The caller answers it with a FAULT; tracking stays where it was;
* a session this camera had before and left: **replayed** too (stale);
* any other session: a **new session** (grabber restart): tracking restarts at its seq.

Gaps are itemised (one FAULT per missing seq) only as far as the camera's frame rate makes them
possible since its last frame (``ceil(elapsed_s * fps * RATE_SLACK) + 1``, at most
``max_itemised``): one crafted message with ``seq + 65`` cannot flood the PLC's ring with 64
FAULTs. A bigger gap is one FAULT at ``seq - 1`` standing for every missing seq since the last
one (``missing`` counts them all). Tracking still moves to ``seq``: later frames below it are
replayed (fail closed: FAULT), never silently passed.

Used by the daemon (a gap becomes ``sequence_gap`` FAULT verdicts, a replay a
``sequence_replayed`` FAULT). The gateway applies the same rules to what it writes into the PLC
(:mod:`inspector.plc.sequencing`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

MAX_ITEMISED_GAP = 64            # never more FAULTs than this for one gap
MAX_TRACKED_CAMERAS = 4096       # beyond this many camera ids, tracking forgets everything (bounded memory)
RETIRED_SESSIONS = 16            # sessions remembered per camera after they were replaced
RATE_SLACK = 1.25                # frame-rate jitter allowed when bounding a gap


@dataclass(frozen=True)
class SequenceEvent:
    """What one observation means.

    ``missing``: seqs skipped just before this one (0 normally). ``fault_seqs``: the seqs that
    stand for the gap: every missing one when the frame rate allows that many, else only
    ``seq - 1`` (one entry summarising the gap; the count is in ``missing``). ``replayed``: the
    seq does not advance its session (see the module doc). ``new_session``: a new session
    started (grabber restart). ``previous``: the camera's last seq (None at the first
    observation or a new session).
    """

    missing: int = 0
    fault_seqs: tuple[int, ...] = ()
    replayed: bool = False
    new_session: bool = False
    previous: int | None = None


@dataclass
class _Track:
    session: int
    last: int
    at: float
    retired: deque = field(default_factory=lambda: deque(maxlen=RETIRED_SESSIONS))


def plausible_gap(elapsed_s: float, fps: float | None, limit: int) -> int:
    """How many frames a camera at ``fps`` can have captured in ``elapsed_s`` (with jitter), at
    most ``limit``; ``limit`` when the rate is unknown."""
    if not fps or not math.isfinite(fps) or fps <= 0:
        return limit
    return min(limit, math.ceil(max(0.0, elapsed_s) * fps * RATE_SLACK) + 1)


class SequenceTracker:
    """Per-camera (session, last seq); see the module doc for the rules. Not thread safe."""

    def __init__(self, max_itemised: int = MAX_ITEMISED_GAP, max_cameras: int = MAX_TRACKED_CAMERAS) -> None:
        if max_itemised < 1 or max_cameras < 1:
            raise ValueError("max_itemised and max_cameras must be >= 1")
        self.max_itemised = max_itemised
        self.max_cameras = max_cameras
        self.tracks: dict[str, _Track] = {}

    def observe(self, camera: str, session: int, seq: int, *, now: float = 0.0, fps: float | None = None) -> SequenceEvent:
        """One frame of ``camera`` received at ``now`` (monotonic s) from a camera running at
        ``fps`` (None: unknown). Returns what it means; updates the tracking unless replayed."""
        track = self.tracks.get(camera)
        if track is None:
            if len(self.tracks) >= self.max_cameras:
                self.tracks.clear()  # bounded memory against a flood of made-up camera ids
            self.tracks[camera] = _Track(session, seq, now)
            return SequenceEvent()
        if session != track.session:
            if session in track.retired:
                return SequenceEvent(replayed=True, previous=track.last)
            track.retired.append(track.session)
            track.session, track.last, track.at = session, seq, now
            return SequenceEvent(new_session=True)
        previous = track.last
        if seq <= previous:
            return SequenceEvent(replayed=True, previous=previous)
        elapsed = now - track.at
        track.last, track.at = seq, now
        missing = seq - previous - 1
        if missing == 0:
            return SequenceEvent(previous=previous)
        if missing <= plausible_gap(elapsed, fps, self.max_itemised):
            return SequenceEvent(missing, tuple(range(previous + 1, seq)), previous=previous)
        return SequenceEvent(missing, (seq - 1,), previous=previous)
