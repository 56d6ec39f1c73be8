"""The conflate tool: predicted roads (or a scene) and a road map in, into one folder:

``missing.gpkg`` + ``missing.osm`` (roads the map lacks), ``unsupported.gpkg`` (mapped roads
the imagery does not support, for review), ``completeness.gpkg`` (a grid), ``summary.json``.
GeoPackages carry their QGIS styles; the matching rule is in :mod:`roadseg.conflate.match`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadseg.conflate.match import MatchOptions, match
from roadseg.conflate.osm import read_osm_lines, write_osm
from roadseg.errors import InputError
from roadseg.io.atomic import atomic_path
from roadseg.io.paths import check_input_file

log = logging.getLogger(__name__)

#: what the outputs are called in the folder
OUTPUTS = ("missing.gpkg", "missing.osm", "unsupported.gpkg", "completeness.gpkg", "summary.json")
#: columns that hold the road class, in the order tried (OSM, Geofabrik shapefiles, SpaceNet)
CLASS_COLUMNS = ("highway", "fclass", "type", "class")
#: mapped ways that imagery cannot be expected to show as roads: not judged "unsupported"
DEFAULT_EXCLUDE = (
    "footway",
    "path",
    "cycleway",
    "steps",
    "pedestrian",
    "bridleway",
    "corridor",
    "proposed",
    "construction",
    "platform",
    "elevator",
    "via_ferrata",
)


@dataclass(frozen=True)
class ConflateOptions:
    match: MatchOptions = field(default_factory=MatchOptions)
    #: road classes of the map left out (see DEFAULT_EXCLUDE)
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    #: tag of every new way in missing.osm
    osm_tag: str = "highway=road"
    #: OGR SQL filter on the map's attributes (``--map-where "Quatreclasses = '3'"``)
    map_where: str | None = None


#: road areas become centrelines on a grid of this pixel size (metres); larger grids are refused
AREA_PIXEL_M = 0.5
AREA_MAX_PX = 200_000_000


def read_map(path: Path, where: str | None = None) -> Any:
    """The map's roads as lines in a GeoDataFrame: ``.osm``/``.osm.pbf`` (GDAL's OSM driver),
    GeoJSON or GeoPackage lines, or road areas (polygons), whose centrelines are drawn.
    ``where``: an OGR SQL filter on the attributes (a land-cover layer's road class)."""
    import geopandas as gpd
    import pyogrio

    check_input_file(path, "--map", "a road map: .osm, .osm.pbf, .geojson or .gpkg lines")
    name = path.name.lower()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name.endswith((".osm", ".osm.pbf", ".pbf")):
                if where is not None:
                    raise InputError(
                        f"--map-where filters GeoPackage and GeoJSON maps; '{path}' is OSM: its classes are "
                        "chosen by the highway tag (--all-classes keeps every one)"
                    )
                df = read_osm_lines(path)
            else:
                layers = [n for n, g in pyogrio.list_layers(path) if g and "LINE" in str(g).upper()]
                df = pyogrio.read_dataframe(path, layer=layers[0] if layers else None, where=where)
    except pyogrio.errors.DataSourceError as exc:
        raise InputError(f"--map '{path}' cannot be read ({str(exc).splitlines()[0][:160]})") from None
    except (pyogrio.errors.DataLayerError, ValueError, SyntaxError) as exc:
        raise InputError(
            f"--map-where '{where}' does not apply to '{path}' ({str(exc).splitlines()[0][:160]})"
        ) from None
    if not isinstance(df, gpd.GeoDataFrame) or df.geometry is None:
        raise InputError(f"--map '{path}' has no geometry; expected road lines")
    df = df[df.geometry.notna() & ~df.geometry.is_empty]
    if len(df) == 0:
        raise InputError(f"--map '{path}' holds no road line; is it the right file (or an empty extract)?")
    kinds = set(df.geometry.geom_type)
    if not kinds <= {"LineString", "MultiLineString", "Polygon", "MultiPolygon"}:
        raise InputError(
            f"--map '{path}' holds {', '.join(sorted(kinds))} geometry; expected road lines (centrelines) "
            "or road areas (polygons)"
        )
    if df.crs is None:
        raise InputError(f"--map '{path}' has no CRS; save it with one (OSM data is EPSG:4326)")
    areas = df.geometry.geom_type.isin(["Polygon", "MultiPolygon"])
    if areas.any():
        df = _with_centrelines(df, areas, path)
    return df


def _with_centrelines(df: Any, areas: Any, path: Path) -> Any:
    """Road areas (a land-cover map's road polygons) replaced by their centrelines: rasterized
    at AREA_PIXEL_M in a metric CRS and vectorized by roadseg's own skeleton and graph code,
    so map and prediction lines are drawn the same way."""
    import tempfile

    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import pyogrio
    import rasterio
    from affine import Affine
    from rasterio.features import rasterize

    from roadseg.vectorize.tool import VectorizeOptions, vectorize_raster

    polys = df[areas]
    utm = polys.estimate_utm_crs() if polys.crs.is_geographic else polys.crs
    polys_m = polys.to_crs(utm)
    minx, miny, maxx, maxy = polys_m.total_bounds
    pad = 4 * AREA_PIXEL_M
    width = int(np.ceil((maxx - minx + 2 * pad) / AREA_PIXEL_M))
    height = int(np.ceil((maxy - miny + 2 * pad) / AREA_PIXEL_M))
    if width * height > AREA_MAX_PX:
        raise InputError(
            f"--map '{path}' road areas span {width * height / 1e6:.0f} Mpx at {AREA_PIXEL_M} m; clip the map to the "
            "scene or filter it with --map-where"
        )
    transform = Affine(AREA_PIXEL_M, 0, minx - pad, 0, -AREA_PIXEL_M, maxy + pad)
    mask = rasterize(
        ((g, 1) for g in polys_m.geometry), out_shape=(height, width), transform=transform, dtype="uint8"
    )
    with tempfile.TemporaryDirectory(prefix="roadseg-areas-") as tmp:
        tif, gpkg = Path(tmp) / "areas.tif", Path(tmp) / "centrelines.gpkg"
        profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint8"}
        with rasterio.open(tif, "w", **profile, crs=utm, transform=transform) as dst:
            dst.write(mask, 1)
        opts = VectorizeOptions(progress=False, style=False, min_length_m=5.0, hole_area_m2=4.0)
        vectorize_raster(tif, gpkg, opts)
        lines = pyogrio.read_dataframe(gpkg, layer="roads")
    log.info("--map '%s': %d road areas drawn as %d centrelines", path, len(polys), len(lines))
    lines = gpd.GeoDataFrame(geometry=lines.geometry.values, crs=lines.crs).to_crs(df.crs)
    return gpd.GeoDataFrame(pd.concat([df[~areas], lines], ignore_index=True), crs=df.crs)


def _class_column(df: Any) -> str | None:
    return next((c for c in CLASS_COLUMNS if c in df.columns), None)


def conflate(
    roads: str | os.PathLike[str],
    map_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    options: ConflateOptions | None = None,
    area: Any = None,
) -> dict[str, Any]:
    """Conflate predicted road lines (a roadseg vector file) with a road map into ``out_dir``.

    ``area``: the polygon (in the roads' CRS) the prediction covers, e.g. the scene's footprint;
    default, the bounding box of the predicted lines grown by the match distance. Returns the
    summary (also written as summary.json).
    """
    import geopandas as gpd
    import pyogrio

    opts = options or ConflateOptions()
    m = opts.match
    for name, value in (("distance", m.distance_m), ("min length", m.min_length_m), ("cell size", m.cell_m)):
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"conflate {name} must be a positive number of metres, got {value}")
    if not 0 <= m.min_support <= 1:
        raise InputError(f"--min-support must be a share in [0, 1], got {m.min_support}")
    if "=" not in opts.osm_tag:
        raise InputError(f"--osm-tag must be key=value (e.g. highway=road), got '{opts.osm_tag}'")
    roads, map_path, out_dir = Path(roads), Path(map_path), Path(out_dir)
    check_input_file(roads, "roads", "road lines written by roadseg (.gpkg or .geojson)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = pyogrio.read_dataframe(roads, layer="roads" if roads.suffix.lower() == ".gpkg" else None)
    if pred.crs is None:
        raise InputError(f"roads '{roads}' have no CRS: conflation needs map coordinates")
    mapped = read_map(map_path, opts.map_where)
    column = _class_column(mapped)
    if column is not None and opts.exclude:
        mapped = mapped[~mapped[column].astype(str).isin(opts.exclude)]
    utm = pred.estimate_utm_crs() if len(pred) else mapped.estimate_utm_crs()
    pred_m, mapped_m = pred.to_crs(utm), mapped.to_crs(utm)
    if area is None:
        if len(pred_m) == 0:
            raise InputError(
                f"roads '{roads}' hold no line and no scene footprint was given: nothing to compare"
            )
        minx, miny, maxx, maxy = pred_m.total_bounds
        from shapely.geometry import box

        area_m = box(minx, miny, maxx, maxy).buffer(m.distance_m, join_style="mitre")
    else:
        area_m = gpd.GeoSeries([area], crs=pred.crs).to_crs(utm).iloc[0]
    if not mapped_m.intersects(area_m).any():
        raise InputError(
            f"--map '{map_path}' does not overlap the predicted area (map bounds "
            f"{[round(v, 5) for v in mapped.to_crs(4326).total_bounds]}, roads "
            f"{[round(v, 5) for v in gpd.GeoSeries([area_m], crs=utm).to_crs(4326).total_bounds]} in lon/lat); "
            "is it the map of this place?"
        )
    ids = (
        mapped_m["osm_id"].astype(str).tolist()
        if "osm_id" in mapped_m.columns
        else [str(i) for i in mapped_m.index]
    )
    probs = (
        pred_m["mean_prob"].astype(float).tolist() if "mean_prob" in pred_m.columns else [1.0] * len(pred_m)
    )
    res = match(list(pred_m.geometry), probs, list(mapped_m.geometry), ids, area_m, utm, m)
    _write(res, out_dir, pred.crs, opts)
    summary = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in res.summary.items()}
    return summary


def _frame(rows: list[dict[str, Any]], utm: Any, crs: Any, columns: list[str]) -> Any:
    import geopandas as gpd

    data = {c: [r.get(c) for r in rows] for c in columns}
    return gpd.GeoDataFrame(data, geometry=[r["geometry"] for r in rows], crs=utm).to_crs(crs)


def _write(res: Any, out_dir: Path, crs: Any, opts: ConflateOptions) -> None:
    import pyogrio

    from roadseg.io.styles import embed_style
    from roadseg.vectorize.geo import GPKG_VERSION

    out_dir.mkdir(parents=True, exist_ok=True)
    layers = {
        "missing": (
            res.missing,
            ["length_m", "mean_prob", "nearest_mapped", "nearest_m", "joins", "join_ends"],
            "LineString",
        ),
        "unsupported": (res.unsupported, ["id", "length_m", "support"], "LineString"),
        "completeness": (
            res.cells,
            ["mapped_km", "predicted_km", "matched_km", "missing_km", "completeness"],
            "Polygon",
        ),
    }
    for name, (rows, columns, gtype) in layers.items():
        frame = _frame(rows, res.crs, crs, columns)
        with atomic_path(out_dir / f"{name}.gpkg") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pyogrio.write_dataframe(
                frame,
                tmp,
                driver="GPKG",
                layer=name,
                geometry_type=gtype,
                dataset_options={"VERSION": GPKG_VERSION},
            )
            embed_style(tmp, [name], name)
    lonlat = _frame(res.missing, res.crs, crs, ["mean_prob"]).to_crs(4326) if res.missing else None
    key, value = opts.osm_tag.split("=", 1)
    lines: list[Any] = []
    tags: list[Any] = []
    joins: set[Any] = set()
    if lonlat is not None:
        for geom, row in zip(lonlat.geometry, res.missing, strict=True):
            coords = list(geom.coords)
            lines.append(coords)
            tags.append(
                {
                    key: value,
                    "source": "roadseg",
                    "note": f"roadseg: not in the map; mean probability {row['mean_prob']:.2f}",
                }
            )
            ends = {"start": coords[0], "end": coords[-1]}
            joins.update(ends[e] for e in row.get("join_ends", "").split(";") if e)
    write_osm(out_dir / "missing.osm", lines, tags, joins)
    with atomic_path(out_dir / "summary.json") as tmp:
        Path(tmp).write_text(json.dumps({k: _plain(v) for k, v in res.summary.items()}, indent=1) + "\n")


def _plain(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value
