"""Raster blocks -> cleaned binary mask -> skeleton -> unit segments between skeleton pixels.

Blocks are read with a halo so thinning and cleanup near a block border see the same
neighbourhood as in a single pass. Each 8-neighbour pair of skeleton pixels becomes one unit
segment, produced by the block that holds its first pixel, so the blocks' segments together
are exactly the scene's pixel graph, with no duplicates and integer coordinates; GEOS's line
merger then turns them into junction-to-junction lines (``graph.merge_lines``).

This replaces skan's graph builder: as correct on the same skeleton, and it needs no numba
compilation (skan's costs about 5 s on every start); see docs/benchmarks.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from rasterio.windows import Window
from skimage.morphology import skeletonize


@dataclass(frozen=True)
class Block:
    """A core window and the halo window that contains it (pixel offsets, scene grid)."""

    row: int
    col: int
    height: int
    width: int
    halo: int

    def read_window(self, scene_h: int, scene_w: int) -> Window:
        r0, c0 = max(0, self.row - self.halo), max(0, self.col - self.halo)
        r1 = min(scene_h, self.row + self.height + self.halo)
        c1 = min(scene_w, self.col + self.width + self.halo)
        return Window(c0, r0, c1 - c0, r1 - r0)


def plan_blocks(height: int, width: int, block_size: int, halo: int) -> list[Block]:
    """Cover the scene with ``block_size`` cores (the last row/column may be smaller)."""
    return [
        Block(r, c, min(block_size, height - r), min(block_size, width - c), halo)
        for r in range(0, height, block_size)
        for c in range(0, width, block_size)
    ]


def _drop_small(mask: np.ndarray, min_px: int, connectivity: int) -> np.ndarray:
    """``mask`` without its components smaller than ``min_px`` that do not touch the window edge.

    OpenCV's connected components with statistics give areas and bounding boxes in one pass
    (several times faster than scipy.ndimage.label + bincount on large blocks).
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=connectivity)
    if n <= 1:
        return mask
    x, y, w, h, area = (stats[:, i] for i in range(5))
    inside = (x > 0) & (y > 0) & (x + w < mask.shape[1]) & (y + h < mask.shape[0])
    small = (area < min_px) & inside
    small[0] = False  # background
    if not small.any():
        return mask
    return mask & ~small[labels]


def clean_mask(mask: np.ndarray, *, min_hole_px: int, min_blob_px: int) -> np.ndarray:
    """Fill holes and drop blobs below an area; those touching the window edge are kept,
    since they may continue outside it."""
    if min_hole_px > 0:
        mask = ~_drop_small(~mask, min_hole_px, connectivity=4)
    if min_blob_px > 0:
        mask = _drop_small(mask, min_blob_px, connectivity=8)
    return mask


#: Neighbour offsets owned by a pixel: right, down, down-right, down-left. Each 8-neighbour
#: pair of the scene is produced exactly once, by its first pixel in raster order.
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))


def skeleton_segments(skel: np.ndarray, core: tuple[int, int, int, int]) -> np.ndarray:
    """Unit segments between 8-connected skeleton pixels owned by the core ``(r0, c0, h, w)``.

    ``skel`` is the skeleton of the halo window, so pixels just outside the core (the first
    row/column of the next block) are known, and segments from the core reach them. A diagonal
    step is skipped when an orthogonal two-step path joins the same pixels, so corners do not
    turn into triangles. Returns ``(n, 2, 2)`` float64 as ``[[x0, y0], [x1, y1]]`` in window
    pixel indices (x = column, y = row). Isolated pixels give no segment.
    """
    r0, c0, h, w = core
    s = np.pad(skel, 1)  # zeros beyond the window: no neighbour there
    rr, cc = np.nonzero(s[r0 + 1 : r0 + 1 + h, c0 + 1 : c0 + 1 + w])  # the sparse skeleton only
    rr, cc = rr + r0 + 1, cc + c0 + 1
    out = []
    for dr, dc in _OFFSETS:
        pair = s[rr + dr, cc + dc]
        if dr and dc:  # diagonal: only if no orthogonal path through (r, c+dc) or (r+dr, c)
            pair &= ~s[rr, cc + dc] & ~s[rr + dr, cc]
        if pair.any():
            r, c = rr[pair] - 1, cc[pair] - 1
            seg = np.empty((r.size, 2, 2))
            seg[:, 0, 0], seg[:, 0, 1] = c, r
            seg[:, 1, 0], seg[:, 1, 1] = c + dc, r + dr
            out.append(seg)
    return np.concatenate(out) if out else np.zeros((0, 2, 2))


def process_block(
    read_block: Any,
    block: Block,
    scene_h: int,
    scene_w: int,
    *,
    min_hole_px: int,
    min_blob_px: int,
    keep_mask: bool,
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The block's road lines in scene pixel coordinates (merged within the block; they end at
    junctions, dead ends and where they leave the block), and the cleaned core mask if asked."""
    import shapely

    win = block.read_window(scene_h, scene_w)
    mask = read_block(win)
    r0, c0 = block.row - int(win.row_off), block.col - int(win.col_off)
    if not mask.any():
        return [], (np.zeros((block.height, block.width), bool) if keep_mask else None)
    mask = clean_mask(mask, min_hole_px=min_hole_px, min_blob_px=min_blob_px)
    seg = skeleton_segments(skeletonize(mask), (r0, c0, block.height, block.width))
    core = mask[r0 : r0 + block.height, c0 : c0 + block.width] if keep_mask else None
    if not len(seg):
        return [], core
    seg[..., 0] += int(win.col_off)
    seg[..., 1] += int(win.row_off)
    merged = shapely.line_merge(shapely.multilinestrings(shapely.linestrings(seg)))
    return [shapely.get_coordinates(g) for g in shapely.get_parts(merged)], core
