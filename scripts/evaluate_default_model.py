"""Score a checkpoint on held-out Massachusetts Roads test tiles (../shared/data).

Predicts a probability raster for each tile of ``massachusetts_roads/test_split_jpg`` (never
used in training) and scores it with ``roadseg evaluate``: pixel IoU/F1, relaxed precision
and recall (3 px at 1 m) and the relaxed breakeven. Also renders a preview per tile.
``--images``/``--labels`` score other image/label folders instead (the validation images, to
pick the threshold at the breakeven). Usage:
``python scripts/evaluate_default_model.py OUT_DIR [--checkpoint CKPT] [--data ...] [--images DIR --labels DIR]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from roadseg.evaluate.tool import evaluate
from roadseg.inference.predict import PredictOptions, predict_raster
from roadseg.preview import render_preview


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled model")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--tta", default="d4")
    ap.add_argument("--images", type=Path, default=None)
    ap.add_argument("--labels", type=Path, default=None)
    args = ap.parse_args()
    test = args.data / "massachusetts_roads" / "test_split_jpg"
    images = args.images or test / "images"
    labels = args.labels or test / "labels"
    (args.out / "pred").mkdir(parents=True, exist_ok=True)
    (args.out / "preview").mkdir(exist_ok=True)
    opts = PredictOptions(tta=args.tta, gsd="native", progress=False)  # tiles are 1 m, as training
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".png", ".tif")):
        prob = args.out / "pred" / f"{image.stem}.tif"
        predict_raster(image, checkpoint=args.checkpoint, prob_out=prob, options=opts)
        render_preview(args.out / "preview" / f"{image.stem}.png", scene=image, prob=prob)
    res = evaluate(args.out / "pred", labels, relax_px=3)
    print(json.dumps({k: round(v, 4) for k, v in res.metrics.items()}))
    for row in res.rows:
        print(row["id"], {k: round(v, 3) for k, v in row.items() if isinstance(v, float)})


if __name__ == "__main__":
    main()
