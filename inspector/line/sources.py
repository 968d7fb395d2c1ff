"""Frame sources: image folders, MVTec AD test sets, video files, OpenCV cameras/streams, GenICam.

Every source yields :class:`SourceFrame` objects whose ``image`` is ``numpy.uint8``, C-contiguous,
H x W x C with C = 1 (``"mono8"``) or C = 3 in BGR order (``"bgr8"``), values 0..255, and whose
``capture_ns`` is ``time.time_ns()`` (wall clock) taken when the frame was read/grabbed.

Conversion rules (one place: :func:`normalize_image`, :func:`convert_genicam`):

* files are read with ``cv2.IMREAD_UNCHANGED`` (so no silent colour/bit-depth conversion and no
  EXIF rotation);
* 16-bit samples become 8-bit by keeping the high byte (``value >> 8``); GenICam MonoN / BayerN
  (N in 10, 12, 14, 16, unpacked in 16-bit words) by ``value >> (N - 8)``;
* grayscale H x W becomes H x W x 1 ``"mono8"``; gray + alpha drops the alpha;
* BGRA (and GenICam RGBa8/BGRa8) drops the alpha -> BGR; GenICam RGB8 -> BGR;
* GenICam BayerRG8/GR8/GB8/BG8 are demosaiced to BGR (pattern named by its first two rows, PFNC);
* anything else (float images, more than 4 channels, packed GenICam formats) is unsupported: image
  files are skipped with a warning and counted in ``source.skipped``; GenICam buffers likewise.

Sources are chosen from a spec string by :func:`open_source`. A source is iterated in the thread
that opened it; ``close()`` stops an iteration in progress at the next frame and frees devices.
"""

from __future__ import annotations

import inspect
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".ts")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
PIXEL_FORMATS = ("mono8", "bgr8")


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


# --------------------------------------------------------------------------------------------
# conversions


def normalize_image(image: np.ndarray) -> tuple[np.ndarray, str]:
    """Image as read by ``cv2.imread(..., IMREAD_UNCHANGED)`` -> (uint8 H x W x C, pixel format).

    uint8 is kept, uint16 becomes ``value >> 8``; H x W and H x W x 1 -> "mono8"; H x W x 2
    (gray + alpha) -> "mono8"; H x W x 3 (BGR) -> "bgr8"; H x W x 4 (BGRA) -> "bgr8" (alpha
    dropped). Raises :class:`UnsupportedImageError` for any other dtype, an empty image or another
    channel count. The result is always a C-contiguous array that owns or views ``image``'s data.
    """
    if image is None or image.size == 0:
        raise UnsupportedImageError("empty image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise UnsupportedImageError(f"unsupported sample type {image.dtype} (only 8- and 16-bit unsigned)")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise UnsupportedImageError(f"unsupported image shape {image.shape}")
    channels = image.shape[2]
    if channels in (1, 2):
        return np.ascontiguousarray(image[:, :, :1]), "mono8"
    if channels in (3, 4):
        return np.ascontiguousarray(image[:, :, :3]), "bgr8"
    raise UnsupportedImageError(f"unsupported channel count {channels} (shape {image.shape})")


def _cv2_code(*names: str) -> int:
    for name in names:
        if hasattr(cv2, name):
            return int(getattr(cv2, name))
    raise AttributeError(names[0])


# PFNC Bayer pattern (first two rows, e.g. RG/GB) -> OpenCV demosaic code. OpenCV's older short
# names are shifted by one row (PFNC BayerRG == cv2 "BayerBG"), hence the explicit fallbacks.
_BAYER_TO_BGR = {
    "RG": ("COLOR_BayerRGGB2BGR", "COLOR_BayerBG2BGR"),
    "GR": ("COLOR_BayerGRBG2BGR", "COLOR_BayerGB2BGR"),
    "GB": ("COLOR_BayerGBRG2BGR", "COLOR_BayerGR2BGR"),
    "BG": ("COLOR_BayerBGGR2BGR", "COLOR_BayerRG2BGR"),
}
_GENICAM_COLOUR = {  # format -> (channels, to-BGR conversion or None)
    "RGB8": (3, cv2.COLOR_RGB2BGR),
    "RGB8Packed": (3, cv2.COLOR_RGB2BGR),
    "BGR8": (3, None),
    "BGR8Packed": (3, None),
    "RGBa8": (4, cv2.COLOR_RGBA2BGR),
    "RGBA8": (4, cv2.COLOR_RGBA2BGR),
    "RGBA8Packed": (4, cv2.COLOR_RGBA2BGR),
    "BGRa8": (4, cv2.COLOR_BGRA2BGR),
    "BGRA8": (4, cv2.COLOR_BGRA2BGR),
    "BGRA8Packed": (4, cv2.COLOR_BGRA2BGR),
}
_GENICAM_MONO_BAYER = re.compile(r"(Mono|Bayer(RG|GR|GB|BG))(8|10|12|14|16)")


def _to_8bit(samples: np.ndarray, bits: int) -> np.ndarray:
    """Unpacked N-bit samples (uint8 for N = 8, 16-bit words otherwise) -> uint8 by ``>> (N - 8)``."""
    if bits == 8:
        return samples.astype(np.uint8, copy=False)
    if samples.dtype == np.uint8:  # raw bytes of little-endian 16-bit words
        samples = samples.view("<u2")
    return (samples >> (bits - 8)).astype(np.uint8)


def convert_genicam(data: np.ndarray, width: int, height: int, data_format: str) -> tuple[np.ndarray, str]:
    """A GenICam image component (flat buffer) -> a new (uint8 H x W x C, "mono8" | "bgr8").

    Supported: Mono8/10/12/14/16, Bayer{RG,GR,GB,BG}{8,10,12,14,16} (unpacked), RGB8, BGR8,
    RGBa8/RGBA8, BGRa8/BGRA8. Raises :class:`UnsupportedImageError` for other formats (packed,
    YUV, 3D) and when the buffer size does not match width x height. Always copies, so the result
    stays valid after the driver buffer is re-queued.
    """
    flat = np.asarray(data).reshape(-1)
    match = _GENICAM_MONO_BAYER.fullmatch(data_format)
    if match:
        plane = _to_8bit(flat, int(match.group(3)))
        if plane.size != width * height:
            raise UnsupportedImageError(
                f"{data_format} buffer of {plane.size} samples does not match {width}x{height}")
        plane = plane.reshape(height, width)
        if match.group(2) is None:
            return np.array(plane[:, :, None], order="C"), "mono8"
        code = _cv2_code(*_BAYER_TO_BGR[match.group(2)])
        return np.ascontiguousarray(cv2.cvtColor(plane, code)), "bgr8"
    if data_format in _GENICAM_COLOUR:
        channels, code = _GENICAM_COLOUR[data_format]
        if flat.dtype != np.uint8 or flat.size != width * height * channels:
            raise UnsupportedImageError(
                f"{data_format} buffer ({flat.size} x {flat.dtype}) does not match {width}x{height}x{channels}")
        image = flat.reshape(height, width, channels)
        bgr = image.copy() if code is None else cv2.cvtColor(image, code)
        return np.ascontiguousarray(bgr), "bgr8"
    raise UnsupportedImageError(
        f"unsupported GenICam pixel format {data_format!r}; supported: Mono8..16, Bayer**8..16, "
        f"{', '.join(sorted(_GENICAM_COLOUR))}")


def redact_url(url: str) -> str:
    """Drop ``user:password@`` from a URL so that it can be logged and put on the wire."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


# --------------------------------------------------------------------------------------------
# file sources


@dataclass(frozen=True)
class _FileEntry:
    path: Path
    label: str | None
    name: str


class _BaseSource:
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


def read_image_file(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Read one image file -> (uint8 H x W x C, "mono8" | "bgr8") by :func:`normalize_image`.

    Raises :class:`UnsupportedImageError` when the file cannot be read or decoded.
    """
    try:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise UnsupportedImageError(f"cannot decode: {exc}") from exc
    if image is None:
        raise UnsupportedImageError("unreadable or not an image")
    return normalize_image(image)


class FileListSource(_BaseSource):
    """Yields image files in the given order; with ``loop`` repeats the list forever.

    Unreadable or unsupported files are skipped with a warning, counted once in ``skipped`` and
    left out of later passes. A pass that yields nothing ends the iteration (no busy loop).
    """

    def __init__(self, entries: Sequence[_FileEntry], *, loop: bool = False, description: str = "") -> None:
        super().__init__()
        if not entries:
            raise SourceError(f"no images in {description or 'the file list'}")
        self.entries = list(entries)
        self.loop = loop
        self.description = description or f"{len(self.entries)} image files"
        self._bad: set[int] = set()

    def __iter__(self) -> Iterator[SourceFrame]:
        while not self.closed:
            yielded = 0
            for index, entry in enumerate(self.entries):
                if self.closed:
                    return
                if index in self._bad:
                    continue
                try:
                    image, pixel_format = read_image_file(entry.path)
                except (UnsupportedImageError, OSError) as exc:
                    self._bad.add(index)
                    self.skipped += 1
                    log.warning("skipping %s: %s", entry.path, exc)
                    continue
                yielded += 1
                yield SourceFrame(image, pixel_format, entry.label, entry.name, time.time_ns())
            if not self.loop:
                return
            if yielded == 0:
                log.warning("%s: no readable image in a whole pass; stopping", self.description)
                return


def list_images(folder: Path) -> list[Path]:
    """Image files (by suffix, case-insensitive) directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def image_folder_source(folder: str | os.PathLike, *, loop: bool = False) -> FileListSource:
    """Images directly in ``folder`` (sorted by name); ``label`` None, ``source`` = file name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"image folder {folder} does not exist")
    entries = [_FileEntry(p, None, p.name) for p in list_images(folder)]
    return FileListSource(entries, loop=loop, description=f"image folder {folder}")


def interleave_kinds(files_by_kind: dict[str, list[Path]], seed: int | None = None) -> list[tuple[str, Path]]:
    """Order MVTec test files so that a stream shows a mix of kinds.

    Without ``seed``: a deterministic proportional interleave; the i-th of n files of a kind is
    placed at (i + 0.5) / n of the stream (ties by kind name), so every kind is spread evenly.
    With ``seed``: a ``random.Random(seed)`` shuffle of all files (reproducible).
    Files within a kind are taken in name order.
    """
    pairs = [(kind, path) for kind in sorted(files_by_kind) for path in sorted(files_by_kind[kind])]
    if seed is not None:
        random.Random(seed).shuffle(pairs)
        return pairs
    keyed = []
    for kind in sorted(files_by_kind):
        files = sorted(files_by_kind[kind])
        keyed += [((i + 0.5) / len(files), kind, path) for i, path in enumerate(files)]
    keyed.sort(key=lambda k: (k[0], k[1], k[2].name))
    return [(kind, path) for _, kind, path in keyed]


def mvtec_source(root: str | os.PathLike, *, loop: bool = False, seed: int | None = None,
                 split: str = "test") -> FileListSource:
    """An MVTec AD-layout category (``root/<split>/<kind>/*.png``) as a labelled stream.

    ``label`` = kind ("good", "crack", ...), ``source`` = "<kind>/<file>"; order by
    :func:`interleave_kinds`. Raises :class:`SourceError` when ``root/<split>`` is missing or empty.
    """
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise SourceError(f"{root} is not an MVTec AD-layout folder: {split_dir} does not exist")
    files_by_kind = {d.name: list_images(d) for d in sorted(split_dir.iterdir()) if d.is_dir()}
    files_by_kind = {kind: files for kind, files in files_by_kind.items() if files}
    ordered = interleave_kinds(files_by_kind, seed)
    entries = [_FileEntry(path, kind, f"{kind}/{path.name}") for kind, path in ordered]
    return FileListSource(entries, loop=loop, description=f"MVTec {split} set {root}")


# --------------------------------------------------------------------------------------------
# OpenCV sources (video files, cameras, network streams)


class VideoFileSource(_BaseSource):
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


class LiveCaptureSource(_BaseSource):
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


# --------------------------------------------------------------------------------------------
# GenICam (harvesters)


def genicam_simulator_cti() -> Path | None:
    """Path of the simulated-camera GenTL producer shipped in the ``genicam`` wheel (viky.cti)."""
    try:
        import genicam  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None
    path = Path(genicam.__file__).with_name("viky.cti")
    return path if path.is_file() else None


def parse_node_value(text: str) -> int | float | bool | str:
    """CLI text -> a GenICam node value: int, float, true/false, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _device_field(device: Any, name: str) -> str | None:
    """A DeviceInfo field, or None where the producer does not support it (it raises then)."""
    try:
        value = getattr(device, name)
    except Exception:  # noqa: BLE001 - genicam's NotAvailableException and friends
        return None
    return None if value is None else str(value)


class GenICamSource(_BaseSource):
    """A GenICam camera through a GenTL producer (.cti) with ``harvesters`` (imported lazily).

    ``cti``: path of the producer, or "sim" for the genicam wheel's simulated camera (viky.cti).
    ``serial``: device serial number, id or user-defined name (default: the first device).
    ``node_values``: GenICam features set before acquisition, e.g. {"PixelFormat": "Mono8"}.
    Buffers are converted by :func:`convert_genicam`; unconvertible buffers are skipped and
    counted; any other fetch failure (device lost) ends the iteration with SourceError. A fetch
    timeout (e.g. a hardware-triggered camera waiting for a part) is not an error: the wait simply
    repeats until a frame comes or the source is closed.
    Raises :class:`SourceError` if harvesters/genicam are missing, the producer cannot be loaded,
    the device is not found or a feature cannot be set.
    """

    def __init__(self, cti: str | os.PathLike, serial: str | None = None, *,
                 node_values: dict[str, Any] | None = None, fetch_timeout_s: float = 1.0,
                 loop: bool = False) -> None:
        super().__init__()
        del loop
        try:
            from harvesters.core import Harvester  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise SourceError("GenICam sources need `pip install harvesters genicam` "
                              f"(extra 'genicam'): {exc}") from exc
        cti_path = genicam_simulator_cti() if str(cti) == "sim" else Path(cti)
        if cti_path is None or not cti_path.is_file():
            raise SourceError(f"GenTL producer {cti} not found")
        self.fetch_timeout_s = fetch_timeout_s
        self._harvester = Harvester()
        self._acquirer = None
        try:
            self._harvester.add_file(str(cti_path), check_existence=True)
            self._harvester.update()
            device = self._pick_device(serial)
            serial_number = _device_field(device, "serial_number") or _device_field(device, "id_")
            self.name = f"genicam:{serial_number}"
            self.description = (f"GenICam {_device_field(device, 'vendor')} {_device_field(device, 'model')} "
                                f"#{serial_number} via {cti_path.name}")
            self._acquirer = self._harvester.create(device)
            self._set_nodes(node_values or {})
        except SourceError:
            self.close()
            raise
        except Exception as exc:  # harvesters/genicam raise many types; report one
            self.close()
            raise SourceError(f"GenICam {cti_path}: {exc}") from exc

    def _pick_device(self, serial: str | None):
        devices = list(self._harvester.device_info_list)
        if not devices:
            raise SourceError("no GenICam device found by the producer")
        if serial is None:
            return devices[0]
        for device in devices:
            if serial in (_device_field(device, k) for k in ("serial_number", "id_", "user_defined_name")):
                return device
        known = ", ".join(str(_device_field(d, "serial_number")) for d in devices)
        raise SourceError(f"GenICam device {serial!r} not found; serial numbers: {known}")

    def _set_nodes(self, node_values: dict[str, Any]) -> None:
        node_map = self._acquirer.remote_device.node_map
        for name, value in node_values.items():
            try:
                getattr(node_map, name).value = value
            except Exception as exc:  # noqa: BLE001 - genicam raises its own exception types
                raise SourceError(f"cannot set GenICam feature {name}={value!r}: {exc}") from exc

    def __iter__(self) -> Iterator[SourceFrame]:
        from genicam.gentl import TimeoutException  # noqa: PLC0415 - optional dependency

        self._acquirer.start()
        try:
            while not self.closed:
                try:
                    frame = self._fetch_one()
                except TimeoutException:
                    continue
                except Exception as exc:  # device lost, producer error: end the source clearly
                    raise SourceError(f"{self.name}: fetch failed: {exc}") from exc
                if frame is not None:
                    yield frame
        finally:
            if self._acquirer is not None and self._acquirer.is_acquiring():
                self._acquirer.stop()

    def _fetch_one(self) -> SourceFrame | None:
        with self._acquirer.fetch(timeout=self.fetch_timeout_s) as buffer:
            capture_ns = time.time_ns()
            try:
                components = buffer.payload.components if buffer.payload is not None else []
                if not components:
                    raise UnsupportedImageError("buffer without an image component")
                component = components[0]
                image, pixel_format = convert_genicam(
                    component.data, component.width, component.height, component.data_format)
            except UnsupportedImageError as exc:
                self.skipped += 1
                log.warning("%s: buffer skipped: %s", self.name, exc)
                return None
        return SourceFrame(image, pixel_format, None, self.name, capture_ns)

    def close(self) -> None:
        super().close()
        if self._acquirer is not None:
            try:
                self._acquirer.destroy()
            finally:
                self._acquirer = None
        if self._harvester is not None:
            self._harvester.reset()
            self._harvester = None


# --------------------------------------------------------------------------------------------
# spec -> source


def _split_genicam_spec(rest: str) -> tuple[str, str | None]:
    cti, _, serial = rest.partition("#")
    return cti, (serial or None)


def _drop_unset(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if v is not None}


def _make(factory: Callable[..., FrameSource], kind: str, args: tuple, loop: bool,
          opts: dict[str, Any]) -> FrameSource:
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise SourceError(f"option(s) {unknown} do not apply to a {kind} source")
    return factory(*args, loop=loop, **opts)


def open_source(spec: str, *, loop: bool = False, stop_event: threading.Event | None = None,
                **opts: Any) -> FrameSource:
    """Open a frame source from a spec string.

    * ``/path/dir`` - image folder (sorted png/jpg/jpeg/bmp/tif/tiff), or an MVTec AD-layout
      category when it has a ``test/`` folder; ``mvtec:/path`` forces MVTec (options ``seed``,
      ``split``);
    * ``/path/image.png`` - a single image;
    * ``/path/video.avi`` (.mp4, .mkv, ...) - a video file;
    * ``cam:0`` or ``/dev/video0`` - an OpenCV camera; ``rtsp://...``, ``http(s)://...`` - a
      stream (options ``reconnect_initial_s``, ``reconnect_max_s``, ``max_reconnects``);
    * ``genicam:/path/producer.cti[#serial]`` or ``genicam:sim[#serial]`` - GenICam via harvesters
      (options ``node_values``, ``fetch_timeout_s``).

    ``loop`` repeats file sources forever (ignored by live sources). ``stop_event``, once set, ends
    an iteration at the next frame (or reconnect/fetch wait) like ``close()``. Options whose value
    is None are ignored; other options that the chosen source does not take raise
    :class:`SourceError`, as does a spec that names nothing usable.
    """
    source = _open(str(spec), loop, _drop_unset(opts))
    if stop_event is not None:
        source.stop_event = stop_event
    return source


def _open(spec: str, loop: bool, opts: dict[str, Any]) -> FrameSource:
    if spec.startswith("mvtec:"):
        return _make(mvtec_source, "MVTec", (spec[len("mvtec:"):],), loop, opts)
    if spec.startswith("genicam:"):
        return _make(GenICamSource, "GenICam", _split_genicam_spec(spec[len("genicam:"):]), loop, opts)
    camera = re.fullmatch(r"cam:(\d+)", spec)
    if camera:
        return _make(LiveCaptureSource, "camera", (int(camera.group(1)),), loop, opts)
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme in STREAM_SCHEMES:
        return _make(LiveCaptureSource, "stream", (spec,), loop, opts)
    if scheme:
        raise SourceError(f"unsupported URL scheme {scheme!r} in {redact_url(spec)}")
    if spec.startswith("/dev/video"):
        return _make(LiveCaptureSource, "camera", (spec,), loop, opts)
    path = Path(spec)
    if path.is_dir():
        if (path / "test").is_dir():
            return _make(mvtec_source, "MVTec", (path,), loop, opts)
        return _make(image_folder_source, "image folder", (path,), loop, opts)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            return _make(VideoFileSource, "video", (path,), loop, opts)
        if suffix in IMAGE_SUFFIXES:
            return _make(FileListSource, "image", ([_FileEntry(path, None, path.name)],), loop,
                         {"description": f"image {path}", **opts})
        raise SourceError(f"{path}: unknown file type {suffix!r} (images: {IMAGE_SUFFIXES}, "
                          f"videos: {VIDEO_SUFFIXES})")
    raise SourceError(f"source {spec!r} is neither an existing file/folder nor a camera/stream spec")
