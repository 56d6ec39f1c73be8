"""roadseg predict: one scene (roadseg.pipeline) or many (roadseg.scenes, optionally on Dask)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from roadseg.cli._app import ProbDtype, Quiet, Tta, VectorFormat, Verbose, app, echo, path_arg, setup
from roadseg.errors import InputError

if TYPE_CHECKING:
    from roadseg.io.remote import RemoteFolder


@app.command("predict")
def predict_cmd(
    scenes: Annotated[
        list[str],
        typer.Argument(
            help="Input raster(s) (GeoTIFF, COG, VRT, JPEG, PNG), any size, local or a URL (s3://, gs://, az://, "
            "https://: read in windows with range requests); several, a folder, a glob, an s3:// prefix "
            "or @list.txt with --out-dir."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Road centerlines: .geojson (EPSG:4326), .gpkg, or .graphml (a routable osmnx graph)."
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Model: a roadseg .pt, an official D-LinkNet .th, or an .onnx from roadseg export."
        ),
    ] = None,
    prob_out: Annotated[Path | None, typer.Option(help="Probability raster (COG).")] = None,
    mask_out: Annotated[Path | None, typer.Option(help="Binary road mask raster 0/1 (COG).")] = None,
    tta: Annotated[
        Tta, typer.Option(help="Test-time augmentation: none, flip (4 views), d4 (8 views).")
    ] = Tta.d4,
    tile_size: Annotated[
        int | None,
        typer.Option(
            help="Window side in pixels, a multiple of 32 (default: 512 on CPU, the fastest there; 1024 on GPU)."
        ),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(help="Overlap between windows in pixels, <= tile size / 2 (default: tile / 8)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Windows per batch (each x TTA views); default: from free memory, 4 on CPU."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    bands: Annotated[
        str | None, typer.Option(help="1-based bands to read, e.g. 3,2,1 (default: first 3).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Road probability threshold (default: checkpoint's).")
    ] = None,
    gsd: Annotated[str, typer.Option(help="auto (resample to the model's GSD), native, or metres.")] = "auto",
    pixel_size: Annotated[
        float | None,
        typer.Option(
            metavar="METRES",
            help="A scene without a CRS (PNG, JPEG): what one pixel measures on the ground, so the model "
            "sees it at its scale and cleaning works in metres.",
        ),
    ] = None,
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp",
            help="Mixed precision (default: on for CUDA; --amp uses bf16 on CPUs that run it natively).",
        ),
    ] = None,
    prob_dtype: Annotated[ProbDtype, typer.Option(help="uint8 (0-255) or float32 (0-1).")] = ProbDtype.uint8,
    preview: Annotated[Path | None, typer.Option(help="PNG: scene, probability and road lines.")] = None,
    out_dir: Annotated[
        str | None,
        typer.Option(
            metavar="DIR",
            help="Many scenes: <stem>.prob.tif and <stem>.roads.* here, plus manifest.csv; a folder or "
            "object storage (s3://bucket/prefix/: each file uploaded once complete).",
        ),
    ] = None,
    vector_format: Annotated[
        VectorFormat, typer.Option(help="With --out-dir: gpkg, geojson or none.")
    ] = VectorFormat.gpkg,
    write_mask: Annotated[
        bool, typer.Option("--write-mask", help="With --out-dir: also <stem>.mask.tif.")
    ] = False,
    style: Annotated[
        bool, typer.Option("--style/--no-style", help="QGIS style sidecars (NAME.qml) beside outputs.")
    ] = True,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1024,
            help="CPU threads for the model (default: every core; --cluster local:N: cores/N each). "
            "Outputs are byte-identical between runs with the same threads.",
        ),
    ] = None,
    stac_asset: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="With STAC items (.json): the asset to read (default: the visual/RGB one).",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="With --out-dir: run scenes on Dask workers: local:N, tcp://HOST:8786 or a scheduler .json "
            "(pip install 'roadseg\\[cluster]')."
        ),
    ] = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Predict roads on a scene: probability and mask rasters, and road vectors with --out."""
    quiet = setup(verbose, quiet)
    from roadseg.inference.predict import PredictOptions
    from roadseg.io.raster import parse_bands
    from roadseg.scenes import SceneOutputs

    opts = PredictOptions(
        tta=tta.value,
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        bands=parse_bands(bands),
        threshold=threshold,
        gsd=gsd,
        pixel_size=pixel_size,
        amp=amp,
        prob_dtype=prob_dtype.value,
        progress=not quiet,
        style=style,
        threads=threads,
    )
    single = {"--out": out, "--prob-out": prob_out, "--mask-out": mask_out, "--preview": preview}
    from roadseg.io.remote import RemoteFolder, is_url

    out_folder: Path | RemoteFolder | None = (
        RemoteFolder(out_dir) if out_dir is not None and is_url(out_dir) else path_arg(out_dir, "--out-dir")
    )
    if out_folder is not None or len(scenes) > 1:
        if out_folder is None:
            raise InputError(f"{len(scenes)} scenes need --out-dir DIR for their outputs")
        if any(v is not None for v in single.values()):
            raise InputError(
                "with --out-dir, outputs are named after each scene: drop --out, --prob-out, --mask-out and --preview"
            )
        _predict_many(
            scenes,
            stac_asset,
            out_folder,
            checkpoint,
            opts,
            SceneOutputs(vector_format.value, write_mask),
            cluster,
            quiet,
        )
    elif cluster is not None:
        raise InputError("--cluster runs many scenes: give --out-dir DIR for their outputs")
    else:
        from roadseg.io.stac import looks_like_stac, read_stac
        from roadseg.scenes import Scene, as_scene

        scene: Scene
        if looks_like_stac(scenes[0]):
            items = read_stac(scenes[0], stac_asset)
            if len(items) > 1:
                raise InputError(
                    f"'{scenes[0]}' holds {len(items)} STAC items: give --out-dir DIR for their outputs"
                )
            scene = items[0]
        else:
            scene = as_scene(scenes[0])
        if isinstance(scene, str) and (scene.endswith("/") or "*" in scene):
            raise InputError(f"'{scene}' names many scenes: give --out-dir DIR for their outputs")
        _predict_one(scene, checkpoint, single, opts, quiet)


def _predict_one(
    scene: Path | str, checkpoint: Path | None, single: dict[str, Path | None], opts: Any, quiet: bool
) -> None:
    from roadseg.inference.runtime import load_predictor
    from roadseg.pipeline import SceneJob, check_job, run_scene

    job = SceneJob(
        scene,
        prob=single["--prob-out"],
        mask=single["--mask-out"],
        roads=single["--out"],
        preview=single["--preview"],
    )
    check_job(job, checkpoint=checkpoint, options=opts)
    predictor = load_predictor(checkpoint, device=opts.device, amp=opts.amp)
    result = run_scene(job, predictor, opts)
    if not quiet:
        _report_predict(result.prediction, result.lines, [job.prob, job.mask, job.preview])


def _predict_many(
    args: list[str],
    stac_asset: str | None,
    out_dir: Path | RemoteFolder,
    checkpoint: Path | None,
    opts: Any,
    outputs: Any,
    cluster: str | None,
    quiet: bool,
) -> None:
    from roadseg.scenes import MANIFEST, expand_scenes, run_batch

    scenes = expand_scenes(args, stac_asset)
    executor = None
    if cluster is not None:
        from roadseg.cluster import DaskExecutor

        executor = DaskExecutor(cluster)
    manifest = run_batch(
        scenes, out_dir, checkpoint=checkpoint, options=opts, outputs=outputs, executor=executor
    )
    rows = [manifest.rows[str(scene)] for scene in scenes]
    failed = [r for r in rows if r["status"] == "failed"]
    where = f"{out_dir}/{MANIFEST}"
    if not quiet:
        echo(f"{len(rows) - len(failed)} of {len(rows)} scenes done; see {where}")
    if failed:
        print(
            f"error: {len(failed)} of {len(rows)} scenes failed (first: {failed[0]['scene']}: {failed[0]['error']}); "
            f"their rows in {where} say why; run the same command again to retry them",
            file=sys.stderr,
        )
        raise typer.Exit(1)


def _report_predict(result: Any, vec: Any, written: list[Path | None]) -> None:
    for p in written:
        if p is not None:
            echo(f"wrote {p}")
    if vec is not None:
        echo(f"wrote {vec.path}: {vec.features} road lines in {vec.components} connected networks")
    echo(
        f"{result.megapixels:.2f} Mpx"
        + (f" ({result.area_km2:.3g} km²)" if result.area_km2 is not None else "")
        + f" in {result.seconds:.1f} s ({result.mpx_per_s:.2f} Mpx/s, "
        + (f"{result.km2_per_h:.3g} km²/h, " if result.km2_per_h is not None else "")
        + f"{result.tiles} tiles, threshold {result.threshold:g}"
        + (f", resampled to {result.model_gsd_m:g} m" if result.resampled else "")
        + ")"
    )
