"""`inspector line`'s supervisor: run every process of a box, restart the ones that fail, stop
them all cleanly.

* **Start order**: the daemon and the gateways first; the grabbers only when the daemon and every
  gateway have said ``READY=1`` on their ``NOTIFY_SOCKET`` (:mod:`inspector.line.readiness`), so
  that the first frames' verdicts cannot be published before a gateway listens. After
  ``ready_timeout_s`` the grabbers start anyway, with a warning naming what is not ready (the
  PLC's rules then reject parts without a verdict).
* **Restart with backoff**: a process that exits non-zero (or by a signal) is started again after
  ``backoff_initial_s``, doubling for each failure in a row up to ``backoff_max_s``; a run longer
  than ``stable_s`` resets the backoff. A process that exits 0 is done (a grabber whose source
  ended) and is not restarted, like systemd's ``Restart=on-failure``.
* **One log stream**: every line a child writes goes to ``stream`` prefixed with its name
  (``daemon | ...``, ``grab-cam0 | ...``).
* **Clean stop** when ``stop`` is set (SIGTERM / SIGINT in ``inspector line``): grabbers first (no
  new frames), then the daemon (it drains: every received frame gets its verdict), then the
  gateways (they write those verdicts); each group gets SIGTERM, then SIGKILL after ``grace_s``.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from inspector.line.processes import Child, stop_all
from inspector.line.readiness import ReadyListener

log = logging.getLogger("inspector.line")

START_ORDER = ("daemon", "gateway", "station", "grabber")
STOP_ORDER = ("grabber", "daemon", "gateway", "station")
READY_ROLES = ("daemon", "gateway", "station")   # started first; the grabbers wait for their READY=1
TICK_S = 0.1


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the box. ``role``: daemon | gateway | station (archive, ui) | grabber. ``argv``: its command line
    (the same one the systemd unit runs)."""

    name: str
    role: str
    argv: tuple[str, ...]


@dataclass
class _Slot:
    spec: ProcessSpec
    child: Child | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    done: bool = False
    restarts: int = 0
    exits: list[int] = field(default_factory=list)
    ready: ReadyListener | None = None


class Supervisor:
    """Runs ``specs`` until ``stop`` is set (see the module doc). Not thread safe: one thread calls
    :meth:`run`."""

    def __init__(self, specs: list[ProcessSpec], *, stream: TextIO | None = None, grace_s: float = 10.0,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0, stable_s: float = 30.0,
                 ready_timeout_s: float = 120.0) -> None:
        unknown = {s.role for s in specs} - set(START_ORDER)
        if unknown:
            raise ValueError(f"unknown process roles {sorted(unknown)}")
        self.slots = [_Slot(s) for role in START_ORDER for s in specs if s.role == role]
        self.stream = stream or sys.stdout
        self.grace_s, self.stable_s = grace_s, stable_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.ready_timeout_s = ready_timeout_s
        self._write_lock = threading.Lock()
        width = max((len(s.name) for s in specs), default=6)
        self._width = min(width, 24)

    def _sink(self, name: str, line: str) -> None:
        with self._write_lock:
            self.stream.write(f"{name:<{self._width}} | {line}\n")
            self.stream.flush()

    def _start(self, slot: _Slot, now: float) -> None:
        env = None
        if slot.ready is not None:
            slot.ready.reset()
            env = slot.ready.env()
        slot.child = Child(slot.spec.name, slot.spec.argv, env=env, sink=self._sink).start()
        slot.started_at, slot.restart_at = now, None
        self._sink("line", f"started {slot.spec.name} (pid {slot.child.pid})")

    def _backoff_s(self, failures: int) -> float:
        return min(self.backoff_max_s, self.backoff_initial_s * 2 ** max(0, failures - 1))

    def _check(self, slot: _Slot, now: float) -> None:
        """A slot whose child exited: done (0) or a restart scheduled with backoff."""
        if slot.done or slot.child is None or slot.restart_at is not None or slot.child.alive():
            return
        code = slot.child.wait(1.0)
        slot.exits.append(code)
        if code == 0:
            slot.done = True
            self._sink("line", f"{slot.spec.name} exited 0: done, not restarted")
            return
        slot.failures = 1 if now - slot.started_at > self.stable_s else slot.failures + 1
        delay = self._backoff_s(slot.failures)
        slot.restart_at = now + delay
        self._sink("line", f"{slot.spec.name} exited with status {code}: restarting in {delay:.1f} s "
                           f"(failure {slot.failures} in a row)")

    def run(self, stop: threading.Event) -> dict[str, dict]:
        """Start everything (grabbers once the rest is ready), supervise until ``stop``, stop
        everything. Returns per process {restarts, exits}."""
        folder = tempfile.mkdtemp(prefix="inspector-line-")
        try:
            for slot in self._group(READY_ROLES):
                slot.ready = ReadyListener(folder, slot.spec.name)
                self._start(slot, time.monotonic())
            self._await_ready(stop)
            for slot in self._group(("grabber",)):
                if not stop.is_set():
                    self._start(slot, time.monotonic())
            while not stop.wait(TICK_S):
                self._tick(time.monotonic())
        finally:
            self._stop_everything()
            for slot in self.slots:
                if slot.ready is not None:
                    slot.ready.close()
            shutil.rmtree(folder, ignore_errors=True)
        return {s.spec.name: {"restarts": s.restarts, "exits": s.exits} for s in self.slots}

    def _group(self, roles: tuple[str, ...]) -> list[_Slot]:
        return [slot for slot in self.slots if slot.spec.role in roles]

    def _tick(self, now: float) -> None:
        """Reap exits, restart what is due."""
        for slot in self.slots:
            self._check(slot, now)
            if slot.restart_at is not None and now >= slot.restart_at:
                slot.restarts += 1
                self._start(slot, now)

    def _await_ready(self, stop: threading.Event) -> None:
        """Until the daemon and every gateway are ready, ``stop`` is set or ``ready_timeout_s`` has passed."""
        deadline = time.monotonic() + self.ready_timeout_s
        while not stop.is_set():
            self._tick(time.monotonic())
            waiting = [slot.spec.name for slot in self._group(READY_ROLES) if not slot.ready.poll()]
            if not waiting:
                self._sink("line", "daemon and gateways ready: starting the grabbers")
                return
            if time.monotonic() > deadline:
                self._sink("line", f"WARNING not ready after {self.ready_timeout_s:.0f} s: {', '.join(waiting)}; "
                                   "starting the grabbers anyway")
                return
            stop.wait(TICK_S)

    def _stop_everything(self) -> None:
        self._sink("line", "stopping: " + ", then ".join(STOP_ORDER))
        for role in STOP_ORDER:
            group = [s.child for s in self.slots if s.spec.role == role and s.child is not None]
            stop_all(group, self.grace_s)
            for slot in self.slots:
                if slot.spec.role == role and slot.child is not None and not slot.done:
                    self._sink("line", f"{slot.spec.name} stopped (status {slot.child.returncode})")
