"""Several rasters of one grid as one: a GDAL VRT mosaic, so blockwise tools see one scene.

``roadseg vectorize a.prob.tif b.prob.tif ...`` vectorizes the mosaic, so a road crossing a
scene border is one line with shared junctions, exactly as if the scenes had been one raster.
The rasters must share CRS, pixel size and grid alignment (tiles of one scene, or predict's
outputs of adjacent tiles); pixels no raster covers read as 0 (no road).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from xml.sax.saxutils import escape

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


def write_mosaic(paths: list[Path], out: Path) -> Path:
    """Write a VRT at ``out`` that places every raster of ``paths`` on their common grid."""
    infos = []
    for path in paths:
        with open_raster(path) as ds:
            t = ds.transform
            if t.b or t.d:
                raise InputError(f"'{path}' is rotated; a mosaic needs north-up rasters")
            infos.append(
                (path, ds.crs, t, ds.width, ds.height, ds.count, ds.dtypes[0], ds.tags().get(KIND_TAG))
            )
    _, crs0, t0, *_ = infos[0]
    for path, crs, t, _w, _h, count, dtype, _tag in infos:
        if crs != crs0:
            raise InputError(
                f"'{path}' is in {crs} but '{paths[0]}' is in {crs0}; a mosaic needs one CRS "
                "(vectorize each scene apart, or warp them to one CRS first)"
            )
        if not (math.isclose(t.a, t0.a, rel_tol=1e-9) and math.isclose(t.e, t0.e, rel_tol=1e-9)):
            raise InputError(
                f"'{path}' has {t.a:g} x {-t.e:g} pixels but '{paths[0]}' has {t0.a:g} x {-t0.e:g}"
            )
        col, row = (t.c - t0.c) / t0.a, (t.f - t0.f) / t0.e
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            raise InputError(
                f"'{path}' is off '{paths[0]}''s pixel grid by a fraction of a pixel; a mosaic needs one grid"
            )
        if count != 1 or dtype != infos[0][6]:
            raise InputError(
                f"'{path}' has {count} band(s) of {dtype}; the mosaic needs one band of {infos[0][6]} each"
            )
    offsets = [(round((t.c - t0.c) / t0.a), round((t.f - t0.f) / t0.e)) for _, _, t, *_ in infos]
    c0 = min(c for c, _ in offsets)
    r0 = min(r for _, r in offsets)
    width = max(c + w for (c, _), (_, _, _, w, *_) in zip(offsets, infos, strict=True)) - c0
    height = max(r + h for (_, r), (_, _, _, _, h, *_) in zip(offsets, infos, strict=True)) - r0
    gt = (t0.c + c0 * t0.a, t0.a, 0.0, t0.f + r0 * t0.e, 0.0, t0.e)
    sources = []
    for (c, r), (path, _, _, w, h, *_) in zip(offsets, infos, strict=True):
        sources.append(
            f'    <SimpleSource><SourceFilename relativeToVRT="0">{escape(os.path.abspath(path))}</SourceFilename>'
            f"<SourceBand>1</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="{c - c0}" yOff="{r - r0}" xSize="{w}" ySize="{h}"/></SimpleSource>'
        )
    tags = {tag for *_, tag in infos}
    meta = (
        f'<Metadata><MDI key="{KIND_TAG}">{tags.pop()}</MDI></Metadata>'
        if len(tags) == 1 and None not in tags
        else ""
    )
    srs = f"<SRS>{escape(crs0.to_wkt())}</SRS>" if crs0 is not None else ""
    xml = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{srs}'
        f"<GeoTransform>{', '.join(repr(v) for v in gt)}</GeoTransform>{meta}\n"
        f'  <VRTRasterBand dataType="{_GDAL_TYPES.get(infos[0][6], "Float32")}" band="1">\n'
        + "\n".join(sources)
        + "\n  </VRTRasterBand>\n</VRTDataset>\n"
    )
    out.write_text(xml)
    return out
