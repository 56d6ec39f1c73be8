"""ONNX Runtime against PyTorch on a CPU, side by side in one process.

For each model (the bundled dlinknet_lite0 and D-LinkNet34 with random weights) the checkpoint
is exported with ``roadseg export`` and ``predict_raster`` runs end to end on the same
synthetic scene (0.7 m, no resampling) with d4 TTA, in turn: PyTorch float32, PyTorch bf16
(autocast, where the CPU runs bf16 natively) and ONNX Runtime float32. Medians of interleaved
rounds, as scene Mpx/s and ratios to PyTorch float32; the largest probability difference
between ONNX and PyTorch float32 is printed too. Usage::

    python scripts/benchmark_onnx.py [--scene 1024] [--rounds 3] [--tta d4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_predict import make_scene


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scene", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tta", default="d4")
    args = parser.parse_args()

    import rasterio
    import torch

    from roadseg import create_model, save_model
    from roadseg.devices import cpu_native_bf16
    from roadseg.inference.predict import PredictOptions, predict_raster
    from roadseg.onnx_model import export_onnx
    from roadseg.weights import default_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scene = tmp / "scene.tif"
        make_scene(scene, args.scene, gsd=0.7)
        torch.manual_seed(0)
        models = {
            "dlinknet_lite0 (bundled)": default_checkpoint(),
            "dlinknet34": save_model(create_model("dlinknet34"), tmp / "d34.pt", gsd_m=0.7),
        }
        print(
            f"{args.scene}² scene, tta {args.tta}, {torch.get_num_threads()} threads, medians of {args.rounds} rounds"
        )
        for name, ckpt in models.items():
            onnx_path = tmp / f"{ckpt.stem}.onnx"
            export_onnx(ckpt, onnx_path)
            variants = {"pytorch fp32": (ckpt, False), "onnxruntime fp32": (onnx_path, False)}
            if cpu_native_bf16():
                variants["pytorch bf16"] = (ckpt, True)
            times: dict[str, list[float]] = {k: [] for k in variants}
            probs = {}
            for _ in range(args.rounds):
                for key, (path, amp) in variants.items():
                    out = tmp / "p.tif"
                    out.unlink(missing_ok=True)
                    opts = PredictOptions(tta=args.tta, amp=amp, prob_dtype="float32", progress=False)
                    t0 = time.perf_counter()
                    predict_raster(scene, checkpoint=path, prob_out=out, options=opts)
                    times[key].append(time.perf_counter() - t0)
                    with rasterio.open(out) as ds:
                        probs[key] = ds.read(1)
            base = statistics.median(times["pytorch fp32"])
            diff = float(np.abs(probs["onnxruntime fp32"] - probs["pytorch fp32"]).max())
            for key, ts in times.items():
                med = statistics.median(ts)
                print(
                    f"{name:<26} {key:<17} {args.scene**2 / 1e6 / med:6.3f} Mpx/s  "
                    f"{base / med:5.2f}x pytorch fp32  (runs: {', '.join(f'{t:.1f}' for t in ts)} s)"
                )
            print(f"{name:<26} max |onnx - pytorch fp32| probability: {diff:.2g}")


if __name__ == "__main__":
    main()
