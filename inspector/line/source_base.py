"""What every frame source shares: the frame type, the source protocol, errors and plumbing.

A :class:`SourceFrame`'s ``image`` is ``numpy.uint8``, C-contiguous, H x W x C with C = 1
(``"mono8"``) or C = 3 in BGR order (``"bgr8"``), values 0..255; ``capture_ns`` is
``time.time_ns()`` (wall clock) taken when the frame was read/grabbed. Decoded video/camera frames
become such images by :func:`normalize_image` (the rules of :mod:`inspector.core.images`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterator, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from inspector.core.images import PIXEL_FORMATS, ImageReadError, to_mono8_or_bgr8

__all__ = ["PIXEL_FORMATS", "BaseSource", "FrameSource", "SourceError", "SourceFrame", "UnsupportedImageError",
           "normalize_image", "redact_url"]


class SourceError(RuntimeError):
    """A source cannot be opened or cannot go on (bad spec, missing file/device, driver error)."""


class UnsupportedImageError(SourceError):
    """An image whose dtype or channel layout has no defined conversion to mono8/bgr8."""


@dataclass(frozen=True)
class SourceFrame:
    """One grabbed frame.

    ``image``: uint8, C-contiguous, H x W x C, C = 1 (mono8) or 3 (bgr8). ``label``: ground-truth
    kind where the source knows it (MVTec: "good", "crack", ...), else None. ``source``: where it
    came from ("<kind>/<file>", file name, "video.avi#12", redacted stream URL), or None.
    ``capture_ns``: ``time.time_ns()`` when the frame was read.
    """

    image: np.ndarray
    pixel_format: str
    label: str | None
    source: str | None
    capture_ns: int


@runtime_checkable
class FrameSource(Protocol):
    """Iterating yields :class:`SourceFrame` until the source ends (files) or is closed.

    ``skipped`` counts inputs that could not be turned into a frame (unreadable files, bad buffers).
    """

    description: str
    skipped: int

    def __iter__(self) -> Iterator[SourceFrame]: ...

    def close(self) -> None: ...


def normalize_image(image: np.ndarray) -> tuple[np.ndarray, str]:
    """A decoded frame (as OpenCV gives it) -> (uint8 H x W x C, pixel format), by the rules of
    :func:`inspector.core.images.to_mono8_or_bgr8` (the ones image files follow).

    Raises :class:`UnsupportedImageError` for any other dtype, an empty image or another channel
    count. The result is always a C-contiguous array that owns or views ``image``'s data.
    """
    try:
        return to_mono8_or_bgr8(image)
    except ImageReadError as exc:
        raise UnsupportedImageError(str(exc)) from None


def redact_url(url: str) -> str:
    """Drop ``user:password@`` from a URL so that it can be logged and put on the wire."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class BaseSource:
    """Shared plumbing: ``skipped`` counter, ``close()``, and an optional external ``stop_event``
    (set by :func:`open_source`) that ends an iteration like ``close()`` does, e.g. from a signal
    handler while a live source waits to reconnect."""

    description = "source"
    stop_event: threading.Event | None = None

    def __init__(self) -> None:
        self.skipped = 0
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set() or (self.stop_event is not None and self.stop_event.is_set())

    def _sleep(self, seconds: float) -> None:
        """Sleep in short slices; returns early once the source is closed or stopped."""
        end = time.monotonic() + seconds
        while not self.closed:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def close(self) -> None:
        """Stop the iteration at the next frame and free resources; safe to call twice."""
        self._closed.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"
