"""Build the training folder of the bundled default model from ../shared/data.

Writes ``OUT/images`` and ``OUT/masks`` at 1 m/pixel (the Massachusetts Roads resolution):

- the 9 Massachusetts train tiles as they are (white no-data is masked at training time by
  ``data.invalid_rule: white``);
- the DeepGlobe train pairs, resampled from 0.5 m to 1 m;
- with ``--with-geo``, the georeferenced scenes whose labels can be rasterized, resampled to 1 m on their own CRS
  grid exactly as ``roadseg predict`` resamples a scene (per axis to square 1 m ground
  pixels, bilinear): Swellendam (2.5 m, OSM lines), SpaceNet Vegas img99 (0.3 m panchromatic,
  SpaceNet lines) and the two New Brunswick clips (0.5 m, road-surface polygons). Lines are
  buffered to ``ROAD_WIDTH_M`` in a local UTM projection, the width of the Massachusetts labels.

The bundled model is trained without ``--with-geo``: adding these scenes lowered the
validation scores in a measured run (docs/model_card.md). The SpaceNet Paris chip is left out on purpose: it is the README sample, kept unseen. The data
stay outside the repository (their licences allow research use, not redistribution).
Usage: ``python default_model/prepare_data.py OUT [--data ../shared/data] [--with-geo]``
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.vrt import WarpedVRT

from roadseg.io.raster import resampled_grid
from roadseg.train.dataset import road_shapes

TARGET_GSD_M = 1.0
ROAD_WIDTH_M = 7.0  # Massachusetts labels: ~7 px at 1 m


def _geo_scene(
    image: Path,
    labels: Path,
    out_image: Path,
    out_mask: Path,
    *,
    layer: str | None = None,
    query: str | None = None,
) -> None:
    with rasterio.open(image) as src:
        width, height, transform = resampled_grid(src, TARGET_GSD_M)
        with WarpedVRT(
            src, crs=src.crs, transform=transform, width=width, height=height, resampling=Resampling.bilinear
        ) as vrt:
            bands = [1, 2, 3] if vrt.count >= 3 else [1, 1, 1]
            pixels = vrt.read(bands).transpose(1, 2, 0)
        crs = src.crs
    if pixels.dtype != np.uint8:  # 16-bit panchromatic: the 2-98 % stretch predict applies
        lo, hi = np.percentile(pixels[pixels > 0], [2, 98])
        pixels = (np.clip((pixels.astype(np.float32) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = gpd.read_file(labels, layer=layer)
    if query:
        df = df.query(query)
    geoms = road_shapes(df[df.geometry.notna()], crs, ROAD_WIDTH_M)
    mask = rasterize(
        [(g, 255) for g in geoms if not g.is_empty],
        out_shape=(height, width),
        transform=transform,
        dtype="uint8",
    )
    Image.fromarray(pixels).save(out_image)
    Image.fromarray(mask).save(out_mask)
    print(f"{out_image.name}: {width}x{height} px, {np.mean(mask > 0):.1%} road")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--with-geo", action="store_true", help="add the georeferenced scenes")
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
        mask = np.asarray(
            Image.open(sat.with_name(f"{sid}_mask.png")).convert("L").resize(half, Image.Resampling.BOX)
        )
        Image.fromarray(((mask >= 64) * 255).astype(np.uint8)).save(masks / f"dg_{sid}.png")
    if args.with_geo:
        _geo_scenes(args.data, images, masks)
    n = len(list(images.iterdir()))
    print(f"{n} image/mask pairs in {args.out}")


def _geo_scenes(data: Path, images: Path, masks: Path) -> None:
    swell = data / "qgis_training_swellendam_roads"
    _geo_scene(
        swell / "3420B_2010_328_RGB_LATLNG.tif",
        swell / "training_data.gpkg",
        images / "geo_swellendam.png",
        masks / "geo_swellendam.png",
        layer="roads",
    )
    vegas = data / "spacenet3_roads_vegas" / "scene_pan_solaris"
    _geo_scene(
        vegas / "road_mask_input.tif",
        vegas / "sample_roads_for_masking.geojson",
        images / "geo_vegas_img99.png",
        masks / "geo_vegas_img99.png",
    )
    nb = data / "nrcan_new_brunswick_roads"
    for clip in sorted(nb.glob("23322E759967N_clipped_1m_*.tif")):
        name = f"geo_newbrunswick_{clip.stem.rsplit('_', 1)[1]}.png"
        _geo_scene(
            clip,
            nb / "BakerLake_2017_clipped.gpkg",
            images / name,
            masks / name,
            layer="BakerLake_2017",
            query="Quatreclasses == '3'",
        )


if __name__ == "__main__":
    main()
