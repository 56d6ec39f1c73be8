"""The training tool: ``fit(config, run_dir)``. DDP-aware (torchrun), AMP, EMA, exact resume.

Under ``torchrun --nproc_per_node N -m roadseg train ...`` each process trains on its shard
(DistributedSampler) inside DistributedDataParallel; rank 0 logs and saves. The parts:
``run.py`` builds the run, ``engine.py`` trains an epoch and validates, ``state.py`` saves and
restores what ``--resume`` needs. This module orders them and keeps the log.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from roadseg.config import TrainConfig, save_config
from roadseg.errors import InputError, RunInterrupted
from roadseg.progress import bar as progress_bar
from roadseg.train.engine import TrainingDiverged, train_epoch, validate
from roadseg.train.run import Run, build_run, check_run_dir
from roadseg.train.state import rng_state, save_checkpoint

__all__ = ["TrainingDiverged", "fit"]

log = logging.getLogger(__name__)

LOG_FIELDS = ["epoch", "step", "train_loss", "val_loss", "val_iou", "val_f1", "lr", "images_per_s", "seconds"]


@dataclass(frozen=True)
class TrainRequest:
    """What ``roadseg train`` was asked: a config (or the run to resume), typed flags that
    override config keys (``flags``: key -> value, None: not given) and ``--set`` overrides."""

    config: Path | None = None
    out: Path | None = None
    resume: Path | None = None
    overwrite: bool = False
    overrides: tuple[str, ...] = ()
    flags: dict[str, Any] = field(default_factory=dict)


def train(request: TrainRequest, *, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Resolve the config and the run folder of ``request`` and :func:`fit` it; returns the run
    folder and the last epoch's row. ``--resume DIR`` reads DIR/config.yaml unless a config is
    given, and a time limit belongs to one invocation, not to the run."""
    from roadseg.config import load_config

    overrides = list(request.overrides)
    overrides += [f"{key}={value}" for key, value in request.flags.items() if value is not None]
    config_path, resume = request.config, request.resume
    if resume is not None:
        if not (resume / "last.pt").is_file():
            what = (
                "does not exist"
                if not resume.exists()
                else "is a file (give the run folder that holds it)"
                if resume.is_file()
                else "holds no run (no last.pt)"
            )
            raise InputError(f"--resume '{resume}' {what}; --resume takes the --out folder of an earlier run")
        if config_path is None:
            config_path = resume / "config.yaml"
        if request.flags.get("max_minutes") is None:
            overrides.append("max_minutes=0")
    cfg = load_config(config_path, overrides)
    if resume is not None:
        run_dir = resume
    else:
        run_dir = request.out or Path("runs") / f"{cfg.model.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    inputs = {"--config": config_path} if config_path is not None and resume is None else {}
    row = fit(
        cfg, run_dir, resume=resume is not None, overwrite=request.overwrite, progress=progress, inputs=inputs
    )
    return run_dir, row


def fit(
    cfg: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    inputs: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Train per ``cfg`` into ``run_dir`` (config.yaml, log.csv, last.pt, best.pt).

    With ``resume``, the state in ``run_dir/last.pt`` is restored exactly and training runs
    on up to ``cfg.epochs`` in total. A folder that already holds a run is refused unless
    ``resume`` or ``overwrite`` is given; no run file may replace a file the run reads
    (``inputs``, e.g. {"--config": path}, and the checkpoints its config names). Returns the last
    epoch's log row.
    """
    run_dir = Path(run_dir)
    check_run_dir(cfg, run_dir, resume=resume, overwrite=overwrite, inputs=inputs)
    run = build_run(cfg, run_dir, resume=resume)
    cfg, di = run.cfg, run.di
    fresh = di.main and not resume and not (run_dir / "last.pt").exists()  # may be discarded on failure
    created = not run_dir.exists()
    if di.main:  # only now: bad data, model or init input leaves no run folder behind
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes > 0 else None
    logger, tb = _CsvLog(run_dir / "log.csv", di.main, resume), _tensorboard(run_dir) if di.main else None
    row: dict[str, Any] = {}
    try:
        for epoch in range(run.start_epoch, cfg.epochs):
            if epoch > run.start_epoch and _out_of_time(run, deadline):  # last.pt holds this boundary
                _stopped_for_time(run, epoch, 0)
                break
            if run.opt.param_groups[0]["lr"] < cfg.optim.min_lr:
                log.info("lr %.2e < min_lr %.2e: stopping", run.opt.param_groups[0]["lr"], cfg.optim.min_lr)
                break
            with progress_bar(
                run.steps_per_epoch,
                f"epoch {epoch + 1}/{cfg.epochs}",
                unit="step",
                enabled=progress and di.main,
                initial=run.start_step if epoch == run.start_epoch else 0,
            ) as bar:  # closed on errors too: one-line errors
                res = train_epoch(
                    run,
                    epoch,
                    bar=bar,
                    out_of_time=lambda: _out_of_time(run, deadline),
                    checkpoint=lambda e, s: _save_last(run, e, s, {"epoch": e + 1, "step": s}),
                )
            if res.timed_out:
                _save_last(run, epoch, res.step, {"epoch": epoch + 1, "step": res.step})
                _stopped_for_time(run, epoch, res.step)
                break
            row = _end_of_epoch(run, epoch, res)
            logger.write(row)
            _tensorboard_row(tb, row)
    except BaseException as exc:
        if fresh and not (run_dir / "last.pt").exists():
            _discard_run(run_dir, created)
        elif isinstance(exc, KeyboardInterrupt) and not isinstance(exc, RunInterrupted):
            raise RunInterrupted(run_dir) from exc  # kept at its last checkpoint, on purpose
        raise
    finally:
        logger.close()
        if tb is not None:
            tb.close()
        if di.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    return row


def _end_of_epoch(run: Run, epoch: int, res: Any) -> dict[str, Any]:
    """Validate, step a plateau schedule, keep best.pt and last.pt; the log row."""
    cfg = run.cfg
    val = (
        validate(run.ema.model if run.ema is not None else run.net, run.val, run)
        if run.val is not None
        else {}
    )
    if cfg.optim.schedule == "plateau":
        run.sched.step(
            val.get("val_loss", res.train_loss) if cfg.optim.monitor == "val_loss" else res.train_loss
        )
    row = {
        "epoch": epoch + 1,
        "step": run.global_step,
        "train_loss": res.train_loss,
        "val_loss": val.get("val_loss"),
        "val_iou": val.get("val_iou"),
        "val_f1": val.get("val_f1"),
        "lr": run.opt.param_groups[0]["lr"],
        "images_per_s": res.images * run.di.world / max(res.seconds, 1e-9),
        "seconds": res.seconds,
    }
    if run.di.main:
        log.info(_format_row(row))
    iou = val.get("val_iou")
    if iou is not None and iou > run.best_iou:
        run.best_iou = iou
        if run.di.main:
            save_checkpoint(run.scored, run.run_dir / "best.pt", cfg, run.norm, row)
    _save_last(run, epoch + 1, 0, row)
    return row


def _save_last(run: Run, epoch: int, step_in_epoch: int, metrics: dict[str, Any]) -> None:
    """last.pt: the scored weights plus everything --resume restores."""
    if not run.di.main:
        return
    train_state = {
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": epoch,
        "step_in_epoch": step_in_epoch,
        "global_step": run.global_step,
        "best_iou": run.best_iou,
        "rng": rng_state(),
    }
    if run.ema is not None:
        train_state["raw_state_dict"] = run.model.state_dict()
    save_checkpoint(
        run.scored, run.run_dir / "last.pt", run.cfg, run.norm, metrics, extra={"train_state": train_state}
    )


def _out_of_time(run: Run, deadline: float | None) -> bool:
    if deadline is None:
        return False
    flag = torch.tensor(float(time.monotonic() > deadline), device=run.device)
    if run.di.world > 1:  # every process stops at the same step, or the collectives hang
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _stopped_for_time(run: Run, epoch: int, step: int) -> None:
    where = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
    log.warning(
        "max_minutes (%g) reached at %s: last.pt saved; continue with roadseg train --resume %s",
        run.cfg.max_minutes,
        where,
        run.run_dir,
    )


def _format_row(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']}", f"train_loss {row['train_loss']:.4f}"]
    for key in ("val_loss", "val_iou", "val_f1"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.4f}")
    parts += [f"lr {row['lr']:.2e}", f"{row['images_per_s']:.1f} img/s"]
    return "  ".join(parts)


class _CsvLog:
    """log.csv, one row per epoch, rewritten whole and atomically after each: a run killed
    mid-write leaves the previous rows intact, never a torn line."""

    def __init__(self, path: Path, enabled: bool, append: bool) -> None:
        self.path = path
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        if enabled and append and path.exists():
            with open(path, newline="") as f:
                self.rows = list(csv.DictReader(f))
        if enabled:
            self._flush()

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            self.rows.append(row)
            self._flush()

    def _flush(self) -> None:
        from roadseg.io.atomic import atomic_path

        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)

    def close(self) -> None:
        pass


def _discard_run(run_dir: Path, created: bool) -> None:
    """Remove what a run wrote before failing in its first epoch (no checkpoint to resume)."""
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for name in ("config.yaml", "log.csv"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tb", ignore_errors=True)


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tb"))


def _tensorboard_row(tb: Any, row: dict[str, Any]) -> None:
    if tb is not None:
        for k, value in row.items():
            if value is not None and k not in ("epoch", "step"):
                tb.add_scalar(k, value, row["epoch"])
