"""Benchmark training throughput: images/s and peak memory for a model at a crop size.

Runs the real training step (loss, backward, Adam, GradScaler for fp16) on random batches
already on the device, after warm-up steps, so the number is the model's, not the data
loader's; ``--inference`` times the forward pass alone, as predict runs it. Each numeric
variant runs in the same process, interleaved over ``--rounds``, and is reported as a ratio
to the float32 NCHW baseline. Usage::

    python scripts/benchmark_train.py --arch unet --arch-kwargs '{"depth": 4, "base_channels": 16}' --crop 256 --batch-size 8
    python scripts/benchmark_train.py --device cuda --batch-size 16    # dlinknet34, 1024^2 on a GPU
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from roadseg.devices import amp_dtype, autocast, resolve_device
from roadseg.models import create_model
from roadseg.train.losses import bce_dice_loss
from roadseg.train.state import Ema

#: (name, channels_last, mixed precision); the first is the baseline.
VARIANTS = [("fp32", False, False), ("fp32 channels_last", True, False), ("amp channels_last", True, True)]


def _runner(args: argparse.Namespace, device: torch.device, cl: bool, amp: bool, ema: bool = False):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    fmt = torch.channels_last if cl else torch.contiguous_format
    model = create_model(args.arch, **json.loads(args.arch_kwargs)).to(device).to(memory_format=fmt)
    model.train(not args.inference)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    dtype = amp_dtype(device, amp)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    x = torch.randn(args.batch_size, 3, args.crop, args.crop, device=device).contiguous(memory_format=fmt)
    y = (torch.rand(args.batch_size, 1, args.crop, args.crop, device=device) > 0.95).float()
    average = Ema(model, args.ema) if ema else None

    def step() -> None:
        if args.inference:
            with torch.inference_mode(), autocast(device, dtype):
                torch.sigmoid(model(x)).float()
            return
        with autocast(device, dtype):
            out = model(x)
        heads = out if isinstance(out, list) else [out]  # UNet++ trains every deep-supervision head
        loss = sum(bce_dice_loss(o, y) for o in heads) / len(heads)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if average is not None:
            average.update(model)

    def timed() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return args.steps * args.batch_size / (time.perf_counter() - t0)

    for _ in range(args.warmup):
        step()
    return timed, dtype


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="dlinknet34")
    ap.add_argument(
        "--arch-kwargs", default='{"encoder_weights": null}', help="JSON keyword arguments for the model"
    )
    ap.add_argument("--crop", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the median is reported")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--inference", action="store_true", help="time the forward pass only (eval mode)")
    ap.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="add a variant that also updates a weight EMA (optim.ema_decay)",
    )
    args = ap.parse_args()
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    runners = {name: _runner(args, device, cl, amp) for name, cl, amp in VARIANTS}
    if args.ema and not args.inference:
        runners["amp channels_last + ema"] = _runner(args, device, True, True, ema=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, (timed, _) in runners.items():
            rates[name].append(timed())
    mem = (
        f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        if device.type == "cuda"
        else f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    )
    what = "inference" if args.inference else "training"
    print(
        f"{what}: {args.arch} {args.crop}^2 batch {args.batch_size} on {device}, median of {args.rounds} rounds ({mem}, all variants)"
    )
    base = statistics.median(rates[VARIANTS[0][0]])
    for name, (_, dtype) in runners.items():
        ips = statistics.median(rates[name])
        label = (
            name if dtype is not None or "amp" not in name else f"{name} (no native low precision: float32)"
        )
        print(f"  {label:<40} {ips:8.2f} images/s  {ips / base:5.2f}x")


if __name__ == "__main__":
    main()
