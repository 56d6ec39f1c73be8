"""Road-graph metrics: APLS (SpaceNet) and TOPO, in pure Python on networkx >= 3 / scipy.

Both graphs are taken to a local metric CRS (the truth's UTM zone). APLS follows the SpaceNet
definition (CosmiQ/apls): control points every 50 m along edges; each graph's nodes are
snapped onto the other within 4 m; for node pairs joined in the source graph, a path scores
min(1, |L_src - L_other| / L_src), 1 if missing; paths shorter than 10 m are skipped; APLS is
the harmonic mean of the two directions. Shortest paths use scipy's C Dijkstra from up to
``max_sources`` seeded source nodes, so graphs of ~10 000 edges take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import shapely
import shapely.ops
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from shapely.geometry import LineString
from shapely.strtree import STRtree


@dataclass(frozen=True)
class APLSParams:
    """The SpaceNet defaults."""

    control_spacing_m: float = 50.0
    snap_m: float = 4.0
    min_path_m: float = 10.0
    max_sources: int = 500
    seed: int = 0


def lines_to_graph(lines: list[LineString]) -> nx.Graph:
    """Noded road graph: nodes at ends and crossings (``xy``), edges with ``geom`` and ``length``."""
    graph = nx.Graph()
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
        _add_edge(graph, ends[0], ends[1], part)
    return graph


def _add_edge(graph: nx.Graph, u: int, v: int, geom: LineString) -> None:
    """Add an edge; a parallel edge or loop gets a mid-point node (keeps a simple Graph)."""
    if u == v or graph.has_edge(u, v):
        mid = geom.interpolate(0.5, normalized=True)
        m = max(graph.nodes) + 1 if len(graph) else 0
        graph.add_node(m, xy=(mid.x, mid.y))
        d = geom.project(mid)
        graph.add_edge(u, m, geom=shapely.ops.substring(geom, 0, d), length=d)
        graph.add_edge(m, v, geom=shapely.ops.substring(geom, d, geom.length), length=geom.length - d)
    else:
        graph.add_edge(u, v, geom=geom, length=geom.length)


def inject_control_points(graph: nx.Graph, spacing: float) -> nx.Graph:
    """Split edges so that nodes lie at most ``spacing`` apart along every edge."""
    out = nx.Graph()
    out.add_nodes_from(graph.nodes(data=True))
    nxt = max(graph.nodes) + 1 if len(graph) else 0
    for u, v, data in graph.edges(data=True):
        geom = data["geom"]
        if tuple(np.round(geom.coords[0], 6)) != graph.nodes[u]["xy"]:
            geom = geom.reverse()
        n = int(np.ceil(geom.length / spacing))
        if n <= 1:
            out.add_edge(u, v, geom=geom, length=geom.length)
            continue
        cuts = np.linspace(0, geom.length, n + 1)
        prev = u
        for i in range(1, n):
            p = geom.interpolate(cuts[i])
            out.add_node(nxt, xy=(p.x, p.y))
            seg = shapely.ops.substring(geom, cuts[i - 1], cuts[i])
            out.add_edge(prev, nxt, geom=seg, length=seg.length)
            prev = nxt
            nxt += 1
        seg = shapely.ops.substring(geom, cuts[-2], cuts[-1])
        out.add_edge(prev, v, geom=seg, length=seg.length)
    return out


def snap_nodes(src: nx.Graph, dst: nx.Graph, max_dist: float) -> tuple[nx.Graph, dict[int, int]]:
    """Insert each ``src`` node into ``dst`` at its nearest point within ``max_dist``.

    Returns the augmented copy of ``dst`` and the map src node -> dst node.
    """
    dst = dst.copy()
    mapping: dict[int, int] = {}
    if not len(dst.edges) or not len(src):
        return dst, mapping
    edges = list(dst.edges)
    geoms = [dst.edges[e]["geom"] for e in edges]
    tree = STRtree(geoms)
    src_ids = list(src.nodes)
    pts = shapely.points(np.array([src.nodes[n]["xy"] for n in src_ids]))
    pi, ei = tree.query_nearest(pts, max_distance=max_dist, all_matches=False)
    inserts: dict[int, list[tuple[float, int]]] = {}
    for p, e in zip(pi, ei, strict=True):
        along = geoms[e].project(pts[p])
        inserts.setdefault(int(e), []).append((along, src_ids[p]))
    nxt = max(dst.nodes) + 1
    for e, items in inserts.items():
        u, v = edges[e]
        geom = geoms[e]
        if tuple(np.round(geom.coords[0], 6)) != tuple(np.round(dst.nodes[u]["xy"], 6)):
            geom = geom.reverse()
            items = [(geom.length - a, s) for a, s in items]
        items.sort()
        cuts, prev, last_along = [], u, 0.0
        for along, s in items:
            if along < 0.01:
                mapping[s] = u
            elif along > geom.length - 0.01:
                mapping[s] = v
            elif cuts and abs(along - cuts[-1][0]) < 0.01:
                mapping[s] = cuts[-1][1]
            else:
                cuts.append((along, nxt))
                mapping[s] = nxt
                nxt += 1
        if not cuts:
            continue
        dst.remove_edge(u, v)
        for along, node in cuts:
            p = geom.interpolate(along)
            dst.add_node(node, xy=(p.x, p.y))
            seg = shapely.ops.substring(geom, last_along, along)
            dst.add_edge(prev, node, geom=seg, length=seg.length)
            prev, last_along = node, along
        seg = shapely.ops.substring(geom, last_along, geom.length)
        dst.add_edge(prev, v, geom=seg, length=seg.length)
    return dst, mapping


def _csr(graph: nx.Graph) -> tuple[csr_matrix, dict[int, int]]:
    index = {n: i for i, n in enumerate(graph.nodes)}
    rows, cols, w = [], [], []
    for u, v, d in graph.edges(data=True):
        rows += [index[u], index[v]]
        cols += [index[v], index[u]]
        w += [max(d["length"], 1e-9)] * 2
    n = len(index)
    return csr_matrix((w, (rows, cols)), shape=(n, n)), index


def _one_way(src: nx.Graph, dst: nx.Graph, p: APLSParams) -> float:
    """1 - mean path-length difference for node pairs of ``src``, measured on ``dst``."""
    if not len(src.edges):
        return 1.0 if not len(dst.edges) else 0.0
    if not len(dst.edges):
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


def topo(
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
    """TOPO (Biagioni & Eriksson 2012): from seed points, compare the sub-networks reachable
    within ``radius_m`` by 'holes' (truth) and 'marbles' (prediction) every ``spacing_m``,
    matched one-to-one within ``match_m``. Counts are summed over seeds."""
    g_t = inject_control_points(lines_to_graph(truth), spacing_m)
    g_p = inject_control_points(lines_to_graph(pred), spacing_m)
    if not len(g_t.edges) or not len(g_p.edges):
        empty = not len(g_t.edges) and not len(g_p.edges)
        return {"topo_precision": float(empty), "topo_recall": float(empty), "topo": float(empty)}
    rng = np.random.default_rng(seed)
    t_nodes = list(g_t.nodes)
    seeds = t_nodes if len(t_nodes) <= n_seeds else list(rng.choice(t_nodes, n_seeds, replace=False))
    g_p_aug, mapping = snap_nodes(g_t.subgraph(seeds).copy(), g_p, snap_m)
    matched = holes = marbles = 0
    for s in seeds:
        h = _reachable_points(g_t, s, radius_m)
        holes += len(h)
        if s not in mapping:
            continue
        m = _reachable_points(g_p_aug, mapping[s], radius_m)
        marbles += len(m)
        matched += _match(h, m, match_m)
    precision = matched / marbles if marbles else 0.0
    recall = matched / holes if holes else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"topo_precision": precision, "topo_recall": recall, "topo": f1}


def _reachable_points(graph: nx.Graph, source: int, radius: float) -> np.ndarray:
    dist = nx.single_source_dijkstra_path_length(graph, source, cutoff=radius, weight="length")
    return np.array([graph.nodes[n]["xy"] for n in dist]) if dist else np.zeros((0, 2))


def _match(holes: np.ndarray, marbles: np.ndarray, tol: float) -> int:
    """Greedy one-to-one matching of points within ``tol``, closest pairs first."""
    if not len(holes) or not len(marbles):
        return 0
    from scipy.spatial import cKDTree

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
