"""Frame sources: image folders, MVTec AD test sets, video files, OpenCV cameras/streams, GenICam.

Every source yields :class:`SourceFrame` objects whose ``image`` is ``numpy.uint8``, C-contiguous,
H x W x C with C = 1 (``"mono8"``) or C = 3 in BGR order (``"bgr8"``), values 0..255, and whose
``capture_ns`` is ``time.time_ns()`` (wall clock) taken when the frame was read/grabbed.

Conversion rules (one place each):

* image files are read by :func:`inspector.core.images.read_image`, the reader every part of
  inspector uses (truncated PNG/JPEG files refused, ``cv2.IMREAD_UNCHANGED``, 16-bit ``>> 8``,
  gray/gray+alpha -> mono8, BGR/BGRA -> bgr8); video and camera frames follow the same pixel rules
  (:func:`normalize_image`);
* GenICam buffers: :func:`convert_genicam` (MonoN / BayerN, N in 10, 12, 14, 16, unpacked in
  16-bit words, by ``value >> (N - 8)``; RGBa8/BGRa8 drop the alpha; RGB8 -> BGR; Bayer 8-bit
  patterns demosaiced to BGR, pattern named by its first two rows, PFNC);
* anything else (float images, more than 4 channels, packed GenICam formats, truncated files) is
  unsupported: image files are skipped with a warning and counted in ``source.skipped``; video
  frames and GenICam buffers likewise.

Modules: :mod:`~inspector.line.source_base` (frame type, protocol, errors, shared plumbing),
:mod:`~inspector.line.file_sources` (image files, folders, MVTec test sets),
:mod:`~inspector.line.capture_sources` (OpenCV video files, cameras, streams),
:mod:`~inspector.line.genicam` (GenICam cameras and buffer conversion), and this one: the spec
string -> source. Their public names are importable from here too.

Sources are chosen from a spec string by :func:`open_source`. A source is iterated in the thread
that opened it; ``close()`` stops an iteration in progress at the next frame and frees devices.
"""

from __future__ import annotations

import inspect
import re
import threading
from pathlib import Path
from typing import Any, Callable

from inspector.core import dataset_layout
from inspector.core.images import IMAGE_EXTENSIONS
from inspector.line.capture_sources import LiveCaptureSource, VideoFileSource
from inspector.line.file_sources import FileEntry, FileListSource, image_folder_source, interleave_kinds, mvtec_source
from inspector.line.genicam import GenICamSource, convert_genicam, genicam_simulator_cti, parse_node_value
from inspector.line.source_base import (PIXEL_FORMATS, FrameSource, SourceError, SourceFrame, UnsupportedImageError,
                                        normalize_image, redact_url)

__all__ = ["IMAGE_SUFFIXES", "PIXEL_FORMATS", "STREAM_SCHEMES", "VIDEO_SUFFIXES", "FileListSource", "FrameSource",
           "GenICamSource", "LiveCaptureSource", "SourceError", "SourceFrame", "UnsupportedImageError",
           "VideoFileSource", "convert_genicam", "genicam_simulator_cti", "image_folder_source", "interleave_kinds",
           "mvtec_source", "normalize_image", "open_source", "parse_node_value", "redact_url"]

IMAGE_SUFFIXES = IMAGE_EXTENSIONS
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".ts")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


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
        if dataset_layout.has_split(path):
            return _make(mvtec_source, "MVTec", (path,), loop, opts)
        return _make(image_folder_source, "image folder", (path,), loop, opts)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            return _make(VideoFileSource, "video", (path,), loop, opts)
        if suffix in IMAGE_SUFFIXES:
            return _make(FileListSource, "image", ([FileEntry(path, None, path.name)],), loop,
                         {"description": f"image {path}", **opts})
        raise SourceError(f"{path}: unknown file type {suffix!r} (images: {IMAGE_SUFFIXES}, "
                          f"videos: {VIDEO_SUFFIXES})")
    raise SourceError(f"source {spec!r} is neither an existing file/folder nor a camera/stream spec")
