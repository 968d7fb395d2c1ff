"""OpenCV sources: video files, cameras (index or /dev/videoN) and network streams."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2

from inspector.line.source_base import (BaseSource, SourceError, SourceFrame, UnsupportedImageError, normalize_image,
                                        redact_url)

__all__ = ["LiveCaptureSource", "VideoFileSource"]

log = logging.getLogger(__name__)


class VideoFileSource(BaseSource):
    """Frames of a video file via ``cv2.VideoCapture``; ``source`` = "<file>#<frame index>".

    With ``loop`` the file is reopened at its end; a pass that yields nothing ends the iteration.
    Raises :class:`SourceError` when the file does not exist or OpenCV cannot open it.
    """

    def __init__(self, path: str | os.PathLike, *, loop: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.loop = loop
        self.description = f"video file {self.path}"
        if not self.path.is_file():
            raise SourceError(f"video file {self.path} does not exist")
        self._capture = self._open()

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"OpenCV cannot open video file {self.path}")
        return capture

    def __iter__(self) -> Iterator[SourceFrame]:
        while not self.closed:
            index = 0
            while not self.closed:
                ok, frame = self._capture.read()
                if not ok:
                    break
                try:
                    image, pixel_format = normalize_image(frame)
                except UnsupportedImageError as exc:
                    self.skipped += 1
                    log.warning("%s frame %d skipped: %s", self.path, index, exc)
                    index += 1
                    continue
                yield SourceFrame(image, pixel_format, None, f"{self.path.name}#{index}", time.time_ns())
                index += 1
            if not self.loop or index == 0 or self.closed:
                return
            self._capture.release()
            self._capture = self._open()

    def close(self) -> None:
        super().close()
        self._capture.release()


def _default_capture_factory(target: int | str) -> cv2.VideoCapture:
    if isinstance(target, str) and "://" in target:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
        return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
    capture = cv2.VideoCapture(target)
    if capture.isOpened():
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a stale queue (where supported)
    return capture


class LiveCaptureSource(BaseSource):
    """An OpenCV camera (index or /dev/videoN) or network stream (rtsp://, http://, ...).

    The first open must succeed (else :class:`SourceError`: a wrong device or URL is a
    configuration error). After that, a failed read releases the capture and reopens it with a
    bounded exponential backoff (``reconnect_initial_s`` doubling up to ``reconnect_max_s``; reset
    after a good frame). ``max_reconnects`` consecutive failed reopen attempts end the source with
    :class:`SourceError` (None: retry forever). ``reconnects`` counts successful reopens.
    ``source`` on frames is the target with any password removed.
    """

    def __init__(self, target: int | str, *, reconnect_initial_s: float = 0.1, reconnect_max_s: float = 5.0,
                 max_reconnects: int | None = None,
                 capture_factory: Callable[[int | str], Any] = _default_capture_factory,
                 loop: bool = False) -> None:
        super().__init__()
        del loop  # live sources are endless anyway
        if reconnect_initial_s <= 0 or reconnect_max_s < reconnect_initial_s:
            raise SourceError("need 0 < reconnect_initial_s <= reconnect_max_s")
        self.target = target
        self.name = redact_url(target) if isinstance(target, str) else f"cam:{target}"
        self.description = f"live capture {self.name}"
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.max_reconnects = max_reconnects
        self.reconnects = 0
        self._factory = capture_factory
        self._capture = self._factory(target)
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(f"cannot open {self.name}")

    def _reopen(self) -> bool:
        """Reopen with backoff until it works (True) or the source is closed (False)."""
        delay, attempts = self.reconnect_initial_s, 0
        self._capture.release()
        while not self.closed:
            log.warning("%s: read failed; reconnecting in %.2f s", self.name, delay)
            self._sleep(delay)
            if self.closed:
                return False
            self._capture = self._factory(self.target)
            if self._capture.isOpened():
                self.reconnects += 1
                log.info("%s: reconnected", self.name)
                return True
            self._capture.release()
            attempts += 1
            if self.max_reconnects is not None and attempts >= self.max_reconnects:
                raise SourceError(f"{self.name}: gave up after {attempts} failed reconnects")
            delay = min(delay * 2, self.reconnect_max_s)
        return False

    def __iter__(self) -> Iterator[SourceFrame]:
        while not self.closed:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                if not self._reopen():
                    return
                continue
            try:
                image, pixel_format = normalize_image(frame)
            except UnsupportedImageError as exc:
                self.skipped += 1
                log.warning("%s: frame skipped: %s", self.name, exc)
                continue
            yield SourceFrame(image, pixel_format, None, self.name, time.time_ns())

    def close(self) -> None:
        super().close()
        self._capture.release()
