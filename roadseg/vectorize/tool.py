"""The vectorize tool: a road probability or mask raster in, a road-graph layer out."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.features import shapes
from rasterio.windows import Window

from roadseg import progress
from roadseg.errors import InputError
from roadseg.io.kinds import road_raster_kind
from roadseg.io.paths import check_output_path
from roadseg.io.raster import has_invalid_pixels, open_raster, pixel_size_m, read_checked
from roadseg.io.styles import embeds_style, sidecar, write_style
from roadseg.vectorize import graph as G
from roadseg.vectorize.geo import (
    areas_m2,
    check_placeable,
    driver_for,
    lengths_m,
    pixel_to_map,
    write_vectors,
)
from roadseg.vectorize.network import DEFAULT_SPEED_KPH
from roadseg.vectorize.skeleton import Block, plan_blocks, process_block

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VectorizeOptions:
    """Cleanup parameters, in metres (converted with the raster's pixel size).

    Defaults: see docs/vectorize.md for how they were chosen.
    """

    threshold: float | None = None  # None: 0.5 of the raster's range
    min_length_m: float = 20.0
    spur_length_m: float = 10.0
    gap_m: float = 15.0
    gap_angle_deg: float = 30.0
    simplify_m: float = 1.0
    hole_area_m2: float = 20.0
    blob_area_m2: float = 50.0
    block_size: int = 2048
    halo: int = 96
    geometry: str = "line"
    pixel_coords: bool = False
    pixel_size_m: float | None = None  # for rasters without a CRS
    #: how messages name the raster (predict's temporary probability file is named by its scene)
    source_name: str | None = None
    workers: int = 0  # processes for the blocks; 0: one per core (up to the block count)
    progress: bool = True
    style: bool = True  # write a QGIS style sidecar (NAME.qml) beside the output
    #: the speed each road gets in the network's travel_time (GraphML, GeoPackage edges)
    speed_kph: float = DEFAULT_SPEED_KPH

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed_kph) and self.speed_kph > 0):
            raise InputError(f"--speed-kph must be a positive speed in km/h, got {self.speed_kph}")
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise InputError(f"--threshold must be a probability between 0 and 1, got {self.threshold}")
        for name in ("min_length_m", "spur_length_m", "gap_m", "simplify_m", "hole_area_m2", "blob_area_m2"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag} must be a finite length >= 0, got {value}")
        if not 0 <= self.gap_angle_deg <= 90:
            raise InputError(f"gap_angle_deg must be between 0 and 90 degrees, got {self.gap_angle_deg}")
        if self.pixel_size_m is not None and not (math.isfinite(self.pixel_size_m) and self.pixel_size_m > 0):
            raise InputError(f"pixel_size_m must be a positive size in metres, got {self.pixel_size_m}")


@dataclass(frozen=True)
class VectorizeResult:
    """What was written."""

    path: Path
    features: int
    components: int
    total_length_m: float | None
    seconds: float
    #: the written geometries in the raster's CRS (for previews)
    geoms: list[Any]


@dataclass(frozen=True)
class _BlockReader:
    """Reads the thresholded road mask of a window; picklable, so worker processes can use it."""

    path: str
    threshold: float
    has_mask: bool

    def __call__(self, win: Window) -> np.ndarray:
        ds = _open_cached(self.path)
        mask = read_checked(ds, ds.read, 1, window=win) >= self.threshold
        if self.has_mask:
            mask &= read_checked(ds, ds.read_masks, 1, window=win) > 0
        return mask


_OPEN: dict[str, Any] = {}


def _open_cached(path: str) -> Any:
    """One read handle per process and raster (rasterio handles are not shared across processes)."""
    key = f"{os.getpid()}:{path}"
    if key not in _OPEN:
        _OPEN[key] = open_raster(path)
    return _OPEN[key]


def _close_cached() -> None:
    """Close this process's cached handles."""
    prefix = f"{os.getpid()}:"
    for key in [k for k in _OPEN if k.startswith(prefix)]:
        _OPEN.pop(key).close()


@contextlib.contextmanager
def _block_map(fn: Any, blocks: list[Block], workers: int) -> Iterator[Iterator[Any]]:
    """Map ``fn`` over blocks in order, on a process pool when there are several blocks.

    The platform's default start method is used (fork on Linux: the workers only run numpy,
    OpenCV, scikit-image and GDAL, never torch, so forking a process that imported torch is
    safe, as for DataLoader workers). Where it is spawn (macOS, Windows), scripts calling this
    need the usual ``if __name__ == "__main__":`` guard.
    """
    n = workers or min(os.cpu_count() or 1, len(blocks))
    if n <= 1 or len(blocks) <= 1:
        yield map(fn, blocks)
        return
    with ProcessPoolExecutor(max_workers=n) as pool:
        yield pool.map(fn, blocks)


def vectorize_raster(
    raster: str | os.PathLike[str], out: str | os.PathLike[str], options: VectorizeOptions | None = None
) -> VectorizeResult:
    """Vectorize a road probability/mask raster into a road graph (or polygons)."""
    opts = options or VectorizeOptions()
    out = check_output_path(out)
    driver_for(out)
    if opts.geometry not in ("line", "polygon"):
        raise InputError(f"--geometry must be line or polygon, got '{opts.geometry}'")
    if opts.block_size < 64:
        raise InputError(f"--block-size must be at least 64 pixels, got {opts.block_size}")
    start = time.perf_counter()
    name = opts.source_name or f"'{raster}'"
    with open_raster(raster) as ds:
        crs = CRS.from_user_input(ds.crs) if ds.crs else None
        check_placeable(out, crs, name.strip("'"), pixel_coords=opts.pixel_coords)
        gsd = pixel_size_m(ds) or opts.pixel_size_m or 1.0
        kind = road_raster_kind(ds)
        scale, is_prob = kind.scale, kind.is_probability
        user_threshold = 0.5 if opts.threshold is None else opts.threshold  # as probability, for messages
        threshold = (user_threshold if is_prob else 0.5) * scale
        reader = _BlockReader(str(raster), threshold, has_invalid_pixels(ds))
        blocks = plan_blocks(ds.height, ds.width, opts.block_size, opts.halo)
        px_area = gsd * gsd
        work = partial(
            process_block,
            reader,
            scene_h=ds.height,
            scene_w=ds.width,
            min_hole_px=int(opts.hole_area_m2 / px_area),
            min_blob_px=int(opts.blob_area_m2 / px_area),
            keep_mask=opts.geometry == "polygon",
        )
        lines: list[np.ndarray] = []
        polygons: list[Any] = []
        with (
            progress.bar(len(blocks), "vectorize", unit="block", enabled=opts.progress) as bar,
            _block_map(work, blocks, opts.workers) as results,
        ):
            for block, (block_lines, core_mask) in zip(blocks, results, strict=True):
                lines += block_lines
                if core_mask is not None and core_mask.any():
                    t = ds.transform @ Affine.translation(block.col, block.row)
                    polygons += [
                        shapely.geometry.shape(g)
                        for g, _ in shapes(core_mask.astype(np.uint8), mask=core_mask, transform=t)
                    ]
                bar.update(1)
        _close_cached()
        shape = (ds.height, ds.width)
        transform = ds.transform
        probs_reader = (lambda xy: _mean_values(ds, xy, scale)) if is_prob else None
        if opts.geometry == "polygon":
            geoms = list(shapely.get_parts(shapely.unary_union(polygons))) if polygons else []
            columns: dict[str, list[Any]] = {"id": list(range(len(geoms))), "area_m2": areas_m2(geoms, crs)}
            n_comp = len(geoms)
            total = None
        else:
            graph = _clean_graph(lines, gsd, shape, opts)
            geoms, columns, n_comp = _graph_to_features(graph, transform, crs, gsd, opts, probs_reader)
            total = sum(v for v in columns["length_m"] if v is not None) if crs else None
    if not geoms:
        what = f"probability threshold {user_threshold:g}" if is_prob else "a binary mask"
        warnings.warn(f"no roads found in {name} ({what}); writing an empty layer", stacklevel=2)
    gtype = "Polygon" if opts.geometry == "polygon" else "LineString"
    layer_kind = "lines" if opts.geometry == "line" else "polygons"
    inside = opts.style and embeds_style(out) and not _users_own_style(out)
    written = write_vectors(
        out,
        geoms,
        columns,
        crs=crs,
        geometry_type=gtype,
        pixel_coords=opts.pixel_coords,
        speed_kph=opts.speed_kph if opts.geometry == "line" else None,
        style=layer_kind if inside else None,
    )
    if opts.style and not embeds_style(written) and driver_for(written) != "GraphML":  # no graph style
        write_style(written, layer_kind)
    return VectorizeResult(written, len(geoms), n_comp, total, time.perf_counter() - start, geoms)


def _users_own_style(out: Any) -> bool:
    """A .qml of the user's beside a GeoPackage: QGIS would load an embedded style first, so
    roadseg embeds none and the user's stays in force."""
    from roadseg.io.styles import _ours

    path = sidecar(out)
    if path.is_file() and not _ours(path):
        log.warning("kept '%s': it is not a roadseg style, so none is stored in '%s'", path, Path(out).name)
        return True
    return False


def _clean_graph(lines: list[np.ndarray], gsd: float, shape: tuple[int, int], opts: VectorizeOptions) -> Any:
    graph = G.build_graph(G.merge_lines(lines))
    G.remove_artifacts(graph)
    G.contract_degree_two(graph)
    G.prune_spurs(graph, opts.spur_length_m / gsd, shape)
    G.close_gaps(graph, opts.gap_m / gsd, opts.gap_angle_deg)
    G.drop_small_components(graph, opts.min_length_m / gsd, shape)
    return graph


def _mean_values(ds: Any, xy: np.ndarray, scale: float) -> float:
    """Mean raster value (0-1) at pixel indices ``xy`` (x=col, y=row), read in one window."""
    cols = np.clip(np.rint(xy[:, 0]).astype(int), 0, ds.width - 1)
    rows = np.clip(np.rint(xy[:, 1]).astype(int), 0, ds.height - 1)
    c0, r0 = cols.min(), rows.min()
    win = Window(c0, r0, cols.max() - c0 + 1, rows.max() - r0 + 1)
    values = read_checked(ds, ds.read, 1, window=win)[rows - r0, cols - c0]
    return float(values.mean() / scale)


def _graph_to_features(
    graph: Any, transform: Any, crs: CRS | None, gsd: float, opts: VectorizeOptions, probs_reader: Any
) -> tuple[list[Any], dict[str, list[Any]], int]:
    import networkx as nx

    mean_prob: list[float | None] = []
    edges = list(graph.edges(keys=True, data=True))
    for _, _, _, data in edges:  # before simplification: every skeleton pixel counts
        mean_prob.append(probs_reader(np.asarray(data["geom"].coords)) if probs_reader else None)
    G.simplify_edges(graph, opts.simplify_m / gsd)
    edges = list(graph.edges(keys=True, data=True))
    for u, _, _, data in edges:  # networkx reports undirected edges either way round
        if tuple(data["geom"].coords[0]) != graph.nodes[u]["xy"]:
            data["geom"] = data["geom"].reverse()
    if opts.pixel_coords and crs is None:
        geoms = [shapely.transform(d["geom"], lambda xy: xy + 0.5) for _, _, _, d in edges]
    else:
        geoms = [pixel_to_map(d["geom"], transform) for _, _, _, d in edges]
    columns: dict[str, list[Any]] = {
        "id": list(range(len(edges))),
        "u": [int(u) for u, _, _, _ in edges],
        "v": [int(v) for _, v, _, _ in edges],
        "length_m": lengths_m(geoms, crs),
        "mean_prob": mean_prob,
        "gap_closed": [bool(d.get("gap_closed", False)) for _, _, _, d in edges],
    }
    return geoms, columns, nx.number_connected_components(graph) if len(graph) else 0
