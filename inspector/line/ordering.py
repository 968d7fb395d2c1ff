"""Verdicts leave the daemon in seq order per camera and grabber session. Pure, not thread safe.

Frames of one camera can be answered out of order: a gap's FAULTs are known when the frame after
the gap arrives, while frames before the gap still wait for the engine; a frame dropped by the
``reject_newest`` overload policy or swept at its deadline is answered while older frames are
still queued. A PLC that tracks parts by seq (and the gateway, which writes a backwards seq as a
FAULT) needs them in order, so the daemon holds back a verdict while a frame of the same camera
and session with a *lower* seq is still waiting for its own.

:class:`InOrder` keeps, per ``(camera, session)``, the seqs of the frames handed to the engine
(``expect``) and the verdicts held back; ``release`` returns what may be published now, in seq
order. A frame is held at most until the frame before it is answered, which the daemon does by
that frame's deadline at the latest (docs/daemon.md). Memory: one entry per frame in the engine
queue and per verdict held, both bounded by the queue.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from typing import Generic, Hashable, TypeVar

T = TypeVar("T")


class InOrder(Generic[T]):
    """Per key (``(camera, session)``): verdicts in seq order (see the module doc)."""

    def __init__(self) -> None:
        self._waiting: dict[Hashable, Counter[int]] = {}
        self._held: dict[Hashable, list[tuple[int, int, T]]] = {}
        self._tie = itertools.count()

    def expect(self, key: Hashable, seq: int) -> None:
        """A frame (``key``, ``seq``) went to the engine: its verdict comes later."""
        self._waiting.setdefault(key, Counter())[seq] += 1

    def release(self, key: Hashable, seq: int, item: T, *, expected: bool) -> list[T]:
        """``item`` (the verdict for ``key``, ``seq``) is ready; ``expected``: it answers a frame
        announced with :meth:`expect`. Returns the items that may go now, in seq order (``item``
        itself, possibly with verdicts it was holding back, or nothing)."""
        waiting = self._waiting.get(key)
        if expected and waiting is not None and waiting[seq] > 0:
            waiting[seq] -= 1
            if not waiting[seq]:
                del waiting[seq]
        held = self._held.setdefault(key, [])
        heapq.heappush(held, (seq, next(self._tie), item))
        lowest = min(waiting) if waiting else None
        out = []
        while held and (lowest is None or held[0][0] <= lowest):
            out.append(heapq.heappop(held)[2])
        if not held:
            del self._held[key]
        if waiting is not None and not waiting:
            del self._waiting[key]
        return out

    def held(self) -> int:
        """Verdicts held back now."""
        return sum(len(items) for items in self._held.values())

    def release_all(self) -> list[T]:
        """Everything held, in seq order per key (at stop: nothing may stay unpublished)."""
        out = []
        for held in self._held.values():
            out.extend(item for _, _, item in sorted(held, key=lambda entry: entry[:2]))
        self._held.clear()
        self._waiting.clear()
        return out
