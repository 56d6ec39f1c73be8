"""Compare architectures side by side in one process: size, FLOPs, training and d4 inference speed.

For each model: parameters, forward FLOPs per pixel (torch's FlopCounterMode at 512²), the
training step in pixels/s (the real step of ``benchmark_train.py``: loss, backward, Adam, in
roadseg's CPU training numerics, bf16 autocast + channels_last where native), and ``roadseg
predict`` with d4 TTA end to end on a synthetic scene (read, 8 views, blend, COG write), in
float32 (predict's CPU default) and with ``--amp``. Measurements are interleaved over
``--rounds`` and the medians are reported with their ratio to the last model. Usage::

    python scripts/benchmark_models.py                 # dlinknet_lite0, the old default U-Net, dlinknet34
    python scripts/benchmark_models.py --scene 2048 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_predict import make_scene
from benchmark_train import _runner

from roadseg.checkpoint import save_model
from roadseg.devices import resolve_device
from roadseg.inference.predict import PredictOptions, predict_raster
from roadseg.models import create_model

#: name -> JSON model kwargs; the last is the baseline of the ratios.
DEFAULT_MODELS = ["dlinknet_lite0", 'unet:{"depth": 4, "base_channels": 16}', "dlinknet34"]


def _flops_per_px(model: torch.nn.Module) -> float:
    x = torch.zeros(1, 3, 512, 512)
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 512**2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models",
        nargs="+",
        default=DEFAULT_MODELS,
        help="NAME or NAME:JSON_KWARGS; the last is the baseline",
    )
    ap.add_argument("--scene", type=int, default=1536, help="side of the synthetic predict scene (px)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=1, help="predict tiles per batch (x 8 views)")
    ap.add_argument("--crop", type=int, default=256, help="training crop")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="roadseg-bench-"))
    scene = tmp / "scene.tif"
    make_scene(scene, args.scene)
    rows: dict[str, dict[str, object]] = {}
    trainers, ckpts = {}, {}
    for spec in args.models:
        name, _, kw = spec.partition(":")
        kwargs = json.loads(kw) if kw else {}
        label = name if not kwargs else f"{name} {kw}"
        model = create_model(name, **kwargs)
        rows[label] = {"params": sum(p.numel() for p in model.parameters()), "flops": _flops_per_px(model)}
        ckpts[label] = save_model(model, tmp / f"{name}.pt", gsd_m=1.0)
        targs = argparse.Namespace(
            arch=name,
            arch_kwargs=json.dumps(kwargs),
            inference=False,
            batch_size=args.train_batch,
            crop=args.crop,
            steps=args.steps,
            warmup=1,
            ema=0.0,
        )
        timed, _ = _runner(targs, device, True, True)
        trainers[label] = timed

    def predict_rate(label: str, amp: bool) -> float:
        opts = PredictOptions(
            tta="d4",
            tile_size=args.tile,
            batch_size=args.batch_size,
            device=str(device),
            gsd="native",
            amp=amp,
            progress=False,
        )
        res = predict_raster(scene, checkpoint=ckpts[label], prob_out=tmp / "p.tif", options=opts)
        (tmp / "p.tif").unlink()
        return res.megapixels * 1e6 / res.seconds

    for label in rows:  # warm-up: the first pass of each shape builds oneDNN kernels
        predict_rate(label, False), predict_rate(label, True)
    rates: dict[str, dict[str, list[float]]] = {
        label: {"train": [], "d4 fp32": [], "d4 amp": []} for label in rows
    }
    for _ in range(args.rounds):
        for label in rows:
            rates[label]["train"].append(trainers[label]() * args.crop**2)
            rates[label]["d4 fp32"].append(predict_rate(label, False))
            rates[label]["d4 amp"].append(predict_rate(label, True))
    base = list(rows)[-1]
    med = {label: {k: statistics.median(v) for k, v in r.items()} for label, r in rates.items()}
    print(
        f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads; training {args.crop}² x "
        f"{args.train_batch}; predict d4 on {args.scene}², tile {args.tile}, batch {args.batch_size}; "
        f"median of {args.rounds} interleaved rounds; ratios to {base}"
    )
    print(
        f"{'model':<42}{'params':>9}{'kFLOP/px':>11}{'train Mpx/s':>13}{'d4 fp32 Mpx/s':>15}{'d4 amp Mpx/s':>14}"
    )
    for label, r in rows.items():
        m, b = med[label], med[base]
        cells = [f"{m[k] / 1e6:6.3f} ({m[k] / b[k]:4.2f}x)" for k in ("train", "d4 fp32", "d4 amp")]
        print(
            f"{label:<42}{r['params'] / 1e6:8.2f}M{float(r['flops']) / 1e3:10.1f} "
            + " ".join(f"{c:>14}" for c in cells)
        )


if __name__ == "__main__":
    main()
