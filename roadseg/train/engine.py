"""One training epoch and one validation pass of a :class:`~roadseg.train.run.Run`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from roadseg.errors import RoadsegError
from roadseg.evaluate.pixel import Confusion
from roadseg.train.dataset import SampleSet
from roadseg.train.losses import bce_dice_loss
from roadseg.train.run import Run
from roadseg.train.samplers import Draws, SkipSampler


class TrainingDiverged(RoadsegError):
    """The loss became NaN or infinite."""


@dataclass
class EpochResult:
    train_loss: float
    images: int
    seconds: float
    step: int  # steps done in this epoch
    timed_out: bool


def _loss(cfg: Any, logits: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The configured training loss (``optim``: BCE and Dice weights, batch or per-image Dice)."""
    o = cfg.optim
    return bce_dice_loss(
        logits, y, v, bce_weight=o.bce_weight, dice_weight=o.dice_weight, per_image=o.dice == "image"
    )


def train_epoch(
    run: Run,
    epoch: int,
    *,
    bar: Any,
    out_of_time: Callable[[], bool],
    checkpoint: Callable[[int, int], None],
) -> EpochResult:
    """Train ``epoch`` (from ``run.start_step`` when it is the resumed one); ``checkpoint(epoch,
    step)`` is called every ``checkpoint_every`` steps, and the epoch stops early at the
    step where ``out_of_time()`` says so."""
    cfg, device = run.cfg, run.device
    run.order.set_epoch(epoch)
    skip = run.start_step if epoch == run.start_epoch else 0
    draws = Draws(run.train.plan, SkipSampler(run.order, skip * cfg.batch_size), epoch)
    loader = DataLoader(run.train.dataset, sampler=draws, **run.loader_kw)
    run.net.train()
    t0 = time.perf_counter()
    loss_sum = torch.zeros(2, device=device)  # (sum of losses, batches)
    images, step = 0, skip
    for batch in loader:
        if step >= run.steps_per_epoch:
            break
        x, y, v = (batch[k].to(device, non_blocking=True) for k in ("image", "mask", "valid"))
        if run.use_cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with run.amp_ctx:
            out = run.net(x)
        # deep supervision (UNet++): the mean of every head's loss, as the paper trains
        heads = out if isinstance(out, list) else [out]
        loss = torch.stack([_loss(cfg, o, y, v) for o in heads]).mean()
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; the last good "
                f"checkpoint is {run.run_dir / 'last.pt'}. Lower optim.lr or disable amp and resume"
            )
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.opt)
        run.scaler.update()
        if cfg.optim.schedule == "cosine":
            run.sched.step()
        if run.ema is not None:
            run.ema.update(run.model)
        loss_sum += torch.stack([loss.detach(), torch.ones((), device=device)])
        images += x.shape[0]
        step += 1
        run.global_step += 1
        bar.update(1)
        if step % 25 == 1:  # .item() waits for the GPU: not every step
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if (
            cfg.checkpoint_every
            and run.global_step % cfg.checkpoint_every == 0
            and step < run.steps_per_epoch
        ):
            checkpoint(epoch, step)
        if step < run.steps_per_epoch and out_of_time():
            return EpochResult(0.0, images, time.perf_counter() - t0, step, True)
    if run.di.world > 1:
        dist.all_reduce(loss_sum)
    return EpochResult(
        float(loss_sum[0] / loss_sum[1].clamp_min(1)), images, time.perf_counter() - t0, step, False
    )


def validate(net: nn.Module, data: SampleSet, run: Run) -> dict[str, float]:
    """Loss, IoU and F1 over whole validation images (summed over images, as DeepGlobe scores)."""
    cfg, device, di = run.cfg, run.device, run.di
    net.eval()
    order: Iterable[int] = (
        DistributedSampler(data.plan, num_replicas=di.world, rank=di.rank, shuffle=False)  # type: ignore[arg-type]
        if di.world > 1
        else range(len(data))
    )
    # whole images of any size: one per batch
    loader = DataLoader(
        data.dataset, batch_size=1, sampler=Draws(data.plan, order), num_workers=cfg.data.num_workers
    )
    totals = torch.zeros(5, dtype=torch.float64, device=device)  # loss sum, batches, tp, fp, fn
    with torch.inference_mode():
        for batch in loader:
            x, y, v = (batch[k].to(device) for k in ("image", "mask", "valid"))
            with run.amp_ctx:
                logits = net(x)
            loss = _loss(cfg, logits, y, v)
            c = Confusion()
            c.update(
                (torch.sigmoid(logits.float()) >= cfg.threshold).cpu().numpy(),
                y.cpu().numpy() > 0.5,
                v.cpu().numpy() > 0.5,
            )
            totals += torch.tensor([float(loss), 1.0, c.tp, c.fp, c.fn], dtype=torch.float64, device=device)
    if di.world > 1:
        dist.all_reduce(totals)
    conf = Confusion(int(totals[2]), int(totals[3]), int(totals[4]))
    return {"val_loss": float(totals[0] / totals[1].clamp_min(1)), "val_iou": conf.iou, "val_f1": conf.f1}
