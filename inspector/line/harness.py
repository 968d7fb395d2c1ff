"""The one line harness: start ``inspector`` processes by name, collect their logs, stop them
(SIGTERM, then SIGKILL after a grace period), collect the daemon's verdicts.

Used by ``inspector demo``, ``inspector validate``, ``tools/bench_line.py`` and the whole-line
tests (:func:`start_station` adds the archive and the operator page). Processes are :class:`inspector.line.processes.Child` (the supervisor of ``inspector line``
uses the same class); :class:`VerdictCollector` subscribes to a daemon's verdicts and heartbeats
in a thread of its own (every verdict kept with its arrival time; nothing dropped on our side).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from inspector.line import transport
from inspector.line.processes import Child, inspector_command
from inspector.line.wire import Heartbeat, Verdict, WireError, decode_message

DEFAULT_GRACE_S = 15.0


class HarnessError(RuntimeError):
    """A process of the harness failed (exited, printed nothing, did not finish)."""


class Processes:
    """``inspector`` processes by name; each one's output (stdout + stderr) goes to
    ``logs/NAME.log`` and stays readable (:meth:`output`, :meth:`summary`)."""

    def __init__(self, logs: str | Path, *, cwd: str | Path | None = None) -> None:
        self.logs = Path(logs)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cwd = cwd
        self.children: dict[str, Child] = {}

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Child:
        """Start ``inspector ARGS`` as ``name`` (a name in use is stopped first)."""
        if name in self.children:
            self.stop(name)
        self.log_path(name).unlink(missing_ok=True)
        child = Child(name, inspector_command(*args), env=env, log_path=self.log_path(name), cwd=self.cwd).start()
        self.children[name] = child
        return child

    def check_alive(self, name: str) -> None:
        child = self.children[name]
        if not child.alive():
            raise HarnessError(f"{name} exited with {child.returncode}; see {self.log_path(name)}")

    def wait_line(self, name: str, prefix: str, timeout: float) -> str:
        """The first output line of ``name`` that starts with ``prefix`` (e.g. a port it announces);
        HarnessError when ``name`` exits or ``timeout`` s pass first."""
        child = self.children[name]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = next((x for x in list(child.lines) if x.startswith(prefix)), None)
            if line is not None:
                return line
            self.check_alive(name)
            time.sleep(0.02)
        raise HarnessError(f"{name} printed no {prefix!r} line in {timeout:g} s; see {self.log_path(name)}")

    def wait_exit(self, name: str, timeout: float) -> Child:
        """Wait for ``name`` to finish by itself; HarnessError (after killing it) when it does not."""
        child = self.children.pop(name)
        if child.wait(timeout) is None:
            child.stop(0.0)
            raise HarnessError(f"{name} did not finish in {timeout:g} s; see {self.log_path(name)}")
        return child

    def stop(self, name: str, grace_s: float = DEFAULT_GRACE_S) -> Child:
        """SIGTERM ``name``, SIGKILL after ``grace_s``; returns the (finished) child."""
        child = self.children.pop(name)
        child.stop(grace_s)
        return child

    def stop_all(self, grace_s: float = 10.0) -> None:
        """Stop everything still running (nothing may outlive the harness)."""
        for name in list(self.children):
            self.stop(name, grace_s)


def start_station(procs: Processes, config_path: str | Path, *, timeout: float = 60.0) -> str | None:
    """The station of a box config (docs/station.md): ``inspector archive`` (its ``[archive]``) and
    ``inspector ui`` (its ``[ui]``, when there is one) as ``archive`` and ``ui``; waits until the
    archive's subscriptions are in place (a daemon must be publishing) and the page answers.
    Returns the page's address (None without ``[ui]``)."""
    from inspector.line.config import load_config

    config = load_config(config_path)
    procs.start("archive", "archive", "--config", str(config_path))
    procs.wait_line("archive", "archive ready", timeout)
    if config.ui is None:
        return None
    procs.start("ui", "ui", "--config", str(config_path))
    return procs.wait_line("ui", "ui ready: ", timeout).split("ui ready: ", 1)[1].strip()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy (returned); HarnessError naming
    ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Arrival:
    """One verdict and when it arrived here (``time.time_ns()``)."""

    verdict: Verdict
    arrival_ns: int


class VerdictSubscriber:
    """SUB on a daemon's verdicts + heartbeats, read in a background thread: each decoded message
    goes to :meth:`on_verdict` / :meth:`on_heartbeat` (subclasses; called in that thread);
    ``malformed`` counts messages that did not decode. Subclasses set their own state first, then
    call ``super().__init__``, which starts the thread. Close it with :meth:`close`."""

    def __init__(self, endpoint: str, name: str = "verdicts", curve: transport.ClientCurve | None = None) -> None:
        self.context = zmq.Context()
        self.sock = transport.verdict_subscriber(self.context, endpoint, curve=curve)
        self.lock = threading.Lock()
        self.malformed = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            if not self.sock.poll(50):
                continue
            while True:
                try:
                    parts = self.sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._on(parts, time.time_ns())

    def _on(self, parts: list, arrival_ns: int) -> None:
        try:
            message = decode_message(parts)
        except WireError:
            self.malformed += 1
            return
        if isinstance(message, Heartbeat):
            self.on_heartbeat(message)
        else:
            self.on_verdict(message, arrival_ns)

    def on_verdict(self, verdict: Verdict, arrival_ns: int) -> None:
        raise NotImplementedError

    def on_heartbeat(self, beat: Heartbeat) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._done.set()
        self._thread.join(2)
        self.sock.close(0)
        self.context.term()


class VerdictCollector(VerdictSubscriber):
    """Every verdict in arrival order (``arrivals``); ``ready``: the last heartbeat's ready flag
    (None before the first)."""

    def __init__(self, endpoint: str, curve: transport.ClientCurve | None = None) -> None:
        self.arrivals: list[Arrival] = []
        self.ready: bool | None = None
        super().__init__(endpoint, curve=curve)

    def on_heartbeat(self, beat: Heartbeat) -> None:
        self.ready = beat.ready

    def on_verdict(self, verdict: Verdict, arrival_ns: int) -> None:
        with self.lock:
            self.arrivals.append(Arrival(verdict, arrival_ns))

    @property
    def verdicts(self) -> list[Verdict]:
        with self.lock:
            return [a.verdict for a in self.arrivals]

    def wait_ready(self, timeout_s: float, alive=lambda: True) -> bool:
        """Until a heartbeat says ready (True), ``alive()`` turns False or ``timeout_s`` passes (False)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and alive():
            if self.ready:
                return True
            time.sleep(0.05)
        return bool(self.ready)
