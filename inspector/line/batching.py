"""Micro-batching across cameras: pure logic, no sockets, no threads, no clock of its own.

The daemon puts every frame it will judge into one :class:`MicroBatcher` and its engine worker
takes batches out. Every method takes ``now`` (seconds on one monotonic clock chosen by the caller;
the tests use a fake one) and deadlines on the same clock. Not thread safe: the caller holds a
lock.

Rules:

* **Batch size**: a batch holds at most ``max_batch`` frames, taken in arrival order (FIFO).
* **Flush time** of the head batch (the first ``max_batch`` frames)::

      flush_at = min(first_arrival + max_wait_s,
                     earliest_deadline_in_head - expected_engine_s - slack_s)

  so a batch waits at most ``max_wait_s`` for company, and never so long that its most urgent
  frame could no longer be judged in time. A full head batch is ready at once.
* **Expected engine time**: :class:`EngineTimeEstimate`, an exponentially weighted moving average
  (EWMA) of measured seconds per batch: ``e <- e + alpha * (t - e)`` (the first measurement
  replaces the initial value).
* **Expiry**: a frame whose ``deadline - expected_engine_s < now`` cannot be judged in time even
  if it went to the engine right now; :meth:`take_expired` / :meth:`take_batch` hand it back
  unjudged (the daemon publishes ``deadline_missed`` for it: no engine time is wasted on it).
  ``slack_s`` (> 0) keeps the flush time strictly before the expiry time.
* **Probe**: the estimate only learns from batches that run, so an estimate longer than the
  deadlines (a slow warm-up batch of ``max_batch`` frames, a GPU that was busy once) would expire
  every frame forever. When no engine time was measured for ``probe_after_s``, the oldest frame
  whose deadline has not passed is kept out of expiry and goes to the engine (as a batch of its
  own when nothing else fits): the measurement corrects the estimate. It is never a silent pass:
  a frame judged after its deadline is FAULT ``deadline_missed`` all the same (the verdict's
  deadline rule), only engine time is spent on it.
* **Overload**: at most ``max_queue`` frames and ``max_bytes`` payload bytes wait. Adding one more
  than fits drops by ``policy``: ``"reject_oldest"`` (the oldest waiting frames go until the new one
  fits) or ``"reject_newest"`` (the new frame is refused); a frame bigger than ``max_bytes`` on its
  own is always refused. :meth:`add` returns what was dropped so that it still gets a verdict.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Generic, Iterable, TypeVar

T = TypeVar("T")

POLICIES = ("reject_oldest", "reject_newest")


class EngineTimeEstimate:
    """EWMA of engine seconds per batch.

    ``alpha`` in (0, 1]: weight of the newest measurement. ``initial_s`` >= 0: the estimate before
    any measurement (the daemon seeds it with a warm-up inference). Non-finite or negative
    measurements are ignored (a broken clock must not poison the estimate).
    """

    def __init__(self, alpha: float = 0.2, initial_s: float = 0.0) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not (math.isfinite(initial_s) and initial_s >= 0.0):
            raise ValueError(f"initial_s must be finite and >= 0, got {initial_s}")
        self.alpha = alpha
        self.value_s = float(initial_s)
        self.samples = 0

    def observe(self, seconds: float) -> None:
        if not (math.isfinite(seconds) and seconds >= 0.0):
            return
        if self.samples == 0:
            self.value_s = float(seconds)
        else:
            self.value_s += self.alpha * (float(seconds) - self.value_s)
        self.samples += 1


@dataclass
class _Entry(Generic[T]):
    item: T
    arrived: float
    deadline: float | None  # None: no deadline
    nbytes: int = 0
    probe: bool = False     # kept by the probe rule: expires only when its deadline has passed


class MicroBatcher(Generic[T]):
    """Bounded FIFO of frames waiting for the engine, with the flush / expiry / drop rules of the
    module docstring. ``len(batcher)`` = frames waiting."""

    def __init__(
        self,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        policy: str = "reject_oldest",
        *,
        estimate: EngineTimeEstimate | None = None,
        slack_s: float = 0.0005,
        max_bytes: int | None = None,
        probe_after_s: float = 1.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not (math.isfinite(max_wait_s) and max_wait_s >= 0.0):
            raise ValueError(f"max_wait_s must be finite and >= 0, got {max_wait_s}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if not (math.isfinite(slack_s) and slack_s > 0.0):
            raise ValueError(f"slack_s must be finite and > 0, got {slack_s}")
        if not (math.isfinite(probe_after_s) and probe_after_s > 0.0):
            raise ValueError(f"probe_after_s must be finite and > 0, got {probe_after_s}")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.policy = policy
        self.estimate = estimate or EngineTimeEstimate()
        self.slack_s = slack_s
        self.max_bytes = max_bytes
        self.probe_after_s = probe_after_s
        self.measured_at: float | None = None   # when engine time was last measured (None: not yet)
        self.probes = 0                         # frames sent to the engine by the probe rule
        self.queued_bytes = 0
        self._queue: deque[_Entry[T]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def expected_engine_s(self) -> float:
        return self.estimate.value_s

    def observe_engine_time(self, seconds: float, now: float | None = None) -> None:
        """Feed one measured batch time into the EWMA (``now``: when, for the probe rule)."""
        self.estimate.observe(seconds)
        if now is not None:
            self.measured_at = now

    def add(self, item: T, now: float, deadline: float | None = None, nbytes: int = 0) -> list[T]:
        """Queue ``item`` (arrived at ``now``, due by ``deadline``, holding ``nbytes``). Returns the
        items dropped by the overload policy: ``[]``, the oldest ones (reject_oldest) or ``[item]``
        (reject_newest, or an item bigger than ``max_bytes``)."""
        if self.measured_at is None:
            self.measured_at = now   # the probe rule's clock starts with the first frame
        if self.max_bytes is not None and nbytes > self.max_bytes:
            return [item]
        dropped: list[T] = []
        while self._queue and not self._fits(nbytes):
            if self.policy == "reject_newest":
                return [item]
            dropped.append(self._pop().item)
        self._queue.append(_Entry(item, now, deadline, nbytes))
        self.queued_bytes += nbytes
        return dropped

    def _fits(self, nbytes: int) -> bool:
        return len(self._queue) < self.max_queue and (self.max_bytes is None or self.queued_bytes + nbytes <= self.max_bytes)

    def _pop(self) -> _Entry[T]:
        entry = self._queue.popleft()
        self.queued_bytes -= entry.nbytes
        return entry

    def flush_at(self) -> float | None:
        """When the head batch must go to the engine (``-inf`` when it is full); None when empty."""
        if not self._queue:
            return None
        if len(self._queue) >= self.max_batch:
            return -math.inf
        at = self._queue[0].arrived + self.max_wait_s
        deadlines = [entry.deadline for entry in self._head() if entry.deadline is not None]
        if deadlines:
            at = min(at, min(deadlines) - self.expected_engine_s - self.slack_s)
        return at

    def next_event_at(self) -> float | None:
        """The earliest of the flush time and the first expiry time (for a worker's wait);
        None when empty."""
        at = self.flush_at()
        if at is None:
            return None
        expiries = [entry.deadline - self.expected_engine_s for entry in self._queue if entry.deadline is not None]
        return min([at, *expiries])

    def ready(self, now: float) -> bool:
        """True when a batch should be taken now."""
        at = self.flush_at()
        return at is not None and now >= at

    def take_expired(self, now: float) -> list[T]:
        """Remove and return the items that can no longer be judged before their deadline
        (``deadline - expected_engine_s < now``), in arrival order."""
        limit = self.expected_engine_s
        if not any(self._expired(entry, now, limit) for entry in self._queue):
            return []
        self._mark_probe(now)
        expired = [entry for entry in self._queue if self._expired(entry, now, limit)]
        self._queue = deque(entry for entry in self._queue if not self._expired(entry, now, limit))
        self.queued_bytes -= sum(entry.nbytes for entry in expired)
        return [entry.item for entry in expired]

    def _mark_probe(self, now: float) -> None:
        """The probe rule (module docstring): once no engine time was measured for
        ``probe_after_s`` (the clock starts with the first frame), mark the oldest frame whose
        deadline is still ahead; one probe per interval."""
        if now - (self.measured_at if self.measured_at is not None else now) < self.probe_after_s:
            return
        for entry in self._queue:
            if entry.deadline is not None and entry.deadline >= now and not entry.probe:
                entry.probe = True
                self.measured_at = now
                self.probes += 1
                return

    def take_batch(self, now: float) -> tuple[list[T], list[T]]:
        """``(batch, expired)``: first the expired items are removed (see :meth:`take_expired`),
        then up to ``max_batch`` items in arrival order form the batch. Call it when
        :meth:`ready` (or to flush early, e.g. when draining)."""
        expired = self.take_expired(now)
        count = min(self.max_batch, len(self._queue))
        batch = [self._pop().item for _ in range(count)]
        return batch, expired

    def drain_all(self) -> list[T]:
        """Remove and return everything waiting, in arrival order."""
        items = [entry.item for entry in self._queue]
        self._queue.clear()
        self.queued_bytes = 0
        return items

    def items(self) -> Iterable[T]:
        return (entry.item for entry in self._queue)

    def _head(self) -> list[_Entry[T]]:
        return [self._queue[i] for i in range(min(self.max_batch, len(self._queue)))]

    @staticmethod
    def _expired(entry: _Entry[T], now: float, expected_s: float) -> bool:
        if entry.deadline is None:
            return False
        return entry.deadline < now if entry.probe else entry.deadline - expected_s < now
