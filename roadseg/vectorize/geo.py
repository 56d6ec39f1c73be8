"""Pixel coordinates -> map coordinates, lengths in metres, and atomic vector writers.

Pixel ``(col, row)`` indices are mapped at pixel centres, ``(col + 0.5, row + 0.5)``,
through the full affine transform (rotation terms included). GeoJSON is written in
EPSG:4326, lon/lat order (RFC 7946), 7 decimals; GeoPackage keeps the scene's CRS.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from affine import Affine
from pyproj import CRS, Geod, Transformer

from roadseg.errors import InputError
from roadseg.io.atomic import atomic_path

DRIVERS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG"}


def driver_for(path: str | os.PathLike[str]) -> str:
    """Output driver from the file suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in DRIVERS:
        raise InputError(f"--out must end in .geojson or .gpkg, got '{Path(path).name}'")
    return DRIVERS[suffix]


def check_placeable(
    out: str | os.PathLike[str], crs: Any, source: str, *, pixel_coords: bool = False
) -> None:
    """GeoJSON is EPSG:4326 (RFC 7946): a raster without CRS cannot be written to it."""
    if crs is None and not pixel_coords and driver_for(out) == "GeoJSON":
        raise InputError(
            f"'{source}' has no CRS, so a GeoJSON (which must be EPSG:4326) cannot place its roads; "
            "write .gpkg (pixel coordinates), pass --pixel-coords to vectorize, or georeference it"
        )


def pixel_to_map(geom: Any, transform: Affine) -> Any:
    """Map a geometry in pixel-index coordinates (x=col, y=row) to the scene's CRS."""
    a, b, c, d, e, f = transform[:6]

    def fn(xy: np.ndarray) -> np.ndarray:
        col, row = xy[:, 0] + 0.5, xy[:, 1] + 0.5
        return np.column_stack([a * col + b * row + c, d * col + e * row + f])

    return shapely.transform(geom, fn)


def lengths_m(geoms: list[Any], crs: CRS | None) -> list[float | None]:
    """Line lengths in metres: geodesic for geographic CRSs, unit-scaled otherwise."""
    if crs is None:
        return [None] * len(geoms)
    if crs.is_geographic:
        geod = Geod(ellps="WGS84")
        return [float(geod.geometry_length(g)) for g in geoms]
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return [float(g.length) * factor for g in geoms]


def areas_m2(geoms: list[Any], crs: CRS | None) -> list[float | None]:
    """Polygon areas in square metres."""
    if crs is None:
        return [None] * len(geoms)
    if crs.is_geographic:
        geod = Geod(ellps="WGS84")
        return [abs(float(geod.geometry_area_perimeter(g)[0])) for g in geoms]
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return [float(g.area) * factor**2 for g in geoms]


def to_lonlat(geoms: list[Any], crs: CRS) -> list[Any]:
    """Reproject to EPSG:4326 in lon/lat order whatever the CRS's axis order (always_xy)."""
    if crs.equals(CRS.from_epsg(4326)):
        return geoms
    tr = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)

    def fn(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return [shapely.transform(g, fn) for g in geoms]


def write_vectors(
    path: str | os.PathLike[str],
    geoms: list[Any],
    columns: dict[str, list[Any]],
    *,
    crs: CRS | None,
    geometry_type: str,
    pixel_coords: bool = False,
) -> Path:
    """Write features atomically; GeoJSON in EPSG:4326 (RFC 7946), GPKG in ``crs``."""
    import geopandas as gpd

    driver = driver_for(path)
    out_crs = crs
    check_placeable(path, crs, "the raster", pixel_coords=pixel_coords)
    if driver == "GeoJSON":
        if crs is not None:
            geoms = to_lonlat(geoms, crs)
            out_crs = CRS.from_epsg(4326)
        geoms = (
            [shapely.set_precision(g, 1e-7, mode="pointwise") for g in geoms] if crs is not None else geoms
        )
    frame = gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(geoms, crs=out_crs), crs=out_crs)
    options: dict[str, Any] = {}
    if driver == "GeoJSON" and crs is not None:
        options = {"layer_options": {"RFC7946": "YES", "COORDINATE_PRECISION": "7"}}
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'crs' was not provided")
        pyogrio.write_dataframe(
            frame,
            tmp,
            driver=driver,
            layer="roads",
            geometry_type=geometry_type,
            promote_to_multi=False,
            **options,
        )
    return Path(path)
