"""Synthetic normal products: a woven texture or a machined washer on a conveyor, rendered with
random jitter (see :mod:`inspector.model.synthetic`). Images are uint8 H x W x 3 BGR or H x W mono8;
deterministic for a given generator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

PRODUCTS = ("texture", "part")
MIN_SIZE = 32  # smallest image side (pixels) the renderers support
MAX_SIZE = 8192


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
    return check_size((height, width))


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """``size`` (H, W) as ints within MIN_SIZE..MAX_SIZE, else ValueError."""
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


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float pixels rounded and clipped to uint8 0..255."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def gray_of(bgr: np.ndarray) -> np.ndarray:
    """Luma of float BGR values (..., 3) -> (..., 1), same weights as cv2.COLOR_BGR2GRAY."""
    return (bgr @ np.array([0.114, 0.587, 0.299], np.float32))[..., None]


def _band(x: np.ndarray, low: float, high: float, soft: float) -> np.ndarray:
    """1 inside [low, high], 0 outside, with linear ramps of width ``soft`` (anti-aliasing)."""
    return np.clip((x - low) / soft + 0.5, 0, 1) * np.clip((high - x) / soft + 0.5, 0, 1)


def _finish(rng: np.random.Generator, bgr: np.ndarray, color: bool) -> np.ndarray:
    """Add sensor noise to a float BGR render and convert to uint8 BGR or mono."""
    bgr = bgr + rng.normal(0.0, 1.5, size=bgr.shape).astype(np.float32)
    image = to_uint8(bgr)
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
    height, width = check_size(size)
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
