"""Pixel paths -> one road graph, cleaned in metres.

Geometry is kept in pixel-centre coordinates ``(x=col, y=row)`` until the very end, so
merging is exact on integers. Edges carry a shapely LineString ``geom``; nodes are keyed by
integers and carry their ``xy``. Every operation keeps one invariant: an edge's first and
last vertices are exactly its nodes' coordinates, so lines meeting at a junction share it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import networkx as nx
import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import LineString


def merge_lines(lines: list[np.ndarray]) -> list[LineString]:
    """Merge the blocks' lines into lines that end only at junctions and dead ends.

    Each block's lines cover its own share of the scene's pixel graph (every 8-neighbour pair
    of skeleton pixels once, on integer coordinates), so GEOS's line merger joining them where
    exactly two meet gives the scene's road lines; rings come out closed.
    """
    if not lines:
        return []
    merged = shapely.line_merge(shapely.multilinestrings([shapely.linestrings(c) for c in lines]))
    return [g for g in shapely.get_parts(merged) if g.length > 0]


def build_graph(lines: Iterable[LineString]) -> nx.MultiGraph:
    """Road graph with integer node ids at line ends."""
    graph = nx.MultiGraph()
    ids: dict[tuple[float, float], int] = {}

    def node(xy: tuple[float, float]) -> int:
        if xy not in ids:
            ids[xy] = len(ids)
            graph.add_node(ids[xy], xy=xy)
        return ids[xy]

    for line in lines:
        coords = line.coords
        graph.add_edge(node(tuple(coords[0])), node(tuple(coords[-1])), geom=line)
    return graph


def _length(graph: nx.MultiGraph, edge: tuple[int, int, int]) -> float:
    return float(graph.edges[edge]["geom"].length)


def remove_artifacts(graph: nx.MultiGraph, max_px: float = 3.0) -> None:
    """Drop pixel-scale cycles that thinning leaves at junctions and corners: self-loops and
    parallel edges (the longer of two paths between the same nodes) shorter than ``max_px``."""
    for u, v, k in list(graph.edges(keys=True)):
        if not graph.has_edge(u, v, k):
            continue
        if u == v and _length(graph, (u, v, k)) < max_px and graph.degree(u) > 2:
            graph.remove_edge(u, v, k)
        elif u != v and graph.number_of_edges(u, v) > 1:
            keys = sorted(graph[u][v], key=lambda kk: _length(graph, (u, v, kk)))
            for kk in keys[1:]:
                if _length(graph, (u, v, kk)) < _length(graph, (u, v, keys[0])) + max_px:
                    graph.remove_edge(u, v, kk)
    graph.remove_nodes_from([n for n in list(graph) if graph.degree(n) == 0])


def _near_border(xy: tuple[float, float], shape: tuple[int, int], tol: float = 2.0) -> bool:
    x, y = xy
    return x < tol or y < tol or x > shape[1] - 1 - tol or y > shape[0] - 1 - tol


def prune_spurs(graph: nx.MultiGraph, max_px: float, shape: tuple[int, int]) -> int:
    """Remove dead-end edges shorter than ``max_px`` that hang off a junction, unless their
    free end touches the scene border (the road may continue outside). Repeats until stable."""
    removed = 0
    while True:
        spurs = []
        for n in graph:
            if graph.degree(n) != 1 or _near_border(graph.nodes[n]["xy"], shape):
                continue
            (u, v, k) = next(iter(graph.edges(n, keys=True)))
            other = v if u == n else u
            if graph.degree(other) >= 3 and _length(graph, (u, v, k)) < max_px:
                spurs.append((n, (u, v, k)))
        if not spurs:
            return removed
        for n, edge in spurs:
            if graph.has_edge(*edge) and graph.degree(edge[0] if edge[1] == n else edge[1]) >= 3:
                graph.remove_edge(*edge)
                graph.remove_node(n)
                removed += 1
        contract_degree_two(graph)


def drop_small_components(graph: nx.MultiGraph, min_px: float, shape: tuple[int, int]) -> int:
    """Remove connected components shorter than ``min_px`` in total that do not touch the border."""
    removed = 0
    for comp in list(nx.connected_components(graph)):
        sub = graph.subgraph(comp)
        total = sum(d["geom"].length for _, _, d in sub.edges(data=True))
        touches = any(_near_border(graph.nodes[n]["xy"], shape) for n in comp)
        if total < min_px and not touches:
            graph.remove_nodes_from(comp)
            removed += 1
    return removed


def _end_direction(graph: nx.MultiGraph, n: int, reach: float) -> np.ndarray:
    """Unit vector pointing out of the road at dead end ``n``, fitted over ``reach`` pixels."""
    (u, v, k) = next(iter(graph.edges(n, keys=True)))
    coords = np.asarray(graph.edges[u, v, k]["geom"].coords)
    if not np.allclose(coords[0], graph.nodes[n]["xy"]):
        coords = coords[::-1]
    dist = np.cumsum(np.r_[0, np.hypot(*np.diff(coords, axis=0).T)])
    back = coords[min(int(np.searchsorted(dist, reach)), len(coords) - 1)]
    vec = coords[0] - back
    norm = np.hypot(*vec)
    return vec / norm if norm > 0 else vec


def close_gaps(graph: nx.MultiGraph, max_px: float, max_angle_deg: float = 30.0) -> int:
    """Join pairs of dead ends closer than ``max_px`` whose directions agree.

    Both ends must point at each other within ``max_angle_deg`` (the CRESI/albu heuristic);
    pairs are taken closest first, each end used once.
    """
    ends = [n for n in graph if graph.degree(n) == 1]
    if len(ends) < 2 or max_px <= 0:
        return 0
    xy = np.array([graph.nodes[n]["xy"] for n in ends])
    dirs = np.array([_end_direction(graph, n, reach=max(5.0, max_px / 2)) for n in ends])
    pairs = sorted(cKDTree(xy).query_pairs(max_px), key=lambda p: np.hypot(*(xy[p[0]] - xy[p[1]])))
    cos_max = math.cos(math.radians(max_angle_deg))
    used: set[int] = set()
    added = 0
    for i, j in pairs:
        if i in used or j in used:
            continue
        a, b = ends[i], ends[j]
        if graph.has_edge(a, b):
            continue
        gap = xy[j] - xy[i]
        dist = float(np.hypot(*gap))
        if dist == 0:
            continue
        unit = gap / dist
        if dirs[i] @ unit >= cos_max and dirs[j] @ -unit >= cos_max:
            graph.add_edge(a, b, geom=LineString([xy[i], xy[j]]), gap_closed=True)
            used.update((i, j))
            added += 1
    contract_degree_two(graph)
    return added


def contract_degree_two(graph: nx.MultiGraph) -> None:
    """Merge the two edges at every degree-2 node (not a self-loop) into one line."""
    for n in list(graph):
        if n not in graph or graph.degree(n) != 2:
            continue
        edges = list(graph.edges(n, keys=True, data=True))
        if len(edges) != 2 or any(u == v for u, v, _, _ in edges):
            continue
        (a_u, a_v, _, a), (b_u, b_v, _, b) = edges
        end_a = a_v if a_u == n else a_u
        end_b = b_v if b_u == n else b_u
        xy = graph.nodes[n]["xy"]
        ca, cb = list(a["geom"].coords), list(b["geom"].coords)
        if tuple(ca[-1]) != xy:
            ca = ca[::-1]
        if tuple(cb[0]) != xy:
            cb = cb[::-1]
        graph.remove_node(n)
        data = {"geom": LineString(ca + cb[1:])}
        if a.get("gap_closed") or b.get("gap_closed"):
            data["gap_closed"] = True
        graph.add_edge(end_a, end_b, **data)


def simplify_edges(graph: nx.MultiGraph, tolerance_px: float) -> None:
    """Douglas-Peucker per edge; end vertices (the nodes) never move."""
    if tolerance_px <= 0:
        return
    for _, _, data in graph.edges(data=True):
        data["geom"] = data["geom"].simplify(tolerance_px, preserve_topology=False)
