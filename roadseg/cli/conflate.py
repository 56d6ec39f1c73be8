"""roadseg conflate: predicted roads against an existing map (OSM, GeoPackage, GeoJSON)."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from roadseg.cli._app import Quiet, Verbose, app, echo, path_arg, setup
from roadseg.errors import InputError
from roadseg.io.paths import check_outputs


@app.command("conflate")
def conflate_cmd(
    roads: Annotated[
        Path,
        typer.Argument(
            help="Predicted road lines (.gpkg/.geojson from roadseg), or a scene (.tif): predicted first."
        ),
    ],
    map_path: Annotated[
        Path,
        typer.Option(
            "--map",
            help="The existing road map: .osm, .osm.pbf, .geojson or .gpkg lines (or road areas: their "
            "centrelines are drawn), any CRS.",
        ),
    ],
    out_dir: Annotated[
        str,
        typer.Option(
            metavar="DIR",
            help="Writes missing.gpkg, missing.osm (for JOSM), unsupported.gpkg, completeness.gpkg, summary.json.",
        ),
    ],
    distance_m: Annotated[
        float, typer.Option(help="A predicted road within this many metres of a mapped one is mapped.")
    ] = 12.0,
    min_length_m: Annotated[float, typer.Option(help="Shortest missing road reported (m).")] = 20.0,
    min_support: Annotated[
        float, typer.Option(help="Mapped roads with less of their length near a predicted road are listed.")
    ] = 0.5,
    cell_m: Annotated[float, typer.Option(help="Side of the completeness grid's cells (m).")] = 250.0,
    osm_tag: Annotated[str, typer.Option(help="Tag of every new way in missing.osm.")] = "highway=road",
    map_where: Annotated[
        str | None,
        typer.Option(
            metavar="SQL",
            help="Keep only the map features this OGR SQL filter selects, e.g. \"Quatreclasses = '3'\" "
            "(the road class of a land-cover layer).",
        ),
    ] = None,
    all_classes: Annotated[
        bool,
        typer.Option(
            "--all-classes", help="Judge footways, paths, cycleways and steps too (left out by default)."
        ),
    ] = False,
    checkpoint: Annotated[
        Path | None, typer.Option(help="With a scene: the model (default: bundled).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the outputs of an earlier conflate in DIR.")
    ] = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Find what the map is missing: predicted roads against an existing road map (OSM or yours)."""
    quiet = setup(verbose, quiet)
    from roadseg.conflate.match import MatchOptions
    from roadseg.conflate.tool import OUTPUTS, ConflateOptions, conflate
    from roadseg.io.paths import RASTER_SUFFIXES

    folder = path_arg(out_dir, "--out-dir")
    assert folder is not None
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out-dir '{folder}' is a file; give a folder for the conflation outputs")
    existing = [n for n in OUTPUTS if (folder / n).exists()]
    if existing and not overwrite:
        raise InputError(
            f"--out-dir '{folder}' already holds {', '.join(existing)}; choose another folder or pass --overwrite"
        )
    kinds = {".gpkg": "vector", ".osm": "osm", ".json": "json"}
    check_outputs(
        {"roads": roads, "--map": map_path, "--checkpoint": checkpoint},
        {n: (folder / n, kinds[Path(n).suffix]) for n in OUTPUTS},
        new_folders=True,
    )
    opts = ConflateOptions(
        match=MatchOptions(
            distance_m=distance_m, min_length_m=min_length_m, min_support=min_support, cell_m=cell_m
        ),
        exclude=() if all_classes else ConflateOptions().exclude,
        osm_tag=osm_tag,
        map_where=map_where,
    )
    with contextlib.ExitStack() as stack:
        area = None
        if roads.suffix.lower() in RASTER_SUFFIXES:  # a scene: predict and vectorize it first
            from roadseg.inference.predict import PredictOptions
            from roadseg.inference.runtime import load_predictor
            from roadseg.io.raster import open_raster
            from roadseg.pipeline import SceneJob, run_scene

            with open_raster(roads) as ds:
                if ds.crs is None:
                    raise InputError(f"scene '{roads}' has no CRS: conflation compares map coordinates")
                from shapely.geometry import box

                area = box(*ds.bounds)
            popts = PredictOptions(progress=not quiet, style=False)
            predictor = load_predictor(checkpoint, device=popts.device, amp=popts.amp)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=folder, prefix=".roadseg-")))
            run_scene(SceneJob(roads, roads=tmp / "roads.gpkg"), predictor, popts)
            roads_file = tmp / "roads.gpkg"
        else:
            roads_file = roads
        summary = conflate(roads_file, map_path, folder, opts, area=area)
    if not quiet:
        s = summary
        echo(
            f"mapped {s['mapped_km']:.2f} km, predicted {s['predicted_km']:.2f} km, of which {s['matched_km']:.2f} km "
            f"on the map; {s['missing_roads']} missing road(s), {s['missing_km']:.2f} km; "
            f"{s['unsupported_roads']} mapped road(s) without support, {s['unsupported_km']:.2f} km"
        )
        comp = s["completeness"]
        echo(
            f"completeness {'n/a' if comp is None else f'{comp:.0%}'} (predicted roads already mapped); "
            f"wrote {folder}/: {', '.join(OUTPUTS)}"
        )
