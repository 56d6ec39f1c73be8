"""Benchmark ``predict``: end-to-end throughput against model-only throughput, and peak memory.

For each scene size a child process (so peak RSS is per size) generates a GeoTIFF, measures
the model alone on ready batches of the same tiles, then runs ``predict_raster`` end to end,
and reports Mpx/s of both, their ratio, and peak RSS. Usage::

    python scripts/benchmark_predict.py                      # CPU defaults: tiny U-Net, 4096^2 and 16384^2
    python scripts/benchmark_predict.py --arch dlinknet34 --arch-kwargs '{}' --tta d4 --device cuda --sizes 8192
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_scene(path: Path, size: int, gsd: float = 0.5) -> None:
    """A 3-band uint8 GeoTIFF with a road grid and noise, written in strips, ``gsd`` m pixels."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": Affine(gsd, 0, 500000, 0, -gsd, 4_000_000),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    rng = np.random.default_rng(0)
    noise = rng.integers(40, 90, size=(3, 512, size), dtype=np.uint8)
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, 512):
            n = min(512, size - r)
            block = noise[:, :n].copy()
            block[:, :, (np.arange(size) % 300) < 6] = 210
            rows = (np.arange(r, r + n) % 300) < 6
            block[:, rows] = 210
            dst.write(block, window=Window(0, r, size, n))


def child(args: argparse.Namespace) -> dict:
    import torch

    from roadseg.checkpoint import save_model
    from roadseg.devices import amp_dtype, autocast, resolve_device
    from roadseg.inference.memory import CPU_PASS
    from roadseg.inference.predict import PredictOptions, predict_raster
    from roadseg.inference.tiling import plan_tiles
    from roadseg.inference.torch_runtime import TorchPredictor
    from roadseg.inference.tta import predict_tta
    from roadseg.models import create_model
    from roadseg.normalization import IMAGENET

    size = args.size
    device = resolve_device(args.device)
    kwargs = json.loads(args.arch_kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scene = tmp / "scene.tif"
        make_scene(scene, size)
        torch.manual_seed(0)
        ckpt = save_model(create_model(args.arch, **kwargs), tmp / "m.pt")
        from roadseg.checkpoint import load_model

        model, info = load_model(ckpt)
        predictor = TorchPredictor(model, info, device=args.device, amp=args.amp)
        model = predictor.model
        n_tiles = len(plan_tiles(size, size, args.tile, args.overlap))
        batch = torch.randint(0, 255, (args.batch, 3, args.tile, args.tile), dtype=torch.uint8)
        # model only: ready batches on the device, same tile count, TTA, passes and normalization
        dtype = amp_dtype(device, device.type == "cuda" if args.amp is None else args.amp)
        with torch.inference_mode(), autocast(device, dtype):
            x = IMAGENET.apply(batch.to(device)).contiguous(memory_format=torch.channels_last)
            per_pass = CPU_PASS if device.type == "cpu" else None  # as predict runs it
            predict_tta(predictor._probs, x, args.tta, per_pass)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            done = 0
            while done < n_tiles:
                p = predict_tta(predictor._probs, x, args.tta, per_pass)[:, 0].float().cpu().numpy()
                done += args.batch
            model_s = (time.perf_counter() - t0) * n_tiles / done
        opts = PredictOptions(
            tta=args.tta,
            tile_size=args.tile,
            overlap=args.overlap,
            batch_size=args.batch,
            device=args.device,
            amp=args.amp,
            progress=False,
        )
        t0 = time.perf_counter()
        predict_raster(
            scene,
            checkpoint=None,
            prob_out=tmp / "prob.tif",
            mask_out=tmp / "mask.tif",
            options=opts,
            predictor=predictor,
        )
        e2e_s = time.perf_counter() - t0
        del p
    mpx = size * size / 1e6
    return {
        "size": size,
        "tiles": n_tiles,
        "model_mpx_s": mpx / model_s,
        "e2e_mpx_s": mpx / e2e_s,
        "ratio_e2e_over_model": model_s / e2e_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="unet")
    ap.add_argument("--arch-kwargs", default='{"depth": 3, "base_channels": 8}')
    ap.add_argument("--sizes", default="4096,16384")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tta", default="none")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mixed precision (default: predict's default, on for CUDA only)",
    )
    ap.add_argument(
        "--gsd", type=float, default=0.5, help="pixel size (m) for the km²/h figure (DeepGlobe: 0.5)"
    )
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.size:
        print(json.dumps(child(args)))
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--size", str(size)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
        r = rows[-1]
        print(
            f"{size:>6}^2  tiles {r['tiles']:>5}  model-only {r['model_mpx_s']:7.2f} Mpx/s  "
            f"end-to-end {r['e2e_mpx_s']:7.2f} Mpx/s ({r['e2e_mpx_s'] * args.gsd**2 * 3600:.0f} km²/h at {args.gsd:g} m)  ratio {r['ratio_e2e_over_model']:.3f}  "
            f"peak RSS {r['peak_rss_mib']:7.0f} MiB",
            flush=True,
        )
    if len(rows) > 1:
        print(
            f"peak RSS ratio {rows[-1]['size']}^2 / {rows[0]['size']}^2: "
            f"{rows[-1]['peak_rss_mib'] / rows[0]['peak_rss_mib']:.3f}"
        )


if __name__ == "__main__":
    main()
