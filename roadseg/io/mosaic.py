"""Several rasters as one: a GDAL VRT mosaic, so blockwise tools see one scene.

``roadseg vectorize a.prob.tif b.prob.tif ...`` vectorizes the mosaic, so a road crossing a
scene border is one line with shared junctions, exactly as if the scenes had been one raster.
Rasters on one grid (tiles of one scene, predict's outputs of adjacent tiles) are placed as
they are. Rasters in another CRS (scenes in the next UTM zone) or on another grid are warped
on the fly onto the grid of the first raster in the CRS of most rasters, through
warped VRTs beside the mosaic, so memory stays bounded. Pixels no raster covers read as 0 (no road).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.shutil import copy as rio_copy
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from roadseg.errors import InputError
from roadseg.io.kinds import KIND_TAG
from roadseg.io.raster import open_raster

_GDAL_TYPES = {
    "uint8": "Byte",
    "uint16": "UInt16",
    "int16": "Int16",
    "float32": "Float32",
    "float64": "Float64",
}


@dataclass(frozen=True)
class _Source:
    path: Path
    crs: Any
    transform: Affine
    width: int
    height: int
    count: int
    dtype: str
    kind: str | None
    warped: bool = False


def write_mosaic(paths: list[Path], out: Path) -> Path:
    """Write a VRT at ``out`` that places every raster of ``paths`` on one grid; rasters in
    another CRS are warped onto it by VRTs written beside ``out``."""
    infos = []
    for path in paths:
        with open_raster(path) as ds:
            t = ds.transform
            if t.b or t.d:
                raise InputError(f"'{path}' is rotated; a mosaic needs north-up rasters")
            infos.append(
                _Source(path, ds.crs, t, ds.width, ds.height, ds.count, ds.dtypes[0], ds.tags().get(KIND_TAG))
            )
    for src in infos:
        if src.count != 1 or src.dtype != infos[0].dtype:
            raise InputError(
                f"'{src.path}' has {src.count} band(s) of {src.dtype}; the mosaic needs one band of "
                f"{infos[0].dtype} each"
            )
    crs0 = _main_crs(infos)
    ref = next(s for s in infos if s.crs == crs0)
    t0 = ref.transform
    placed = [
        s if _on_grid(s, crs0, t0) else _warp(s, crs0, t0, out.parent / f"warped{i}.vrt")
        for i, s in enumerate(infos)
    ]
    offsets = [(round((s.transform.c - t0.c) / t0.a), round((s.transform.f - t0.f) / t0.e)) for s in placed]
    c0 = min(c for c, _ in offsets)
    r0 = min(r for _, r in offsets)
    width = max(c + s.width for (c, _), s in zip(offsets, placed, strict=True)) - c0
    height = max(r + s.height for (_, r), s in zip(offsets, placed, strict=True)) - r0
    _check_coverage(placed, width, height)
    gt = (t0.c + c0 * t0.a, t0.a, 0.0, t0.f + r0 * t0.e, 0.0, t0.e)
    sources = []
    # warped rasters first, their outside (0, declared nodata) transparent; native ones over them
    for (c, r), src in sorted(zip(offsets, placed, strict=True), key=lambda p: not p[1].warped):
        tag = "ComplexSource" if src.warped else "SimpleSource"
        sources.append(
            f'    <{tag}><SourceFilename relativeToVRT="0">{escape(os.path.abspath(src.path))}</SourceFilename>'
            f"<SourceBand>1</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{src.width}" ySize="{src.height}"/>'
            f'<DstRect xOff="{c - c0}" yOff="{r - r0}" xSize="{src.width}" ySize="{src.height}"/>'
            + ("<NODATA>0</NODATA>" if src.warped else "")
            + f"</{tag}>"
        )
    tags = {s.kind for s in infos}
    meta = (
        f'<Metadata><MDI key="{KIND_TAG}">{tags.pop()}</MDI></Metadata>'
        if len(tags) == 1 and None not in tags
        else ""
    )
    srs = f"<SRS>{escape(crs0.to_wkt())}</SRS>" if crs0 is not None else ""
    xml = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{srs}'
        f"<GeoTransform>{', '.join(repr(v) for v in gt)}</GeoTransform>{meta}\n"
        f'  <VRTRasterBand dataType="{_GDAL_TYPES.get(infos[0].dtype, "Float32")}" band="1">\n'
        + "\n".join(sources)
        + "\n  </VRTRasterBand>\n</VRTDataset>\n"
    )
    out.write_text(xml)
    return out


#: a mosaic may span this many times the pixels its rasters cover (above MOSAIC_FREE_PX): far
#: apart rasters would otherwise make vectorize read and skeletonize empty land for minutes
MOSAIC_SPREAD = 16
MOSAIC_FREE_PX = 64_000_000


def _check_coverage(placed: list[_Source], width: int, height: int) -> None:
    """Refuse a mosaic that is mostly empty: two scenes 100 km apart span 40,000 Mpx for 0.1."""
    covered = sum(s.width * s.height for s in placed)
    span = width * height
    if span > MOSAIC_FREE_PX and span > MOSAIC_SPREAD * covered:
        raise InputError(
            f"the {len(placed)} rasters cover {covered / 1e6:.3g} Mpx but lie so far apart that their mosaic "
            f"would span {span / 1e6:.4g} Mpx ({width} x {height} px, {span / covered:.0f} times more); "
            "vectorize rasters that touch together, and distant ones separately"
        )


def _on_grid(src: _Source, crs: Any, t0: Affine) -> bool:
    """Whether ``src`` lies on the reference grid as it is: same CRS, pixel size and alignment."""
    t = src.transform
    if src.crs != crs or not (
        math.isclose(t.a, t0.a, rel_tol=1e-9) and math.isclose(t.e, t0.e, rel_tol=1e-9)
    ):
        return False
    col, row = (t.c - t0.c) / t0.a, (t.f - t0.f) / t0.e
    return abs(col - round(col)) <= 1e-6 and abs(row - round(row)) <= 1e-6


def _main_crs(infos: list[_Source]) -> Any:
    """The CRS of most rasters (the first raster's on a tie); a CRS-less raster mixes with none."""
    crss = [s.crs for s in infos]
    if None in crss and len(set(crss)) > 1:
        without = [f"'{s.path}'" for s in infos if s.crs is None]
        placed = next(s for s in infos if s.crs is not None)
        raise InputError(
            f"{len(without)} of {len(infos)} rasters have no CRS ({', '.join(without[:3])}"
            f"{', ...' if len(without) > 3 else ''}) while '{placed.path}' has one; a mosaic needs every "
            "raster placed on the map: georeference them, or vectorize them one by one"
        )
    return max(crss, key=lambda c: (crss.count(c), -crss.index(c)))


def _warp(src: _Source, crs: Any, t0: Affine, vrt_path: Path) -> _Source:
    """A warped VRT of ``src`` in ``crs`` on ``t0``'s pixel grid: bilinear for probabilities,
    nearest for masks (a 0/1 raster stays 0/1)."""
    with rasterio.open(src.path) as ds:
        left, bottom, right, top = transform_bounds(ds.crs, crs, *ds.bounds, densify_pts=21)
        col0, col1 = math.floor((left - t0.c) / t0.a), math.ceil((right - t0.c) / t0.a)
        row0, row1 = math.floor((top - t0.f) / t0.e), math.ceil((bottom - t0.f) / t0.e)
        transform = t0 * Affine.translation(col0, row0)
        resampling = Resampling.nearest if src.kind == "mask" else Resampling.bilinear
        with WarpedVRT(
            ds,
            crs=crs,
            transform=transform,
            width=col1 - col0,
            height=row1 - row0,
            # 0 is "no road" and transparent on both sides: a valid 0 would otherwise become 1
            # (GDAL moves valid values off the destination nodata)
            src_nodata=0,
            nodata=0,
            resampling=resampling,
        ) as vrt:
            rio_copy(vrt, vrt_path, driver="VRT")
    return _Source(vrt_path, crs, transform, col1 - col0, row1 - row0, 1, src.dtype, src.kind, warped=True)
