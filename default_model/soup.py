"""Interpolate two checkpoints of one architecture (WiSE-FT, Wortsman et al., CVPR 2022):
``(1 - alpha) * fine_tuned + alpha * base``, every float tensor (BatchNorm statistics too).

A model fine-tuned on a new domain (v3: Dubai added) can lose a little on the old ones; moving
part of the way back to the base keeps most of the gain. alpha is chosen on validation only.
Usage: ``python default_model/soup.py FINE_TUNED.pt BASE.pt --alpha 0.25 --out SOUP.pt``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from roadseg.checkpoint import load_model, save_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("fine_tuned", type=Path)
    ap.add_argument("base", type=Path)
    ap.add_argument("--alpha", type=float, required=True, help="share of the base model, in [0, 1]")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if not 0 <= args.alpha <= 1:
        ap.error("--alpha is a share in [0, 1]")
    tuned, info = load_model(args.fine_tuned)
    base, base_info = load_model(args.base)
    if (info.arch, info.arch_kwargs) != (base_info.arch, base_info.arch_kwargs):
        ap.error(
            f"architectures differ: {info.arch} {info.arch_kwargs} vs {base_info.arch} {base_info.arch_kwargs}"
        )
    b = base.state_dict()
    mixed = {
        k: (1 - args.alpha) * v + args.alpha * b[k].to(v.dtype) if v.is_floating_point() else v
        for k, v in tuned.state_dict().items()
    }
    tuned.load_state_dict(mixed)
    meta = {
        **info.meta,
        "soup": {"fine_tuned": str(args.fine_tuned), "base": str(args.base), "alpha": args.alpha},
    }
    save_model(
        tuned, args.out, normalization=info.normalization, gsd_m=info.gsd_m, threshold=info.threshold, **meta
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
