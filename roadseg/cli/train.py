"""roadseg train: flags into config overrides, then the training loop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from roadseg.cli._app import Quiet, Verbose, app, echo, need_torch, path_arg, setup
from roadseg.errors import InputError


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
    setup(verbose, quiet)
    need_torch("train", "roadseg[torch]")
    config_path, data_path = path_arg(config, "--config"), path_arg(data, "--data")
    out_path, resume_path = path_arg(out, "--out"), path_arg(resume, "--resume")
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
        echo(f"run folder {run_dir}: last.pt, best.pt, log.csv")
