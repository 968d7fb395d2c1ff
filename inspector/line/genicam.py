"""GenICam cameras through a GenTL producer with ``harvesters`` (optional dependency), and the
conversion of GenICam image buffers to mono8 / bgr8.

:func:`convert_genicam`: MonoN / BayerN (N in 10, 12, 14, 16, unpacked in 16-bit words) become
8-bit by ``value >> (N - 8)``; RGBa8/BGRa8 drop the alpha; RGB8 -> BGR; BayerRG8/GR8/GB8/BG8 are
demosaiced to BGR (pattern named by its first two rows, PFNC). Other formats (packed, YUV, 3D)
raise :class:`UnsupportedImageError`; :class:`GenICamSource` skips and counts such buffers.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from inspector.line.source_base import BaseSource, SourceError, SourceFrame, UnsupportedImageError

__all__ = ["GenICamSource", "convert_genicam", "genicam_simulator_cti", "parse_node_value"]

log = logging.getLogger(__name__)


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


class GenICamSource(BaseSource):
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
