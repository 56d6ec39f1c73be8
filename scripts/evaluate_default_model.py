"""Score a checkpoint on held-out Massachusetts Roads test tiles (../shared/data).

Predicts a probability raster for each tile of ``massachusetts_roads/test_split_jpg`` (never
used in training) and scores it with ``roadseg evaluate``: pixel IoU/F1, relaxed precision
and recall (3 px at 1 m) and the relaxed breakeven. Also renders a preview per tile and,
with ``--error-maps``, a relaxed error map (green: road found, red: road missed by more than
3 px, blue: predicted road more than 3 px from any labelled road) at probability 0.5.
``--images``/``--labels`` score other image/label folders instead (the validation images, to
pick the threshold at the breakeven); ``--val PREPARED`` scores the checkpoint's own validation
images (``data.val_ids`` of its training config) in a folder of ``prepare_default_data.py``,
with their white no-data masked as in training. Usage:
``python scripts/evaluate_default_model.py OUT_DIR [--checkpoint CKPT] [--data ...] [--images DIR --labels DIR | --val PREPARED]``
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from scipy import ndimage

from roadseg.evaluate.pixel import disk
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
    ap.add_argument("--val", type=Path, default=None, help="prepared data folder: score the checkpoint's validation images")
    ap.add_argument("--error-maps", action="store_true", help="write OUT/errors/<id>.png")
    args = ap.parse_args()
    test = args.data / "massachusetts_roads" / "test_split_jpg"
    images = args.images or test / "images"
    labels = args.labels or test / "labels"
    if args.val is not None:
        images, labels = validation_folder(args.val, args.checkpoint, args.out / "val")
    (args.out / "pred").mkdir(parents=True, exist_ok=True)
    (args.out / "preview").mkdir(exist_ok=True)
    opts = PredictOptions(tta=args.tta, gsd="native", progress=False)  # tiles are 1 m, as training
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".png", ".tif")):
        prob = args.out / "pred" / f"{image.stem}.tif"
        predict_raster(image, checkpoint=args.checkpoint, prob_out=prob, options=opts)
        render_preview(args.out / "preview" / f"{image.stem}.png", scene=image, prob=prob)
    res = evaluate(args.out / "pred", labels, relax_px=3)
    if args.error_maps:
        (args.out / "errors").mkdir(exist_ok=True)
        for image in sorted(images.iterdir()):
            label = next(labels.glob(f"{image.stem}.*"), None)
            if label is not None and (args.out / "pred" / f"{image.stem}.tif").exists():
                error_map(args.out / "errors" / f"{image.stem}.png", image, label, args.out / "pred" / f"{image.stem}.tif")
    print(json.dumps({k: round(v, 4) for k, v in res.metrics.items()}))
    for row in res.rows:
        print(row["id"], {k: round(v, 3) for k, v in row.items() if isinstance(v, float)})


def validation_folder(prepared: Path, checkpoint: Path | None, out: Path) -> tuple[Path, Path]:
    """Images and labels of the checkpoint's validation split of ``prepared``, read by the training
    dataset itself (same split, mask threshold and ``invalid_rule``); the labels are written as
    GeoTIFFs whose mask band holds training's valid pixels, so evaluate scores the same pixels."""
    from roadseg.checkpoint import load_model
    from roadseg.config import config_from_dict
    from roadseg.train.dataset import RoadDataset, discover, split
    from roadseg.weights import default_checkpoint

    info = load_model(checkpoint or default_checkpoint())[1]
    if "config" not in info.meta:
        raise SystemExit("the checkpoint records no training config; pass --images and --labels")
    saved = info.meta["config"]
    data_cfg = config_from_dict({**saved, "data": {**saved["data"], "root": str(prepared)}}).data
    _, val = split(discover(data_cfg)[1], data_cfg)
    ds = RoadDataset(val, data_cfg, info.normalization, train=False)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    for i, sample in enumerate(val):
        _, road, valid = ds.load(i, np.random.default_rng(0))
        profile = {"driver": "GTiff", "width": road.shape[1], "height": road.shape[0], "count": 1, "dtype": "uint8"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(out / "labels" / f"{sample.id}.tif", "w", **profile) as dst:
                dst.write(road * 255, 1)
                dst.write_mask(valid * 255)
        link = out / "images" / f"{sample.id}{sample.image.suffix}"
        link.unlink(missing_ok=True)
        link.symlink_to(sample.image.resolve())
    return out / "images", out / "labels"


def error_map(out: Path, image: Path, label: Path, prob: Path, relax_px: int = 3) -> None:
    """Relaxed errors over the darkened image, as `roadseg evaluate` counts them (threshold 0.5)."""
    warnings.simplefilter("ignore", NotGeoreferencedWarning)  # plain JPEG tiles
    with rasterio.open(image) as ds:
        rgb = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
    with rasterio.open(label) as ds:
        truth = ds.read(1) > 127
    with rasterio.open(prob) as ds:
        p = ds.read(1)
        pred = p >= (128 if p.dtype == np.uint8 else 0.5)
    near_pred = ndimage.binary_dilation(pred, disk(relax_px))
    near_truth = ndimage.binary_dilation(truth, disk(relax_px))
    vis = (rgb // 2).astype(np.uint8)
    vis[truth & near_pred] = (0, 230, 0)
    vis[truth & ~near_pred] = (255, 0, 0)
    vis[pred & ~near_truth] = (0, 140, 255)
    Image.fromarray(vis).save(out)


if __name__ == "__main__":
    main()
