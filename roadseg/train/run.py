"""Building a training run: folder checks, process group, model, data, optimizer, restored state.

:func:`build_run` does every check that can fail on user input before the run folder exists,
so a bad ``--data``, model or init checkpoint leaves nothing behind.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from roadseg.checkpoint import load_model, read_checkpoint
from roadseg.config import TrainConfig, config_from_dict, to_dict
from roadseg.devices import amp_dtype, autocast, channels_last, resolve_device
from roadseg.errors import InputError
from roadseg.io.paths import check_creatable, check_output_path, check_run_folder
from roadseg.models import RoadModel, create_model
from roadseg.normalization import IMAGENET, OFFICIAL_DLINKNET, Normalization
from roadseg.train.dataset import SampleSet, build_datasets, discover
from roadseg.train.samplers import EpochPermutation
from roadseg.train.state import Ema, seed_all, set_rng_state

log = logging.getLogger(__name__)

#: what a run folder holds; their presence marks a run that --resume or --overwrite must name
RUN_FILES = ("config.yaml", "log.csv", "last.pt", "best.pt")


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


@dataclass
class Run:
    """Everything a training run works with; the counters move as it trains."""

    cfg: TrainConfig
    run_dir: Path
    di: DistInfo
    device: torch.device
    model: nn.Module  # the raw weights the optimizer moves
    net: nn.Module  # model, or its DistributedDataParallel wrapper
    ema: Ema | None
    norm: Normalization
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler
    amp_ctx: Any
    use_cl: bool
    train: SampleSet
    val: SampleSet | None
    order: Any  # the index order of an epoch: EpochPermutation, or DistributedSampler across ranks
    loader_kw: dict[str, Any]
    steps_per_epoch: int
    start_epoch: int = 0
    start_step: int = 0
    global_step: int = 0
    best_iou: float = -1.0

    @property
    def scored(self) -> nn.Module:
        """What validation scores and checkpoints hold: the EMA when there is one."""
        return self.ema.model if self.ema is not None else self.model


def check_run_dir(
    cfg: TrainConfig,
    run_dir: Path,
    *,
    resume: bool,
    overwrite: bool,
    inputs: dict[str, Path] | None = None,
) -> None:
    """Refuse a folder holding another run (without resume/overwrite) or inside the data, and
    any run file that would replace a file this run reads (``inputs``: the config file, and the
    init checkpoint or encoder weights named in the config), --overwrite or not."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"run folder '{run_dir}' is a file; --out takes a folder for the run")
    reads = dict(inputs or {})
    if not resume:
        for key, value in (
            ("model.init_checkpoint", cfg.model.init_checkpoint),
            ("model.encoder_weights", cfg.model.encoder_weights),
        ):
            if value not in (None, "default", "imagenet"):
                reads[key] = Path(str(value))
    for name in RUN_FILES:
        mine = os.path.normcase(os.path.realpath(run_dir / name))
        for key, path in reads.items():
            if mine == os.path.normcase(os.path.realpath(path)):
                raise InputError(
                    f"run folder '{run_dir}' would write its {name} over {key} '{path}', which this run reads; "
                    "roadseg never replaces an input, --overwrite or not: choose another --out"
                )
    if not resume and not overwrite:
        existing = [name for name in RUN_FILES if (run_dir / name).exists()]
        if existing:
            raise InputError(
                f"run folder '{run_dir}' already holds a run ({', '.join(existing)}); continue it with "
                f"--resume {run_dir}, choose another --out, or pass --overwrite to replace it"
            )
    roots = [Path(str(src.root)) for src in cfg.data.sources] or (
        [Path(cfg.data.root)] if cfg.data.root else []
    )
    check_run_folder(run_dir, roots)
    if run_dir.is_dir():
        check_output_path(run_dir / "config.yaml")  # a folder we cannot write, found before any work
    else:
        check_creatable(run_dir)


def build_run(cfg: TrainConfig, run_dir: Path, *, resume: bool) -> Run:
    """Model, data, optimizer and schedule for ``cfg``; with ``resume``, the state of last.pt."""
    di = init_distributed(cfg.device)
    device = (
        resolve_device(cfg.device)
        if di.world == 1 or cfg.device == "cpu"
        else (torch.device("cuda", di.local_rank) if torch.cuda.is_available() else torch.device("cpu"))
    )
    state = _saved_state(run_dir) if resume else None
    if state is not None:  # the saved run defines everything but its length and runtime placement
        saved = to_dict(config_from_dict(state["meta"]["config"]))
        cfg = config_from_dict(
            {
                **saved,
                "epochs": cfg.epochs,
                "device": cfg.device,
                "max_minutes": cfg.max_minutes,
                "data": {**saved["data"], "num_workers": cfg.data.num_workers},
            }
        )
    seed_all(cfg.seed, cfg.deterministic)
    sources: list[Any] = [*cfg.data.sources] or [cfg.data]
    for source in sources:  # a wrong folder is found before any download
        discover(source)
    kwargs = dict(cfg.model.kwargs)
    if cfg.model.encoder_weights is not None and not resume:
        kwargs["encoder_weights"] = cfg.model.encoder_weights
    model = create_model(cfg.model.arch, **kwargs)
    norm = _normalization(cfg, model)
    divisor = model.size_divisor
    if cfg.data.crop_size % divisor:
        raise InputError(f"data.crop_size {cfg.data.crop_size} must be a multiple of {divisor}")
    train, val = build_datasets(cfg.data, norm, cfg.seed, pad_multiple=divisor)
    if state is not None:  # with EMA, state_dict holds the average and train_state the raw weights
        model.load_state_dict(state["train_state"].get("raw_state_dict", state["state_dict"]))
    elif cfg.model.init_checkpoint is not None:
        _init_from(model, cfg, norm)
    model, net, ema, use_cl = _place(model, cfg, di, device, state)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    dtype = amp_dtype(device, cfg.amp)
    if di.world > 1:  # DistributedSampler needs only len(): the plan's
        order: Any = DistributedSampler(
            train.plan,  # type: ignore[arg-type]
            num_replicas=di.world,
            rank=di.rank,
            shuffle=True,
            seed=cfg.seed,
        )
    else:
        order = EpochPermutation(len(train), cfg.seed)
    drop_last = len(train) // di.world >= cfg.batch_size
    loader_kw = {
        "batch_size": cfg.batch_size,
        "num_workers": cfg.data.num_workers,
        "pin_memory": device.type == "cuda",
        "drop_last": drop_last,
        "persistent_workers": False,
    }
    steps = len(order) // cfg.batch_size if drop_last else math.ceil(len(order) / cfg.batch_size)
    steps = min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps
    run = Run(
        cfg=cfg,
        run_dir=run_dir,
        di=di,
        device=device,
        model=model,
        net=net,
        ema=ema,
        norm=norm,
        opt=opt,
        sched=_scheduler(cfg, opt, steps),
        scaler=torch.amp.GradScaler("cuda", enabled=dtype == torch.float16),
        amp_ctx=autocast(device, dtype),
        use_cl=use_cl,
        train=train,
        val=val,
        order=order,
        loader_kw=loader_kw,
        steps_per_epoch=steps,
    )
    if state is not None:  # after the scheduler is built: its constructor sets the lr
        ts = state["train_state"]
        run.opt.load_state_dict(ts["optimizer"])
        run.sched.load_state_dict(ts["scheduler"])
        run.scaler.load_state_dict(ts["scaler"])
        run.start_epoch, run.start_step = ts["epoch"], ts["step_in_epoch"]
        run.global_step, run.best_iou = ts["global_step"], ts["best_iou"]
        set_rng_state(ts["rng"])
        if cfg.optim.schedule == "cosine" and cfg.epochs != state["meta"]["config"]["epochs"]:
            run.sched = _replanned_cosine(run)
    return run


def _replanned_cosine(run: Run) -> Any:
    """A cosine run resumed with another ``--epochs``: the lr goes on from where it is, down a new
    half cosine to ``min_lr`` at the new last step (a run cut short by a time limit still ends
    annealed; a longer one does not jump back up)."""
    done = run.start_epoch * run.steps_per_epoch + run.start_step
    remaining = max(run.cfg.epochs * run.steps_per_epoch - done, 1)
    for group in run.opt.param_groups:
        group["initial_lr"] = group["lr"]  # the new cosine starts at the current lr
    log.info(
        "cosine re-planned for %d epochs: lr %.2e -> %.2e over %d steps",
        run.cfg.epochs,
        run.opt.param_groups[0]["lr"],
        run.cfg.optim.min_lr,
        remaining,
    )
    return torch.optim.lr_scheduler.CosineAnnealingLR(run.opt, T_max=remaining, eta_min=run.cfg.optim.min_lr)


def _saved_state(run_dir: Path) -> dict[str, Any]:
    ckpt = run_dir / "last.pt"
    if not ckpt.is_file():
        raise InputError(f"--resume: '{ckpt}' not found; is '{run_dir}' a roadseg run folder?")
    state = read_checkpoint(ckpt)
    if "train_state" not in state:
        raise InputError(f"'{ckpt}' holds no training state to resume from")
    return state


def _place(
    model: RoadModel, cfg: TrainConfig, di: DistInfo, device: torch.device, state: dict[str, Any] | None
) -> tuple[RoadModel, nn.Module, Ema | None, bool]:
    """Device, memory format, EMA (restored on resume) and the DDP wrapper."""
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
    net: nn.Module = model
    if di.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[di.local_rank] if device.type == "cuda" else None
        )
    return model, net, ema, use_cl


def _scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    if cfg.optim.schedule == "cosine":  # per step, over the whole run
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(cfg.epochs * steps_per_epoch, 1), eta_min=cfg.optim.min_lr
        )
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=cfg.optim.plateau_factor, patience=cfg.optim.plateau_patience
    )


def _normalization(cfg: TrainConfig, model: nn.Module) -> Normalization:
    if cfg.model.normalization == "encoder":
        return getattr(getattr(model, "encoder", None), "normalization", IMAGENET)
    return OFFICIAL_DLINKNET if cfg.model.normalization == "dlinknet" else IMAGENET


def _init_from(model: RoadModel, cfg: TrainConfig, norm: Normalization) -> None:
    """Copy the weights of ``model.init_checkpoint`` into ``model`` (fine-tuning)."""
    from roadseg.weights import default_checkpoint

    src = cfg.model.init_checkpoint
    path = default_checkpoint() if src == "default" else Path(str(src))
    if not path.is_file():
        raise InputError(f"model.init_checkpoint '{path}' not found; give a checkpoint path or 'default'")
    pretrained, info = load_model(path)
    if cfg.model.init_scope == "encoder":
        _init_encoder_from(model, pretrained, path, info, norm, cfg)
        return
    assert model.architecture is not None  # create_model sets it
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


def _init_encoder_from(
    model: nn.Module, pretrained: nn.Module, path: Path, info: Any, norm: Normalization, cfg: TrainConfig
) -> None:
    """Copy only the encoder of ``pretrained`` (``model.init_scope: encoder``)."""
    theirs, ours = getattr(pretrained, "encoder", None), getattr(model, "encoder", None)
    if theirs is None or ours is None:
        raise InputError(
            f"model.init_scope 'encoder' needs encoder-based models; '{path}' holds {info.arch} and the "
            f"config builds {cfg.model.arch}"
        )
    src, dst = theirs.state_dict(), ours.state_dict()
    if {k: tuple(v.shape) for k, v in src.items()} != {k: tuple(v.shape) for k, v in dst.items()}:
        raise InputError(
            f"the encoder of '{path}' ({info.arch}) does not match the encoder of {cfg.model.arch}; "
            "init_scope 'encoder' needs the same encoder"
        )
    if info.normalization != norm:
        raise InputError(
            f"model.init_checkpoint '{path}' was trained with input normalization {info.normalization.describe()} "
            f"but the config uses {cfg.model.normalization}; set model.normalization to match"
        )
    ours.load_state_dict({k: v.to(dst[k].dtype) for k, v in src.items()})
    log.info("encoder initialised from %s (%s); the rest starts fresh", path, info.arch)
