"""Synthetic defects painted into a rendered product, each with its exact mask: ``scratch``,
``hole``, ``stain``, ``missing`` (see :mod:`inspector.model.synthetic`)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .synthetic_products import gray_of, to_uint8

DEFECT_KINDS = ("scratch", "hole", "stain", "missing")
_MIN_DEFECT_PIXELS = 6
_MIN_DEFECT_CONTRAST = 12.0  # mean |change| (grey levels, strongest channel) inside the mask
_MAX_PLACEMENT_TRIES = 50


# --------------------------------------------------------------------------------------------
# defects
# --------------------------------------------------------------------------------------------


def _pick_point(rng: np.random.Generator, allowed: np.ndarray) -> np.ndarray:
    """A random (x, y) float point among the True pixels of ``allowed``; ValueError if none."""
    ys, xs = np.nonzero(allowed)
    if ys.size == 0:
        raise ValueError("no room to place the defect")
    index = int(rng.integers(ys.size))
    return np.array([xs[index], ys[index]], dtype=np.float64)


def _inner_region(foreground: np.ndarray, margin: float) -> np.ndarray:
    """Foreground pixels at least ``margin`` pixels from the non-foreground and the image border."""
    padded = np.pad(foreground.astype(np.uint8), 1)  # the image border counts as outside
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    return distance > margin


def _outside(foreground: np.ndarray) -> np.ndarray:
    """Non-foreground pixels connected (8-conn.) to the image border; all False when none are."""
    count, labels = cv2.connectedComponents((~foreground).astype(np.uint8), connectivity=8)
    border = np.concatenate((labels[0], labels[-1], labels[:, 0], labels[:, -1]))
    touching = np.unique(border[border > 0])
    return np.isin(labels, touching)


def _blob_polygon(
    rng: np.random.Generator, centre: np.ndarray, radius: float, irregularity: float, vertices: int
) -> np.ndarray:
    """Irregular closed polygon (int32 N x 2, x/y) around ``centre`` with mean radius ``radius``."""
    angles = np.linspace(0.0, 2.0 * np.pi, vertices, endpoint=False)
    angles += rng.uniform(0.0, 2.0 * np.pi)
    radii = np.ones(vertices)
    for harmonic in (2, 3, 5):
        radii += irregularity / harmonic * np.cos(harmonic * angles + rng.uniform(0, 2 * np.pi))
    radii += rng.uniform(-irregularity / 3, irregularity / 3, size=vertices)
    radii = radius * np.clip(radii, 0.3, None)
    points = centre + np.column_stack((np.cos(angles), np.sin(angles))) * radii[:, None]
    return np.rint(points).astype(np.int32)


def _filled(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [polygon], 1)
    return canvas.astype(bool)


def _colour(bgr: tuple[float, float, float] | np.ndarray, channels: int) -> np.ndarray:
    """A BGR colour as a float32 vector for an image with ``channels`` channels (1 or 3)."""
    bgr = np.asarray(bgr, np.float32)
    return bgr if channels == 3 else gray_of(bgr)


def _blend(image: np.ndarray, target: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """image * (1 - alpha) + target * alpha; image float32 H x W x C, alpha H x W."""
    return image * (1.0 - alpha[..., None]) + target * alpha[..., None]


Defect = tuple[np.ndarray, np.ndarray]
"""A defect function's result: the changed float32 H x W x C image and its bool H x W mask."""


def _dimensions(image: np.ndarray) -> tuple[int, int, int, int]:
    """(H, W, C, short side) of a float32 H x W x C image."""
    height, width, channels = image.shape
    return height, width, channels, min(height, width)


# Each defect function takes (rng, image float32 H x W x C, background float32 H x W x C,
# foreground bool H x W) and returns (changed float image, bool H x W mask) with the image changed
# exactly where the mask is True. It raises ValueError when the foreground leaves no room.


def _scratch(rng: np.random.Generator, image: np.ndarray, background: np.ndarray, foreground: np.ndarray) -> Defect:
    height, width, channels, side = _dimensions(image)
    length = rng.uniform(0.25, 0.45) * side
    centre = _pick_point(rng, _inner_region(foreground, 1.0))
    angle = rng.uniform(0.0, np.pi)
    direction = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    start, end = centre - direction * length / 2, centre + direction * length / 2
    control = centre + normal * rng.uniform(-0.3, 0.3) * length
    t = np.linspace(0.0, 1.0, 48)[:, None]
    curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    canvas = np.zeros((height, width), np.uint8)
    thickness = max(1, int(round(side / 128)))
    points = np.rint(curve * 16).astype(np.int32)  # 4 fractional bits
    cv2.polylines(canvas, [points], False, 255, thickness, cv2.LINE_AA, shift=4)
    alpha = canvas.astype(np.float32) / 255.0
    alpha[(alpha < 0.3) | ~foreground] = 0.0
    local = float(image[alpha > 0].mean()) if alpha.any() else 128.0
    bright = rng.random() < 0.5
    if (bright and local > 185) or (not bright and local < 70):  # keep some contrast
        bright = not bright
    level = rng.uniform(215, 245) if bright else rng.uniform(15, 45)
    strength = rng.uniform(0.75, 0.95)
    return _blend(image, _colour((level, level, level), channels), alpha * strength), alpha > 0


def _hole(rng: np.random.Generator, image: np.ndarray, background: np.ndarray, foreground: np.ndarray) -> Defect:
    height, width, channels, side = _dimensions(image)
    radius = rng.uniform(0.03, 0.055) * side
    centre = _pick_point(rng, _inner_region(foreground, radius + 1.0))
    inner = _filled((height, width), _blob_polygon(rng, centre, radius, 0.25, 18))
    rim_width = max(1, int(round(side / 128)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim_width + 1, 2 * rim_width + 1))
    rim = cv2.dilate(inner.astype(np.uint8), kernel).astype(bool) & ~inner
    inner &= foreground
    rim &= foreground
    local = float(image[inner | rim].mean()) if (inner | rim).any() else 128.0
    dark = rng.uniform(10.0, 35.0)
    out = _blend(image, _colour((dark, dark, dark), channels), inner * np.float32(0.95))
    burr = min(255.0, local + rng.uniform(30.0, 55.0))
    out = _blend(out, _colour((burr, burr, burr), channels), rim * np.float32(0.6))
    return out, inner | rim


_STAIN_TINTS = ((30.0, 70.0, 150.0), (40.0, 110.0, 120.0), (90.0, 80.0, 60.0))  # rust, oil, grime


def _stain(rng: np.random.Generator, image: np.ndarray, background: np.ndarray, foreground: np.ndarray) -> Defect:
    height, width, channels, side = _dimensions(image)
    radius = rng.uniform(0.07, 0.12) * side
    centre = _pick_point(rng, _inner_region(foreground, radius * 0.5))
    shape = _filled((height, width), _blob_polygon(rng, centre, radius, 0.35, 24))
    soft = cv2.GaussianBlur(shape.astype(np.float32), (0, 0), 0.3 * radius)
    coverage = np.clip((soft - 0.15) / 0.6, 0.0, 1.0)
    coverage[coverage < 0.1] = 0.0  # no invisible fringe: the mask is where the stain shows
    alpha = coverage * rng.uniform(0.45, 0.7)
    alpha[~foreground] = 0.0
    inside = alpha > 0
    local = image[inside].mean(axis=0) if inside.any() else np.full(channels, 128.0, np.float32)
    mode = rng.integers(3)
    if mode == 0:  # darker
        target = local * rng.uniform(0.3, 0.5)
    elif mode == 1:  # brighter (dried residue)
        target = np.minimum(local + rng.uniform(70.0, 100.0), 255.0)
    else:  # tinted
        target = _colour(_STAIN_TINTS[int(rng.integers(len(_STAIN_TINTS)))], channels)
    return _blend(image, target.astype(np.float32), alpha), inside


def _missing(rng: np.random.Generator, image: np.ndarray, background: np.ndarray, foreground: np.ndarray) -> Defect:
    height, width, channels, side = _dimensions(image)
    radius = rng.uniform(0.08, 0.13) * side
    if foreground.all():  # a sheet: cut out anywhere away from the image border
        allowed = _inner_region(foreground, radius * 0.6)
    else:  # an object: break off a piece of its outline (the edge facing the outside)
        outside = _outside(foreground)
        to_outside = cv2.distanceTransform((~outside).astype(np.uint8), cv2.DIST_L2, 3)
        near_outside = to_outside <= 0.05 * side
        allowed = foreground & near_outside & _inner_region(np.ones_like(foreground), radius)
    centre = _pick_point(rng, allowed)
    piece = _filled((height, width), _blob_polygon(rng, centre, radius, 0.45, 11)) & foreground
    out = image.copy()
    out[piece] = background[piece]
    return out, piece


_DEFECTS = {"scratch": _scratch, "hole": _hole, "stain": _stain, "missing": _missing}


def _estimated_background(image: np.ndarray) -> np.ndarray:
    """Fallback background: the median colour of the image border, everywhere."""
    border = np.concatenate((image[0], image[-1], image[:, 0], image[:, -1]))
    return np.broadcast_to(np.median(border, axis=0), image.shape).astype(np.float32)


def add_defect(
    rng: np.random.Generator,
    image: np.ndarray,
    kind: str,
    *,
    background: np.ndarray | None = None,
    foreground: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Add one defect of ``kind`` to a copy of ``image``.

    image: uint8 H x W x 3 (BGR) or H x W (or H x W x 1). background: same shape, what shows
    through a ``missing`` piece (default: the median border colour). foreground: bool H x W, where
    the defect may go (default: everywhere). Returns (defect image, same shape/dtype as ``image``;
    mask, bool H x W): the mask holds exactly the pixels the defect changed, at least a few pixels,
    and the defect changes them by a visible amount on average.
    Raises ValueError for an unknown kind or malformed arrays, RuntimeError when no visible
    defect could be placed (e.g. a foreground too small for it).
    """
    if kind not in _DEFECTS:
        raise ValueError(f"unknown defect kind {kind!r}; choose from {', '.join(DEFECT_KINDS)}")
    image = np.asarray(image)
    channels_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))
    if image.dtype != np.uint8 or not channels_ok:
        raise ValueError(
            f"image must be uint8 H x W, H x W x 1 or H x W x 3, got {image.dtype} {image.shape}"
        )
    height, width = image.shape[:2]
    pixels = image.reshape(height, width, -1).astype(np.float32)
    if background is None:
        fill = _estimated_background(pixels)
    else:
        background = np.asarray(background)
        if background.shape != image.shape:
            raise ValueError(f"background shape {background.shape} != image shape {image.shape}")
        fill = background.reshape(height, width, -1).astype(np.float32)
    if foreground is None:
        allowed = np.ones((height, width), dtype=bool)
    else:
        allowed = np.asarray(foreground, dtype=bool)
        if allowed.shape != (height, width):
            raise ValueError(f"foreground shape {allowed.shape} != image size {(height, width)}")

    for _ in range(_MAX_PLACEMENT_TRIES):
        try:
            changed, mask = _DEFECTS[kind](rng, pixels, fill, allowed)
        except ValueError:  # no room at this size/margin: try another draw
            continue
        result = to_uint8(changed)
        if mask.sum() < _MIN_DEFECT_PIXELS:
            continue
        contrast = np.abs(result[mask].astype(np.float32) - pixels[mask]).max(axis=1).mean()
        if contrast >= _MIN_DEFECT_CONTRAST:
            return result.reshape(image.shape), mask
    raise RuntimeError(f"could not place a visible {kind!r} defect on a {height} x {width} image")
