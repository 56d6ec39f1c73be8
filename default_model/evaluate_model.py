"""Measure a checkpoint the way the model card reports it (data from ../shared/data).

``val``      the checkpoint's own validation images (``data.sources`` of its training config, read
             by the training dataset: same split, no-data rule and resampling), predicted whole
             with d4 at each ``--gsd``: relaxed (3 m) breakeven and its threshold per GSD, with the
             CPU cost per km² from the measured pixels/s. Picks the model GSD and operating point.
``heldout``  the Massachusetts test tiles (never trained on) through ``roadseg predict`` (written
             as 1 m GeoTIFFs so the GSD handling applies) and ``roadseg evaluate``; previews and,
             with ``--error-maps``, relaxed error maps.
``lines``    ``predict --out`` lines on the SpaceNet Paris sample and the Vegas panchromatic scene
             against their labelled roads: the share of labelled length within 5 m of a predicted
             line (recall) and of predicted length within 5 m of a label (precision).

Usage: ``python default_model/evaluate_model.py {val,heldout,lines} OUT [--checkpoint CKPT] ...``
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from scipy import ndimage

from roadseg.checkpoint import load_model
from roadseg.evaluate.pixel import RelaxedCurve, disk
from roadseg.evaluate.tool import evaluate
from roadseg.inference.predict import PredictOptions, predict_raster
from roadseg.inference.tta import predict_tta
from roadseg.preview import render_preview
from roadseg.weights import default_checkpoint

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["val", "heldout", "lines"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled model")
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--tta", default="d4")
    ap.add_argument(
        "--gsd",
        type=float,
        nargs="+",
        default=None,
        help="val: model GSDs to try (default: the checkpoint's)",
    )
    ap.add_argument("--error-maps", action="store_true", help="heldout: write OUT/errors/<id>.png")
    ap.add_argument(
        "--config",
        type=Path,
        default=None,
        help="val: take data.sources and the split from this training config instead of the "
        "checkpoint's (to score two models on the same images)",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.checkpoint = args.checkpoint or default_checkpoint()
    result = {"val": validation, "heldout": heldout, "lines": lines}[args.what](args)
    print(json.dumps(result, indent=1))
    (args.out / f"{args.what}.json").write_text(json.dumps(result, indent=1))


def _f1(curve: RelaxedCurve, level: int) -> float:
    """Relaxed F1 of ``prob >= level / 255``."""
    p, r = curve.at(level)
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def validation(args: argparse.Namespace) -> dict:
    """Relaxed breakeven of the validation images at each model GSD, and the cost per km²."""
    from dataclasses import replace

    from roadseg.config import config_from_dict, load_config
    from roadseg.evaluate.pixel import Confusion
    from roadseg.train.dataset import build_datasets

    model, info = load_model(args.checkpoint)
    model = model.to(memory_format=torch.channels_last)
    cfg = load_config(args.config, []) if args.config else config_from_dict(info.meta["config"])
    out = {}
    for gsd in args.gsd or [info.gsd_m]:
        _, val = build_datasets(replace(cfg.data, gsd_m=gsd), info.normalization, cfg.seed)
        relax = max(1, round(3.0 / gsd))  # 3 m, the Massachusetts tolerance (3 px at 1 m)
        curves: dict[str, RelaxedCurve] = {}
        pixel_iou: dict[str, Confusion] = {}
        pixels, seconds = 0, 0.0
        if not cfg.data.sources and gsd != info.gsd_m:
            raise SystemExit(
                "--gsd other than the checkpoint's needs a data.sources run (its images are resampled)"
            )
        for i in range(len(val)):
            sample = val.sample(i)
            x, y, v = sample["image"], sample["mask"], sample["valid"]
            t0 = time.perf_counter()
            with torch.inference_mode():
                p = predict_tta(
                    lambda t: torch.sigmoid(model(t).float()),
                    x[None].contiguous(memory_format=torch.channels_last),
                    args.tta,
                    1,  # one view per pass: a whole 2144² image's 8 views at once took 10+ GB
                )[0, 0]
            seconds += time.perf_counter() - t0
            pixels += x.shape[1] * x.shape[2]
            levels = np.clip(np.rint(p.numpy() * 255), 0, 255).astype(np.uint8)
            name = sample["source"] if cfg.data.sources else "data"
            for key in (name, "all"):
                curves.setdefault(key, RelaxedCurve(relax)).update(
                    levels, y[0].numpy() > 0.5, v[0].numpy() > 0.5
                )
                pixel_iou.setdefault(key, Confusion()).update(
                    p.numpy() >= info.threshold, y[0].numpy() > 0.5, v[0].numpy() > 0.5
                )
        mpx_s = pixels / seconds / 1e6
        pooled_level = int(np.ceil(curves["all"].breakeven_threshold() * 255))
        out[f"{gsd:g}"] = {
            **{f"breakeven_{k}": round(c.breakeven(), 4) for k, c in curves.items()},
            **{f"threshold_{k}": round(c.breakeven_threshold(), 4) for k, c in curves.items()},
            **{f"iou_{k}_at_{info.threshold:g}": round(c.iou, 4) for k, c in pixel_iou.items()},
            "breakeven_threshold": round(curves["all"].breakeven_threshold(), 4),
            # the cost of one operating point: relaxed F1 at the pooled breakeven threshold
            # against the best F1 each source reaches at a threshold of its own
            **{f"f1_{k}_at_pooled": round(_f1(c, pooled_level), 4) for k, c in curves.items()},
            **{f"f1_{k}_best": round(max(_f1(c, lv) for lv in range(1, 256)), 4) for k, c in curves.items()},
            "relax_px": relax,
            "mpx_per_s": round(mpx_s, 3),  # with --tta, whole images
            "cpu_s_per_km2": round(1e6 / gsd**2 / (mpx_s * 1e6), 1),
        }
        print(f"{gsd:g} m", out[f"{gsd:g}"], flush=True)
    return out


def _georeferenced(image: Path, out: Path, gsd: float = 1.0) -> Path:
    """A copy of a plain 1 m tile as a GeoTIFF (UTM 19N, Massachusetts), so predict knows its GSD."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(image) as src:
            data = src.read([1, 2, 3])
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32619",
        "transform": Affine(gsd, 0, 300000, 0, -gsd, 4700000),
    }
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


def heldout(args: argparse.Namespace) -> dict:
    test = args.data / "massachusetts_roads" / "test_split_jpg"
    for sub in ("pred", "preview", "geo", "errors"):
        (args.out / sub).mkdir(exist_ok=True)
    opts = PredictOptions(tta=args.tta, progress=False)
    seconds = 0.0
    for image in sorted((test / "images").glob("*.jpg")):
        scene = _georeferenced(image, args.out / "geo" / f"{image.stem}.tif")
        prob = args.out / "pred" / f"{image.stem}.tif"
        prob.unlink(missing_ok=True)
        seconds += predict_raster(scene, checkpoint=args.checkpoint, prob_out=prob, options=opts).seconds
        render_preview(args.out / "preview" / f"{image.stem}.png", scene=scene, prob=prob)
        if args.error_maps:
            error_map(
                args.out / "errors" / f"{image.stem}.png", image, test / "labels" / f"{image.stem}.jpg", prob
            )
    res = evaluate(args.out / "pred", test / "labels", relax_px=3)
    return {
        "metrics": {k: round(v, 4) for k, v in res.metrics.items()},
        "seconds": round(seconds, 1),
        "per_tile": {r["id"]: round(r["relaxed_f1"], 3) for r in res.rows},
    }


def lines(args: argparse.Namespace) -> dict:
    """Coverage of labelled road length by predicted lines within 5 m, and the reverse."""
    import geopandas as gpd

    scenes = {
        "paris": (
            Path(__file__).resolve().parents[1] / "examples" / "paris_spacenet_img1447.tif",
            args.data / "spacenet_paris_osm_roads" / "OSMroads_img1447.geojson",
        ),
        "vegas": (
            args.data / "spacenet3_roads_vegas" / "scene_pan_solaris" / "road_mask_input.tif",
            args.data / "spacenet3_roads_vegas" / "scene_pan_solaris" / "sample_roads_for_masking.geojson",
        ),
    }
    out = {}
    for name, (scene, labels) in scenes.items():
        from roadseg.vectorize.tool import VectorizeOptions, vectorize_raster

        prob, roads = args.out / f"{name}_prob.tif", args.out / f"{name}_roads.gpkg"
        for p in (prob, roads):
            p.unlink(missing_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = predict_raster(
                scene,
                checkpoint=args.checkpoint,
                prob_out=prob,
                options=PredictOptions(tta=args.tta, progress=False),
            )
            vec = vectorize_raster(prob, roads, VectorizeOptions(threshold=res.threshold, progress=False))
            truth = gpd.read_file(labels)
            pred = gpd.read_file(roads)
        render_preview(args.out / f"{name}_preview.png", scene=scene, prob=prob, lines=vec.geoms)
        utm = truth.estimate_utm_crs()
        t = truth.to_crs(utm).geometry.union_all()
        p = pred.to_crs(utm).geometry.union_all() if len(pred) else None
        recall = 0.0 if p is None else t.intersection(p.buffer(5.0)).length / t.length
        precision = 0.0 if p is None else p.intersection(t.buffer(5.0)).length / max(p.length, 1e-9)
        out[name] = {
            "recall_5m": round(recall, 4),
            "precision_5m": round(precision, 4),
            "lines": vec.features,
            "predicted_km": round(0 if p is None else p.length / 1000, 3),
            "labelled_km": round(t.length / 1000, 3),
            "resampled_to_m": res.model_gsd_m if res.resampled else None,
        }
    return out


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
