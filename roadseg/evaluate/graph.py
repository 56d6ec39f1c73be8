"""Road-graph metrics: APLS and TOPO as SpaceNet defines them (CosmiQ/apls), and a denser TOPO.

Both graphs are taken to a local metric CRS (the truth's UTM zone) and built as undirected
multigraphs: nodes at line ends and crossings, one edge per road piece, so two roads between
the same junctions stay two edges and a loop stays a loop, as in the reference.

APLS (``apls``) follows CosmiQ/apls's CLI defaults: control points every 50 m along edges
(an edge of 37.5-50 m gets one at its midpoint, shorter edges none); each graph's control
points are snapped onto the other within 4 m; for node pairs joined in the source graph, a
path scores min(1, |L_src - L_other| / L_src), 1 if missing; APLS is the harmonic mean of the
two directions. Shortest paths use scipy's C Dijkstra from up to ``max_sources`` seeded
source nodes, so graphs of ~10 000 edges take seconds.

TOPO (``topo``) is the SpaceNet parameterization of Biagioni & Eriksson's metric: around an
origin node, the truth's sub-network within 150 m (straight-line) gets a 'hole' every 30 m and
the proposal's, from its nearest node within 4 m, a 'marble' every 30 m; marbles fill holes
within 4 m one to one. ``topo_dense`` is roadseg's earlier, stricter variant under its own
name: 300 m along the graph, points every 5 m, 3 m to match, each origin snapped onto the
proposal's nearest edge on its own. docs/metrics.md lists every difference from the reference.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx
import numpy as np
import shapely
import shapely.ops
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree
from shapely.geometry import LineString
from shapely.strtree import STRtree


@dataclass(frozen=True)
class APLSParams:
    """The SpaceNet defaults (CosmiQ/apls: linestring_delta, max_snap_dist, and the 10 m
    min_path_length of its functions; its CLI uses 0.001 m)."""

    control_spacing_m: float = 50.0
    snap_m: float = 4.0
    min_path_m: float = 10.0
    max_sources: int = 500
    seed: int = 0


@dataclass(frozen=True)
class TopoParams:
    """SpaceNet's TOPO (CosmiQ/apls CLI: topo_subgraph_radius 150, topo_interval 30, hole 4 m)."""

    radius_m: float = 150.0
    interval_m: float = 30.0
    hole_m: float = 4.0
    n_origins: int = 100
    seed: int = 0


def lines_to_graph(lines: list[LineString]) -> nx.MultiGraph:
    """Noded road multigraph: nodes at ends and crossings (``xy``), edges with ``geom`` and
    ``length``. Parallel roads and loops are edges of their own, never merged nodes."""
    graph = nx.MultiGraph()
    lines = [g for g in lines if g is not None and not g.is_empty and g.length > 0]
    if not lines:
        return graph
    merged = shapely.line_merge(shapely.unary_union(lines))
    ids: dict[tuple[float, float], int] = {}
    for part in shapely.get_parts(merged):
        coords = list(part.coords)
        ends = []
        for xy in (coords[0], coords[-1]):
            key = (round(xy[0], 6), round(xy[1], 6))
            if key not in ids:
                ids[key] = len(ids)
                graph.add_node(ids[key], xy=key)
            ends.append(ids[key])
        graph.add_edge(ends[0], ends[1], geom=part, length=part.length)
    return graph


def _oriented(graph: nx.MultiGraph, u: int, geom: LineString) -> LineString:
    """``geom`` running from node ``u`` (a loop's geometry may start at either end)."""
    x, y = graph.nodes[u]["xy"]
    a, b = geom.coords[0], geom.coords[-1]
    return geom if (a[0] - x) ** 2 + (a[1] - y) ** 2 <= (b[0] - x) ** 2 + (b[1] - y) ** 2 else geom.reverse()


def _split_points(length: float, spacing: float) -> np.ndarray:
    """Where CosmiQ/apls puts control points on an edge: none under 0.75 x spacing, the
    midpoint up to the spacing, else ceil(length / spacing) equal pieces."""
    if length < 0.75 * spacing:
        return np.zeros(0)
    if length <= spacing:
        return np.array([0.5 * length])
    n = int(np.ceil(length / spacing))
    return np.linspace(0, length, n + 1)[1:-1]


def _split_edges(graph: nx.MultiGraph, points: Callable[[float], np.ndarray]) -> nx.MultiGraph:
    """A copy of ``graph`` with every edge cut at ``points(length)`` (distances from u)."""
    out = nx.MultiGraph()
    out.add_nodes_from(graph.nodes(data=True))
    new_id = itertools.count(max(graph.nodes) + 1 if len(graph) else 0)
    for u, v, data in graph.edges(data=True):
        geom = _oriented(graph, u, data["geom"])
        cuts = points(geom.length)
        prev, last = u, 0.0
        for along in cuts:
            node = next(new_id)
            p = geom.interpolate(along)
            out.add_node(node, xy=(p.x, p.y))
            seg = shapely.ops.substring(geom, last, along)
            out.add_edge(prev, node, geom=seg, length=seg.length)
            prev, last = node, along
        seg = shapely.ops.substring(geom, last, geom.length) if len(cuts) else geom
        out.add_edge(prev, v, geom=seg, length=seg.length)
    return out


def inject_control_points(graph: nx.MultiGraph, spacing: float) -> nx.MultiGraph:
    """Split edges at CosmiQ/apls's control points (``_split_points``)."""
    return _split_edges(graph, lambda length: _split_points(length, spacing))


def _even_points(graph: nx.MultiGraph, spacing: float) -> nx.MultiGraph:
    """Split edges so that nodes lie at most ``spacing`` apart along every edge."""

    def cuts(length: float) -> np.ndarray:
        n = int(np.ceil(length / spacing))
        return np.linspace(0, length, n + 1)[1:-1] if n > 1 else np.zeros(0)

    return _split_edges(graph, cuts)


def snap_nodes(
    src: nx.MultiGraph, dst: nx.MultiGraph, max_dist: float
) -> tuple[nx.MultiGraph, dict[int, int]]:
    """Insert each ``src`` node into ``dst`` at its nearest point within ``max_dist``.

    Returns the augmented copy of ``dst`` and the map src node -> dst node.
    """
    dst = dst.copy()
    mapping: dict[int, int] = {}
    if not dst.number_of_edges() or not len(src):
        return dst, mapping
    edges = list(dst.edges(keys=True))
    geoms = [dst.edges[e]["geom"] for e in edges]
    tree = STRtree(geoms)
    src_ids = list(src.nodes)
    pts = shapely.points(np.array([src.nodes[n]["xy"] for n in src_ids]))
    pi, ei = tree.query_nearest(pts, max_distance=max_dist, all_matches=False)
    inserts: dict[int, list[tuple[float, int]]] = {}
    for p, e in zip(pi, ei, strict=True):
        along = geoms[e].project(pts[p])
        inserts.setdefault(int(e), []).append((along, src_ids[p]))
    new_id = itertools.count(max(dst.nodes) + 1)
    for e, items in inserts.items():
        u, v, k = edges[e]
        geom = _oriented(dst, u, geoms[e])
        if geom is not geoms[e]:
            items = [(geom.length - a, s) for a, s in items]
        items.sort()
        cuts: list[tuple[float, int]] = []
        for along, s in items:
            if along < 0.01:
                mapping[s] = u
            elif along > geom.length - 0.01:
                mapping[s] = v
            elif cuts and abs(along - cuts[-1][0]) < 0.01:
                mapping[s] = cuts[-1][1]
            else:
                cuts.append((along, next(new_id)))
                mapping[s] = cuts[-1][1]
        if not cuts:
            continue
        dst.remove_edge(u, v, k)
        prev, last = u, 0.0
        for along, node in cuts:
            p = geom.interpolate(along)
            dst.add_node(node, xy=(p.x, p.y))
            seg = shapely.ops.substring(geom, last, along)
            dst.add_edge(prev, node, geom=seg, length=seg.length)
            prev, last = node, along
        seg = shapely.ops.substring(geom, last, geom.length)
        dst.add_edge(prev, v, geom=seg, length=seg.length)
    return dst, mapping


def _csr(graph: nx.MultiGraph) -> tuple[csr_matrix, dict[int, int]]:
    """Symmetric weight matrix; of parallel edges the shortest counts, loops never do."""
    index = {n: i for i, n in enumerate(graph.nodes)}
    best: dict[tuple[int, int], float] = {}
    for u, v, d in graph.edges(data=True):
        if u == v:
            continue
        i, j = sorted((index[u], index[v]))
        best[i, j] = min(best.get((i, j), np.inf), max(d["length"], 1e-9))
    rows = [i for i, _ in best] + [j for _, j in best]
    cols = [j for _, j in best] + [i for i, _ in best]
    n = len(index)
    return csr_matrix((list(best.values()) * 2, (rows, cols)), shape=(n, n)), index


def _one_way(src: nx.MultiGraph, dst: nx.MultiGraph, p: APLSParams) -> float:
    """1 - mean path-length difference for node pairs of ``src``, measured on ``dst``."""
    if not src.number_of_edges():
        return 1.0 if not dst.number_of_edges() else 0.0
    if not dst.number_of_edges():
        return 0.0
    dst_aug, mapping = snap_nodes(src, dst, p.snap_m)
    m_src, i_src = _csr(src)
    m_dst, i_dst = _csr(dst_aug)
    nodes = list(src.nodes)
    rng = np.random.default_rng(p.seed)
    sources = nodes if len(nodes) <= p.max_sources else list(rng.choice(nodes, p.max_sources, replace=False))
    d_src = dijkstra(m_src, indices=[i_src[s] for s in sources])
    tgt_index = np.array([i_src[n] for n in nodes])
    dst_cols = np.array([i_dst.get(mapping.get(n, -1), -1) for n in nodes])
    mapped_sources = [i_dst.get(mapping.get(s, -1), -1) for s in sources]
    have = [k for k, m in enumerate(mapped_sources) if m >= 0]
    d_dst = np.full((len(sources), len(i_dst)), np.inf)
    if have:
        d_dst[have] = dijkstra(m_dst, indices=[mapped_sources[k] for k in have])
    total, count = 0.0, 0
    for k in range(len(sources)):
        l_src = d_src[k, tgt_index]
        ok = np.isfinite(l_src) & (l_src >= p.min_path_m)
        if not ok.any():
            continue
        l_dst = np.where(dst_cols >= 0, d_dst[k, np.maximum(dst_cols, 0)], np.inf)[ok]
        diff = np.minimum(1.0, np.abs(l_src[ok] - l_dst) / l_src[ok])
        diff[~np.isfinite(l_dst)] = 1.0
        total += float(diff.sum())
        count += int(ok.sum())
    return 1.0 - total / count if count else 1.0


def apls(
    truth: list[LineString], pred: list[LineString], params: APLSParams | None = None
) -> dict[str, float]:
    """APLS between two sets of lines in a metric CRS: ``{apls, apls_gt_to_prop, apls_prop_to_gt}``."""
    p = params or APLSParams()
    g_t = inject_control_points(lines_to_graph(truth), p.control_spacing_m)
    g_p = inject_control_points(lines_to_graph(pred), p.control_spacing_m)
    a = _one_way(g_t, g_p, p)
    b = _one_way(g_p, g_t, p)
    score = 0.0 if a + b == 0 else 2 * a * b / (a + b)
    return {"apls": score, "apls_gt_to_prop": a, "apls_prop_to_gt": b}


def _scores(tp: int, fp: int, fn: int, prefix: str) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {f"{prefix}_precision": precision, f"{prefix}_recall": recall, prefix: f1}


def _empty_scores(g_t: nx.MultiGraph, g_p: nx.MultiGraph, prefix: str) -> dict[str, float] | None:
    if g_t.number_of_edges() and g_p.number_of_edges():
        return None
    same = float(not g_t.number_of_edges() and not g_p.number_of_edges())
    return {f"{prefix}_precision": same, f"{prefix}_recall": same, prefix: same}


def _origins(graph: nx.MultiGraph, n: int, seed: int) -> list[int]:
    nodes = list(graph.nodes)
    if len(nodes) <= n:
        return nodes
    return [int(x) for x in np.random.default_rng(seed).choice(nodes, n, replace=False)]


def topo(
    truth: list[LineString], pred: list[LineString], params: TopoParams | None = None
) -> dict[str, float]:
    """SpaceNet's TOPO (CosmiQ/apls ``compute_topo``): ``{topo, topo_precision, topo_recall}``,
    counts summed over the origins."""
    p = params or TopoParams()
    g_t, g_p = lines_to_graph(truth), lines_to_graph(pred)
    empty = _empty_scores(g_t, g_p, "topo")
    if empty is not None:
        return empty
    t_ids, p_ids = list(g_t.nodes), list(g_p.nodes)
    t_tree = cKDTree([g_t.nodes[n]["xy"] for n in t_ids])
    p_tree = cKDTree([g_p.nodes[n]["xy"] for n in p_ids])
    tp = fp = fn = 0
    for origin in _origins(g_t, p.n_origins, p.seed):
        holes = _points_around(g_t, t_tree, t_ids, origin, p)
        dist, j = p_tree.query(g_t.nodes[origin]["xy"], distance_upper_bound=p.hole_m)
        if not np.isfinite(dist):
            fn += len(holes)
            continue
        marbles = _points_around(g_p, p_tree, p_ids, p_ids[int(j)], p)
        filled = _fill_holes(holes, marbles, p.hole_m)
        tp, fp, fn = tp + filled, fp + len(marbles) - filled, fn + len(holes) - filled
    return _scores(tp, fp, fn, "topo")


def _points_around(
    graph: nx.MultiGraph, tree: cKDTree, ids: list[int], origin: int, p: TopoParams
) -> np.ndarray:
    """The nodes within ``radius_m`` (straight-line) of ``origin`` and connected to it among
    themselves, plus a point every ``interval_m`` along their edges, counted from the end
    nearer the origin."""
    xy = np.asarray(graph.nodes[origin]["xy"])
    near = [ids[i] for i in tree.query_ball_point(xy, p.radius_m)]
    sub = graph.subgraph(near)
    component = nx.node_connected_component(sub, origin)
    points = [graph.nodes[n]["xy"] for n in component]
    for _, _, data in sub.subgraph(component).edges(data=True):
        geom = data["geom"]
        a, b = np.asarray(geom.coords[0]), np.asarray(geom.coords[-1])
        if np.hypot(*(b - xy)) < np.hypot(*(a - xy)):
            geom = geom.reverse()
        for d in np.arange(0, geom.length, p.interval_m)[1:]:
            q = geom.interpolate(d)
            points.append((q.x, q.y))
    return np.asarray(points, dtype=float).reshape(-1, 2)


def _fill_holes(holes: np.ndarray, marbles: np.ndarray, tol: float) -> int:
    """Each marble in turn fills the nearest empty hole within ``tol`` (the reference's order)."""
    if not len(holes) or not len(marbles):
        return 0
    tree = cKDTree(holes)
    used: set[int] = set()
    for m in marbles:
        free = [i for i in tree.query_ball_point(m, tol) if i not in used]
        if free:
            used.add(min(free, key=lambda i: float(np.hypot(*(holes[i] - m)))))
    return len(used)


def topo_dense(
    truth: list[LineString],
    pred: list[LineString],
    *,
    radius_m: float = 300.0,
    spacing_m: float = 5.0,
    match_m: float = 3.0,
    n_seeds: int = 100,
    snap_m: float = 4.0,
    seed: int = 0,
) -> dict[str, float]:
    """roadseg's dense TOPO: from each seed node, the points every ``spacing_m`` reachable
    within ``radius_m`` along the truth ('holes') and, from the seed snapped onto the
    proposal's nearest edge within ``snap_m``, along the proposal ('marbles'), matched one to
    one within ``match_m``, closest pairs first. Keys ``topo_dense[_precision|_recall]``."""
    g_t = _even_points(lines_to_graph(truth), spacing_m)
    g_p = _even_points(lines_to_graph(pred), spacing_m)
    empty = _empty_scores(g_t, g_p, "topo_dense")
    if empty is not None:
        return empty
    edges = list(g_p.edges(keys=True))
    tree = STRtree([g_p.edges[e]["geom"] for e in edges])
    tp = fp = fn = 0
    for s in _origins(g_t, n_seeds, seed):
        holes = _reachable_points(g_t, s, radius_m)
        point = shapely.Point(g_t.nodes[s]["xy"])
        found = tree.query_nearest(point, max_distance=snap_m)
        if not len(found):
            fn += len(holes)
            continue
        marbles = _reachable_from_edge(g_p, edges[int(found[0])], point, radius_m)
        matched = _match(holes, marbles, match_m)
        tp, fp, fn = tp + matched, fp + len(marbles) - matched, fn + len(holes) - matched
    return _scores(tp, fp, fn, "topo_dense")


def _reachable_points(graph: nx.MultiGraph, source: int, radius: float) -> np.ndarray:
    dist = nx.single_source_dijkstra_path_length(graph, source, cutoff=radius, weight="length")
    return np.array([graph.nodes[n]["xy"] for n in dist]).reshape(-1, 2)


def _reachable_from_edge(
    graph: nx.MultiGraph, edge: tuple[int, int, int], point: shapely.Point, radius: float
) -> np.ndarray:
    """The point's projection onto ``edge`` and the nodes within ``radius`` of it along the
    graph: one seed at a time, so no other seed's projection becomes a marble."""
    u, v, _ = edge
    geom = _oriented(graph, u, graph.edges[edge]["geom"])
    along = geom.project(point)
    start = geom.interpolate(along)
    reach: dict[int, float] = {}
    for node, offset in ((u, along), (v, geom.length - along)):
        if offset > radius:
            continue
        lengths = nx.single_source_dijkstra_path_length(graph, node, cutoff=radius - offset, weight="length")
        for n, d in lengths.items():
            reach[n] = min(reach.get(n, np.inf), d + offset)
    inside = 0.01 < along < geom.length - 0.01  # else the start is node u or v, already in reach
    points = [(start.x, start.y)] * inside + [graph.nodes[n]["xy"] for n in reach]
    return np.asarray(points, dtype=float)


def _match(holes: np.ndarray, marbles: np.ndarray, tol: float) -> int:
    """Greedy one-to-one matching of points within ``tol``, closest pairs first."""
    if not len(holes) or not len(marbles):
        return 0
    pairs = cKDTree(holes).sparse_distance_matrix(cKDTree(marbles), tol, output_type="ndarray")
    order = np.argsort(pairs["v"])
    used_h, used_m, n = set(), set(), 0
    for k in order:
        i, j = int(pairs["i"][k]), int(pairs["j"][k])
        if i not in used_h and j not in used_m:
            used_h.add(i)
            used_m.add(j)
            n += 1
    return n
