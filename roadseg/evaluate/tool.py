"""The evaluate tool: predictions against truth, as rasters (pixel metrics) or lines (graph metrics).

PRED and TRUTH are files or folders; in folders, files are paired by id (the name stem
without ``_mask``/``_sat``/``_pred``/``_prob``/``_osm`` suffixes). Pixel metrics are
accumulated over all images (TP/FP/FN summed, as the DeepGlobe scorer does).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from roadseg.errors import InputError
from roadseg.evaluate.pixel import Confusion, RelaxedCurve
from roadseg.io.kinds import RoadRasterKind, road_raster_kind
from roadseg.io.paths import RASTER_SUFFIXES, VECTOR_SUFFIXES

_ID_SUFFIXES = ("_mask", "_sat", "_pred", "_prob", "_osm", "_roads")


@dataclass
class EvalResult:
    """Overall metrics (flat keys) and per-image rows."""

    metrics: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def write_rows(self, path: Path) -> None:
        """The per-image rows as CSV, written atomically (``--per-image``)."""
        import csv

        from roadseg.io.atomic import atomic_path

        if not self.rows:
            return
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)


def sample_id(path: Path) -> str:
    """The pairing id of a file: its stem without the usual role suffixes."""
    stem = path.stem
    changed = True
    while changed:
        changed = False
        for suffix in _ID_SUFFIXES:
            if stem.endswith(suffix) and len(stem) > len(suffix):
                stem, changed = stem[: -len(suffix)], True
    return stem


def _files(path: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    if not path.exists():
        raise InputError(f"{what} '{path}' not found")
    if path.is_file():
        return {sample_id(path): path}
    files = {sample_id(p): p for p in sorted(path.iterdir()) if p.suffix.lower() in suffixes}
    if not files:
        raise InputError(f"{what} folder '{path}' holds no files of type {sorted(suffixes)}")
    return files


def pair(pred: Path, truth: Path, suffixes: tuple[str, ...]) -> list[tuple[str, Path, Path]]:
    """Match prediction and truth files by id; any unmatched file is an error."""
    p, t = _files(pred, suffixes, "prediction"), _files(truth, suffixes, "truth")
    if len(p) == 1 and len(t) == 1:
        (pid, pp), (_, tp) = next(iter(p.items())), next(iter(t.items()))
        return [(pid, pp, tp)]
    missing_pred = sorted(set(t) - set(p))
    missing_truth = sorted(set(p) - set(t))
    if missing_pred or missing_truth:
        raise InputError(
            f"unmatched files: no prediction for {missing_pred[:5]}, no truth for {missing_truth[:5]} "
            "(files pair by name stem, ignoring _mask/_sat/_pred/_prob suffixes)"
        )
    return [(k, p[k], t[k]) for k in sorted(p)]


def _read(path: Path) -> tuple[np.ndarray, np.ndarray | None, RoadRasterKind, tuple[Any, Any]]:
    """Band 1, its validity where the raster declares any (nodata value, mask band or alpha:
    predict writes its no-data as a mask band), what it holds (io.kinds' one rule), and its
    grid (CRS, transform)."""
    from roadseg.io.raster import has_invalid_pixels, open_raster, read_checked

    with open_raster(path) as ds:
        kind = road_raster_kind(ds)
        grid = (ds.crs, ds.transform)
        valid = read_checked(ds, ds.read_masks, 1) > 0 if has_invalid_pixels(ds) else None
        return read_checked(ds, ds.read, 1), valid, kind, grid


def _check_same_grid(pred: Path, p_grid: tuple[Any, Any], truth: Path, t_grid: tuple[Any, Any]) -> None:
    """Pixel metrics compare pixel (i, j) with pixel (i, j): two georeferenced rasters must lie
    on one grid, or the numbers are silently wrong (a prediction 1 km off would score IoU 1)."""
    (p_crs, p_tr), (t_crs, t_tr) = p_grid, t_grid
    if p_crs is None or t_crs is None:
        return  # a plain PNG/JPEG mask (DeepGlobe's) has only its pixel grid: shapes were compared
    fix = "reproject the prediction onto the truth's grid (gdalwarp with the truth's -t_srs, -te and -ts)"
    if p_crs != t_crs:
        raise InputError(f"'{pred.name}' is in {p_crs} but '{truth.name}' in {t_crs}: {fix}")
    if not np.allclose(tuple(p_tr)[:6], tuple(t_tr)[:6], rtol=0, atol=1e-6 * max(1.0, abs(t_tr.a))):
        dx, dy = p_tr.c - t_tr.c, p_tr.f - t_tr.f
        raise InputError(
            f"'{pred.name}' and '{truth.name}' are on different grids (origin {dx:+.3g}, {dy:+.3g} map units "
            f"apart, pixels {p_tr.a:g} and {t_tr.a:g}): {fix}"
        )


def _to_levels(data: np.ndarray, kind: RoadRasterKind) -> np.ndarray:
    """uint8 levels 0..255 of a probability or mask raster."""
    if kind.scale == 1.0:
        return np.clip(np.rint(data.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    return data.astype(np.uint8)


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def evaluate_rasters(pred: Path, truth: Path, *, relax_px: int = 3, threshold: float = 0.5) -> EvalResult:
    """Pixel metrics over matched raster pairs."""
    conf = Confusion()
    curve = RelaxedCurve(relax_px)
    result = EvalResult()
    any_prob = False
    level = int(np.ceil(threshold * 255))
    for sid, pp, tp in pair(pred, truth, RASTER_SUFFIXES):
        p_raw, p_valid, p_kind, p_grid = _read(pp)
        t_raw, t_valid, t_kind, t_grid = _read(tp)
        if p_raw.shape != t_raw.shape:
            raise InputError(
                f"'{pp.name}' is {p_raw.shape[::-1]} but '{tp.name}' is {t_raw.shape[::-1]} (width x height)"
            )
        _check_same_grid(pp, p_grid, tp, t_grid)
        levels = _to_levels(p_raw, p_kind)
        any_prob |= p_kind.is_probability
        t = t_raw >= 0.5 * t_kind.scale
        valid: np.ndarray | None = (
            None
            if p_valid is None and t_valid is None
            else np.asarray(
                (p_valid if p_valid is not None else True) & (t_valid if t_valid is not None else True)
            )
        )
        pbin = levels >= level
        c = Confusion()
        c.update(pbin, t, valid)
        conf.add(c.tp, c.fp, c.fn)
        one = RelaxedCurve(relax_px)
        one.update(levels, t, valid)
        curve.merge(one)
        rp, rr = one.at(level)
        result.rows.append(
            {
                "id": sid,
                "iou": c.iou,
                "precision": c.precision,
                "recall": c.recall,
                "f1": c.f1,
                "relaxed_precision": rp,
                "relaxed_recall": rr,
                "relaxed_f1": _f1(rp, rr),
                "tp": c.tp,
                "fp": c.fp,
                "fn": c.fn,
            }
        )
    if conf.tp + conf.fn == 0 and conf.fp == 0:
        warnings.warn("neither prediction nor truth has any road pixel", stacklevel=2)
    rp, rr = curve.at(level)
    result.metrics = {
        "iou": conf.iou,
        "precision": conf.precision,
        "recall": conf.recall,
        "f1": conf.f1,
        "relaxed_precision": rp,
        "relaxed_recall": rr,
        "relaxed_f1": _f1(rp, rr),
    }
    if any_prob:
        result.metrics["breakeven"] = curve.breakeven()
        result.metrics["breakeven_threshold"] = curve.breakeven_threshold()
    return result


def _read_lines(path: Path) -> Any:
    import geopandas as gpd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001 - any OGR failure is a bad input file
        raise InputError(f"cannot read vector file '{path}': {str(exc).splitlines()[0]}") from None
    df = df[df.geometry.notna() & ~df.geometry.is_empty]
    other = sorted(set(df.geom_type) - {"LineString", "MultiLineString"})
    if other:
        raise InputError(
            f"'{path}' holds {', '.join(other)} features; graph metrics compare road centrelines "
            "(LineString), such as roadseg predict --out writes"
        )
    if len(df) and df.crs is None:
        raise InputError(f"'{path}' has no CRS; graph metrics need georeferenced lines")
    return df


def evaluate_graphs(pred: Path, truth: Path) -> EvalResult:
    """APLS and TOPO over matched line-layer pairs (mean over pairs), in the truth's UTM zone."""
    import shapely

    from roadseg.evaluate.graph import apls, topo, topo_dense

    result = EvalResult()
    for sid, pp, tp in pair(pred, truth, VECTOR_SUFFIXES):
        t_df, p_df = _read_lines(tp), _read_lines(pp)
        if t_df.empty:
            raise InputError(f"truth '{tp}' holds no lines")
        utm = t_df.estimate_utm_crs()
        t_lines = list(shapely.get_parts(t_df.to_crs(utm).geometry.values))
        p_lines = list(shapely.get_parts(p_df.to_crs(utm).geometry.values)) if len(p_df) else []
        row = {"id": sid, **apls(t_lines, p_lines), **topo(t_lines, p_lines), **topo_dense(t_lines, p_lines)}
        result.rows.append(row)
    keys = (
        "apls",
        "topo",
        "topo_precision",
        "topo_recall",
        "topo_dense",
        "topo_dense_precision",
        "topo_dense_recall",
    )
    result.metrics = {k: float(np.mean([r[k] for r in result.rows])) for k in keys}
    return result


def evaluate(pred: str | os.PathLike[str], truth: str | os.PathLike[str], *, relax_px: int = 3) -> EvalResult:
    """Pixel metrics for rasters, graph metrics for line layers (chosen by file type)."""
    pred, truth = Path(pred), Path(truth)

    def kind(p: Path) -> str:
        files = [p] if p.is_file() else (sorted(p.iterdir()) if p.is_dir() else [])
        if any(f.suffix.lower() in VECTOR_SUFFIXES for f in files):
            return "vector"
        return "raster"

    if not pred.exists() or not truth.exists():
        raise InputError(f"'{pred if not pred.exists() else truth}' not found")
    kp, kt = kind(pred), kind(truth)
    if kp != kt:
        raise InputError(
            f"--pred is {kp} but --truth is {kt}; compare rasters with rasters, lines with lines"
        )
    if kp == "vector":
        return evaluate_graphs(pred, truth)
    return evaluate_rasters(pred, truth, relax_px=relax_px)
