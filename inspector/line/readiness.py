"""Readiness of a box's processes, the systemd way: a child says ``READY=1`` on ``NOTIFY_SOCKET``.

The daemon sends ``READY=1`` when its engine is loaded and warmed up and its sockets are bound; a
gateway sends it when the daemon's first heartbeat has reached it, i.e. when its subscription is in
place and no verdict published from then on can miss it (ZeroMQ PUB/SUB drops what is published
before a subscriber has joined). ``inspector line`` starts the grabbers only when the daemon and
every gateway are ready (:class:`inspector.line.supervisor.Supervisor`); under systemd the grabber
units are ordered after them the same way.

:class:`ReadyListener` is the supervisor's end: one Unix datagram socket per child (so no sender
credentials are needed), polled without blocking. Failure behaviour: a socket that cannot be
created raises OSError at construction; unreadable datagrams are ignored.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import sdnotify

READY = "READY=1"
MAX_DATAGRAM = 4096


def notify_ready() -> None:
    """Tell whoever started this process (systemd or ``inspector line``) that it is ready; a no-op
    without ``NOTIFY_SOCKET``."""
    sdnotify.SystemdNotifier().notify(READY)


class ReadyListener:
    """The ``NOTIFY_SOCKET`` of one child: ``env()`` goes into its environment, ``poll()`` says
    whether it has sent ``READY=1`` since the last ``reset()`` (call it when the child restarts)."""

    def __init__(self, folder: str | Path, name: str) -> None:
        self.path = Path(folder) / f"{name}.notify"
        self.path.unlink(missing_ok=True)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(self.path))
        self._socket.setblocking(False)
        self.ready = False

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path)}

    def reset(self) -> None:
        self.poll()
        self.ready = False

    def poll(self) -> bool:
        while True:
            try:
                data = self._socket.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return self.ready
            except OSError:
                return self.ready
            if READY in data.decode("utf-8", "replace").splitlines():
                self.ready = True

    def close(self) -> None:
        self._socket.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
