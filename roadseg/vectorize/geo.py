"""Pixel coordinates -> map coordinates, lengths in metres, and atomic vector writers.

Pixel ``(col, row)`` indices are mapped at pixel centres, ``(col + 0.5, row + 0.5)``,
through the full affine transform (rotation terms included). GeoJSON is written in
EPSG:4326, lon/lat order (RFC 7946), 7 decimals; GeoPackage keeps the scene's CRS and, for
lines, adds the network's ``nodes`` and ``edges`` layers; GraphML is the network as an osmnx
graph in EPSG:4326 (vectorize/network.py).
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
from roadseg.io.paths import VECTOR_DRIVERS

#: GeoPackage version written: 1.2 opens in QGIS 3.22 (GDAL 3.6) without a warning, 1.4 does not
GPKG_VERSION = "1.2"


def driver_for(path: str | os.PathLike[str]) -> str:
    """Output driver from the file suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in VECTOR_DRIVERS:
        raise InputError(f"--out must end in .geojson, .gpkg or .graphml, got '{Path(path).name}'")
    return VECTOR_DRIVERS[suffix]


def check_placeable(
    out: str | os.PathLike[str], crs: Any, source: str, *, pixel_coords: bool = False
) -> None:
    """GeoJSON is EPSG:4326 (RFC 7946), and so is our GraphML: a raster without CRS cannot be
    written to either."""
    driver = driver_for(out)
    if crs is None and driver == "GraphML":
        raise InputError(
            f"'{source}' has no CRS, so a GraphML road graph (EPSG:4326, lengths in metres) cannot place "
            "its roads; write .gpkg (pixel coordinates) or georeference it"
        )
    if crs is None and not pixel_coords and driver == "GeoJSON":
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
    """Line lengths in metres on the ground: geodesic on WGS84 whatever the CRS (a projected
    CRS's grid distance is off by its scale factor: 0.04 % in UTM, 1/cos(latitude) in Web
    Mercator)."""
    if crs is None:
        return [None] * len(geoms)
    geod = Geod(ellps="WGS84")
    return [float(geod.geometry_length(g)) for g in _lonlat_for_measure(geoms, crs)]


def areas_m2(geoms: list[Any], crs: CRS | None) -> list[float | None]:
    """Polygon areas in square metres on the ground (geodesic, as ``lengths_m``)."""
    if crs is None:
        return [None] * len(geoms)
    geod = Geod(ellps="WGS84")
    return [abs(float(geod.geometry_area_perimeter(g)[0])) for g in _lonlat_for_measure(geoms, crs)]


def _lonlat_for_measure(geoms: list[Any], crs: CRS) -> list[Any]:
    return geoms if crs.is_geographic else to_lonlat(geoms, crs)


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
    speed_kph: float | None = None,
    style: str | None = None,
) -> Path:
    """Write features atomically; GeoJSON and GraphML in EPSG:4326 (RFC 7946), GPKG in ``crs``.

    ``speed_kph`` marks lines that form a network (``u``, ``v`` columns): GraphML needs it, and
    a GeoPackage then gets the ``nodes`` and ``edges`` layers too. ``style`` (a kind of
    :mod:`roadseg.io.styles`): a GeoPackage carries that QGIS style inside it.
    """
    import geopandas as gpd

    from roadseg.vectorize.network import network_columns, write_graphml

    driver = driver_for(path)
    out_crs = crs
    check_placeable(path, crs, "the raster", pixel_coords=pixel_coords)
    if driver == "GraphML" and speed_kph is None:
        raise InputError(
            f"'{Path(path).name}': GraphML holds a road network; road polygons go to .gpkg or .geojson"
        )
    if driver in ("GeoJSON", "GraphML"):
        if crs is not None:
            geoms = to_lonlat(geoms, crs)
            out_crs = CRS.from_epsg(4326)
        geoms = (
            [shapely.set_precision(g, 1e-7, mode="pointwise") for g in geoms] if crs is not None else geoms
        )
    if driver == "GraphML":
        with atomic_path(path) as tmp:
            write_graphml(tmp, geoms, columns, out_crs, speed_kph)  # type: ignore[arg-type]
        return Path(path)
    frame = gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(geoms, crs=out_crs), crs=out_crs)
    options: dict[str, Any] = {}
    if driver == "GeoJSON" and crs is not None:
        options = {"layer_options": {"RFC7946": "YES", "COORDINATE_PRECISION": "7"}}
    if driver == "GPKG":
        options = {"dataset_options": {"VERSION": GPKG_VERSION}}
    layers = [("roads", frame, geometry_type)]
    if driver == "GPKG" and speed_kph is not None:
        nodes, points, edges = network_columns(geoms, columns, speed_kph)
        layers += [
            (
                "nodes",
                gpd.GeoDataFrame(nodes, geometry=gpd.GeoSeries(points, crs=out_crs), crs=out_crs),
                "Point",
            ),
            (
                "edges",
                gpd.GeoDataFrame(edges, geometry=gpd.GeoSeries(geoms, crs=out_crs), crs=out_crs),
                geometry_type,
            ),
        ]
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'crs' was not provided")
        for i, (layer, data, gtype) in enumerate(layers):
            pyogrio.write_dataframe(
                data,
                tmp,
                driver=driver,
                layer=layer,
                geometry_type=gtype,
                promote_to_multi=False,
                append=i > 0,
                **(options if i == 0 else {}),
            )
        if driver == "GPKG" and style is not None:
            from roadseg.io.styles import embed_style

            embed_style(tmp, ["roads", "edges"] if style == "lines" else ["roads"], style)
    return Path(path)
