"""Synthetic defect data sets in the MVTec AD folder layout, with exact ground-truth masks.

Layout written by :func:`generate_dataset` (names ``000.png``, ``001.png``, ...)::

    DIR/train/good/*.png                  defect-free training images
    DIR/test/good/*.png                   defect-free test images
    DIR/test/<kind>/*.png                 test images with one defect of <kind>
    DIR/ground_truth/<kind>/<name>_mask.png   uint8 mask, 0 or 255, same H x W as the image

Images are uint8, H x W x 3 **BGR** (``color=True``) or H x W mono8 (``color=False``).

Products (normal appearance):

- ``texture``: a woven material (basket weave) with a fresh random grain per image, a small random
  shift/rotation of the weave, slow shading and brightness/colour jitter.
- ``part``: a round machined washer (concentric chamfers, a groove, turning marks, four bolt holes)
  on a conveyor belt, with small pose (centre, radius, rotation) and lighting jitter.

Defect kinds: ``scratch`` (thin bright or dark curved line), ``hole`` (dark irregular blob with a
burr rim), ``stain`` (soft colour/brightness blob), ``missing`` (a piece cut out, showing the
background). Each defect's mask is exact: it holds every pixel the defect changed, and no other.

Everything is deterministic given the seed: image ``i`` of a split uses its own generator seeded
with ``(seed, split, i)``, so changing one count does not change the other splits' images.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

PRODUCTS = ("texture", "part")
DEFECT_KINDS = ("scratch", "hole", "stain", "missing")
GOOD_KIND = "good"
MIN_SIZE = 32  # smallest image side (pixels) the renderers support
MAX_SIZE = 8192

_MIN_DEFECT_PIXELS = 6
_MIN_DEFECT_CONTRAST = 12.0  # mean |change| (grey levels, strongest channel) inside the mask
_MAX_PLACEMENT_TRIES = 50
_SPLIT_STREAMS = {"train": 0, "test_good": 1}  # defect kinds use 2 + their DEFECT_KINDS index


@dataclass(frozen=True)
class Rendered:
    """A rendered normal image and what a defect generator needs to know about it.

    image: uint8 H x W x 3 (BGR) or H x W. background: same shape and dtype, what shows where a
    piece of the product is missing. foreground: bool H x W, the product surface on which defects
    are placed.
    """

    image: np.ndarray
    background: np.ndarray
    foreground: np.ndarray


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"128"`` (square) or ``"256x128"`` (WIDTH x HEIGHT, as everywhere on the command
    line) into (H, W); ValueError when malformed."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"size must look like 128 or 256x128 (W x H), got {text!r}")
    width, height = (int(parts[0]), int(parts[-1]))
    return _check_size((height, width))


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2:
        raise ValueError(f"size must be (H, W), got {size!r}")
    height, width = int(size[0]), int(size[1])
    if not (MIN_SIZE <= height <= MAX_SIZE and MIN_SIZE <= width <= MAX_SIZE):
        raise ValueError(f"image sides must be in [{MIN_SIZE}, {MAX_SIZE}], got {height} x {width}")
    return height, width


def _smooth_noise(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
    """float32 H x W Gaussian-filtered white noise, rescaled to zero mean and unit std."""
    noise = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), sigma)
    noise -= noise.mean()
    return noise / max(float(noise.std()), 1e-6)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _gray_of(bgr: np.ndarray) -> np.ndarray:
    """Luma of float BGR values (..., 3) -> (..., 1), same weights as cv2.COLOR_BGR2GRAY."""
    return (bgr @ np.array([0.114, 0.587, 0.299], np.float32))[..., None]


def _band(x: np.ndarray, low: float, high: float, soft: float) -> np.ndarray:
    """1 inside [low, high], 0 outside, with linear ramps of width ``soft`` (anti-aliasing)."""
    return np.clip((x - low) / soft + 0.5, 0, 1) * np.clip((high - x) / soft + 0.5, 0, 1)


def _finish(rng: np.random.Generator, bgr: np.ndarray, color: bool) -> np.ndarray:
    """Add sensor noise to a float BGR render and convert to uint8 BGR or mono."""
    bgr = bgr + rng.normal(0.0, 1.5, size=bgr.shape).astype(np.float32)
    image = _to_uint8(bgr)
    return image if color else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


# --------------------------------------------------------------------------------------------
# normal products
# --------------------------------------------------------------------------------------------


# a renderer's result: float32 BGR image, float32 BGR background, bool foreground (all H x W)
_Render = tuple[np.ndarray, np.ndarray, np.ndarray]


def _render_texture(rng: np.random.Generator, height: int, width: int) -> _Render:
    """Basket weave. Returns float32 BGR image, float32 BGR background, bool foreground."""
    side = min(height, width)
    cell = max(6.0, side / 14.0)  # one weave cell holds two parallel threads
    theta = math.radians(rng.normal(0.0, 1.0))
    shift_u, shift_v = rng.uniform(0.0, 2.0 * cell, size=2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xx -= width / 2.0
    yy -= height / 2.0
    u = xx * math.cos(theta) + yy * math.sin(theta) + shift_u
    v = -xx * math.sin(theta) + yy * math.cos(theta) + shift_v
    horizontal = (np.floor(u / cell) + np.floor(v / cell)) % 2 == 0
    across = np.where(horizontal, v, u)  # coordinate across the threads of the cell
    along = np.where(horizontal, u, v)
    thread = np.abs(np.sin(2.0 * np.pi * across / cell)) ** 0.6
    fibre = 0.5 + 0.5 * np.cos(2.0 * np.pi * along / (cell / 3.0) + 2.0 * across)  # twist
    grain = _smooth_noise(rng, height, width, 0.8)
    weave = thread * (0.9 + 0.1 * fibre) + 0.07 * grain
    weave = cv2.GaussianBlur(weave.astype(np.float32), (0, 0), 0.6)

    shading = 1.0 + 0.04 * _smooth_noise(rng, height, width, side / 5.0)
    brightness = 1.0 + rng.normal(0.0, 0.03)
    base = np.array([118.0, 158.0, 192.0], np.float32) * (1.0 + rng.normal(0.0, 0.015, size=3))
    intensity = (0.6 + 0.4 * weave) * shading * brightness
    image = intensity[..., None] * base

    belt = np.array([74.0, 64.0, 58.0], np.float32)  # backing material under the weave
    backing = belt * (1.0 + 0.05 * _smooth_noise(rng, height, width, side / 8.0))[..., None]
    foreground = np.ones((height, width), dtype=bool)
    return image.astype(np.float32), backing.astype(np.float32), foreground


def _conveyor(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """float32 BGR conveyor belt: dark grey, slow shading, faint lengthwise ribs."""
    side = min(height, width)
    shading = 1.0 + 0.06 * _smooth_noise(rng, height, width, side / 6.0)
    rib_phase = rng.uniform(0.0, 2.0 * np.pi)
    ribs = 1.0 + 0.03 * np.sin(2.0 * np.pi * np.arange(height, dtype=np.float32) / 5.0 + rib_phase)
    value = 66.0 * shading * ribs[:, None]
    return value[..., None] * np.array([1.0, 1.02, 1.05], np.float32)


def _render_part(rng: np.random.Generator, height: int, width: int) -> _Render:
    """Washer on a belt. Returns float32 BGR image, float32 BGR background, bool foreground."""
    side = min(height, width)
    cy = height / 2.0 + rng.normal(0.0, 0.012 * side)
    cx = width / 2.0 + rng.normal(0.0, 0.012 * side)
    radius = 0.40 * side * (1.0 + rng.normal(0.0, 0.01))
    rotation = math.radians(rng.normal(0.0, 3.0))
    light = math.radians(45.0 + rng.normal(0.0, 8.0))
    brightness = 1.0 + rng.normal(0.0, 0.03)

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    r = np.hypot(dx, dy)
    rn = r / radius
    facing = np.cos(np.arctan2(dy, dx) - light)  # +1 on the side facing the light
    px = 1.0 / radius  # one pixel in normalised radius

    cover = _band(rn, 0.36, 1.0, px)  # washer material, anti-aliased edges
    hole_radius = 0.07 * radius
    for k in range(4):
        angle = rotation + k * np.pi / 2.0
        hx, hy = cx + 0.56 * radius * math.cos(angle), cy + 0.56 * radius * math.sin(angle)
        cover *= np.clip(np.hypot(xx - hx, yy - hy) - hole_radius + 0.5, 0.0, 1.0)

    metal = 160.0 + 12.0 * facing * rn  # gentle tilt towards the light
    metal += 5.0 * np.sin(2.0 * np.pi * r / 2.7)  # turning marks
    metal += 45.0 * facing * _band(rn, 0.92, 1.0, px)  # outer chamfer
    metal -= 40.0 * facing * _band(rn, 0.36, 0.44, px)  # inner chamfer faces inwards
    metal -= 50.0 * _band(rn, 0.715, 0.765, px)  # groove
    metal += 25.0 * facing * _band(rn, 0.765, 0.79, px)  # lit groove wall
    metal *= brightness
    metal_bgr = metal[..., None] * np.array([1.0, 0.97, 0.92], np.float32)

    belt = _conveyor(rng, height, width)
    shadow = np.zeros((height, width), np.float32)
    offset = 0.04 * radius
    centre = (int(round(cx - offset * math.cos(light))), int(round(cy - offset * math.sin(light))))
    cv2.circle(shadow, centre, int(round(radius)), 1.0, -1, cv2.LINE_AA)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 0.06 * radius)
    belt *= (1.0 - 0.35 * shadow)[..., None]

    image = belt * (1.0 - cover[..., None]) + metal_bgr * cover[..., None]
    solid = (cover >= 0.999).astype(np.uint8)
    foreground = cv2.erode(solid, np.ones((3, 3), np.uint8)).astype(bool)  # off the edges
    return image.astype(np.float32), belt.astype(np.float32), foreground


_RENDERERS = {"texture": _render_texture, "part": _render_part}


def render_normal(
    rng: np.random.Generator,
    product: str = "texture",
    size: tuple[int, int] = (128, 128),
    color: bool = True,
) -> Rendered:
    """Render one defect-free image of ``product`` with its background and foreground.

    size: (H, W), each side in [32, 8192]. Raises ValueError for an unknown product or bad size.
    """
    if product not in _RENDERERS:
        raise ValueError(f"unknown product {product!r}; choose from {', '.join(PRODUCTS)}")
    height, width = _check_size(size)
    image, background, foreground = _RENDERERS[product](rng, height, width)
    return Rendered(
        image=_finish(rng, image, color),
        background=_finish(rng, background, color),
        foreground=foreground,
    )


def make_normal(
    rng: np.random.Generator,
    product: str = "texture",
    size: tuple[int, int] = (128, 128),
    color: bool = True,
) -> np.ndarray:
    """One defect-free image: uint8 H x W x 3 BGR (``color``) or H x W mono."""
    return render_normal(rng, product, size, color).image


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
    return bgr if channels == 3 else _gray_of(bgr)


def _blend(image: np.ndarray, target: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """image * (1 - alpha) + target * alpha; image float32 H x W x C, alpha H x W."""
    return image * (1.0 - alpha[..., None]) + target * alpha[..., None]


# Each defect function takes (rng, image float32 H x W x C, background float32 H x W x C,
# foreground bool H x W) and returns (changed float image, bool H x W mask) with the image changed
# exactly where the mask is True. It raises ValueError when the foreground leaves no room.


def _scratch(
    rng: np.random.Generator, image: np.ndarray, background: np.ndarray, foreground: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    height, width, channels = image.shape
    side = min(height, width)
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


def _hole(
    rng: np.random.Generator, image: np.ndarray, background: np.ndarray, foreground: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    height, width, channels = image.shape
    side = min(height, width)
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


def _stain(
    rng: np.random.Generator, image: np.ndarray, background: np.ndarray, foreground: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    height, width, channels = image.shape
    side = min(height, width)
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


def _missing(
    rng: np.random.Generator, image: np.ndarray, background: np.ndarray, foreground: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    height, width, channels = image.shape
    side = min(height, width)
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
        result = _to_uint8(changed)
        if mask.sum() < _MIN_DEFECT_PIXELS:
            continue
        contrast = np.abs(result[mask].astype(np.float32) - pixels[mask]).max(axis=1).mean()
        if contrast >= _MIN_DEFECT_CONTRAST:
            return result.reshape(image.shape), mask
    raise RuntimeError(f"could not place a visible {kind!r} defect on a {height} x {width} image")


# --------------------------------------------------------------------------------------------
# data sets
# --------------------------------------------------------------------------------------------


def _image_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Create ``out_dir``; refuse (FileExistsError) to mix with an earlier set unless overwrite."""
    ours = [out_dir / name for name in ("train", "test", "ground_truth")]
    existing = [path for path in ours if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a data set ({existing[0].name}/); use overwrite"
        )
    for path in existing:
        shutil.rmtree(path)
    out_dir.mkdir(parents=True, exist_ok=True)


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")


def generate_dataset(
    out_dir: str | Path,
    *,
    product: str = "texture",
    n_train: int = 60,
    n_test_good: int = 20,
    n_test_defect_per_kind: int = 10,
    kinds: tuple[str, ...] | list[str] = DEFECT_KINDS,
    size: tuple[int, int] = (128, 128),
    color: bool = True,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic MVTec AD-layout data set to ``out_dir`` (see the module docstring).

    size is (H, W). Deterministic for a given seed and arguments. Refuses (FileExistsError) to
    write into a folder that already holds train/, test/ or ground_truth/ unless ``overwrite``,
    which deletes those three folders first. Raises ValueError for bad arguments.
    Returns a JSON-serialisable summary: out_dir, product, size [H, W], color, seed, n_train,
    n_test_good, n_test_defect {kind: count}, kinds.
    """
    if product not in PRODUCTS:
        raise ValueError(f"unknown product {product!r}; choose from {', '.join(PRODUCTS)}")
    kinds = list(kinds)
    unknown = [kind for kind in kinds if kind not in DEFECT_KINDS]
    if unknown or len(set(kinds)) != len(kinds):
        raise ValueError(f"kinds must be distinct names from {', '.join(DEFECT_KINDS)}: {kinds}")
    _check_counts(
        n_train=n_train,
        n_test_good=n_test_good,
        n_test_defect_per_kind=n_test_defect_per_kind,
        seed=seed,
    )
    size = _check_size(size)
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)

    good_splits = (
        ("train", out / "train" / GOOD_KIND, n_train),
        ("test_good", out / "test" / GOOD_KIND, n_test_good),
    )
    for stream_name, folder, count in good_splits:
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            rng = _image_rng(seed, _SPLIT_STREAMS[stream_name], index)
            _write_png(folder / f"{index:03d}.png", make_normal(rng, product, size, color))

    for kind in kinds:
        image_folder = out / "test" / kind
        mask_folder = out / "ground_truth" / kind
        image_folder.mkdir(parents=True, exist_ok=True)
        mask_folder.mkdir(parents=True, exist_ok=True)
        for index in range(n_test_defect_per_kind):
            rng = _image_rng(seed, 2 + DEFECT_KINDS.index(kind), index)
            normal = render_normal(rng, product, size, color)
            image, mask = add_defect(
                rng, normal.image, kind, background=normal.background, foreground=normal.foreground
            )
            _write_png(image_folder / f"{index:03d}.png", image)
            _write_png(mask_folder / f"{index:03d}_mask.png", mask.astype(np.uint8) * 255)

    return {
        "out_dir": str(out),
        "product": product,
        "size": list(size),
        "color": bool(color),
        "seed": int(seed),
        "n_train": int(n_train),
        "n_test_good": int(n_test_good),
        "n_test_defect": {kind: int(n_test_defect_per_kind) for kind in kinds},
        "kinds": kinds,
    }


# --------------------------------------------------------------------------------------------
# command line: `inspector synth`
# --------------------------------------------------------------------------------------------


def _size_argument(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _kinds_argument(text: str) -> tuple[str, ...]:
    kinds = tuple(kind.strip() for kind in text.split(",") if kind.strip())
    unknown = [kind for kind in kinds if kind not in DEFECT_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"kinds must be a comma list of {', '.join(DEFECT_KINDS)}")
    return kinds


def _count_argument(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `inspector synth` (also used by tools/make_synthetic.py)."""
    parser.add_argument("--out", required=True, type=Path, help="output folder (MVTec AD layout)")
    parser.add_argument("--product", choices=PRODUCTS, default="texture", help="normal appearance")
    parser.add_argument("--n-train", type=_count_argument, default=60, help="good training images")
    parser.add_argument("--n-test-good", type=_count_argument, default=20, help="good test images")
    parser.add_argument(
        "--n-defect", type=_count_argument, default=10, help="test images per defect kind"
    )
    parser.add_argument(
        "--kinds",
        type=_kinds_argument,
        default=DEFECT_KINDS,
        help=f"comma list, default {','.join(DEFECT_KINDS)}",
    )
    parser.add_argument(
        "--size", type=_size_argument, default=(128, 128), help="128 (square) or WIDTHxHEIGHT, e.g. 256x128"
    )
    parser.add_argument("--gray", action="store_true", help="mono8 images instead of BGR")
    parser.add_argument("--seed", type=_count_argument, default=0, help="random seed (>= 0)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing data set in --out"
    )


def run(args: argparse.Namespace) -> int:
    """Write the data set and print its summary as JSON on stdout; 0 on success."""
    summary = generate_dataset(
        args.out,
        product=args.product,
        n_train=args.n_train,
        n_test_good=args.n_test_good,
        n_test_defect_per_kind=args.n_defect,
        kinds=args.kinds,
        size=args.size,
        color=not args.gray,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=2))
    return 0
