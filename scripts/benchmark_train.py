"""Benchmark training throughput: images/s and peak memory for a model at a crop size.

Runs the real training step (loss, backward, Adam, AMP on CUDA, channels_last) on random
batches already on the device, after warm-up steps, so the number is the model's, not the
data loader's. Usage::

    python scripts/benchmark_train.py                                  # dlinknet34, 1024^2, CPU here
    python scripts/benchmark_train.py --device cuda --batch-size 16    # on a GPU
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from roadseg.checkpoint import build_model
from roadseg.inference.predict import resolve_device
from roadseg.train.loop import _autocast
from roadseg.train.losses import bce_dice_loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="dlinknet34")
    ap.add_argument("--crop", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = build_model(args.arch).to(device).train()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    autocast, amp_dtype = _autocast(device, args.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    x = torch.randn(args.batch_size, 3, args.crop, args.crop, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(args.batch_size, 1, args.crop, args.crop, device=device) > 0.95).float()

    def step() -> None:
        with autocast:
            logits = model(x)
        loss = bce_dice_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    ips = args.steps * args.batch_size / seconds
    mem = (
        f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        if device.type == "cuda"
        else f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    )
    amp = f"AMP {amp_dtype}" if amp_dtype else "fp32"
    print(f"{args.arch} {args.crop}^2 batch {args.batch_size} on {device} ({amp}): {ips:.2f} images/s, {mem}")


if __name__ == "__main__":
    main()
