"""Benchmark ``vectorize`` against the common baseline (scikit-image skeletonize + sknw).

A 10000 x 10000 road mask (0.5 m pixels, UTM) is built from real SpaceNet-3 Vegas road
centrelines in ../shared/data: the labelled chips are laid out on a grid (with flips and
quarter turns) and buffered to 7 m wide roads. Each method runs in its own child process
(so peak RSS is its own) and is scored against the source centrelines:

- precision / recall: share of output / source length (1 m samples) within 3 m of the other;
- components: connected networks, against those of the source lines;
- dead ends: degree-1 nodes (spurs and broken roads raise it).

Usage: ``python scripts/benchmark_vectorize.py [--size 10000] [--data ../shared/data]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GSD = 0.5
ROAD_WIDTH_M = 7.0


def build_truth(data: Path, size: int, seed: int = 0) -> list:
    """Source centrelines in scene pixel coordinates (x=col, y=row), tiled to fill the scene."""
    import geopandas as gpd
    import shapely
    from shapely import affinity

    chips = []
    for f in sorted((data / "spacenet3_roads_vegas" / "labels_only" / "spacenetroads").glob("*.geojson")):
        df = gpd.read_file(f)
        df = df[df.geometry.notna() & ~df.geometry.is_empty]
        if df.empty:
            continue
        df = df.to_crs(df.estimate_utm_crs())
        minx, miny, maxx, maxy = df.total_bounds
        geoms = [affinity.translate(g, -minx, -miny) for g in df.geometry]
        chips.append((geoms, maxx - minx, maxy - miny))
    rng = np.random.default_rng(seed)
    chip_px = int(max(max(w, h) for _, w, h in chips) / GSD) + 20
    lines = []
    for r in range(0, size, chip_px):
        for c in range(0, size, chip_px):
            geoms, w, h = chips[rng.integers(len(chips))]
            k, flip = rng.integers(4), rng.integers(2)
            for g in geoms:
                g = affinity.scale(g, 1 / GSD, -1 / GSD, origin=(0, 0))  # metres -> pixels, y down
                g = affinity.translate(g, 0, h / GSD)
                if flip:
                    g = affinity.scale(g, -1, 1, origin=(w / GSD / 2, h / GSD / 2))
                g = affinity.rotate(g, 90 * int(k), origin=(chip_px / 2, chip_px / 2))
                g = affinity.translate(g, c + 10, r + 10)
                g = shapely.clip_by_rect(g, 0, 0, size - 1, size - 1)
                lines += [p for p in shapely.get_parts(g) if not p.is_empty and p.length > 0]
    return lines


def write_mask(path: Path, lines: list, size: int) -> None:
    import rasterio
    from affine import Affine
    from rasterio.features import rasterize

    mask = rasterize(
        [(g.buffer(ROAD_WIDTH_M / GSD / 2), 1) for g in lines], out_shape=(size, size), dtype="uint8"
    )
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32611",
        "transform": Affine(GSD, 0, 600000, 0, -GSD, 4000000 + size * GSD),
        "tiled": True,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(mask, 1)


def run_baseline(mask_path: Path) -> list:
    """Whole-image skeletonize + sknw (the SpaceNet-3 winners' / CRESI pipeline core)."""
    import rasterio
    import sknw
    from shapely.geometry import LineString
    from skimage.morphology import skeletonize

    with rasterio.open(mask_path) as ds:
        mask = ds.read(1) > 0
    graph = sknw.build_sknw(skeletonize(mask).astype(np.uint16), multi=True)
    lines = []
    for u, v, data in graph.edges(data=True):
        pts = data["pts"]
        pts = np.vstack([graph.nodes[u]["o"], pts, graph.nodes[v]["o"]])
        if len(pts) >= 2:
            lines.append(LineString(pts[:, ::-1]))
    return lines


def run_roadseg(mask_path: Path, tmp: Path) -> list:
    import geopandas as gpd
    import rasterio
    import shapely

    from roadseg.vectorize.tool import VectorizeOptions, vectorize_raster

    vectorize_raster(mask_path, tmp / "out.gpkg", VectorizeOptions(progress=False))
    df = gpd.read_file(tmp / "out.gpkg")
    with rasterio.open(mask_path) as ds:
        inv = ~ds.transform
    to_px = lambda xy: np.column_stack(inv * (xy[:, 0], xy[:, 1])) - 0.5
    return [shapely.transform(g, to_px) for g in df.geometry]


def score(lines: list, truth: list) -> dict:
    import networkx as nx
    import shapely

    tol = 3.0 / GSD
    step = 1.0 / GSD

    def sample(geoms: list) -> np.ndarray:
        return shapely.get_coordinates(shapely.segmentize(np.asarray(geoms, dtype=object), step))

    out_union, truth_union = shapely.union_all(lines), shapely.union_all(truth)
    out_pts, truth_pts = sample(lines), sample(truth)
    precision = float((shapely.distance(shapely.points(out_pts), truth_union) < tol).mean())
    recall = float((shapely.distance(shapely.points(truth_pts), out_union) < tol).mean())

    def graph_of(geoms: list) -> nx.Graph:
        g = nx.Graph()
        for line in shapely.get_parts(shapely.line_merge(shapely.union_all(geoms))):
            c = line.coords
            g.add_edge(tuple(np.round(c[0], 3)), tuple(np.round(c[-1], 3)))
        return g

    g_out = graph_of(lines)
    return {
        "precision": precision,
        "recall": recall,
        "components": nx.number_connected_components(g_out),
        "dead_ends": sum(1 for n in g_out if g_out.degree(n) == 1),
        "length_km": float(sum(g.length for g in lines) * GSD / 1000),
    }


def child(method: str, mask_path: Path, truth_path: Path) -> dict:
    import pickle

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        lines = run_baseline(mask_path) if method == "baseline" else run_roadseg(mask_path, Path(tmp))
        seconds = time.perf_counter() - t0
    # the main process plus the largest worker process (roadseg runs blocks in a pool)
    peak = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    ) / 1024
    truth = pickle.loads(truth_path.read_bytes())
    return {"method": method, "seconds": seconds, "peak_rss_mib": peak, **score(lines, truth)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10000)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), Path(args.child[2]))))
        return
    import pickle

    import shapely

    if not args.data.is_dir():
        sys.exit(f"data folder {args.data} not found; pass --data path/to/shared/data")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        truth = build_truth(args.data, args.size)
        write_mask(tmp / "mask.tif", truth, args.size)
        (tmp / "truth.pkl").write_bytes(pickle.dumps(truth))
        ref = score(truth, truth)
        print(
            f"scene {args.size}^2 at {GSD} m: source {ref['length_km']:.1f} km of centrelines, "
            f"{ref['components']} networks, {ref['dead_ends']} dead ends"
        )
        rows = {}
        for method in ("baseline", "roadseg"):
            cmd = [sys.executable, __file__, "--child", method, str(tmp / "mask.tif"), str(tmp / "truth.pkl")]
            out = (
                subprocess.run(cmd, capture_output=True, text=True, check=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            r = rows[method] = json.loads(out)
            print(
                f"{method:<9} {r['seconds']:7.1f} s  peak RSS {r['peak_rss_mib']:6.0f} MiB  "
                f"precision {r['precision']:.3f}  recall {r['recall']:.3f}  networks {r['components']:>5}  "
                f"dead ends {r['dead_ends']:>5}  length {r['length_km']:.1f} km",
                flush=True,
            )
        b, o = rows["baseline"], rows["roadseg"]
        print(
            f"speed-up roadseg vs baseline: {b['seconds'] / o['seconds']:.2f}x; "
            f"peak RSS ratio {o['peak_rss_mib'] / b['peak_rss_mib']:.2f}"
        )
        del shapely


if __name__ == "__main__":
    main()
