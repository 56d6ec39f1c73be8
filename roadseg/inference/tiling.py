"""Window plan and blend weights for tiled inference.

Tiles of side ``tile`` step by ``tile - overlap``; the grid starts ``overlap / 2`` before
the scene so edge pixels get the same context as inner ones (the reader reflects the scene
past its edges), and it always reaches past the last row and column: every pixel is covered.

Each tile's weight is zero in a margin of ``overlap / 4`` along its sides (where a
convolution sees the tile's zero padding), rises as sin^2 over the next ``overlap / 2`` and
is 1 inside. Neighbouring tiles' ramps coincide, and sin^2 + cos^2 = 1, so the weights sum
to exactly 1 wherever tiles overlap: no seam, and with a model whose receptive-field radius
is below the margin the tiled result equals whole-image inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from roadseg.errors import InputError


@dataclass(frozen=True)
class TileGrid:
    """Top-left corners of the tiles along each axis (may be negative)."""

    height: int
    width: int
    tile: int
    overlap: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @property
    def margin(self) -> int:
        """Zero-weight border of each tile, in pixels."""
        return self.overlap // 4

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)


def check_tiling(tile: int, overlap: int, divisor: int) -> None:
    """Validate tile size and overlap for a model needing multiples of ``divisor``."""
    if tile <= 0 or tile % divisor:
        raise InputError(f"--tile-size must be a positive multiple of {divisor}, got {tile}")
    if overlap < 0 or overlap > tile // 2:
        raise InputError(f"--overlap must be between 0 and tile size / 2 ({tile // 2}), got {overlap}")


def _axis(n: int, tile: int, overlap: int) -> tuple[int, ...]:
    margin = overlap // 4
    if n + 2 * margin <= tile:  # one tile, centred
        return (-((tile - n) // 2),)
    start = -(overlap // 2)
    stride = tile - overlap
    count = max(1, math.ceil((n - (start + tile - margin)) / stride) + 1)
    return tuple(start + i * stride for i in range(count))


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> TileGrid:
    """Plan tiles covering a ``height`` x ``width`` scene."""
    return TileGrid(height, width, tile, overlap, _axis(height, tile, overlap), _axis(width, tile, overlap))


def ramp(tile: int, overlap: int) -> np.ndarray:
    """1-D blend weight: 0 in the margin, sin^2 rise, 1 inside, mirrored at the far end."""
    w = np.ones(tile, dtype=np.float64)
    margin = overlap // 4
    length = overlap - 2 * margin
    if length > 0:
        up = np.sin(np.pi / 2 * (np.arange(length) + 0.5) / length) ** 2
        w[:margin] = 0
        w[margin : margin + length] = up
        w[tile - margin - length : tile - margin] = up[::-1]
        if margin:
            w[tile - margin :] = 0
    return w


def blend_weights(tile: int, overlap: int) -> np.ndarray:
    """2-D weight of one tile, ``(tile, tile)`` float32."""
    w = ramp(tile, overlap)
    return np.outer(w, w).astype(np.float32)
