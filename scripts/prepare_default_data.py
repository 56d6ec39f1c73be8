"""Build the training folder of the bundled default model from ../shared/data.

Writes ``OUT/images`` and ``OUT/masks`` at 1 m/pixel (the Massachusetts Roads resolution):
the 9 Massachusetts train tiles as they are (white no-data is masked at training time by
``data.invalid_rule: white``), and the DeepGlobe pairs resampled from 0.5 m to 1 m. The data
stay outside the repository (their licences allow research use, not redistribution).
Usage: ``python scripts/prepare_default_data.py OUT [--data ../shared/data]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    images, masks = args.out / "images", args.out / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    mass = args.data / "massachusetts_roads" / "train_split_png"
    for img in sorted((mass / "images").glob("*.png")):
        (images / f"mass_{img.name}").write_bytes(img.read_bytes())
        (masks / f"mass_{img.name}").write_bytes((mass / "masks" / img.name).read_bytes())
    for sat in sorted((args.data / "deepglobe_roads" / "train").glob("*_sat.jpg")):
        sid = sat.name.split("_")[0]
        im = Image.open(sat).convert("RGB")
        half = (im.width // 2, im.height // 2)  # 0.5 m -> 1 m
        im.resize(half, Image.Resampling.BOX).save(images / f"dg_{sid}.png")
        mask = np.asarray(Image.open(sat.with_name(f"{sid}_mask.png")).convert("L").resize(half, Image.Resampling.BOX))
        Image.fromarray(((mask >= 64) * 255).astype(np.uint8)).save(masks / f"dg_{sid}.png")
    n = len(list(images.iterdir()))
    print(f"{n} image/mask pairs in {args.out}")


if __name__ == "__main__":
    main()
