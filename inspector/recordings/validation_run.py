"""One validation run: ``inspector serve`` as a child process (the line harness's
:class:`inspector.line.processes.Child`), the recording replayed into it, every verdict matched to
its frame, SIGTERM and the drain. Part of `inspector validate`."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import zmq

from inspector.line import transport, wire
from inspector.line.config import check_config

from inspector.recordings.validation_setup import (BIND_ATTEMPTS, DEFAULT_START_TIMEOUT_S, DEFAULT_TIMEOUT_S, POLL_MS,
                                                  REPLAY_ERROR_WAIT_S, REPLAY_SEND_TIMEOUT_S, STOP_GRACE_S, ExpectedFrame,
                                                  RunSpec, ValidationError, _run_config, dump_toml)

from inspector.line.processes import Child, inspector_command
from inspector.recordings.replay import Credits

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# One run: daemon process, replay, verdict collection
# ------------------------------------------------------------------------------------------------


class _DaemonProcess(Child):
    """``inspector serve --config PATH`` as a child of the line harness
    (:class:`inspector.line.processes.Child`): its output, logs and the summary line, goes to
    ``log_path``. Always terminated by :meth:`close`."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        log_path.unlink(missing_ok=True)
        super().__init__("daemon", inspector_command("serve", "--config", str(config_path)), log_path=log_path)
        self.start()

    def log_tail(self, lines: int = 15) -> str:
        if not self.alive():
            self.wait(2.0)  # the whole log has been read
        return "\n".join(list(self.lines)[-lines:])

    def summary(self) -> dict[str, Any] | None:
        """The summary JSON the daemon printed at exit, or None."""
        return self.last_json()

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def close(self, timeout_s: float = 5.0) -> None:
        """Make sure the process is gone: SIGTERM, then SIGKILL after ``timeout_s``."""
        self.stop(timeout_s)


class _BindFailed(Exception):
    pass


class _Collector:
    """Matches verdicts to the recording's frames: (camera_id, seq), first come first matched for
    repeated keys. ``sequence_gap`` verdicts are counted apart; a verdict for no known frame is
    ``unexpected``; more verdicts than frames for a key are ``duplicates``."""

    def __init__(self, frames: list[ExpectedFrame], credits: Credits | None = None) -> None:
        self.credits = credits  # given back per frame answered (credit-based replay pacing)
        self.waiting: dict[tuple[str, int], deque[int]] = {}
        for f in frames:
            self.waiting.setdefault(f.key, deque()).append(f.index)
        self.matched: set[tuple[str, int]] = set()
        self.verdicts: dict[int, wire.Verdict] = {}
        self.gap_verdicts = 0
        self.unexpected = 0
        self.duplicates = 0
        self.last_ready: bool | None = None

    def on_message(self, message: wire.Verdict | wire.Heartbeat) -> None:
        if isinstance(message, wire.Heartbeat):
            self.last_ready = message.ready
            return
        if message.reason == "sequence_gap":
            self.gap_verdicts += 1
            return
        key = (message.camera_id, message.seq)
        queue = self.waiting.get(key)
        if queue:
            self.verdicts[queue.popleft()] = message
            self.matched.add(key)
            if self.credits is not None:
                self.credits.give()
        elif key in self.matched:
            self.duplicates += 1
        else:
            self.unexpected += 1

    def complete(self, frames: Iterable[ExpectedFrame]) -> bool:
        return all(f.index in self.verdicts for f in frames)


def _drain(sub: zmq.Socket, collector: _Collector, wait_ms: int) -> int:
    """Take every message waiting on ``sub`` (waiting up to ``wait_ms`` for the first one)."""
    taken = 0
    if not sub.poll(wait_ms):
        return 0
    while True:
        try:
            parts = sub.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return taken
        taken += 1
        try:
            collector.on_message(wire.decode_message(parts))
        except wire.WireError as exc:
            log.warning("skipping a malformed message from the daemon: %s", exc)


def _wait_ready(daemon: _DaemonProcess, sub: zmq.Socket, collector: _Collector, timeout_s: float) -> None:
    """Until a heartbeat says ready. Raises _BindFailed (ports taken: retry) or ValidationError."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        _drain(sub, collector, POLL_MS)
        if collector.last_ready:
            return
        if not daemon.alive():
            tail = daemon.log_tail()
            if "cannot bind" in tail:
                raise _BindFailed(tail)
            raise ValidationError(f"the daemon exited with status {daemon.proc.returncode} before it was ready; "
                                  f"its log ends:\n{tail}")
    state = "no heartbeat at all" if collector.last_ready is None else "heartbeats say ready = false"
    raise ValidationError(f"the daemon was not ready within {timeout_s:g} s ({state}); its log ends:\n{daemon.log_tail()}")


def credit_window(config: dict[str, Any]) -> int:
    """Frames the replay may have without a verdict: at most a batch plus the queue, i.e. one batch
    being judged and one waiting (``max_batch + min(max_queue, max_batch)``), so that frames never
    wait on the replay's haste and the verdicts measure the model, not the replay."""
    batch = int(config.get("engine", {}).get("max_batch", 8))
    queue = int(config.get("overload", {}).get("max_queue", 64))
    return batch + min(queue, batch)


@dataclass
class RunOutcome:
    """What one run produced (input of :func:`summarise`)."""

    verdicts: dict[int, wire.Verdict]
    sent: int | None                  # None: the replay failed after an unknown number of frames
    replay: dict[str, Any] | None
    replay_error: str
    daemon: dict[str, Any] | None
    gap_verdicts: int = 0
    unexpected_verdicts: int = 0
    duplicate_verdicts: int = 0
    daemon_log: str = ""
    timed_out: bool = False
    daemon_died: bool = False


def _replay_in_thread(recording: Path, endpoint: str, box: dict[str, Any], stop: threading.Event,
                      **kwargs: Any) -> threading.Thread:
    """Run :func:`inspector.recordings.replay.replay` in a thread; its summary (or error text) lands in ``box``."""
    from inspector.recordings.replay import replay

    def target() -> None:
        try:
            box["summary"] = replay(recording, endpoint, stop=stop, **kwargs)
        except BaseException as exc:  # reported, never lost in the thread
            box["error"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=target, name="validate-replay", daemon=True)
    thread.start()
    return thread


def _collect(daemon: _DaemonProcess, sub: zmq.Socket, collector: _Collector, frames: list[ExpectedFrame],
             thread: threading.Thread, box: dict[str, Any], timeout_s: float) -> tuple[bool, bool]:
    """Collect until every sent frame has a verdict, ``timeout_s`` after the replay ended, or the
    daemon died. Returns (timed out, daemon died)."""
    wait_until: float | None = None
    sent: int | None = None
    next_progress = time.monotonic() + 5.0
    while True:
        _drain(sub, collector, POLL_MS)
        now = time.monotonic()
        if now >= next_progress:
            log.info("%d of %d frames have a verdict", len(collector.verdicts), len(frames))
            next_progress = now + 5.0
        if not daemon.alive():
            _drain(sub, collector, POLL_MS)
            return False, True
        if wait_until is None and not thread.is_alive():
            # a failed replay sent an unknown number of frames: wait briefly for their verdicts
            sent = box["summary"]["sent"] if "summary" in box else None
            wait_until = now + (timeout_s if sent is not None else min(timeout_s, REPLAY_ERROR_WAIT_S))
        if wait_until is not None:
            if sent is not None and collector.complete(frames[:sent]):
                return False, False
            if now >= wait_until:
                return sent is not None, False


def _stop_daemon(daemon: _DaemonProcess, sub: zmq.Socket, collector: _Collector, config: dict[str, Any]) -> None:
    """SIGTERM, keep collecting what the drain publishes, until the process exits (bounded)."""
    section = config.get("daemon", {})
    limit = (section.get("drain_ms", 2000) + section.get("linger_ms", 1000)) / 1000.0 + STOP_GRACE_S
    daemon.terminate()
    end = time.monotonic() + limit
    while daemon.alive() and time.monotonic() < end:
        _drain(sub, collector, POLL_MS)
    _drain(sub, collector, 0)
    if daemon.alive():
        log.error("the daemon did not stop within %.0f s after SIGTERM; killing it", limit)
    daemon.close(timeout_s=0.1)


def run_once(recording: str | Path, frames: list[ExpectedFrame], spec: RunSpec, *, name: str = "A",
             workdir: str | Path, speed: float | None = None, max_rate: bool = True, deadline_ms: float | None = None,
             timeout_s: float = DEFAULT_TIMEOUT_S, start_timeout_s: float = DEFAULT_START_TIMEOUT_S) -> RunOutcome:
    """Start a daemon for ``spec``, replay ``recording`` into it, collect the verdicts, stop it.
    ``frames``: the recording's frames (:func:`read_frames`). Files (config, logs) go to
    ``workdir``. Raises ValidationError when the config is unusable or the daemon does not start."""
    workdir = Path(workdir)
    for attempt in range(1, BIND_ATTEMPTS + 1):
        config = _run_config(spec, name, workdir)
        config_path = workdir / f"daemon-{name}.toml"
        config_path.write_text(dump_toml(config))
        problems = [p.replace(str(config_path), f"(config {name})") for p in check_config(config_path)]
        if problems:
            raise ValidationError(f"configuration {name} ({spec.description}) is not usable:\n  " + "\n  ".join(problems))
        try:
            return _run_daemon(recording, frames, config, config_path, name, workdir, speed=speed, max_rate=max_rate,
                               deadline_ms=deadline_ms, timeout_s=timeout_s, start_timeout_s=start_timeout_s)
        except _BindFailed as exc:
            if attempt == BIND_ATTEMPTS:
                raise ValidationError(f"the daemon could not bind its sockets {BIND_ATTEMPTS} times:\n{exc}") from None
            log.warning("daemon %s could not bind (port taken meanwhile); retrying with fresh ports", name)
    raise AssertionError("unreachable")


def _run_daemon(recording: str | Path, frames: list[ExpectedFrame], config: dict[str, Any], config_path: Path, name: str,
                workdir: Path, *, speed: float | None, max_rate: bool, deadline_ms: float | None, timeout_s: float,
                start_timeout_s: float) -> RunOutcome:
    context = zmq.Context()
    sub = transport.verdict_subscriber(context, config["daemon"]["verdicts"])
    daemon = _DaemonProcess(config_path, workdir / f"daemon-{name}.log")
    stop_replay = threading.Event()
    credits = Credits(credit_window(config))
    try:
        collector = _Collector(frames, credits)
        started = time.monotonic()
        _wait_ready(daemon, sub, collector, start_timeout_s)
        log.info("daemon %s ready after %.1f s; replaying %d frames", name, time.monotonic() - started, len(frames))
        box: dict[str, Any] = {}
        thread = _replay_in_thread(Path(recording), config["daemon"]["frames"], box, stop_replay,
                                   speed=1.0 if speed is None else speed, max_rate=max_rate, deadline_ms=deadline_ms,
                                   send_timeout_s=REPLAY_SEND_TIMEOUT_S, credits=credits)
        timed_out, died = _collect(daemon, sub, collector, frames, thread, box, timeout_s)
        stop_replay.set()  # a replay still running (the daemon died) stops at its next frame
        thread.join(REPLAY_SEND_TIMEOUT_S + 5.0)
        _stop_daemon(daemon, sub, collector, config)
    finally:
        stop_replay.set()
        daemon.close()
        sub.close(0)
        context.term()
    summary = box.get("summary")
    return RunOutcome(
        verdicts=collector.verdicts, sent=None if summary is None else summary["sent"], replay=summary,
        replay_error=box.get("error", ""),
        daemon=daemon.summary(), gap_verdicts=collector.gap_verdicts, unexpected_verdicts=collector.unexpected,
        duplicate_verdicts=collector.duplicates, daemon_log=str(daemon.log_path), timed_out=timed_out,
        daemon_died=died,
    )
