"""Export a training run's best checkpoint as the bundled default model (fp16 weights).

Usage: ``python scripts/export_default_model.py RUN_DIR [--out roadseg/weights/default.pt] [--threshold T]``
``--threshold`` records the operating point ``predict`` uses (e.g. the relaxed breakeven
threshold measured on the validation images by ``evaluate_default_model.py``).
Half precision halves the file; ``load_model`` computes in float32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from roadseg.checkpoint import load_model, save_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "roadseg" / "weights" / "default.pt")
    ap.add_argument("--threshold", type=float, default=None, help="default: the run's")
    args = ap.parse_args()
    model, info = load_model(args.run / "best.pt")
    model.half()
    meta = dict(info.meta)
    meta["exported_from"] = str(args.run.name)
    path = save_model(
        model, args.out, normalization=info.normalization, gsd_m=info.gsd_m, threshold=info.threshold if args.threshold is None else args.threshold,
        arch=info.arch, arch_kwargs=info.arch_kwargs, **meta,
    )  # fmt: skip
    state = torch.load(path, weights_only=True)["state_dict"]
    assert all(v.dtype != torch.float32 for v in state.values() if v.is_floating_point())
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
