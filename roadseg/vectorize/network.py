"""The road network as a routable graph, in the layouts osmnx writes and reads.

vectorize's lines already carry their end nodes (``u``, ``v``); here they become:

- GraphML (``--out roads.graphml``): an osmnx MultiDiGraph in EPSG:4326 (as osmnx's own
  downloads), each road as two directed edges (``reversed`` marks the second), attributes as
  strings the way ``osmnx.save_graphml`` writes them, so ``osmnx.load_graphml`` restores types;
- GeoPackage layers ``nodes`` (``osmid``, ``x``, ``y``, ``street_count``) and ``edges`` (``u``,
  ``v``, ``key``, one row per road, as ``osmnx.save_graph_geopackage`` writes by default) beside
  the ``roads`` layer, in the scene's CRS.

Edges carry ``length`` in metres (the line's own length: geodesic for lon/lat, else projected),
``speed_kph`` (one constant speed, as CRESI does before it learns speeds) and ``travel_time``
in seconds.
"""

from __future__ import annotations

from typing import Any

import shapely

#: the speed every road gets unless told otherwise (km/h): a town street
DEFAULT_SPEED_KPH = 50.0


def network_columns(
    geoms: list[Any], columns: dict[str, list[Any]], speed_kph: float
) -> tuple[dict[str, list[Any]], list[Any], dict[str, list[Any]]]:
    """``(node columns, node points, edge columns)`` from vectorize's lines (``u``-to-``v``
    oriented) and their columns."""
    xy: dict[int, tuple[float, float]] = {}
    count: dict[int, int] = {}
    keys: dict[tuple[int, int], int] = {}
    edge_keys: list[int] = []
    for g, u, v in zip(geoms, columns["u"], columns["v"], strict=True):
        xy.setdefault(u, g.coords[0][:2])
        xy.setdefault(v, g.coords[-1][:2])
        count[u] = count.get(u, 0) + 1
        count[v] = count.get(v, 0) + 1
        pair = (min(u, v), max(u, v))
        edge_keys.append(keys.get(pair, 0))
        keys[pair] = edge_keys[-1] + 1
    ids = sorted(xy)
    nodes: dict[str, list[Any]] = {
        "osmid": ids,
        "x": [xy[n][0] for n in ids],
        "y": [xy[n][1] for n in ids],
        "street_count": [count[n] for n in ids],
    }
    points = list(shapely.points([xy[n] for n in ids])) if ids else []
    lengths = columns["length_m"]
    edges = {
        "u": list(columns["u"]),
        "v": list(columns["v"]),
        "key": edge_keys,
        "road_id": list(columns["id"]),
        "length": lengths,
        "mean_prob": list(columns["mean_prob"]),
        "gap_closed": list(columns["gap_closed"]),
        "oneway": [False] * len(geoms),
        "reversed": [False] * len(geoms),
        "speed_kph": [speed_kph] * len(geoms),
        "travel_time": [None if m is None else m / (speed_kph / 3.6) for m in lengths],
    }
    return nodes, points, edges


def write_graphml(
    path: Any, geoms: list[Any], columns: dict[str, list[Any]], crs: Any, speed_kph: float
) -> None:
    """An osmnx GraphML file at ``path`` (written as is: the caller makes it atomic)."""
    import networkx as nx

    from roadseg import __version__

    nodes, _, edges = network_columns(geoms, columns, speed_kph)
    graph = nx.MultiDiGraph(
        crs=crs.to_string().lower(), created_with=f"roadseg {__version__}", simplified="True"
    )
    for i, n in enumerate(nodes["osmid"]):
        graph.add_node(
            n, x=str(nodes["x"][i]), y=str(nodes["y"][i]), street_count=str(nodes["street_count"][i])
        )
    for i, g in enumerate(geoms):
        attrs = {k: str(edges[k][i]) for k in edges if k not in ("u", "v", "key", "reversed")}
        u, v, k = edges["u"][i], edges["v"][i], edges["key"][i]
        graph.add_edge(u, v, key=k, reversed="False", geometry=g.wkt, **attrs)
        if u != v:  # a loop is its own way back
            graph.add_edge(v, u, key=k, reversed="True", geometry=g.reverse().wkt, **attrs)
    nx.write_graphml(graph, str(path))
