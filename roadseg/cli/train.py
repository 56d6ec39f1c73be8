"""roadseg train: flags into config overrides, then the training loop."""

from __future__ import annotations

from typing import Annotated

import typer

from roadseg.cli._app import STATE, Quiet, Verbose, app, echo, need_torch, path_arg, setup
from roadseg.errors import RunInterrupted


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
    quiet = setup(verbose, quiet)
    need_torch("train", "roadseg[torch]")
    config_path, data_path = path_arg(config, "--config"), path_arg(data, "--data")
    out_path, resume_path = path_arg(out, "--out"), path_arg(resume, "--resume")
    from roadseg.train.loop import TrainRequest
    from roadseg.train.loop import train as _train

    try:
        run_dir, row = _train(
            TrainRequest(
                config=config_path,
                out=out_path,
                resume=resume_path,
                overwrite=overwrite,
                overrides=tuple(set_ or ()),
                flags={
                    "data.root": data_path,
                    "epochs": epochs,
                    "batch_size": batch_size,
                    "data.crop_size": crop_size,
                    "device": device,
                    "max_minutes": max_minutes,
                },
            ),
            progress=not quiet,
        )
    except RunInterrupted as exc:  # the CLI's Ctrl-C line says where the kept run is
        STATE["kept"] = (
            f"the run is kept at its last checkpoint: continue it with roadseg train --resume {exc.run_dir}"
        )
        raise
    if not quiet and row:
        echo(f"run folder {run_dir}: last.pt, best.pt, log.csv")
