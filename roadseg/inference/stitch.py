"""Blend-weighted accumulation of tile predictions into full-width row strips.

Only one tile row (``tile`` rows x scene width) is held at a time: when the next tile row
begins, the rows no later tile can touch are divided by their weight sum and handed to the
sink. Memory is bounded by the strip, never by the scene.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from roadseg.inference.tiling import TileGrid, blend_weights


class StripStitcher:
    """Accumulates tiles (given in row-major order) and emits finished rows in order.

    ``sink(row0, probs)`` receives ``(rows, width)`` float32 probabilities, rows ascending,
    together covering 0..height-1 exactly once.
    """

    def __init__(self, grid: TileGrid, sink: Callable[[int, np.ndarray], None]) -> None:
        self.grid = grid
        self.sink = sink
        self.weights = blend_weights(grid.tile, grid.overlap)
        self.x0 = grid.cols[0]
        width = grid.cols[-1] + grid.tile - self.x0
        self.acc = np.zeros((grid.tile, width), np.float32)
        self.wsum = np.zeros((grid.tile, width), np.float32)
        self.row_index = 0
        self.flushed = 0  # rows [0, flushed) have gone to the sink

    def add(self, row_index: int, col_index: int, probs: np.ndarray) -> None:
        """Add one tile's ``(tile, tile)`` probabilities."""
        while row_index > self.row_index:
            self._advance()
        c = self.grid.cols[col_index] - self.x0
        t = self.grid.tile
        self.acc[:, c : c + t] += probs * self.weights
        self.wsum[:, c : c + t] += self.weights

    def _emit(self, stop: int) -> None:
        top = self.grid.rows[self.row_index]
        start, stop = self.flushed, min(stop, self.grid.height)
        if stop <= start:
            return
        a, b = start - top, stop - top
        c0 = -self.x0
        w = self.wsum[a:b, c0 : c0 + self.grid.width]
        probs = self.acc[a:b, c0 : c0 + self.grid.width] / np.maximum(w, 1e-12)
        self.sink(start, probs)
        self.flushed = stop

    def _advance(self) -> None:
        nxt = self.grid.rows[self.row_index + 1]
        self._emit(nxt)
        shift = nxt - self.grid.rows[self.row_index]
        for buf in (self.acc, self.wsum):
            buf[:-shift] = buf[shift:]
            buf[-shift:] = 0
        self.row_index += 1

    def finish(self) -> None:
        """Emit the remaining rows once every tile has been added."""
        while self.row_index < len(self.grid.rows) - 1:
            self._advance()
        self._emit(self.grid.height)
