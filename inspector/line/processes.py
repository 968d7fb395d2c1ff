"""Child processes of the line: start, one prefixed log stream, SIGTERM then kill.

:class:`Child` is used by the supervisor of ``inspector line`` (:mod:`inspector.line.supervisor`)
and by the line harness that demo, validate, the benchmarks and the tests start lines with
(:mod:`inspector.line.harness`). A child's stdout and stderr are merged; a thread reads them line
by line, keeps the last ``keep_lines`` (for summaries and error messages), appends them to
``log_path`` when given and hands each to ``sink(name, line)`` (the supervisor prints them
prefixed by the process name). Never raises for a child that misbehaves: a child that ignores
SIGTERM is killed after the grace period.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

Sink = Callable[[str, str], None]

DEFAULT_KEEP_LINES = 2000


def inspector_command(*args: str) -> list[str]:
    """``python -m inspector.cli ARGS``: how every process of the line is started (the supervisor,
    the harness and the systemd units use the same command lines)."""
    return [sys.executable, "-m", "inspector.cli", *args]


class Child:
    """One child process. ``argv``: its command line; ``env``: extra environment variables."""

    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 sink: Sink | None = None, log_path: str | Path | None = None, cwd: str | Path | None = None,
                 keep_lines: int = DEFAULT_KEEP_LINES) -> None:
        self.name, self.argv = name, list(argv)
        self.env, self.sink, self.cwd = env, sink, cwd
        self.log_path = Path(log_path) if log_path else None
        self.lines: deque[str] = deque(maxlen=keep_lines)
        self.proc: subprocess.Popen | None = None
        self._pump: threading.Thread | None = None

    def start(self) -> "Child":
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=self.cwd, text=True, errors="replace", bufsize=1)
        self._pump = threading.Thread(target=self._read, name=f"log-{self.name}", daemon=True)
        self._pump.start()
        return self

    def _read(self) -> None:
        log_file = open(self.log_path, "a", encoding="utf-8") if self.log_path else None
        try:
            for raw in self.proc.stdout:
                line = raw.rstrip("\n")
                self.lines.append(line)
                if log_file:
                    log_file.write(line + "\n")
                    log_file.flush()
                if self.sink:
                    self.sink(self.name, line)
        finally:
            if log_file:
                log_file.close()

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, signum: int) -> None:
        if self.alive():
            try:
                self.proc.send_signal(signum)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit status, or None when it still runs after ``timeout`` s. Waits for the log too."""
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._pump is not None:
            self._pump.join(5.0)
        return code

    def stop(self, grace_s: float) -> int | None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL. Returns the exit status."""
        self.signal(signal.SIGTERM)
        code = self.wait(grace_s)
        if code is None:
            self.signal(signal.SIGKILL)
            code = self.wait(10.0)
        return code

    def output(self) -> str:
        return "\n".join(self.lines)

    def last_json(self) -> dict | None:
        """The last line of the output that is a JSON object (a command's summary), else None."""
        for line in reversed(self.lines):
            text = line.strip()
            if text.startswith("{"):
                try:
                    value = json.loads(text)
                except ValueError:
                    continue
                if isinstance(value, dict) and "level" not in value:  # not a JSON log line
                    return value
        return None


def stop_all(children: Sequence[Child], grace_s: float) -> None:
    """SIGTERM every child at once, give them ``grace_s`` together, then SIGKILL the rest."""
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        child.wait(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.alive():
            child.signal(signal.SIGKILL)
            child.wait(10.0)
