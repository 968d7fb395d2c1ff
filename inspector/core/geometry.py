"""Inspection geometry: how a camera image becomes engine tiles, and tile maps one full map.

A camera image (any size) is first *fitted* to the inspection size ``H x W`` (the resolution at which
the part is judged), then reflect-padded by ``margin`` pixels on every side and cut into overlapping
tiles of the engine's input size ``th x tw``. Each tile's per-scale cosine maps are trusted only in
the tile's *core*: neighbouring tiles overlap by at least ``2 * margin`` pixels and the boundary
between them lies in the middle of the overlap, so every owned pixel is at least ``margin - 8`` pixels
from its tile's edge, away from the zero padding of the convolutions. The outer margin is reflected
image content, so the image's own borders are judged with real-looking context instead of zeros.

A single tile covering the padded image (``tile == (H + 2m, W + 2m)``) is the direct full-resolution
pass; :class:`TileGrid` treats it as the one-tile case of the same rule. (Fitting a camera image to
``H x W`` is pre-processing: :func:`inspector.core.preprocess.fit_image`.)

Invariants: ``H``, ``W``, ``th``, ``tw`` are multiples of 32 and ``margin`` a multiple of 16, so
every tile starts on the stride-32 grid of the one-class embedding and tile boundaries fall on whole
cells of every scale (strides 4, 8, 16). Shapes: images ``uint8 H x W x 3``; tiles ``uint8 T x th x
tw x 3``; per-scale tile maps ``float32 (N*T) x th/s x tw/s``; stitched maps ``float32 N x Hp/s x
Wp/s`` with ``Hp = H + 2*margin``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALIGN = 32          # tile positions and sizes: the stride of the one-class embedding
BOUNDARY_ALIGN = 16  # ownership boundaries: whole cells of the coarsest map (stride 16)


class GeometryError(ValueError):
    """An inspection geometry that cannot work (sizes not aligned, tile larger than the image...)."""


def _check_multiple(value: int, k: int, name: str) -> int:
    value = int(value)
    if value < 0 or value % k:
        raise GeometryError(f"{name} = {value} must be a non-negative multiple of {k}")
    return value


def axis_positions(length: int, tile: int, margin: int) -> list[int]:
    """Tile starts along one axis of the padded image (``length`` = inspection side + 2 * margin).

    Consecutive tiles overlap by at least ``2 * margin``; the last tile ends at the padded edge."""
    if tile > length:
        raise GeometryError(f"tile side {tile} is larger than the padded image side {length}")
    core = tile - 2 * margin
    if core <= 0:
        raise GeometryError(f"tile side {tile} leaves no core inside a margin of {margin}")
    n = 1 + max(0, -(-(length - tile) // core))
    starts = [min(i * core, length - tile) for i in range(n)]
    return starts


def axis_ownership(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """Owned interval ``[a, b)`` of each tile along one axis: boundaries in the middle of each
    overlap, on the 16-pixel grid; the first tile owns from 0, the last up to ``length``."""
    bounds = [0]
    for a, b in zip(starts[:-1], starts[1:]):
        mid = (b + a + tile) / 2.0
        bounds.append(int(round(mid / BOUNDARY_ALIGN)) * BOUNDARY_ALIGN)
    bounds.append(length)
    return [(bounds[i], bounds[i + 1]) for i in range(len(starts))]


@dataclass(frozen=True)
class TileGrid:
    """Tiles of one inspection size: positions, owned regions, cutting and stitching."""

    inspect_size: tuple[int, int]      # (H, W)
    tile_size: tuple[int, int]         # (th, tw): the engine's input
    margin: int
    strides: tuple[int, ...] = (4, 8, 16)

    def __post_init__(self):
        H, W = (_check_multiple(v, ALIGN, n) for v, n in zip(self.inspect_size, ("height", "width")))
        th, tw = (_check_multiple(v, ALIGN, n) for v, n in zip(self.tile_size, ("tile height", "tile width")))
        _check_multiple(self.margin, BOUNDARY_ALIGN, "margin")
        if min(H, W, th, tw) < ALIGN:
            raise GeometryError(f"sizes must be at least {ALIGN}: inspect {W}x{H}, tile {tw}x{th} (WxH)")
        if max(self.strides) > BOUNDARY_ALIGN:
            raise GeometryError(f"strides {self.strides}: boundaries are aligned for strides up to {BOUNDARY_ALIGN}")
        axis_positions(self.padded_size[0], th, self.margin)  # raises for impossible geometry
        axis_positions(self.padded_size[1], tw, self.margin)

    @classmethod
    def single(cls, inspect_size: tuple[int, int], margin: int, strides=(4, 8, 16)) -> "TileGrid":
        """The direct pass: one tile covering the padded inspection image."""
        H, W = inspect_size
        return cls((H, W), (H + 2 * margin, W + 2 * margin), margin, tuple(strides))

    @property
    def padded_size(self) -> tuple[int, int]:
        return self.inspect_size[0] + 2 * self.margin, self.inspect_size[1] + 2 * self.margin

    @property
    def rows(self) -> list[int]:
        return axis_positions(self.padded_size[0], self.tile_size[0], self.margin)

    @property
    def cols(self) -> list[int]:
        return axis_positions(self.padded_size[1], self.tile_size[1], self.margin)

    @property
    def n_tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    def positions(self) -> list[tuple[int, int]]:
        """Tile top-left corners (y, x) in padded coordinates, row-major."""
        return [(y, x) for y in self.rows for x in self.cols]

    def regions(self) -> list[tuple[int, int, int, int]]:
        """Owned region of each tile, ``(y0, y1, x0, x1)`` in padded coordinates, row-major."""
        own_y = axis_ownership(self.rows, self.tile_size[0], self.padded_size[0])
        own_x = axis_ownership(self.cols, self.tile_size[1], self.padded_size[1])
        return [(a, b, c, d) for a, b in own_y for c, d in own_x]

    def describe(self) -> dict:
        """Plain-data form for manifests."""
        return {"inspect_size": list(self.inspect_size), "tile_size": list(self.tile_size),
                "margin": self.margin, "n_tiles": self.n_tiles}

    # ------------------------------------------------------------------ images -> tiles
    def pad(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x 3 -> N x Hp x Wp x 3, reflect padding (d c b | a b c d | c b a)."""
        m = self.margin
        if images.shape[1:3] != tuple(self.inspect_size):
            raise GeometryError(f"images are {images.shape[2]}x{images.shape[1]}, the grid expects "
                                f"{self.inspect_size[1]}x{self.inspect_size[0]} (WxH)")
        if not m:
            return images
        return np.pad(images, ((0, 0), (m, m), (m, m), (0, 0)), mode="reflect")

    def cut(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x 3 inspection images -> uint8 (N*T) x th x tw x 3 tiles (image-major)."""
        padded = self.pad(images)
        th, tw = self.tile_size
        tiles = [padded[:, y:y + th, x:x + tw] for y, x in self.positions()]
        return np.ascontiguousarray(np.stack(tiles, axis=1).reshape(-1, th, tw, padded.shape[3]))

    # ------------------------------------------------------------------ tile maps -> maps
    def stitch(self, tile_maps: list[np.ndarray]) -> list[np.ndarray]:
        """Per-scale tile maps ``(N*T) x th/s x tw/s`` -> per-scale padded maps ``N x Hp/s x Wp/s``."""
        T = self.n_tiles
        Hp, Wp = self.padded_size
        out = []
        for s, maps in zip(self.strides, tile_maps):
            if maps.ndim != 3 or maps.shape[0] % T:
                raise GeometryError(f"tile maps {maps.shape} are not a multiple of {T} tiles")
            n = maps.shape[0] // T
            maps = maps.reshape(n, T, maps.shape[1], maps.shape[2])
            full = np.empty((n, Hp // s, Wp // s), dtype=np.float32)
            for t, ((y, x), (y0, y1, x0, x1)) in enumerate(zip(self.positions(), self.regions())):
                full[:, y0 // s:y1 // s, x0 // s:x1 // s] = maps[:, t, (y0 - y) // s:(y1 - y) // s,
                                                                 (x0 - x) // s:(x1 - x) // s]
            out.append(full)
        return out
