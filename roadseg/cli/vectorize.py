"""roadseg vectorize: probability or mask rasters (several: mosaicked) to road lines."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from roadseg.cli._app import Geometry, Quiet, Verbose, app, echo, setup
from roadseg.io.paths import check_outputs, with_styles


@app.command("vectorize")
def vectorize_cmd(
    rasters: Annotated[
        list[Path],
        typer.Argument(
            help="Road probability (0-255 or 0-1) or 0/1 mask raster(s); several on one grid: one network."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Output: .geojson (EPSG:4326), .gpkg (raster's CRS; with nodes and edges layers) or "
            ".graphml (a routable osmnx graph, EPSG:4326)."
        ),
    ],
    threshold: Annotated[float | None, typer.Option(help="Probability threshold 0-1 (default 0.5).")] = None,
    min_length_m: Annotated[float, typer.Option(help="Drop networks shorter than this (m).")] = 20.0,
    spur_length_m: Annotated[
        float, typer.Option(help="Prune dead-end branches shorter than this (m).")
    ] = 10.0,
    gap_m: Annotated[float, typer.Option(help="Join aligned dead ends closer than this (m).")] = 15.0,
    simplify_m: Annotated[float, typer.Option(help="Douglas-Peucker tolerance (m); junctions stay.")] = 1.0,
    block_size: Annotated[int, typer.Option(help="Block side in pixels (memory bound).")] = 2048,
    geometry: Annotated[
        Geometry, typer.Option(help="line (centerline graph) or polygon (road areas).")
    ] = Geometry.line,
    pixel_coords: Annotated[
        bool, typer.Option(help="Allow a raster without CRS: pixel coordinates.")
    ] = False,
    pixel_size: Annotated[
        float | None,
        typer.Option(
            metavar="METRES",
            help="A raster without a CRS: what one pixel measures, for the cleaning lengths (default 1 m).",
        ),
    ] = None,
    preview: Annotated[
        Path | None, typer.Option(help="PNG: the raster with the road lines drawn over it.")
    ] = None,
    style: Annotated[
        bool, typer.Option("--style/--no-style", help="A QGIS style sidecar (NAME.qml) beside --out.")
    ] = True,
    speed_kph: Annotated[
        float, typer.Option(help="Speed of every road in the network's travel_time (km/h).")
    ] = 50.0,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Turn a road raster into a connected centerline graph for QGIS, osmnx and networkx."""
    quiet = setup(verbose, quiet)
    from roadseg.vectorize.tool import VectorizeOptions, vectorize_raster

    opts = VectorizeOptions(
        threshold=threshold,
        min_length_m=min_length_m,
        spur_length_m=spur_length_m,
        gap_m=gap_m,
        simplify_m=simplify_m,
        block_size=block_size,
        geometry=geometry.value,
        pixel_coords=pixel_coords,
        pixel_size_m=pixel_size,
        progress=not quiet,
        style=style,
        speed_kph=speed_kph,
    )
    check_outputs(
        {f"raster '{r}'": r for r in rasters},
        {**with_styles({"--out": (out, "vector")}, style), "--preview": (preview, "png")},
    )
    with _mosaic(rasters, out) as raster:
        res = vectorize_raster(raster, out, opts)
        if preview is not None:
            from roadseg.preview import render_preview

            render_preview(
                preview, scene=None, prob=raster, lines=res.geoms if opts.geometry == "line" else None
            )
    if not quiet:
        total = "" if res.total_length_m is None else f", {res.total_length_m / 1000:.2f} km"
        echo(
            f"wrote {res.path}: {res.features} features in {res.components} networks{total} ({res.seconds:.1f} s)"
        )


@contextlib.contextmanager
def _mosaic(rasters: list[Path], out: Path) -> Iterator[Path]:
    """One raster as it is; several as a temporary VRT mosaic beside the output."""
    if len(rasters) == 1:
        yield rasters[0]
        return
    from roadseg.io.mosaic import write_mosaic
    from roadseg.io.paths import check_output_path

    with tempfile.TemporaryDirectory(dir=check_output_path(out).parent, prefix=".roadseg-") as tmp:
        yield write_mosaic(rasters, Path(tmp) / "mosaic.vrt")
