"""roadseg evaluate: pixel and graph scores of predictions against truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from roadseg.cli._app import Quiet, Verbose, app, setup
from roadseg.io.paths import check_outputs


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
    quiet = setup(verbose, quiet)
    import json

    from roadseg.evaluate.tool import evaluate

    check_outputs({"--pred": pred, "--truth": truth}, {"--per-image": (per_image, "csv")})
    res = evaluate(pred, truth, relax_px=relax_px)
    if per_image is not None:
        res.write_rows(per_image)
    if json_:
        typer.echo(json.dumps({k: round(v, 6) for k, v in res.metrics.items()}))
        return
    typer.echo(f"{'metric':<20} value   ({len(res.rows)} pair(s))")
    for key, value in res.metrics.items():
        typer.echo(f"{key:<20} {value:.4f}")
