"""What a road raster holds: the one rule that vectorize and evaluate share.

A road raster is one band (or identical bands, as DeepGlobe's RGB masks) of

- a probability: float 0-1, or 8-bit 0-255 (roadseg's own outputs are tagged as such);
- a mask: 0/1, or 0/255 with no value in between.

Anything else (an RGB photo, a 16-bit scene, floats outside 0-1) is refused with what was
found, so a wrong file never turns into hundreds of "roads".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.enums import Resampling

from roadseg.errors import InputError
from roadseg.io.raster import read_checked

#: tag roadseg writes on its probability rasters
KIND_TAG = "ROADSEG_KIND"
#: longest side of the decimated read that compares bands
_CHECK_SIDE = 512


@dataclass(frozen=True)
class RoadRasterKind:
    """How to read a road raster's band 1."""

    #: the value that means probability 1 (1.0 for floats and 0/1 masks, 255 for 8-bit)
    scale: float
    is_probability: bool

    @property
    def name(self) -> str:
        return "probability" if self.is_probability else "mask"


def road_raster_kind(ds: Any) -> RoadRasterKind:
    """Classify an open raster, reading it block by block (memory stays bounded)."""
    name = ds.name
    dtype = np.dtype(ds.dtypes[0])
    if ds.count > 1 and not _bands_identical(ds):
        raise InputError(
            f"'{name}' has {ds.count} different bands (a photo?); expected one band of road probability "
            "(0-1 or 0-255) or a 0/1 or 0/255 road mask, such as roadseg predict --prob-out writes"
        )
    if dtype.kind not in "uif":
        raise InputError(f"'{name}' holds {dtype} values; expected a road probability or mask raster")
    tag = ds.tags().get(KIND_TAG)  # roadseg's own outputs: no need to read them twice
    if tag in ("probability", "mask") and ds.count == 1:
        scale = 1.0 if dtype.kind == "f" or tag == "mask" else 255.0
        return RoadRasterKind(scale, tag == "probability")
    lo, hi = np.inf, -np.inf
    seen: set[float] = set()
    for _, win in ds.block_windows(1):
        block = read_checked(ds, ds.read, 1, window=win, masked=True).compressed()
        if block.size == 0:
            continue
        if dtype.kind == "f":
            block = block[np.isfinite(block)]
            if block.size == 0:
                continue
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        if len(seen) <= 3:
            seen.update(np.unique(block[:65536]).tolist())
    if not np.isfinite(hi):
        raise InputError(f"'{name}' has no valid pixels (all nodata)")
    if dtype.kind == "f":
        if lo < 0 or hi > 1:
            raise InputError(
                f"'{name}' holds floats from {lo:g} to {hi:g}; expected road probabilities from 0 to 1"
            )
        return RoadRasterKind(1.0, True)
    if lo < 0 or hi > 255:
        raise InputError(
            f"'{name}' holds values from {lo:g} to {hi:g} ({dtype}); expected a probability 0-255 or a "
            "0/1 or 0/255 mask (a 16-bit scene? run roadseg predict on it first)"
        )
    if hi <= 1:
        return RoadRasterKind(1.0, False)
    if seen <= {0, 255} and _only(ds, (0, 255)):
        return RoadRasterKind(255.0, False)
    return RoadRasterKind(255.0, True)


def _only(ds: Any, values: tuple[int, ...]) -> bool:
    for _, win in ds.block_windows(1):
        if not np.isin(read_checked(ds, ds.read, 1, window=win, masked=True).compressed(), values).all():
            return False
    return True


def _bands_identical(ds: Any) -> bool:
    factor = max(1.0, max(ds.height, ds.width) / _CHECK_SIDE)
    shape = (max(1, round(ds.height / factor)), max(1, round(ds.width / factor)))
    bands = [b for b in range(1, ds.count + 1) if ds.colorinterp[b - 1].name != "alpha"]
    data = read_checked(ds, ds.read, bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest)
    return bool((data == data[:1]).all())
