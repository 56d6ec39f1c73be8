"""OSM XML for editors: the missing roads as a new layer JOSM opens.

Only new objects, all with negative ids (what JOSM reads as "not uploaded yet"); nodes are shared
where lines meet (same coordinate to 1e-7 degree), including the point where a new road reaches a
mapped one (tagged ``fixme``, since the mapped way itself is never edited); ``upload="never"`` so
the file cannot be sent to the OSM server by mistake.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from roadseg.io.atomic import atomic_path

#: coordinates are written with 7 decimals (OSM's own precision, about 1 cm)
PRECISION = 7


def write_osm(
    path: str | os.PathLike[str],
    lines: list[list[tuple[float, float]]],
    tags: list[dict[str, str]],
    join_points: set[tuple[float, float]] | None = None,
) -> Path:
    """Write lon/lat ``lines`` as ways with ``tags``; shared coordinates become shared nodes."""
    from roadseg import __version__

    node_ids: dict[tuple[float, float], int] = {}
    ways: list[tuple[list[int], dict[str, str]]] = []
    joins = {(round(x, PRECISION), round(y, PRECISION)) for x, y in (join_points or set())}
    for coords, way_tags in zip(lines, tags, strict=True):
        refs: list[int] = []
        for x, y in coords:
            key = (round(x, PRECISION), round(y, PRECISION))
            if key not in node_ids:
                node_ids[key] = -(len(node_ids) + 1)
            if not refs or refs[-1] != node_ids[key]:
                refs.append(node_ids[key])
        if len(refs) >= 2:
            ways.append((refs, way_tags))
    out = [
        "<?xml version='1.0' encoding='UTF-8'?>",
        f"<osm version='0.6' upload='never' generator={quoteattr('roadseg ' + __version__)}>",
    ]
    for (x, y), nid in node_ids.items():
        if (x, y) in joins:
            out.append(f"  <node id='{nid}' lat='{y:.{PRECISION}f}' lon='{x:.{PRECISION}f}'>")
            out.append("    <tag k='fixme' v='connect to the mapped road here' />")
            out.append("  </node>")
        else:
            out.append(f"  <node id='{nid}' lat='{y:.{PRECISION}f}' lon='{x:.{PRECISION}f}' />")
    for i, (refs, way_tags) in enumerate(ways, 1):
        out.append(f"  <way id='{-i}'>")
        out += [f"    <nd ref='{r}' />" for r in refs]
        out += [f"    <tag k={quoteattr(k)} v={quoteattr(str(v))} />" for k, v in way_tags.items()]
        out.append("  </way>")
    out.append("</osm>")
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(out) + "\n", encoding="utf-8")
    return Path(path)


def read_osm_lines(path: str | os.PathLike[str]) -> Any:
    """The road lines of an ``.osm`` or ``.osm.pbf`` file (GDAL's OSM driver: ``lines`` layer,
    with ``highway`` as a column), as a GeoDataFrame in EPSG:4326.

    GDAL's default node index refuses negative ids, which files saved by JOSM (and our own
    missing.osm) hold: it is turned off for the read."""
    import pyogrio

    previous = pyogrio.get_gdal_config_option("OSM_USE_CUSTOM_INDEXING")
    pyogrio.set_gdal_config_options({"OSM_USE_CUSTOM_INDEXING": "NO"})
    try:
        return pyogrio.read_dataframe(path, layer="lines")
    finally:
        pyogrio.set_gdal_config_options({"OSM_USE_CUSTOM_INDEXING": previous})
