"""The line's structured logs: one JSON object per line, and a throttle for noisy events.

Used by every long-running process (``inspector serve``, the supervisor of ``inspector line``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from typing import Any

LOG_FIRST = 10      # per kind of noisy event: log the first N ...
LOG_EVERY = 1000    # ... then every N-th

_STANDARD_LOG_KEYS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (Unix s), ``level``, ``logger``, ``msg`` and any
    ``extra={...}`` fields of the call; ``exc`` holds a traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_LOG_KEYS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(log_format: str, verbose: bool = False) -> None:
    """Root logger -> stderr, as JSON lines (``"json"``) or plain text (``"text"``)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


class Throttle:
    """``throttle(kind)`` is True for the first LOG_FIRST events of a kind, then every LOG_EVERY-th:
    a flood of one bad input cannot flood the log. Thread safe enough for counting (a lost
    increment only shifts which event is logged)."""

    def __init__(self, first: int = LOG_FIRST, every: int = LOG_EVERY) -> None:
        self.first, self.every = first, every
        self.counts: Counter[str] = Counter()

    def __call__(self, kind: str) -> bool:
        self.counts[kind] += 1
        n = self.counts[kind]
        return n <= self.first or n % self.every == 0
