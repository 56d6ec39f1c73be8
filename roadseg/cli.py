"""The ``roadseg`` command line: parses arguments, calls one tool function, prints, exits.

Exit codes: 0 success, 2 bad input or usage, 1 any other failure, 130 interrupted.
Messages and progress go to stderr; results (tables, JSON) to stdout.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

try:  # recent typer vendors click as typer._click; older releases use click itself
    from typer._click.exceptions import ClickException  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import ClickException

from roadseg.errors import InputError, RoadsegError
from roadseg.io.paths import check_outputs, with_styles


def _hide_flag_types() -> None:
    """Recent typer prints a ``<bool>`` type beside every flag (--json, --help), which reads as
    "takes a value" and leads to ``--json true``, refused. Flags take no value: show none."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - depends on the installed typer
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_roadseg", False):  # pragma: no cover
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return (
            None
            if getattr(self, "is_flag", False) and not getattr(self, "count", False)
            else shown(self, ctx)
        )

    display_type_rich._roadseg = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()

app = typer.Typer(
    name="roadseg",
    help="Road extraction from satellite and aerial imagery: predict, vectorize, train, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_STATE = {"verbose": False, "terminated": False}


def _version(value: bool) -> None:
    if value:
        from roadseg import __version__

        typer.echo(f"roadseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    progress_mode: Annotated[
        str,
        typer.Option(
            "--progress",
            help="bar (for a terminal), json (one JSON event per line on stderr: progress, messages, "
            "errors; for programs such as the QGIS plugin) or none. Goes before the command.",
        ),
    ] = "bar",
) -> None:
    """Road extraction from satellite and aerial imagery: predict, vectorize, train, evaluate."""
    from roadseg import progress

    progress.set_mode(progress_mode)


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="More messages; tracebacks on errors.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors; no progress bar.")]


def _path_arg(value: str | None, option: str) -> Path | None:
    """A path option given as text: an empty one (an unset ``$OUTDIR``) is refused, not taken
    as the working folder, which is what Path('') would silently mean."""
    if value is None:
        return None
    if not value.strip():
        raise InputError(f"{option} is empty (an unset variable?); give a path, or leave {option} out")
    if "\x00" in value:
        raise InputError(f"{option} {value[:100]!r} holds a NUL byte; give a path")
    return Path(value)


def _need_torch(command: str, extra: str) -> None:
    """train and export run PyTorch; the default install predicts without it."""
    from roadseg.inference.runtime import torch_available

    if not torch_available():
        raise InputError(
            f"roadseg {command} needs PyTorch, which this install lacks (predict, vectorize and evaluate "
            f"do not): pip install '{extra}'"
        )


class _JsonLog(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json

        level = "warning" if record.levelno >= logging.WARNING else "info"
        return json.dumps({"event": "message", "level": level, "message": record.getMessage()})


def _json_mode() -> bool:
    from roadseg import progress

    return progress.mode() == "json"


def _setup(verbose: bool, quiet: bool) -> None:
    _STATE["verbose"] = verbose
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    if _json_mode():
        for handler in logging.getLogger().handlers:
            handler.setFormatter(_JsonLog())
    for noisy in ("rasterio", "pyogrio", "fiona"):  # GDAL's informational chatter ("Created N records")
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.ERROR)
    if quiet:
        warnings.simplefilter("ignore")
    else:
        warnings.showwarning = _show_warning


def _show_warning(
    message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    if _json_mode():
        from roadseg import progress

        progress.emit("message", level="warning", message=str(message))
    else:
        print(f"warning: {message}", file=sys.stderr)


def _echo(text: str) -> None:
    if _json_mode():
        from roadseg import progress

        progress.emit("message", level="info", message=text)
    else:
        typer.echo(text, err=True)


#: longest error line printed: a value echoed from a hostile input (a YAML alias bomb's repr
#: was 34.7 MB) is cut, the start says what and where
MAX_ERROR = 400


def _error(text: str, code: int) -> int:
    """The one error line (or event), capped at MAX_ERROR characters, and the exit code."""
    text = " ".join(text.split())
    if len(text) > MAX_ERROR:
        text = text[: MAX_ERROR - 1] + "…"
    if _json_mode():
        from roadseg import progress

        progress.emit("error", message=text, exit_code=code)
    else:
        print(f"error: {text}", file=sys.stderr)
    return code


@app.command("models")
def models_cmd(verbose: Verbose = False, quiet: Quiet = False) -> None:
    """List the model architectures with their parameter counts."""
    _setup(verbose, quiet)
    from roadseg.catalog import ARCHITECTURES  # data only: no torch import, no model built

    width = max(len(name) for name in ARCHITECTURES)
    typer.echo(f"{'name':<{width}} {'params':>9}  description")
    for name, (description, n) in sorted(ARCHITECTURES.items()):
        typer.echo(f"{name:<{width}} {n / 1e6:>8.2f}M  {description}")


@app.command("info")
def info_cmd(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            help="A roadseg checkpoint, official D-LinkNet .th or exported .onnx file (default: the "
            "bundled model predict uses here)."
        ),
    ] = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Print what a model file holds (without one: the bundled model predict uses)."""
    _setup(verbose, quiet)
    from roadseg.inference.runtime import read_model_info
    from roadseg.weights import default_onnx

    # the bundled model's ONNX twin holds the same weights (a test checks it) and reads without
    # importing torch: 0.4 s instead of 4
    checkpoint = checkpoint or default_onnx()
    info, parameters = read_model_info(checkpoint)
    rows = [
        ("file", str(checkpoint)),
        ("source", info.source),
        ("architecture", info.arch),
        ("arch kwargs", str(info.arch_kwargs)),
        ("parameters", "unknown" if parameters is None else f"{parameters:,}"),
        ("input channels", str(info.in_channels)),
        ("normalization", info.normalization.describe()),
        (
            "model GSD",
            "unknown" if info.gsd_m is None else f"{info.gsd_m:g} m (predict resamples scenes to it)",
        ),
        ("threshold", f"{info.threshold:g}"),
    ]
    rows += [(f"meta.{k}", _short(v)) for k, v in info.meta.items()]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        typer.echo(f"{key:<{width}} {value}")


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 100 else text[:97] + "..."


@app.command("export")
def export_cmd(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(help="A roadseg checkpoint or official D-LinkNet .th (default: the bundled model)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="The ONNX file to write (.onnx).")] = Path("roadseg.onnx"),
    tile_size: Annotated[
        int,
        typer.Option(
            help="The model's input size (square, pixels; 512 is fastest on CPU), also written for Deepness."
        ),
    ] = 512,
    overlap: Annotated[int, typer.Option(help="Tile overlap written for Deepness (pixels).")] = 64,
    dynamic: Annotated[
        bool,
        typer.Option(
            "--dynamic",
            help="Any input size (multiples of 32) instead of --tile-size: for ONNX Runtime and "
            "roadseg; QGIS Deepness needs the fixed size.",
        ),
    ] = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Export a model to ONNX (opset 18, IR 9, dynamic batch) for QGIS Deepness, ONNX Runtime and
    roadseg predict --checkpoint model.onnx."""
    _setup(verbose, quiet)
    _need_torch("export", "roadseg[onnx]")
    from roadseg.onnx_model import export_onnx
    from roadseg.weights import default_checkpoint

    checkpoint = checkpoint or default_checkpoint()
    check_outputs({"checkpoint": checkpoint}, {"--out": (out, "onnx")})
    meta = export_onnx(checkpoint, out, tile_size=tile_size, overlap=overlap, dynamic=dynamic)
    if not quiet:
        info = meta["roadseg"]
        size = (
            f"H, W multiples of {info['size_divisor']}"
            if dynamic
            else f"H = W = {tile_size} (what Deepness runs; --dynamic for any size)"
        )
        _echo(
            f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): {info['arch']}, input 'image' "
            f"(N, {info['in_channels']}, H, W) normalized RGB with {size}, output 'probability' (N, 1, H, W)"
        )


@app.command("predict")
def predict_cmd(
    scenes: Annotated[
        list[Path],
        typer.Argument(
            help="Input raster(s) (GeoTIFF, COG, VRT, JPEG, PNG), any size; several, a folder, a glob "
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
        str, typer.Option(help="Test-time augmentation: none, flip (4 views), d4 (8 views).")
    ] = "d4",
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
    prob_dtype: Annotated[str, typer.Option(help="uint8 (0-255) or float32 (0-1).")] = "uint8",
    preview: Annotated[Path | None, typer.Option(help="PNG: scene, probability and road lines.")] = None,
    out_dir: Annotated[
        str | None,
        typer.Option(
            metavar="DIR", help="Many scenes: <stem>.prob.tif and <stem>.roads.* here, plus manifest.csv."
        ),
    ] = None,
    vector_format: Annotated[str, typer.Option(help="With --out-dir: gpkg, geojson or none.")] = "gpkg",
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
    _setup(verbose, quiet)
    from roadseg.inference.predict import PredictOptions
    from roadseg.io.raster import parse_bands
    from roadseg.scenes import SceneOutputs

    opts = PredictOptions(
        tta=tta,
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        bands=parse_bands(bands),
        threshold=threshold,
        gsd=gsd,
        pixel_size=pixel_size,
        amp=amp,
        prob_dtype=prob_dtype,
        progress=not quiet,
        style=style,
        threads=threads,
    )
    single = {"--out": out, "--prob-out": prob_out, "--mask-out": mask_out, "--preview": preview}
    out_folder = _path_arg(out_dir, "--out-dir")
    if out_folder is not None or len(scenes) > 1:
        if out_folder is None:
            raise InputError(f"{len(scenes)} scenes need --out-dir DIR for their outputs")
        if any(v is not None for v in single.values()):
            raise InputError(
                "with --out-dir, outputs are named after each scene: drop --out, --prob-out, --mask-out and --preview"
            )
        _predict_many(
            scenes, out_folder, checkpoint, opts, SceneOutputs(vector_format, write_mask), cluster, quiet
        )
    elif cluster is not None:
        raise InputError("--cluster runs many scenes: give --out-dir DIR for their outputs")
    else:
        _predict_one(scenes[0], checkpoint, single, opts, quiet)


def _predict_one(
    scene: Path, checkpoint: Path | None, single: dict[str, Path | None], opts: Any, quiet: bool
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
    check_job(job, checkpoint=checkpoint, style=opts.style)
    predictor = load_predictor(checkpoint, device=opts.device, amp=opts.amp)
    result = run_scene(job, predictor, opts)
    if not quiet:
        _report_predict(result.prediction, result.lines, [job.prob, job.mask, job.preview])


def _predict_many(
    args: list[Path],
    out_dir: Path,
    checkpoint: Path | None,
    opts: Any,
    outputs: Any,
    cluster: str | None,
    quiet: bool,
) -> None:
    from roadseg.scenes import MANIFEST, expand_scenes, run_batch

    scenes = expand_scenes(args)
    executor = None
    if cluster is not None:
        from roadseg.cluster import DaskExecutor

        executor = DaskExecutor(cluster)
    manifest = run_batch(
        scenes, out_dir, checkpoint=checkpoint, options=opts, outputs=outputs, executor=executor
    )
    rows = [manifest.rows[str(scene)] for scene in scenes]
    failed = [r for r in rows if r["status"] == "failed"]
    if not quiet:
        _echo(f"{len(rows) - len(failed)} of {len(rows)} scenes done; see {out_dir / MANIFEST}")
    if failed:
        print(
            f"error: {len(failed)} of {len(rows)} scenes failed (first: {failed[0]['scene']}: {failed[0]['error']}); "
            f"their rows in {out_dir / MANIFEST} say why; run the same command again to retry them",
            file=sys.stderr,
        )
        raise typer.Exit(1)


def _report_predict(result: Any, vec: Any, written: list[Path | None]) -> None:
    for p in written:
        if p is not None:
            _echo(f"wrote {p}")
    if vec is not None:
        _echo(f"wrote {vec.path}: {vec.features} road lines in {vec.components} connected networks")
    _echo(
        f"{result.megapixels:.2f} Mpx"
        + (f" ({result.area_km2:.3g} km²)" if result.area_km2 is not None else "")
        + f" in {result.seconds:.1f} s ({result.mpx_per_s:.2f} Mpx/s, "
        + (f"{result.km2_per_h:.3g} km²/h, " if result.km2_per_h is not None else "")
        + f"{result.tiles} tiles, threshold {result.threshold:g}"
        + (f", resampled to {result.model_gsd_m:g} m" if result.resampled else "")
        + ")"
    )


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
    geometry: Annotated[str, typer.Option(help="line (centerline graph) or polygon (road areas).")] = "line",
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
    _setup(verbose, quiet)
    from roadseg.vectorize.tool import VectorizeOptions, vectorize_raster

    opts = VectorizeOptions(
        threshold=threshold,
        min_length_m=min_length_m,
        spur_length_m=spur_length_m,
        gap_m=gap_m,
        simplify_m=simplify_m,
        block_size=block_size,
        geometry=geometry,
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
        _echo(
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


@app.command("train")
def train_cmd(
    config: Annotated[str | None, typer.Option(metavar="PATH", help="YAML config (see configs/).")] = None,
    data: Annotated[
        str | None, typer.Option(metavar="DIR", help="Data folder (overrides data.root).")
    ] = None,
    out: Annotated[
        str | None, typer.Option(metavar="DIR", help="Run folder (default runs/<arch>-<time>).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Total epochs (a resumed run continues up to it).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size per process.")] = None,
    crop_size: Annotated[int | None, typer.Option(help="Training crop side (multiple of 32).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N, mps.")] = None,
    resume: Annotated[
        str | None, typer.Option(metavar="DIR", help="Continue the run in this folder exactly.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace the run already in --out (its checkpoints are lost).")
    ] = False,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop cleanly after this many minutes (resumable).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: key.sub=value.")
    ] = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Train a road model (D-LinkNet recipe); multi-GPU with torchrun."""
    _setup(verbose, quiet)
    _need_torch("train", "roadseg[torch]")
    config_path, data_path = _path_arg(config, "--config"), _path_arg(data, "--data")
    out_path, resume_path = _path_arg(out, "--out"), _path_arg(resume, "--resume")
    import time as _time

    from roadseg.config import load_config
    from roadseg.train.loop import fit

    overrides = list(set_ or [])
    for key, value in (
        ("data.root", data_path),
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("data.crop_size", crop_size),
        ("device", device),
        ("max_minutes", max_minutes),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    if resume_path is not None:
        if not (resume_path / "last.pt").is_file():
            what = (
                "does not exist"
                if not resume_path.exists()
                else "is a file (give the run folder that holds it)"
                if resume_path.is_file()
                else "holds no run (no last.pt)"
            )
            raise InputError(
                f"--resume '{resume_path}' {what}; --resume takes the --out folder of an earlier run"
            )
        if config_path is None:
            config_path = resume_path / "config.yaml"
        run_dir = resume_path
        if max_minutes is None:  # a time limit belongs to one invocation, not to the run
            overrides.append("max_minutes=0")
    cfg = load_config(config_path, overrides)
    if resume_path is None:
        run_dir = out_path or Path("runs") / f"{cfg.model.arch}-{_time.strftime('%Y%m%d-%H%M%S')}"
    inputs = {"--config": config_path} if config_path is not None and resume_path is None else {}
    row = fit(
        cfg, run_dir, resume=resume_path is not None, overwrite=overwrite, progress=not quiet, inputs=inputs
    )
    if not quiet and row:
        _echo(f"run folder {run_dir}: last.pt, best.pt, log.csv")


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
            "--map", help="The existing road map: .osm, .osm.pbf, .geojson or .gpkg lines, any CRS."
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
    _setup(verbose, quiet)
    from roadseg.conflate.match import MatchOptions
    from roadseg.conflate.tool import OUTPUTS, ConflateOptions, conflate
    from roadseg.io.paths import RASTER_SUFFIXES

    folder = _path_arg(out_dir, "--out-dir")
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
    )
    with contextlib.ExitStack() as stack:
        area = None
        if roads.suffix.lower() in RASTER_SUFFIXES:  # a scene: predict and vectorize it first
            from roadseg.inference.predict import PredictOptions, predict_raster
            from roadseg.io.raster import open_raster
            from roadseg.vectorize.tool import VectorizeOptions, vectorize_raster

            with open_raster(roads) as ds:
                if ds.crs is None:
                    raise InputError(f"scene '{roads}' has no CRS: conflation compares map coordinates")
                from shapely.geometry import box

                area = box(*ds.bounds)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=folder, prefix=".roadseg-")))
            result = predict_raster(
                roads,
                checkpoint=checkpoint,
                prob_out=tmp / "prob.tif",
                options=PredictOptions(progress=not quiet, style=False),
            )
            vectorize_raster(
                tmp / "prob.tif",
                tmp / "roads.gpkg",
                VectorizeOptions(
                    threshold=result.threshold,
                    progress=not quiet,
                    style=False,
                    source_name=f"the prediction of '{roads}'",
                ),
            )
            roads_file = tmp / "roads.gpkg"
        else:
            roads_file = roads
        summary = conflate(roads_file, map_path, folder, opts, area=area)
    if not quiet:
        s = summary
        _echo(
            f"mapped {s['mapped_km']:.2f} km, predicted {s['predicted_km']:.2f} km, of which {s['matched_km']:.2f} km "
            f"on the map; {s['missing_roads']} missing road(s), {s['missing_km']:.2f} km; "
            f"{s['unsupported_roads']} mapped road(s) without support, {s['unsupported_km']:.2f} km"
        )
        comp = s["completeness"]
        _echo(
            f"completeness {'n/a' if comp is None else f'{comp:.0%}'} (predicted roads already mapped); "
            f"wrote {folder}/: {', '.join(OUTPUTS)}"
        )


@app.command("evaluate")
def evaluate_cmd(
    pred: Annotated[Path, typer.Option(help="Prediction: raster(s) or line layer(s), file or folder.")],
    truth: Annotated[Path, typer.Option(help="Truth, of the same kind, paired by file id.")],
    relax_px: Annotated[int, typer.Option(min=0, help="Relaxed precision/recall tolerance (pixels).")] = 3,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    per_image: Annotated[Path | None, typer.Option(help="Write per-image rows to this CSV.")] = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Score predictions: pixel IoU/F1/relaxed P-R/breakeven, or graph APLS/TOPO."""
    _setup(verbose, quiet)
    import csv
    import json

    from roadseg.evaluate.tool import evaluate

    check_outputs({"--pred": pred, "--truth": truth}, {"--per-image": (per_image, "csv")})
    res = evaluate(pred, truth, relax_px=relax_px)
    if per_image is not None and res.rows:
        from roadseg.io.atomic import atomic_path

        with atomic_path(per_image) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(res.rows[0]))
            writer.writeheader()
            writer.writerows(res.rows)
    if json_:
        typer.echo(json.dumps({k: round(v, 6) for k, v in res.metrics.items()}))
        return
    typer.echo(f"{'metric':<20} value   ({len(res.rows)} pair(s))")
    for key, value in res.metrics.items():
        typer.echo(f"{key:<20} {value:.4f}")


INTERRUPTED = "interrupted; no partial output was left behind"
TERMINATED = "terminated (SIGTERM); no partial output was left behind"


def _one_line(exc: BaseException) -> str:
    """The message as one line; an error re-raised from a DataLoader worker carries the worker's
    traceback in its text, of which the last line is the message."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and "DataLoader worker" in lines[0]:
        last = lines[-1]
        return last.split(": ", 1)[1] if last.startswith("roadseg.errors.") else last
    return " ".join(lines)


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (job schedulers, ``timeout``, torchrun stopping a failed job) unwinds like
    Ctrl-C, so every temporary file is removed on the way out."""
    _STATE["terminated"] = True
    raise KeyboardInterrupt


def _interrupted() -> int:
    text, code = (TERMINATED, 143) if _STATE.get("terminated") else (INTERRUPTED, 130)
    if _json_mode():
        return _error(text.removeprefix("error: "), code)
    print(text, file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map errors to one-line messages and exit codes."""
    _STATE["terminated"] = False
    from roadseg import progress

    progress.set_mode("bar")  # until the --progress option is read
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rv = app(args=argv, prog_name="roadseg", standalone_mode=False)
        if rv == 130:  # typer turns Ctrl-C into Exit(130) and, not standalone, returns the code
            return _interrupted()
        return rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        return int(exc.exit_code)
    except ClickException as exc:  # usage errors: one line too, with where to read more
        ctx = getattr(exc, "ctx", None)
        where = (
            f"roadseg {ctx.info_name} --help"
            if ctx is not None and ctx.info_name != "roadseg"
            else "roadseg --help"
        )
        return _error(f"{exc.format_message()} (see {where})", int(exc.exit_code))
    except (KeyboardInterrupt, typer.Abort):
        return _interrupted()
    except RoadsegError as exc:
        if _STATE["terminated"]:  # SIGTERM inside a GDAL call comes back as GDAL's read error
            return _interrupted()
        if _STATE["verbose"]:
            traceback.print_exc()
        return _error(_one_line(exc), 2 if isinstance(exc, InputError) else 1)
    except Exception as exc:  # noqa: BLE001 - last resort: one line unless -v
        if _STATE["terminated"]:
            return _interrupted()
        if _STATE["verbose"]:
            traceback.print_exc()
        return _error(f"{type(exc).__name__}: {exc} (run with -v for the traceback)", 1)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run() -> None:
    """Console-script wrapper."""
    sys.exit(main())
