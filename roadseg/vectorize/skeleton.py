"""Raster blocks -> cleaned binary mask -> skeleton -> pixel paths (via skan).

Blocks are read with a halo so thinning and cleanup near a block border see the same
neighbourhood as in a single pass; the skeleton is kept only in the block's core plus one
pixel row/column shared with the next block, so paths from neighbouring blocks meet on
identical pixel coordinates and merge exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.windows import Window
from scipy import ndimage
from skan import Skeleton
from skimage.morphology import skeletonize

_EIGHT = np.ones((3, 3), bool)


@dataclass(frozen=True)
class Block:
    """A core window and the halo window that contains it (pixel offsets, scene grid)."""

    row: int
    col: int
    height: int
    width: int
    halo: int

    def read_window(self, scene_h: int, scene_w: int) -> Window:  # noqa: D102
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


def clean_mask(mask: np.ndarray, *, min_hole_px: int, min_blob_px: int) -> np.ndarray:
    """Fill holes and drop blobs below an area; blobs touching the window edge are kept,
    since they may continue outside it."""
    if min_hole_px > 0:
        holes, n = ndimage.label(~mask)
        if n:
            sizes = np.bincount(holes.ravel())
            border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
            small = sizes < min_hole_px
            small[0] = False
            small[border] = False
            mask = mask | small[holes]
    if min_blob_px > 0:
        blobs, n = ndimage.label(mask, structure=_EIGHT)
        if n:
            sizes = np.bincount(blobs.ravel())
            border = np.unique(np.concatenate([blobs[0], blobs[-1], blobs[:, 0], blobs[:, -1]]))
            drop = sizes < min_blob_px
            drop[0] = False
            drop[border] = False
            mask = mask & ~drop[blobs]
    return mask


def block_paths(skel: np.ndarray) -> list[np.ndarray]:
    """Pixel paths ``(n, 2)`` (row, col) of a skeleton image, junction to junction or end.

    Isolated pixels carry no line and are dropped (skan cannot build a graph of them).
    """
    neighbours = ndimage.convolve(skel.astype(np.uint8), _EIGHT.astype(np.uint8), mode="constant") - 1
    skel = skel & (neighbours > 0)
    if not skel.any():
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = Skeleton(skel)
    return [graph.path_coordinates(i).astype(np.int64) for i in range(graph.n_paths)]


def iter_block_paths(
    read_block: Any,
    blocks: list[Block],
    scene_h: int,
    scene_w: int,
    *,
    min_hole_px: int,
    min_blob_px: int,
) -> Iterator[tuple[Block, np.ndarray, list[np.ndarray]]]:
    """For each block: its cleaned core mask and skeleton paths in scene pixel coordinates.

    ``read_block(window) -> bool array`` supplies the thresholded mask of a window.
    """
    for block in blocks:
        win = block.read_window(scene_h, scene_w)
        mask = read_block(win)
        if not mask.any():
            yield block, np.zeros((block.height, block.width), bool), []
            continue
        mask = clean_mask(mask, min_hole_px=min_hole_px, min_blob_px=min_blob_px)
        skel = skeletonize(mask)
        r_off, c_off = int(win.row_off), int(win.col_off)
        # core plus the first row/column of the next block, shared so paths meet exactly
        r0, c0 = block.row - r_off, block.col - c_off
        r1 = min(r0 + block.height + 1, skel.shape[0])
        c1 = min(c0 + block.width + 1, skel.shape[1])
        core = skel[r0:r1, c0:c1]
        paths = [p + (block.row, block.col) for p in block_paths(core)]
        yield block, mask[r0 : r0 + block.height, c0 : c0 + block.width], paths
