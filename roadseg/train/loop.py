"""The training tool: ``fit(config, run_dir)``. DDP-aware (torchrun), AMP, exact resume.

Under ``torchrun --nproc_per_node N -m roadseg train ...`` each process trains on its shard
(DistributedSampler) inside DistributedDataParallel; rank 0 logs and saves. A checkpoint
(``last.pt``) holds the model in roadseg's checkpoint format plus the optimizer, scheduler,
AMP scaler, RNG states, epoch and step, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from roadseg.checkpoint import load_model, read_checkpoint, save_model
from roadseg.config import TrainConfig, config_from_dict, save_config, to_dict
from roadseg.devices import amp_dtype, autocast, channels_last, resolve_device
from roadseg.errors import InputError, RoadsegError
from roadseg.evaluate.pixel import Confusion
from roadseg.io.paths import check_run_folder
from roadseg.models import create_model
from roadseg.normalization import IMAGENET, OFFICIAL_DLINKNET, Normalization
from roadseg.train.dataset import build_datasets, discover
from roadseg.train.losses import bce_dice_loss

log = logging.getLogger(__name__)

#: what a run folder holds; their presence marks a run that --resume or --overwrite must name
RUN_FILES = ("config.yaml", "log.csv", "last.pt", "best.pt")
LOG_FIELDS = ["epoch", "step", "train_loss", "val_loss", "val_iou", "val_f1", "lr", "images_per_s", "seconds"]


class TrainingDiverged(RoadsegError):
    """The loss became NaN or infinite."""


@dataclass
class DistInfo:
    """Process-group facts; world 1 when not launched by torchrun."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group torchrun set up (env://), NCCL on CUDA, gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=dist.get_rank(), local_rank=local, world=dist.get_world_size())


class _SkipSampler(Sampler[int]):
    """Yields a base sampler's indices from position ``start`` on (mid-epoch resume)."""

    def __init__(self, base: Sampler[int], start: int) -> None:
        self.base, self.start = base, start

    def __iter__(self) -> Iterator[int]:
        for i, idx in enumerate(self.base):
            if i >= self.start:
                yield idx

    def __len__(self) -> int:
        return max(0, len(self.base) - self.start)  # type: ignore[arg-type]


class _EpochPermutation(Sampler[int]):
    """A seeded permutation per epoch (single process)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def _normalization(cfg: TrainConfig, model: nn.Module) -> Normalization:
    if cfg.model.normalization == "encoder":
        return getattr(getattr(model, "encoder", None), "normalization", IMAGENET)
    return OFFICIAL_DLINKNET if cfg.model.normalization == "dlinknet" else IMAGENET


def _init_from(model: nn.Module, cfg: TrainConfig, norm: Normalization) -> None:
    """Copy the weights of ``model.init_checkpoint`` into ``model`` (fine-tuning)."""
    from roadseg.weights import default_checkpoint

    src = cfg.model.init_checkpoint
    path = default_checkpoint() if src == "default" else Path(str(src))
    if not path.is_file():
        raise InputError(f"model.init_checkpoint '{path}' not found; give a checkpoint path or 'default'")
    pretrained, info = load_model(path)
    built = (model.architecture.name, model.architecture.kwargs)
    if (info.arch, info.arch_kwargs) != built:
        raise InputError(
            f"model.init_checkpoint '{path}' holds {info.arch} {info.arch_kwargs} but the config builds "
            f"{built[0]} {built[1]}; set model.arch and model.kwargs to match the checkpoint"
        )
    if info.normalization != norm:
        raise InputError(
            f"model.init_checkpoint '{path}' was trained with input normalization {info.normalization.describe()} "
            f"but the config uses {cfg.model.normalization}; set model.normalization to match"
        )
    model.load_state_dict(pretrained.state_dict())
    log.info("initialised from %s (%s)", path, info.arch)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def _seed_all(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def fit(
    cfg: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train per ``cfg`` into ``run_dir`` (config.yaml, log.csv, last.pt, best.pt).

    With ``resume``, the state in ``run_dir/last.pt`` is restored exactly and training runs
    on up to ``cfg.epochs`` in total. A folder that already holds a run is refused unless
    ``resume`` or ``overwrite`` is given. Returns the last epoch's log row.
    """
    run_dir = Path(run_dir)
    if not resume and not overwrite:
        existing = [name for name in RUN_FILES if (run_dir / name).exists()]
        if existing:
            raise InputError(
                f"run folder '{run_dir}' already holds a run ({', '.join(existing)}); continue it with "
                f"--resume {run_dir}, choose another --out, or pass --overwrite to replace it"
            )
    roots = [Path(str(src.root)) for src in cfg.data.sources] or ([Path(cfg.data.root)] if cfg.data.root else [])
    check_run_folder(run_dir, roots)
    di = init_distributed(cfg.device)
    device = resolve_device(cfg.device) if di.world == 1 or cfg.device == "cpu" else (
        torch.device("cuda", di.local_rank) if torch.cuda.is_available() else torch.device("cpu")
    )  # fmt: skip
    state = None
    if resume:
        ckpt = run_dir / "last.pt"
        if not ckpt.is_file():
            raise InputError(f"--resume: '{ckpt}' not found; is '{run_dir}' a roadseg run folder?")
        state = read_checkpoint(ckpt)
        if "train_state" not in state:
            raise InputError(f"'{ckpt}' holds no training state to resume from")
        saved = config_from_dict(state["meta"]["config"])
        # the saved run defines everything but its length and runtime placement
        cfg = config_from_dict({**to_dict(saved), "epochs": cfg.epochs, "device": cfg.device, "max_minutes": cfg.max_minutes,
                                "data": {**to_dict(saved)["data"], "num_workers": cfg.data.num_workers}})  # fmt: skip
    _seed_all(cfg.seed, cfg.deterministic)

    for source in cfg.data.sources or [cfg.data]:  # a wrong folder is found before any download
        discover(source)
    arch_kwargs = dict(cfg.model.kwargs)
    if cfg.model.encoder_weights is not None and not resume:
        arch_kwargs["encoder_weights"] = cfg.model.encoder_weights
    model = create_model(cfg.model.arch, **arch_kwargs)
    norm = _normalization(cfg, model)
    train_ds, val_ds = build_datasets(cfg.data, norm, cfg.seed)
    divisor = int(getattr(model, "size_divisor", 32))
    if cfg.data.crop_size % divisor:
        raise InputError(f"data.crop_size {cfg.data.crop_size} must be a multiple of {divisor}")
    if val_ds is not None:
        val_ds.pad_multiple = divisor
    if state is not None:  # with EMA, state_dict holds the average and train_state the raw weights
        model.load_state_dict(state["train_state"].get("raw_state_dict", state["state_dict"]))
    elif cfg.model.init_checkpoint is not None:
        _init_from(model, cfg, norm)
    if di.world > 1 and cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
    use_cl = cfg.channels_last and channels_last(device)
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    ema = Ema(model, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None
    if ema is not None and state is not None and "raw_state_dict" in state["train_state"]:
        ema.model.load_state_dict(state["state_dict"])
        ema.updates = int(state["train_state"]["global_step"])
    scored = ema.model if ema is not None else model  # what validation scores and checkpoints hold
    net: nn.Module = model
    if di.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[di.local_rank] if device.type == "cuda" else None)

    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    dtype = amp_dtype(device, cfg.amp)
    amp_ctx = autocast(device, dtype)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    if di.world > 1:
        base_sampler: Any = DistributedSampler(train_ds, num_replicas=di.world, rank=di.rank, shuffle=True, seed=cfg.seed)
    else:
        base_sampler = _EpochPermutation(len(train_ds), cfg.seed)
    loader_kw: dict[str, Any] = {
        "batch_size": cfg.batch_size,
        "num_workers": cfg.data.num_workers,
        "pin_memory": device.type == "cuda",
        "drop_last": len(train_ds) // di.world >= cfg.batch_size,
        "persistent_workers": False,
    }
    steps_per_epoch = len(base_sampler) // cfg.batch_size if loader_kw["drop_last"] else math.ceil(len(base_sampler) / cfg.batch_size)  # type: ignore[arg-type]
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    sched: Any
    if cfg.optim.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(cfg.epochs * steps_per_epoch, 1), eta_min=cfg.optim.min_lr
        )
    else:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=cfg.optim.plateau_factor, patience=cfg.optim.plateau_patience
        )
    start_epoch, start_step, global_step, best_iou = 0, 0, 0, -1.0
    if state is not None:  # after the scheduler is built: its constructor sets the lr
        ts = state["train_state"]
        opt.load_state_dict(ts["optimizer"])
        sched.load_state_dict(ts["scheduler"])
        scaler.load_state_dict(ts["scaler"])
        start_epoch, start_step = ts["epoch"], ts["step_in_epoch"]
        global_step, best_iou = ts["global_step"], ts["best_iou"]
        _set_rng_state(ts["rng"])

    # a new run that fails before its first checkpoint leaves nothing behind
    fresh = di.main and not resume and not (run_dir / "last.pt").exists()
    created = not run_dir.exists()
    if di.main:  # only now: bad data, model or init input leaves no run folder behind
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")

    def save_last(epoch: int, step_in_epoch: int, metrics: dict[str, Any]) -> None:
        if not di.main:
            return
        train_state = {
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "best_iou": best_iou, "rng": _rng_state(),
        }  # fmt: skip
        if ema is not None:
            train_state["raw_state_dict"] = model.state_dict()
        _save(scored, run_dir / "last.pt", cfg, norm, metrics, extra={"train_state": train_state})

    deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes > 0 else None

    def out_of_time() -> bool:
        if deadline is None:
            return False
        flag = torch.tensor(float(time.monotonic() > deadline), device=device)
        if di.world > 1:  # every process stops at the same step, or the collectives hang
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    logger = _CsvLog(run_dir / "log.csv", di.main, resume)
    tb = _tensorboard(run_dir) if di.main else None
    row: dict[str, Any] = {}
    bars: list[Any] = []
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if epoch > start_epoch and out_of_time():  # last.pt already holds this epoch boundary
                _stopped_for_time(cfg, run_dir, epoch, 0)
                break
            if opt.param_groups[0]["lr"] < cfg.optim.min_lr:
                log.info("lr %.2e < min_lr %.2e: stopping", opt.param_groups[0]["lr"], cfg.optim.min_lr)
                break
            train_ds.set_epoch(epoch)
            base_sampler.set_epoch(epoch)
            skip = start_step if epoch == start_epoch else 0
            loader = DataLoader(train_ds, sampler=_SkipSampler(base_sampler, skip * cfg.batch_size), **loader_kw)
            net.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros(2, device=device)  # (sum of losses, batches)
            images = 0
            bar = tqdm(total=steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       disable=not (progress and di.main), leave=False, dynamic_ncols=True)  # fmt: skip
            bars.append(bar)  # closed in `finally` too: an error must stay one line
            step, timed_out = skip, False
            for x, y, v in loader:
                if step >= steps_per_epoch:
                    break
                x, y, v = (t.to(device, non_blocking=True) for t in (x, y, v))
                if use_cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                with amp_ctx:
                    logits = net(x)
                loss = bce_dice_loss(logits, y, v, bce_weight=cfg.optim.bce_weight, dice_weight=cfg.optim.dice_weight)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; the last good "
                        f"checkpoint is {run_dir / 'last.pt'}. Lower optim.lr or disable amp and resume"
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                if cfg.optim.schedule == "cosine":
                    sched.step()
                if ema is not None:
                    ema.update(model)
                loss_sum += torch.stack([loss.detach(), torch.ones((), device=device)])
                images += x.shape[0]
                step += 1
                global_step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
                if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0 and step < steps_per_epoch:
                    save_last(epoch, step, {"epoch": epoch + 1, "step": step})
                if step < steps_per_epoch and out_of_time():
                    timed_out = True
                    break
            bar.close()
            if timed_out:
                save_last(epoch, step, {"epoch": epoch + 1, "step": step})
                _stopped_for_time(cfg, run_dir, epoch, step)
                break
            if di.world > 1:
                dist.all_reduce(loss_sum)
            train_loss = float(loss_sum[0] / loss_sum[1].clamp_min(1))
            seconds = time.perf_counter() - t0
            val = _validate(ema.model if ema is not None else net, val_ds, cfg, device, di, amp_ctx) if val_ds is not None else {}
            monitored = val.get("val_loss", train_loss) if cfg.optim.monitor == "val_loss" else train_loss
            if cfg.optim.schedule == "plateau":
                sched.step(monitored)
            row = {
                "epoch": epoch + 1, "step": global_step, "train_loss": train_loss,
                "val_loss": val.get("val_loss"), "val_iou": val.get("val_iou"), "val_f1": val.get("val_f1"),
                "lr": opt.param_groups[0]["lr"], "images_per_s": images * di.world / max(seconds, 1e-9),
                "seconds": seconds,
            }  # fmt: skip
            logger.write(row)
            if tb is not None:
                for k, value in row.items():
                    if value is not None and k not in ("epoch", "step"):
                        tb.add_scalar(k, value, epoch + 1)
            if di.main:
                log.info(_format_row(row))
            iou = val.get("val_iou")
            if iou is not None and iou > best_iou:
                best_iou = iou
                if di.main:
                    _save(scored, run_dir / "best.pt", cfg, norm, row)
            save_last(epoch + 1, 0, row)
    except BaseException:
        if fresh and not (run_dir / "last.pt").exists():
            _discard_run(run_dir, created)
        raise
    finally:
        for b in bars:
            b.close()
        logger.close()
        if tb is not None:
            tb.close()
        if di.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    return row


class Ema:
    """Exponential moving average of a model's weights and BatchNorm statistics. Small-data
    training is noisy from step to step (validation IoU moved by 0.05 between epochs); the
    average is a smoother model to validate and ship.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates (as timm's ModelEmaV2),
    so the average forgets the random initial decoder within the first hundred steps: with a
    fixed 0.998, 37 % of it was still there after 500 steps and validation scored noise.
    """

    def __init__(self, model: nn.Module, decay: float, updates: int = 0) -> None:
        self.decay = decay
        self.updates = updates  # restored from the global step on resume
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        pairs = [(e, m) for e, m in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True)]
        floats = [(e, m) for e, m in pairs if e.is_floating_point()]
        torch._foreach_lerp_([e for e, _ in floats], [m for _, m in floats], 1 - decay)
        for e, m in pairs:
            if not e.is_floating_point():  # BatchNorm's num_batches_tracked
                e.copy_(m)


def _stopped_for_time(cfg: TrainConfig, run_dir: Path, epoch: int, step: int) -> None:
    where = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
    log.warning("max_minutes (%g) reached at %s: last.pt saved; continue with roadseg train --resume %s",
                cfg.max_minutes, where, run_dir)  # fmt: skip


def _save(model: nn.Module, path: Path, cfg: TrainConfig, norm: Normalization, metrics: dict[str, Any], extra: Any = None) -> None:
    save_model(
        model, path, normalization=norm, gsd_m=cfg.data.gsd_m, threshold=cfg.threshold,
        arch=cfg.model.arch, arch_kwargs=dict(cfg.model.kwargs), extra=extra,
        config=to_dict(cfg), metrics={k: v for k, v in metrics.items() if v is not None},
        torch_version=torch.__version__,
    )  # fmt: skip


def _validate(
    net: nn.Module, ds: Any, cfg: TrainConfig, device: torch.device, di: DistInfo, amp_ctx: Any
) -> dict[str, float]:
    net.eval()
    sampler = DistributedSampler(ds, num_replicas=di.world, rank=di.rank, shuffle=False) if di.world > 1 else None
    # whole images of any size: one per batch
    loader = DataLoader(ds, batch_size=1, sampler=sampler, num_workers=cfg.data.num_workers)
    totals = torch.zeros(5, dtype=torch.float64, device=device)  # loss sum, batches, tp, fp, fn
    with torch.inference_mode():
        for x, y, v in loader:
            x, y, v = (t.to(device) for t in (x, y, v))
            with amp_ctx:
                logits = net(x)
            loss = bce_dice_loss(logits, y, v, bce_weight=cfg.optim.bce_weight, dice_weight=cfg.optim.dice_weight)
            c = Confusion()
            c.update(
                (torch.sigmoid(logits.float()) >= cfg.threshold).cpu().numpy(),
                y.cpu().numpy() > 0.5, v.cpu().numpy() > 0.5,
            )  # fmt: skip
            totals += torch.tensor([float(loss), 1.0, c.tp, c.fp, c.fn], dtype=torch.float64, device=device)
    if di.world > 1:
        dist.all_reduce(totals)
    conf = Confusion(int(totals[2]), int(totals[3]), int(totals[4]))
    return {"val_loss": float(totals[0] / totals[1].clamp_min(1)), "val_iou": conf.iou, "val_f1": conf.f1}


def _format_row(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']}", f"train_loss {row['train_loss']:.4f}"]
    for key in ("val_loss", "val_iou", "val_f1"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.4f}")
    parts += [f"lr {row['lr']:.2e}", f"{row['images_per_s']:.1f} img/s"]
    return "  ".join(parts)


class _CsvLog:
    def __init__(self, path: Path, enabled: bool, append: bool) -> None:
        self.file = None
        if enabled:
            new = not (append and path.exists())
            self.file = open(path, "a" if not new else "w", newline="")  # noqa: SIM115
            self.writer = csv.DictWriter(self.file, fieldnames=LOG_FIELDS)
            if new:
                self.writer.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        if self.file is not None:
            self.writer.writerow(row)
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


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
