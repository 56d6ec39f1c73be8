"""Many scenes in one run: ``roadseg predict A.tif B.tif tiles/ @list.txt --out-dir results``.

The model loads once. Each scene writes ``<stem>.prob.tif`` and ``<stem>.roads.gpkg`` (or
``.geojson``; optionally ``<stem>.mask.tif``) into the output folder, each file atomically, and
one row of ``manifest.csv``: status, seconds, megapixels, km², road km, error. A scene that
fails (corrupt, unreadable, no CRS for GeoJSON, ...) is recorded as failed and the run goes on.
Started again, a run skips the scenes the manifest lists as done whose files exist, so an
interrupted or partly failed run resumes where it stopped.
"""

from __future__ import annotations

import csv
import glob
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from roadseg.errors import InputError, RoadsegError
from roadseg.io.atomic import atomic_path
from roadseg.io.paths import RASTER_SUFFIXES, check_outputs, with_styles
from roadseg.io.styles import remove_style

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
FIELDS = ["scene", "status", "seconds", "megapixels", "area_km2", "road_km", "outputs", "error"]


def expand_scenes(args: list[Path]) -> list[Path]:
    """Scene paths from arguments: files, folders (their rasters), globs, and ``@list.txt``
    files of one path per line (relative to the list's folder)."""
    scenes: list[Path] = []
    for arg in args:
        text = str(arg)
        if text.startswith("@"):
            listing = Path(text[1:])
            if not listing.is_file():
                raise InputError(
                    f"scene list '{listing}' not found; @FILE names a text file of one scene path per line"
                )
            lines = [line.strip() for line in listing.read_text().splitlines()]
            scenes += [
                p if p.is_absolute() else listing.parent / p
                for p in map(Path, lines)
                if str(p) and not str(p).startswith("#")
            ]
        elif any(c in text for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(text))
            if not found:
                raise InputError(f"no file matches '{text}'")
            scenes += found
        elif arg.is_dir():
            found = sorted(p for p in arg.iterdir() if p.suffix.lower() in RASTER_SUFFIXES and p.is_file())
            if not found:
                raise InputError(f"folder '{arg}' holds no raster ({', '.join(RASTER_SUFFIXES)})")
            scenes += found
        else:
            scenes.append(arg)
    stems: dict[str, Path] = {}
    for scene in scenes:
        other = stems.setdefault(scene.stem, scene)
        if other != scene:
            raise InputError(
                f"'{other}' and '{scene}' would write the same outputs ({scene.stem}.*): give scenes unique names "
                "or run them into separate --out-dir folders"
            )
    return scenes


@dataclass(frozen=True)
class SceneOutputs:
    """What each scene writes into the output folder."""

    vector_format: str = "gpkg"  # gpkg | geojson | none
    mask: bool = False

    def paths(self, out_dir: Path, scene: Path) -> dict[str, Path]:
        out = {"prob": out_dir / f"{scene.stem}.prob.tif"}
        if self.mask:
            out["mask"] = out_dir / f"{scene.stem}.mask.tif"
        if self.vector_format != "none":
            out["roads"] = out_dir / f"{scene.stem}.roads.{self.vector_format}"
        return out


@dataclass
class Manifest:
    """The run's rows by scene, rewritten atomically after every scene."""

    path: Path
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        manifest = cls(path)
        if path.is_file():
            with open(path, newline="") as f:
                manifest.rows = {row["scene"]: row for row in csv.DictReader(f)}
        return manifest

    def done(self, scene: Path, outputs: dict[str, Path]) -> bool:
        row = self.rows.get(str(scene))
        return row is not None and row["status"] == "done" and all(p.is_file() for p in outputs.values())

    def record(self, row: dict[str, Any]) -> None:
        self.rows[row["scene"]] = row
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(self.rows.values())


def predict_many(
    scenes: list[Path],
    out_dir: Path,
    *,
    checkpoint: Path | None,
    options: Any,
    outputs: SceneOutputs,
) -> Manifest:
    """Predict every scene into ``out_dir``; returns the manifest (failed scenes included)."""
    from roadseg.checkpoint import load_model
    from roadseg.inference.predict import predict_raster
    from roadseg.vectorize.tool import VectorizeOptions, vectorize_raster
    from roadseg.weights import default_checkpoint

    if outputs.vector_format not in ("gpkg", "geojson", "none"):
        raise InputError(f"--vector-format must be gpkg, geojson or none, got '{outputs.vector_format}'")
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = {f"scene '{s}'": s for s in scenes}
    kinds = {"prob": "geotiff", "mask": "geotiff", "roads": "vector"}
    for scene in scenes:
        named = {f"{k} of '{scene.name}'": (p, kinds[k]) for k, p in outputs.paths(out_dir, scene).items()}
        check_outputs(inputs, with_styles(named, options.style))
    model_and_info = load_model(checkpoint or default_checkpoint())
    manifest = Manifest.read(out_dir / MANIFEST)
    opts = replace(options, progress=False)
    for i, scene in enumerate(scenes, 1):
        paths = outputs.paths(out_dir, scene)
        if manifest.done(scene, paths):
            log.info("[%d/%d] %s: done in an earlier run, skipped", i, len(scenes), scene)
            continue
        start = time.perf_counter()
        row: dict[str, Any] = {"scene": str(scene), "outputs": " ".join(p.name for p in paths.values())}
        try:
            res = predict_raster(
                scene,
                checkpoint=None,
                prob_out=paths["prob"],
                mask_out=paths.get("mask"),
                options=opts,
                model_and_info=model_and_info,
            )
            km = None
            if "roads" in paths:
                vopts = VectorizeOptions(threshold=res.threshold, progress=False, style=options.style)
                vec = vectorize_raster(paths["prob"], paths["roads"], vopts)
                km = None if vec.total_length_m is None else vec.total_length_m / 1000
            row.update(
                status="done",
                megapixels=round(res.megapixels, 3),
                road_km=None if km is None else round(km, 3),
                area_km2=None if res.area_km2 is None else round(res.area_km2, 4),
                error="",
            )
        except (RoadsegError, OSError) as exc:  # this scene is bad; the others may not be
            for p in paths.values():  # no output of a failed scene survives, not even one of two
                p.unlink(missing_ok=True)
                remove_style(p)
            row.update(status="failed", error=" ".join(str(exc).split())[:500])
        row["seconds"] = round(time.perf_counter() - start, 2)
        manifest.record(row)
        log.info(
            "[%d/%d] %s: %s (%.1f s)%s",
            i,
            len(scenes),
            scene,
            row["status"],
            row["seconds"],
            f": {row['error']}" if row["error"] else "",
        )
    return manifest
