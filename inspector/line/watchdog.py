"""systemd integration (``Type=notify``): READY / STOPPING notifications and the watchdog.

:class:`Watchdog` pets systemd's watchdog (``WATCHDOG=1``) every half period (capped at 1 s) while
the process's liveness check says healthy, and stops petting while it does not, so that systemd
restarts a stuck process. Without systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import sdnotify

from inspector.line.logs import Throttle

log = logging.getLogger("inspector.daemon")


def watchdog_interval_s() -> float | None:
    """Half the systemd watchdog period (``WATCHDOG_USEC``), capped at 1 s; None when systemd
    asked for no watchdog (or for another process: ``WATCHDOG_PID``)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        period_s = int(usec) / 1e6
    except ValueError:
        return None
    return min(1.0, period_s / 2) if period_s > 0 else None


class Watchdog:
    """``liveness() -> (healthy, reason)`` is asked at each due pet. Call :meth:`tick` from the
    serving loop with ``time.monotonic()``."""

    def __init__(self, liveness: Callable[[], tuple[bool, str]], throttle: Throttle | None = None) -> None:
        self.liveness = liveness
        self._notifier = sdnotify.SystemdNotifier()
        self.interval_s = watchdog_interval_s()
        self._next = 0.0
        self._throttle = throttle or Throttle()

    def ready(self) -> None:
        self._notifier.notify("READY=1")

    def stopping(self) -> None:
        self._notifier.notify("STOPPING=1")

    def tick(self, now: float) -> None:
        if self.interval_s is None or now < self._next:
            return
        self._next = now + self.interval_s
        healthy, reason = self.liveness()
        if healthy:
            self._notifier.notify("WATCHDOG=1")
        elif self._throttle("unhealthy"):
            log.error("unhealthy, not petting the systemd watchdog: %s", reason)
