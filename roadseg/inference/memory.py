"""How much work one forward pass may hold, from the memory actually free.

predict sizes its passes (images = tiles x TTA views) and, on CUDA, its batches from free
host RAM on a CPU or free VRAM on a GPU, against an upper bound of one image's activations
measured by a small probe. When even one image does not fit, the tile shrinks. A CUDA
out-of-memory error still halves the pass and retries (predict._predict_batch): the bound
here is a plan, the retry is the guarantee.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psutil
import torch
from torch import nn

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
_PROBE = 128


@dataclass(frozen=True)
class PassPlan:
    """Tile side, tiles per batch and images per forward pass for one scene."""

    tile: int
    batch: int
    per_pass: int


def free_bytes(device: torch.device) -> int:
    """Memory free for predict now: VRAM on CUDA, available host RAM otherwise."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(psutil.virtual_memory().available)


_image_cache: dict[tuple[int, int], int] = {}


def image_bytes(model: nn.Module, tile: int, in_channels: int) -> int:
    """An upper bound of one ``tile`` x ``tile`` image's activations in a forward pass.

    The probe sums the float32 outputs of every leaf module on a small image (as if all were
    alive at once; in-place ones counted twice) and scales by area. The bound is 1.5 GB for
    the bundled model and 1.9 GB for dlinknet34 at 1024 px, against measured peaks well under
    that, so a pass planned on it fits.
    """
    if next(model.parameters(), None) is None:
        # an ONNX Runtime session: its activations live outside torch (and a fixed-size one
        # cannot run the probe's image); count the input and the output
        return (in_channels + 1) * 4 * tile * tile
    key = (id(model), in_channels)
    if key not in _image_cache:
        total = 0

        def count(_m: nn.Module, _i: object, out: object) -> None:
            nonlocal total
            if isinstance(out, torch.Tensor):
                total += out.numel() * 4

        leaves = [m for m in model.modules() if not any(True for _ in m.children())]
        hooks = [m.register_forward_hook(count) for m in leaves]
        try:
            param = next(model.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
            with torch.inference_mode():
                model(torch.zeros(1, in_channels, _PROBE, _PROBE, device=device))
        finally:
            for h in hooks:
                h.remove()
        _image_cache[key] = max(total, (in_channels + 1) * 4 * _PROBE**2) // _PROBE**2
    return _image_cache[key] * tile * tile


def plan_passes(
    model: nn.Module,
    *,
    tile: int,
    views: int,
    in_channels: int,
    device: torch.device,
    batch_size: int | None,
    max_pass: int | None,
    divisor: int,
    free: int | None = None,
    fixed_tile: bool = False,
) -> PassPlan:
    """Tile, batch and pass size that fit the memory free now (``free``: bytes, for tests).

    Explicit ``batch_size`` and ``max_pass`` are kept; the tile still shrinks (halving, on
    the model's multiple) while one image does not fit in the budget, unless the model runs
    one tile size only (``fixed_tile``).
    """
    budget = FREE_FRACTION * (free_bytes(device) if free is None else free)
    per_image = image_bytes(model, tile, in_channels)
    shrunk = tile
    while not fixed_tile and per_image > budget and shrunk // 2 >= MIN_TILE:
        shrunk = max(MIN_TILE, shrunk // 2 // divisor * divisor)
        per_image = image_bytes(model, shrunk, in_channels)
    if shrunk != tile:
        log.warning(
            "%.1f GB free: %d-px tiles do not fit, using %d-px tiles",
            budget / FREE_FRACTION / 1e9,
            tile,
            shrunk,
        )
    fit = max(1, int(budget // per_image))
    if device.type == "cuda":
        batch = batch_size or max(1, min(MAX_CUDA_BATCH, fit // views))
        per_pass = max_pass or min(fit, batch * views)
    else:
        batch = batch_size or 4
        per_pass = max_pass or min(CPU_PASS, fit)
    return PassPlan(tile=shrunk, batch=batch, per_pass=per_pass)
