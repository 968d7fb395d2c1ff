"""Generic synthetic anomalies for training the student to *not* reproduce anomalies.

With ``--anomalies P`` a share P of each training batch is shown to the student with a synthetic
anomaly painted in (teacher features of the altered image in), while the target stays the teacher's
features of the clean image: the student learns to map anomalous features back to normal ones, so
real anomalies leave a larger teacher-student discrepancy (the denoising idea of RD++, Tien et al.,
CVPR 2023, and DeSTSeg).

The anomalies are deliberately generic and unrelated to :mod:`inspector.model.synthetic`'s defect
kinds (so synthetic test sets stay unseen): a smooth random field (cubic-upsampled Gaussian noise,
Perlin-like) gives the shape, either a blob (the field's upper tail) or a thin curvy band (an
isoline), limited to a random window; it is filled with another training image (flipped and
shifted), a brightness change, or grey noise, blended with a random opacity.

Input: uint8 H x W x 3 RGB images; output: the altered image (same shape and dtype) and its bool
H x W mask. Deterministic for a given ``numpy.random.Generator``.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_AREA = 0.002  # of the image


def noise_field(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """float32 h x w smooth random field, zero mean and unit variance, features ~``cell`` px."""
    grid = rng.standard_normal((max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / (field.std() + 1e-6)


def random_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """bool h x w: a blob or a thin band inside one random window of 1/8 to 1/3 of each side."""
    side = min(h, w)
    cell = max(8, int(rng.choice([side // 16, side // 8, side // 4])))
    field = noise_field(rng, h, w, cell)
    if rng.random() < 0.5:
        mask = field > rng.uniform(0.6, 1.6)
    else:
        mask = np.abs(field - rng.uniform(-1.0, 1.0)) < rng.uniform(0.04, 0.15)
    wy, wx = max(1, int(h * rng.uniform(0.12, 0.35))), max(1, int(w * rng.uniform(0.12, 0.35)))
    y, x = int(rng.integers(0, h - wy + 1)), int(rng.integers(0, w - wx + 1))
    window = np.zeros((h, w), bool)
    window[y:y + wy, x:x + wx] = True
    return mask & window


def add_anomaly(rng: np.random.Generator, image: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 H x W x 3 -> (uint8 H x W x 3 with an anomaly, bool H x W mask). ``others``: uint8
    N x H' x W' x 3 images (H' >= H, W' >= W) to borrow foreign content from."""
    h, w = image.shape[:2]
    for _ in range(10):
        mask = random_mask(rng, h, w)
        if mask.mean() >= MIN_AREA:
            break
    else:
        return image.copy(), np.zeros((h, w), bool)
    pixels = image.astype(np.float32)
    mode = int(rng.integers(3))
    if mode == 0:  # foreign content
        other = others[int(rng.integers(len(others)))]
        y, x = int(rng.integers(0, other.shape[0] - h + 1)), int(rng.integers(0, other.shape[1] - w + 1))
        other = other[y:y + h, x:x + w]
        other = other[::-1] if rng.random() < 0.5 else other[:, ::-1]
        target = np.roll(other, (int(rng.integers(h)), int(rng.integers(w))), (0, 1)).astype(np.float32)
    elif mode == 1:  # darker or brighter
        target = np.clip(pixels + rng.choice([-1.0, 1.0]) * rng.uniform(40, 100), 0, 255)
    else:  # grey noise
        target = np.clip(pixels.mean() + rng.uniform(20, 60) * rng.standard_normal((h, w, 1)), 0, 255)
    alpha = mask.astype(np.float32)[..., None] * rng.uniform(0.6, 1.0)
    out = pixels * (1.0 - alpha) + target * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), mask
