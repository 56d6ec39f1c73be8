"""Predicted roads against a mapped road network, in metres: what the map lacks, what the imagery
does not support, and how complete each cell of the area is.

Everything is measured in a local UTM projection of the area. The rule, with ``d`` the match
distance:

- a **missing** road is a piece of a predicted line farther than ``d`` from every mapped road
  (the predicted line minus the mapped roads buffered by ``d``), at least ``min_length_m`` long;
  an end of the piece that lies on that buffer's edge joins the mapped road, at the nearest
  point of the nearest mapped road;
- a mapped road's **support** is the share of its length within ``d`` of a predicted line; under
  ``min_support`` it is reported as **unsupported** (for review: a road under trees, a road the
  model missed, or a road that no longer exists);
- per grid cell: mapped km, predicted km, matched km (predicted length within ``d`` of a mapped
  road) and **completeness** = matched / predicted, the share of the roads visible in the
  imagery that the map already has (empty where nothing was predicted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString, box
from shapely.ops import nearest_points


@dataclass(frozen=True)
class MatchOptions:
    """The matching rule's parameters, in metres."""

    #: OSM lines are often 3-6 m off the imagery, and a carriageway's centre can be 5 m from its
    #: kerb: 12 m keeps those matched while a parallel street (25 m and more away) is not
    distance_m: float = 12.0
    min_length_m: float = 20.0
    min_support: float = 0.5
    cell_m: float = 250.0


@dataclass
class MatchResult:
    """Outputs in the local metric CRS ``crs``."""

    crs: Any
    missing: list[dict[str, Any]] = field(default_factory=list)  # geometry, length_m, mean_prob, ...
    unsupported: list[dict[str, Any]] = field(default_factory=list)
    cells: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)


def _lines(geom: Any) -> list[LineString]:
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, LineString):
        return [geom]
    if isinstance(geom, MultiLineString):
        return list(geom.geoms)
    if hasattr(geom, "geoms"):
        return [g for part in geom.geoms for g in _lines(part)]
    return []


def match(
    predicted: list[Any],
    confidence: list[float],
    mapped: list[Any],
    mapped_ids: list[Any],
    area: Any,
    crs: Any,
    opts: MatchOptions,
) -> MatchResult:
    """Compare ``predicted`` lines (with their mean probability) with ``mapped`` lines inside the
    polygon ``area``; all in the metric ``crs``."""
    d = opts.distance_m
    mapped = [shapely.intersection(g, area) for g in mapped]
    keep = [i for i, g in enumerate(mapped) if not g.is_empty and g.length > 0]
    mapped, mapped_ids = [mapped[i] for i in keep], [mapped_ids[i] for i in keep]
    predicted_clipped = [shapely.intersection(g, area) for g in predicted]
    mapped_union = shapely.union_all(mapped) if mapped else shapely.GeometryCollection()
    predicted_union = (
        shapely.union_all(predicted_clipped) if predicted_clipped else shapely.GeometryCollection()
    )
    near_map = mapped_union.buffer(d) if mapped else shapely.GeometryCollection()
    near_pred = predicted_union.buffer(d) if not predicted_union.is_empty else shapely.GeometryCollection()
    tree = shapely.STRtree(mapped) if mapped else None
    result = MatchResult(crs=crs)

    for line, prob in zip(predicted_clipped, confidence, strict=True):
        for piece in _lines(shapely.difference(line, near_map) if mapped else line):
            if piece.length < opts.min_length_m:
                continue
            row: dict[str, Any] = {"length_m": piece.length, "mean_prob": prob}
            coords = list(piece.coords)
            joins, ends = [], []
            if tree is not None:
                nearest = tree.nearest(piece)
                row["nearest_mapped"] = str(mapped_ids[nearest])
                row["nearest_m"] = float(piece.distance(mapped[nearest]))
                first, last = coords[0], coords[-1]
                for end, which in ((first, "start"), (last, "end")):
                    p = shapely.Point(end)
                    if p.distance(mapped_union) <= d * 1.05:  # on the buffer's edge: it reaches the map
                        j = tree.nearest(p)
                        target = nearest_points(p, mapped[j])[1]
                        joins.append(str(mapped_ids[j]))
                        ends.append(which)
                        # drawn up to the mapped road
                        if which == "start":
                            coords.insert(0, (target.x, target.y))
                        else:
                            coords.append((target.x, target.y))
            row["joins"] = ";".join(joins)
            row["join_ends"] = ";".join(ends)
            row["geometry"] = LineString(coords)
            result.missing.append(row)

    for geom, mid in zip(mapped, mapped_ids, strict=True):
        length = geom.length
        support = shapely.intersection(geom, near_pred).length / length if not near_pred.is_empty else 0.0
        if support < opts.min_support:
            result.unsupported.append(
                {"geometry": geom, "id": str(mid), "length_m": length, "support": support}
            )

    matched_pred = shapely.intersection(predicted_union, near_map) if mapped else shapely.GeometryCollection()
    minx, miny, maxx, maxy = area.bounds
    size = opts.cell_m
    nx, ny = max(1, math.ceil((maxx - minx) / size)), max(1, math.ceil((maxy - miny) / size))
    for iy in range(ny):
        for ix in range(nx):
            x0, y0 = minx + ix * size, miny + iy * size
            x1, y1 = x0 + size, y0 + size
            cell = shapely.intersection(box(x0, y0, x1, y1), area)
            if cell.is_empty or cell.area == 0:
                continue
            # a road along an edge shared with the next cell counts in that cell only
            shared = [LineString([(x0, y1), (x1, y1)])] * (iy < ny - 1) + [
                LineString([(x1, y0), (x1, y1)])
            ] * (ix < nx - 1)

            def km(lines: Any, cell: Any = cell, shared: list[Any] = shared) -> float:
                part = shapely.intersection(lines, cell)
                for edge in shared:
                    part = shapely.difference(part, edge)
                return float(part.length) / 1000

            mapped_km, predicted_km, matched_km = km(mapped_union), km(predicted_union), km(matched_pred)
            result.cells.append(
                {
                    "geometry": cell,
                    "mapped_km": mapped_km,
                    "predicted_km": predicted_km,
                    "matched_km": matched_km,
                    "missing_km": max(0.0, predicted_km - matched_km),
                    "completeness": matched_km / predicted_km if predicted_km > 0 else np.nan,
                }
            )
    predicted_km = predicted_union.length / 1000
    matched_km = matched_pred.length / 1000
    result.summary = {
        "mapped_km": mapped_union.length / 1000,
        "predicted_km": predicted_km,
        "matched_km": matched_km,
        "missing_km": sum(r["length_m"] for r in result.missing) / 1000,
        "missing_roads": len(result.missing),
        "unsupported_km": sum(r["length_m"] for r in result.unsupported) / 1000,
        "unsupported_roads": len(result.unsupported),
        "completeness": matched_km / predicted_km if predicted_km > 0 else float("nan"),
        "distance_m": d,
    }
    return result
