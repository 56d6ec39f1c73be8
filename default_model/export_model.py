"""Export a training run's best checkpoint as the bundled default model (fp16 weights).

Usage: ``python default_model/export_model.py RUN_DIR [--which best|last] [--out roadseg/weights/default.pt] [--threshold T]``
``--which last`` exports the final weights (a cosine run ends at its lowest lr) instead of best.pt.
``--threshold`` records the operating point ``predict`` uses (e.g. the relaxed breakeven
threshold measured on the validation images by ``evaluate_model.py``).
``--operating-point T`` instead moves the logit layer's bias by log((1-T)/T), so that
probability 0.5 of the exported model is probability T of the trained one: the probability
raster, the preview and a plain 0.5 threshold then all show the chosen operating point (a model
trained on labels that miss many roads ranks well but puts its breakeven far below 0.5).
``--gsd`` records the ground sample distance predict resamples scenes to (chosen on validation
by ``evaluate_model.py val --gsd ...``). Half precision halves the file (BatchNorm statistics stay float32: their variances can pass
float16's 65504); ``load_model`` computes in float32.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import nn

from roadseg.checkpoint import load_model, save_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "roadseg" / "weights" / "default.pt"
    )
    ap.add_argument(
        "--which", choices=["best", "last"], default="best", help="best.pt (validation IoU) or last.pt"
    )
    ap.add_argument("--threshold", type=float, default=None, help="default: the run's")
    ap.add_argument(
        "--operating-point", type=float, default=None, help="shift the logits so this probability becomes 0.5"
    )
    ap.add_argument(
        "--gsd", type=float, default=None, help="the GSD (m) predict resamples scenes to; default: the run's"
    )
    args = ap.parse_args()
    model, info = load_model(args.run / f"{args.which}.pt")
    meta = dict(info.meta)
    meta["exported_from"] = f"{args.run.name}/{args.which}.pt"
    if args.operating_point is not None:
        t = args.operating_point
        if not 0 < t < 1 or args.threshold is not None:
            ap.error("--operating-point takes a probability in (0, 1) and replaces --threshold")
        shift = math.log((1 - t) / t)
        # every registry model ends in .head, UNet++ in one head per level (.heads): all move
        heads = [model.head] if hasattr(model, "head") else list(model.heads)
        with torch.no_grad():
            for block in heads:
                [m for m in block.modules() if isinstance(m, nn.Conv2d)][-1].bias += shift
        meta["calibration"] = {"operating_point": t, "logit_shift": shift}
        args.threshold = 0.5
    halved = 0
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        # BatchNorm variances reach 1e5 here: past float16's 65504, so they stay float32
        if t.is_floating_point() and "running_" not in name and float(t.detach().abs().max()) < 6e4:
            t.data = t.data.half()
            halved += t.numel()
    path = save_model(
        model,
        args.out,
        normalization=info.normalization,
        gsd_m=args.gsd or info.gsd_m,
        threshold=info.threshold if args.threshold is None else args.threshold,
        arch=info.arch,
        arch_kwargs=info.arch_kwargs,
        **meta,
    )
    state = torch.load(path, weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert halved > 0.95 * sum(v.numel() for v in state.values() if v.is_floating_point())
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
