"""roadseg models, info and export: what models there are, what a model file holds, ONNX out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from roadseg.cli._app import Quiet, Verbose, app, echo, need_torch, setup
from roadseg.io.paths import check_outputs


@app.command("models")
def models_cmd(verbose: Verbose = False, quiet: Quiet = False) -> None:
    """List the model architectures with their parameter counts."""
    quiet = setup(verbose, quiet)
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
    quiet = setup(verbose, quiet)
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
    quiet = setup(verbose, quiet)
    need_torch("export", "roadseg[onnx]")
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
        echo(
            f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): {info['arch']}, input 'image' "
            f"(N, {info['in_channels']}, H, W) normalized RGB with {size}, output 'probability' (N, 1, H, W)"
        )
