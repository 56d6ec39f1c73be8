"""How much work one forward pass may hold, from the memory actually free.

predict sizes its passes (images = tiles x TTA views) and, on CUDA, its batches from free
host RAM on a CPU or free VRAM on a GPU, against an upper bound of one image's activations
measured by a small probe. When even one image does not fit, the tile shrinks. A CUDA
out-of-memory error still halves the pass and retries (torch_runtime.TorchPredictor): the bound
here is a plan, the retry is the guarantee.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)

#: Share of the free memory predict plans to use: the rest stays for GDAL's cache, the row
#: strips, the read-ahead queue and whatever else runs on the machine.
FREE_FRACTION = 0.5
#: Smallest tile predict shrinks to before it gives up planning and runs one image per pass.
MIN_TILE = 256
#: Images per forward pass on a CPU: one tile's views one at a time stay in cache and were the
#: fastest for every model measured (scripts/benchmark_models.py), with the least memory.
CPU_PASS = 1
#: Most tiles per batch on CUDA (more only lengthens the read-ahead queue).
MAX_CUDA_BATCH = 16


@dataclass(frozen=True)
class PassPlan:
    """Tile side, tiles per batch and images per forward pass for one scene."""

    tile: int
    batch: int
    per_pass: int


def free_host_bytes() -> int:
    """Available host RAM now (what a CPU run plans with)."""
    return int(psutil.virtual_memory().available)


def plan_passes(
    image_bytes: Callable[[int], int],
    *,
    tile: int,
    views: int,
    free: int,
    cuda: bool,
    batch_size: int | None,
    max_pass: int | None,
    divisor: int,
    fixed_tile: bool = False,
) -> PassPlan:
    """Tile, batch and pass size that fit ``free`` bytes of memory.

    ``image_bytes(tile)`` bounds one image's activations (the predictor measures it).
    Explicit ``batch_size`` and ``max_pass`` are kept; the tile still shrinks (halving, on
    the model's multiple) while one image does not fit in the budget, unless the model runs
    one tile size only (``fixed_tile``).
    """
    budget = FREE_FRACTION * free
    per_image = image_bytes(tile)
    shrunk = tile
    while not fixed_tile and per_image > budget and shrunk // 2 >= MIN_TILE:
        shrunk = max(MIN_TILE, shrunk // 2 // divisor * divisor)
        per_image = image_bytes(shrunk)
    if shrunk != tile:
        log.warning(
            "%.1f GB free: %d-px tiles do not fit, using %d-px tiles",
            budget / FREE_FRACTION / 1e9,
            tile,
            shrunk,
        )
    fit = max(1, int(budget // per_image))
    if cuda:
        batch = batch_size or max(1, min(MAX_CUDA_BATCH, fit // views))
        per_pass = max_pass or min(fit, batch * views)
    else:
        batch = batch_size or 4
        per_pass = max_pass or min(CPU_PASS, fit)
    return PassPlan(tile=shrunk, batch=batch, per_pass=per_pass)
