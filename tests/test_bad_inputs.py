"""Bad input, as a careless or hostile user gives it, across every command.

Each case asserts the promise of the README: the exit code, one line on stderr that names the
file or option at fault, every input byte-for-byte unchanged, and no file left behind.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine
from conftest import road_image, write_raster
from PIL import Image

from roadseg.cli import main

GEO = Affine(0.5, 0, 500000, 0, -0.5, 4000000)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A folder of good and bad inputs, shared by the cases (none may change it)."""
    import geopandas as gpd
    from shapely.geometry import LineString, Point, Polygon

    from roadseg import create_model, save_model

    d = tmp_path_factory.mktemp("ws")
    (d / "in").mkdir()
    write_raster(d / "in" / "scene.tif", road_image(96, 96), transform=GEO)
    (d / "link.tif").symlink_to(d / "in" / "scene.tif")
    write_raster(d / "plain.tif", road_image(64, 64), crs=None, transform=Affine(1, 0, 0, 0, 1, 0))
    write_raster(
        d / "scene16.tif", (np.arange(3 * 64 * 64).reshape(3, 64, 64) * 7).astype(np.uint16), transform=GEO
    )
    write_raster(d / "twoband.tif", road_image(64, 64)[:2], transform=GEO)
    write_raster(d / "coarse.tif", road_image(64, 64), transform=Affine(1000, 0, 500000, 0, -1000, 4000000))
    write_raster(d / "fine.tif", road_image(64, 64), transform=Affine(0.001, 0, 500000, 0, -0.001, 4000000))
    write_raster(d / "nodata.tif", np.zeros((3, 64, 64), np.uint8), transform=GEO, nodata=0)
    prob = np.zeros((64, 64), np.float32)
    prob[30:34, :] = 0.9
    write_raster(d / "prob.tif", prob, transform=GEO)
    write_raster(d / "prob_other.tif", np.zeros((32, 32), np.float32), transform=GEO)
    write_raster(d / "hot.tif", prob * 40, transform=GEO)  # floats up to 36: not a probability
    write_raster(d / "allnd.tif", np.zeros((64, 64), np.uint8), transform=GEO, nodata=0)
    Image.fromarray(road_image(64, 64).transpose(1, 2, 0)).save(d / "photo.png")
    good = (d / "in" / "scene.tif").read_bytes()
    (d / "trunc.tif").write_bytes(good[: len(good) // 3])
    (d / "notraster.tif").write_text("hello, I am not a GeoTIFF\n")
    crs = "EPSG:32633"
    line = LineString([(500000, 3999990), (500040, 3999990)])
    gpd.GeoDataFrame(geometry=[line], crs=crs).to_file(d / "lines.geojson")
    gpd.GeoDataFrame(geometry=[Point(500010, 3999990)], crs=crs).to_file(d / "points.geojson")
    gpd.GeoDataFrame(
        geometry=[Polygon([(500000, 3999990), (500010, 3999990), (500010, 3999980)])], crs=crs
    ).to_file(d / "polys.geojson")
    torch.manual_seed(0)
    model = create_model("unet", depth=1, base_channels=4)
    save_model(model, d / "tiny.pt", gsd_m=0.5)
    nan = create_model("unet", depth=1, base_channels=4)
    with torch.no_grad():
        next(nan.parameters()).fill_(float("nan"))
    save_model(nan, d / "nan.pt")
    ckpt = torch.load(d / "tiny.pt", weights_only=True)
    ckpt["threshold"] = 7.0
    torch.save(ckpt, d / "badthr.pt")
    (d / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    # training data: a DeepGlobe folder, one with a truncated mask, one with a truncated image
    for name in ("dg", "dg_badmask", "dg_badimg"):
        (d / name).mkdir()
        for i in range(3):
            img = road_image(64, 64, seed=i).transpose(1, 2, 0)
            Image.fromarray(img).save(d / name / f"{i}_sat.jpg")
            Image.fromarray((img[..., 0] > 200).astype(np.uint8) * 255).save(d / name / f"{i}_mask.png")
    mask = (d / "dg_badmask" / "1_mask.png").read_bytes()
    (d / "dg_badmask" / "1_mask.png").write_bytes(mask[:40])
    jpg = (d / "dg_badimg" / "1_sat.jpg").read_bytes()
    (d / "dg_badimg" / "1_sat.jpg").write_bytes(jpg[: len(jpg) // 4])
    (d / "run").mkdir()
    (d / "run" / "last.pt").write_bytes(b"an earlier run's checkpoint")
    (d / "run" / "log.csv").write_text("epoch\n1\n")
    # hostile inputs, round 2
    os.mkfifo(d / "fifo.tif")  # reading a named pipe blocks until a writer comes
    (d / "blank.txt").write_text("\n   \n# only comments\n\n")
    (d / "nul.txt").write_text("in/scene.tif\nin/sc\x00ene.tif\n")
    import zipfile

    with (
        zipfile.ZipFile(d / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as zf,
        zf.open("archive/data.pkl", "w") as f,
    ):
        zeros = bytes(2**20)
        for _ in range(200):  # 200 MiB declared, about 200 kB on disk
            f.write(zeros)
    (d / "exp").mkdir()  # a user's experiment folder: their config, commented
    (d / "exp" / "config.yaml").write_text("# my experiment, with notes\nmodel:\n  arch: unet\n")
    (d / "list.yaml").write_text("- model\n- data\n")
    levels = ["    - &a [x, x, x, x, x, x, x, x, x]"]  # an alias bomb: its value's repr is ~60 MB
    for i, name in enumerate("bcdefg"):
        prev = "abcdefg"[i]
        levels.append(f"    - &{name} [{', '.join(['*' + prev] * 9)}]")
    (d / "bomb.yaml").write_text("model:\n  arch:\n" + "\n".join(levels) + "\n")
    bad_arch = torch.load(d / "tiny.pt", weights_only=True)
    bad_arch["arch"] = "nonexistent"
    torch.save(bad_arch, d / "badarch.pt")
    (d / "m.onnx").write_bytes(b"onnx?")
    (d / "garbage.json").write_text("{}")
    (d / "foreign").mkdir()
    (d / "foreign" / "manifest.csv").write_text("name,value\nx,1\n")
    (d / "exp2").mkdir()
    (d / "exp2" / "last.pt").write_bytes((d / "tiny.pt").read_bytes())  # the checkpoint to start from
    # round 3: VRTs with a missing or self-referencing source, far-apart mosaics, a zero-filled checkpoint
    band = (
        '<VRTRasterBand dataType="Byte" band="1"><SimpleSource><SourceFilename relativeToVRT="1">{}'
        "</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
    )
    head = '<VRTDataset rasterXSize="64" rasterYSize="64"><GeoTransform>500000, 0.5, 0, 4000000, 0, -0.5</GeoTransform>'
    (d / "vrt").mkdir()
    (d / "vrt" / "missing.vrt").write_text(head + band.format("gone.tif") + "</VRTDataset>")
    (d / "vrt" / "self.vrt").write_text(head + band.format("self.vrt") + "</VRTDataset>")
    far = Affine(0.5, 0, 600000, 0, -0.5, 4100000)  # 100 km east and north of prob.tif
    write_raster(d / "prob_far.tif", prob, transform=far)
    with open(d / "zeros.pt", "wb") as f:
        f.truncate(64 * 2**20)  # sparse: an interrupted copy that reserved its size
    return d


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


TINY = ["--checkpoint", "{ws}/tiny.pt"]
SCENE = "{ws}/in/scene.tif"
TRAIN = [
    "train",
    "--data",
    "{ws}/dg",
    "--set",
    "model.arch=unet",
    "--set",
    "model.encoder_weights=null",
    "--set",
    "model.kwargs={{depth: 1, base_channels: 4}}",
    "--set",
    "data.crop_size=32",
    "--set",
    "data.num_workers=0",
    "--set",
    "data.val_fraction=0",
    "--epochs",
    "1",
    "--batch-size",
    "2",
]

#: (id, argv, exit code, text the one-line message must contain: the file or option at fault)
CASES = [
    # predict: outputs that would destroy an input or each other
    (
        "predict-prob-over-scene",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/in/scene.tif"],
        2,
        "--prob-out",
    ),
    (
        "predict-mask-over-scene-dotdot",
        ["predict", "{ws}/in/scene.tif", *TINY, "--mask-out", "{ws}/in/../in/scene.tif"],
        2,
        "never writes over an input",
    ),
    (
        "predict-preview-over-scene",
        ["predict", "{ws}/photo.png", *TINY, "--preview", "{ws}/photo.png"],
        2,
        "--preview",
    ),
    (
        "predict-prob-equals-mask",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/o.tif", "--mask-out", "{ws}/o.tif"],
        2,
        "--mask-out",
    ),
    (
        "predict-prob-over-checkpoint",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/tiny.pt"],
        2,
        "--prob-out",
    ),
    (
        "predict-mask-over-scene-symlink",
        ["predict", "{ws}/in/scene.tif", *TINY, "--mask-out", "{ws}/link.tif"],
        2,
        "--mask-out",
    ),
    # predict: output names that do not match the format
    (
        "predict-prob-jpg",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.jpg"],
        2,
        "--prob-out",
    ),
    (
        "predict-mask-png",
        ["predict", "{ws}/in/scene.tif", *TINY, "--mask-out", "{ws}/m.png"],
        2,
        "--mask-out",
    ),
    ("predict-out-shp", ["predict", "{ws}/in/scene.tif", *TINY, "--out", "{ws}/r.shp"], 2, "--out"),
    (
        "predict-preview-jpg",
        ["predict", "{ws}/in/scene.tif", *TINY, "--preview", "{ws}/p.jpg"],
        2,
        "--preview",
    ),
    ("predict-nothing-to-write", ["predict", "{ws}/in/scene.tif", *TINY], 2, "nothing to write"),
    (
        "predict-missing-folder",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/nope/p.tif"],
        2,
        "nope",
    ),
    (
        "predict-out-is-folder",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/in.tif", "--mask-out", "{ws}/run"],
        2,
        "--mask-out",
    ),
    # predict: scenes
    ("predict-missing-scene", ["predict", "{ws}/nope.tif", *TINY, "--prob-out", "{ws}/p.tif"], 2, "nope.tif"),
    ("predict-scene-folder", ["predict", "{ws}/in", *TINY, "--prob-out", "{ws}/p.tif"], 2, "is a folder"),
    (
        "predict-not-a-raster",
        ["predict", "{ws}/notraster.tif", *TINY, "--prob-out", "{ws}/p.tif"],
        2,
        "notraster.tif",
    ),
    ("predict-truncated", ["predict", "{ws}/trunc.tif", *TINY, "--prob-out", "{ws}/p.tif"], 2, "trunc.tif"),
    (
        "predict-two-bands",
        ["predict", "{ws}/twoband.tif", *TINY, "--prob-out", "{ws}/p.tif"],
        2,
        "twoband.tif",
    ),
    (
        "predict-all-nodata",
        ["predict", "{ws}/nodata.tif", *TINY, "--prob-out", "{ws}/p.tif"],
        2,
        "no valid pixels",
    ),
    (
        "predict-geojson-no-crs",
        ["predict", "{ws}/plain.tif", *TINY, "--out", "{ws}/r.geojson"],
        2,
        "plain.tif",
    ),
    (
        "predict-1000m-pixels",
        ["predict", "{ws}/coarse.tif", *TINY, "--prob-out", "{ws}/p.tif"],
        2,
        "--gsd native",
    ),
    (
        "predict-1mm-pixels",
        ["predict", "{ws}/fine.tif", *TINY, "--prob-out", "{ws}/p.tif"],
        2,
        "--gsd native",
    ),
    # predict: numbers
    (
        "predict-gsd-nan",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--gsd", "nan"],
        2,
        "--gsd",
    ),
    (
        "predict-gsd-inf",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--gsd", "inf"],
        2,
        "--gsd",
    ),
    (
        "predict-gsd-zero",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--gsd", "0"],
        2,
        "--gsd",
    ),
    (
        "predict-gsd-negative",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--gsd", "-1"],
        2,
        "--gsd",
    ),
    (
        "predict-gsd-word",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--gsd", "fine"],
        2,
        "--gsd",
    ),
    (
        "predict-gsd-tiny",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--gsd", "0.001"],
        2,
        "--gsd",
    ),
    (
        "predict-gsd-huge",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--gsd", "100"],
        2,
        "--gsd",
    ),
    (
        "predict-threshold-high",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--threshold", "1.5"],
        2,
        "--threshold",
    ),
    (
        "predict-threshold-zero",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--threshold", "0"],
        2,
        "--threshold",
    ),
    (
        "predict-threshold-nan",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--threshold", "nan"],
        2,
        "--threshold",
    ),
    (
        "predict-tta",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--tta", "all"],
        2,
        "--tta",
    ),
    (
        "predict-tile",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--tile-size", "-64"],
        2,
        "--tile-size",
    ),
    (
        "predict-overlap",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--overlap", "900"],
        2,
        "--overlap",
    ),
    (
        "predict-batch",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--batch-size", "0"],
        2,
        "--batch-size",
    ),
    (
        "predict-bands-range",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--bands", "1,2,5"],
        2,
        "band",
    ),
    (
        "predict-bands-words",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--bands", "r,g,b"],
        2,
        "--bands",
    ),
    (
        "predict-prob-dtype",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--prob-dtype", "int16"],
        2,
        "--prob-dtype",
    ),
    (
        "predict-device",
        ["predict", "{ws}/in/scene.tif", *TINY, "--prob-out", "{ws}/p.tif", "--device", "tpu"],
        2,
        "--device",
    ),
    # predict: checkpoints
    (
        "predict-ckpt-missing",
        ["predict", "{ws}/in/scene.tif", "--checkpoint", "{ws}/nope.pt", "--prob-out", "{ws}/p.tif"],
        2,
        "nope.pt",
    ),
    (
        "predict-ckpt-random",
        ["predict", "{ws}/in/scene.tif", "--checkpoint", "{ws}/random.pt", "--prob-out", "{ws}/p.tif"],
        2,
        "random.pt",
    ),
    (
        "predict-ckpt-nan",
        ["predict", "{ws}/in/scene.tif", "--checkpoint", "{ws}/nan.pt", "--prob-out", "{ws}/p.tif"],
        2,
        "NaN",
    ),
    (
        "predict-ckpt-threshold",
        ["predict", "{ws}/in/scene.tif", "--checkpoint", "{ws}/badthr.pt", "--prob-out", "{ws}/p.tif"],
        2,
        "badthr.pt",
    ),
    (
        "predict-ckpt-is-scene",
        ["predict", "{ws}/in/scene.tif", "--checkpoint", "{ws}/in/scene.tif", "--prob-out", "{ws}/p.tif"],
        2,
        "scene.tif",
    ),
    # vectorize
    ("vectorize-photo", ["vectorize", "{ws}/photo.png", "--out", "{ws}/r.gpkg"], 2, "photo.png"),
    ("vectorize-16bit-scene", ["vectorize", "{ws}/scene16.tif", "--out", "{ws}/r.gpkg"], 2, "scene16.tif"),
    ("vectorize-hot-floats", ["vectorize", "{ws}/hot.tif", "--out", "{ws}/r.gpkg"], 2, "hot.tif"),
    ("vectorize-all-nodata", ["vectorize", "{ws}/allnd.tif", "--out", "{ws}/r.gpkg"], 2, "allnd.tif"),
    (
        "vectorize-threshold-high",
        ["vectorize", "{ws}/prob.tif", "--out", "{ws}/r.gpkg", "--threshold", "1.5"],
        2,
        "--threshold",
    ),
    (
        "vectorize-threshold-negative",
        ["vectorize", "{ws}/prob.tif", "--out", "{ws}/r.gpkg", "--threshold", "-0.1"],
        2,
        "--threshold",
    ),
    (
        "vectorize-min-length-negative",
        ["vectorize", "{ws}/prob.tif", "--out", "{ws}/r.gpkg", "--min-length-m", "-5"],
        2,
        "--min-length-m",
    ),
    (
        "vectorize-gap-nan",
        ["vectorize", "{ws}/prob.tif", "--out", "{ws}/r.gpkg", "--gap-m", "nan"],
        2,
        "--gap-m",
    ),
    (
        "vectorize-spur-inf",
        ["vectorize", "{ws}/prob.tif", "--out", "{ws}/r.gpkg", "--spur-length-m", "inf"],
        2,
        "--spur-length-m",
    ),
    (
        "vectorize-simplify-negative",
        ["vectorize", "{ws}/prob.tif", "--out", "{ws}/r.gpkg", "--simplify-m", "-1"],
        2,
        "--simplify-m",
    ),
    ("vectorize-out-over-input", ["vectorize", "{ws}/prob.tif", "--out", "{ws}/prob.tif"], 2, "--out"),
    ("vectorize-out-txt", ["vectorize", "{ws}/prob.tif", "--out", "{ws}/r.txt"], 2, "--out"),
    (
        "vectorize-preview-tif",
        ["vectorize", "{ws}/prob.tif", "--out", "{ws}/r.gpkg", "--preview", "{ws}/p.tif"],
        2,
        "--preview",
    ),
    (
        "vectorize-geometry",
        ["vectorize", "{ws}/prob.tif", "--out", "{ws}/r.gpkg", "--geometry", "blob"],
        2,
        "--geometry",
    ),
    ("vectorize-missing", ["vectorize", "{ws}/nope.tif", "--out", "{ws}/r.gpkg"], 2, "nope.tif"),
    (
        "vectorize-block",
        ["vectorize", "{ws}/prob.tif", "--out", "{ws}/r.gpkg", "--block-size", "8"],
        2,
        "--block-size",
    ),
    # evaluate
    (
        "evaluate-per-image-over-pred",
        ["evaluate", "--pred", "{ws}/prob.tif", "--truth", "{ws}/prob.tif", "--per-image", "{ws}/prob.tif"],
        2,
        "--per-image",
    ),
    (
        "evaluate-per-image-tif",
        ["evaluate", "--pred", "{ws}/prob.tif", "--truth", "{ws}/prob.tif", "--per-image", "{ws}/rows.tif"],
        2,
        "--per-image",
    ),
    ("evaluate-photo", ["evaluate", "--pred", "{ws}/photo.png", "--truth", "{ws}/prob.tif"], 2, "photo.png"),
    (
        "evaluate-points",
        ["evaluate", "--pred", "{ws}/lines.geojson", "--truth", "{ws}/points.geojson"],
        2,
        "points.geojson",
    ),
    (
        "evaluate-polygons",
        ["evaluate", "--pred", "{ws}/polys.geojson", "--truth", "{ws}/lines.geojson"],
        2,
        "polys.geojson",
    ),
    ("evaluate-missing", ["evaluate", "--pred", "{ws}/nope.tif", "--truth", "{ws}/prob.tif"], 2, "nope.tif"),
    (
        "evaluate-sizes",
        ["evaluate", "--pred", "{ws}/prob.tif", "--truth", "{ws}/prob_other.tif"],
        2,
        "prob_other.tif",
    ),
    # train
    ("train-epochs-zero", [*TRAIN, "--epochs", "0"], 2, "epochs"),
    ("train-existing-run", [*TRAIN, "--out", "{ws}/run"], 2, "--resume"),
    ("train-run-in-data", [*TRAIN, "--out", "{ws}/dg/run"], 2, "dg"),
    ("train-lr-nan", [*TRAIN, "--set", "optim.lr=nan"], 2, "optim.lr"),
    ("train-threshold", [*TRAIN, "--set", "threshold=2"], 2, "threshold"),
    ("train-unknown-key", [*TRAIN, "--set", "optim.momentum=0.9"], 2, "optim.momentum"),
    (
        "train-missing-data",
        ["train", "--data", "{ws}/nope", "--set", "model.encoder_weights=null"],
        2,
        "nope",
    ),
    ("train-missing-config", ["train", "--config", "{ws}/nope.yaml"], 2, "nope.yaml"),
    ("train-resume-nothing", ["train", "--resume", "{ws}/in"], 2, "in"),
    (
        "train-truncated-mask",
        [*TRAIN, "--data", "{ws}/dg_badmask", "--out", "{ws}/r1", "--batch-size", "3"],
        2,
        "1_mask.png",
    ),
    (
        "train-truncated-image",
        [*TRAIN, "--data", "{ws}/dg_badimg", "--out", "{ws}/r2", "--batch-size", "3"],
        2,
        "1_sat.jpg",
    ),
    ("train-source-no-gsd", [*TRAIN, "--set", "data.sources=[{{root: {ws}/dg}}]"], 2, "gsd_m"),
    # info
    ("info-missing", ["info", "{ws}/nope.pt"], 2, "nope.pt"),
    ("info-random", ["info", "{ws}/random.pt"], 2, "random.pt"),
    ("info-nan", ["info", "{ws}/nan.pt"], 2, "nan.pt"),
    ("info-scene", ["info", "{ws}/in/scene.tif"], 2, "scene.tif"),
    # round 2: special files, empty names, lists, bombs, bounds, inputs under --overwrite
    ("predict-fifo-scene", ["predict", "{ws}/fifo.tif", *TINY, "--prob-out", "{ws}/p.tif"], 2, "named pipe"),
    ("predict-device-scene", ["predict", "/dev/zero", *TINY, "--prob-out", "{ws}/p.tif"], 2, "is a device"),
    (
        "predict-fifo-checkpoint",
        ["predict", SCENE, "--checkpoint", "{ws}/fifo.tif", "--prob-out", "{ws}/p.tif"],
        2,
        "named pipe",
    ),
    ("predict-empty-out-dir", ["predict", SCENE, *TINY, "--out-dir", ""], 2, "--out-dir is empty"),
    ("predict-blank-list", ["predict", "@{ws}/blank.txt", *TINY, "--out-dir", "{ws}/o"], 2, "names no scene"),
    (
        "predict-nul-in-list",
        ["predict", "@{ws}/nul.txt", *TINY, "--out-dir", "{ws}/o"],
        2,
        "line 2 holds a NUL",
    ),
    ("info-zip-bomb", ["info", "{ws}/bomb.pt"], 2, "refused without inflating"),
    (
        "predict-zip-bomb",
        ["predict", SCENE, "--checkpoint", "{ws}/bomb.pt", "--prob-out", "{ws}/p.tif"],
        2,
        "bomb.pt",
    ),
    (
        "predict-cluster-too-many",
        ["predict", SCENE, *TINY, "--out-dir", "{ws}/o", "--cluster", "local:100000"],
        2,
        "worker count",
    ),
    (
        "predict-threads-huge",
        ["predict", SCENE, *TINY, "--prob-out", "{ws}/p.tif", "--threads", "99999999999999999999"],
        2,
        "--threads",
    ),
    ("train-empty-out", ["train", "--data", "{ws}/dg", "--out", ""], 2, "--out is empty"),
    (
        "train-overwrite-own-config",
        [
            "train",
            "--config",
            "{ws}/exp/config.yaml",
            "--data",
            "{ws}/dg",
            "--out",
            "{ws}/exp",
            "--overwrite",
        ],
        2,
        "config.yaml",
    ),
    (
        "train-overwrite-init-checkpoint",
        [
            "train",
            "--data",
            "{ws}/dg",
            "--out",
            "{ws}/exp2",
            "--overwrite",
            "--set",
            "model.init_checkpoint={ws}/exp2/last.pt",
        ],
        2,
        "last.pt",
    ),
    ("train-resume-not-a-run", ["train", "--resume", "{ws}/in"], 2, "holds no run"),
    ("train-resume-missing", ["train", "--resume", "{ws}/nope"], 2, "does not exist"),
    ("train-config-is-a-list", ["train", "--config", "{ws}/list.yaml", "--data", "{ws}/dg"], 2, "YAML list"),
    (
        "train-config-alias-bomb",
        ["train", "--config", "{ws}/bomb.yaml", "--data", "{ws}/dg"],
        2,
        "model.arch",
    ),
    ("train-out-is-a-file", ["train", "--data", "{ws}/dg", "--out", "{ws}/prob.tif"], 2, "is a file"),
    ("export-an-onnx", ["export", "{ws}/m.onnx", "--out", "{ws}/x.onnx"], 2, "already an ONNX file"),
    (
        "predict-checkpoint-bad-arch",
        ["predict", SCENE, "--checkpoint", "{ws}/badarch.pt", "--prob-out", "{ws}/p.tif"],
        2,
        "badarch.pt",
    ),
    (
        "predict-foreign-manifest",
        ["predict", SCENE, *TINY, "--out-dir", "{ws}/foreign"],
        2,
        "not a roadseg manifest",
    ),
    (
        "predict-cluster-garbage-file",
        ["predict", SCENE, *TINY, "--out-dir", "{ws}/o", "--cluster", "{ws}/garbage.json"],
        2,
        "garbage.json",
    ),
    ("predict-prob-out-in-proc", ["predict", SCENE, *TINY, "--prob-out", "/proc/o.tif"], 2, "/proc"),
    (
        "predict-vrt-missing-source",
        ["predict", "{ws}/vrt/missing.vrt", *TINY, "--prob-out", "{ws}/p.tif"],
        2,
        "gone.tif",
    ),
    (
        "predict-vrt-self-reference",
        ["predict", "{ws}/vrt/self.vrt", *TINY, "--prob-out", "{ws}/p.tif"],
        2,
        "names itself",
    ),
    (
        "vectorize-vrt-missing-source",
        ["vectorize", "{ws}/vrt/missing.vrt", "--out", "{ws}/r.gpkg"],
        2,
        "gone.tif",
    ),
    (
        "evaluate-vrt-missing-source",
        ["evaluate", "--pred", "{ws}/vrt/missing.vrt", "--truth", "{ws}/prob.tif"],
        2,
        "gone.tif",
    ),
    (
        "vectorize-mosaic-crs-and-none",
        ["vectorize", "{ws}/prob.tif", "{ws}/plain.tif", "--out", "{ws}/r.gpkg"],
        2,
        "plain.tif",
    ),
    (
        "vectorize-mosaic-far-apart",
        ["vectorize", "{ws}/prob.tif", "{ws}/prob_far.tif", "--out", "{ws}/r.gpkg"],
        2,
        "Mpx",
    ),
    ("info-zero-filled-checkpoint", ["info", "{ws}/zeros.pt"], 2, "zero bytes"),
    ("predict-unwritable-out-dir", ["predict", SCENE, *TINY, "--out-dir", "/proc/results"], 2, "/proc"),
]


@pytest.mark.parametrize(("argv", "code", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(ws, argv, code, names, capsys, monkeypatch):
    monkeypatch.chdir(ws)  # a default run folder (runs/...) would land here and be seen
    before = _tree(ws)
    rc = main([a.format(ws=ws) for a in argv] + ["-q"] * (argv[0] != "info"))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, err
    assert len(lines) == 1, err[:2000]
    assert len(lines[0]) <= 410, lines[0][:500]  # one line, capped, whatever the input echoed
    assert names in lines[0], lines[0]
    assert _tree(ws) == before  # inputs unchanged, nothing left behind


def test_there_are_at_least_sixty_cases():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


def test_unwritable_output_folder_is_named_without_temporary_names(ws, tmp_path, capsys, monkeypatch):
    """As root every folder is writable, so the refusal is provoked through os.access."""
    import os

    from roadseg.io import atomic

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(atomic.os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))
    rc = main(
        [
            "predict",
            f"{ws}/in/scene.tif",
            "--checkpoint",
            f"{ws}/tiny.pt",
            "--prob-out",
            str(locked / "p.tif"),
            "-q",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not writable" in err and str(locked) in err and ".part" not in err
    assert not list(locked.iterdir())


def test_damaged_scene_under_resampling_is_named_as_the_users_file(ws, tmp_path, capsys):
    """A scene whose header reads but whose pixels do not, read through predict's resampling
    view: the message names the file and GDAL's reason, not 'WarpedVRT(...)' and 'See previous
    exception'."""
    import rasterio

    src = tmp_path / "big.tif"
    profile = {
        "driver": "GTiff",
        "width": 512,
        "height": 512,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": Affine(0.25, 0, 500000, 0, -0.25, 4000000),  # tiny.pt is 0.5 m: resampled
        "tiled": True,
        "compress": "deflate",
    }
    rng = np.random.default_rng(0)
    with rasterio.open(src, "w", **profile) as dst:
        dst.write(rng.integers(0, 255, (3, 512, 512), dtype=np.uint8))
    data = src.read_bytes()
    broken = tmp_path / "broken.tif"
    broken.write_bytes(data[: int(len(data) * 0.6)])
    rc = main(
        [
            "predict",
            str(broken),
            "--checkpoint",
            str(ws / "tiny.pt"),
            "--prob-out",
            str(tmp_path / "p.tif"),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"'{broken}' cannot be read" in err and "WarpedVRT" not in err and "previous exception" not in err
    assert not (tmp_path / "p.tif").exists()


def test_blank_lines_and_comments_in_a_scene_list_are_skipped(ws, tmp_path, monkeypatch):
    """A list with blank lines is not a list of the list's own folder: only its scene runs."""
    listing = tmp_path / "scenes.txt"
    listing.write_text(f"\n# the scenes\n{ws / 'in' / 'scene.tif'}\n   \n\n")
    out = tmp_path / "out"
    assert (
        main(["predict", f"@{listing}", "--checkpoint", str(ws / "tiny.pt"), "--out-dir", str(out), "-q"])
        == 0
    )
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".qml")) == [
        "manifest.csv",
        "scene.prob.tif",
        "scene.roads.gpkg",
    ]


DAMAGED = [  # every command that reads a raster, given the same truncated GeoTIFF
    ["predict", "{ws}/trunc.tif", *TINY, "--prob-out", "{ws}/p.tif"],
    ["vectorize", "{ws}/trunc.tif", "--out", "{ws}/r.gpkg"],
    ["evaluate", "--pred", "{ws}/trunc.tif", "--truth", "{ws}/prob.tif"],
    ["conflate", "{ws}/trunc.tif", "--map", "{ws}/lines.geojson", "--out-dir", "{ws}/c", *TINY],
]
UNWRITABLE = [  # every command's output option, pointed at a folder where nothing can be created
    ["predict", SCENE, *TINY, "--prob-out", "/proc/roadseg/p.tif"],
    ["predict", SCENE, *TINY, "--out", "/proc/roadseg/r.gpkg"],
    ["predict", SCENE, *TINY, "--out-dir", "/proc/roadseg"],
    ["vectorize", "{ws}/prob.tif", "--out", "/proc/roadseg/r.gpkg"],
    ["evaluate", "--pred", "{ws}/prob.tif", "--truth", "{ws}/prob.tif", "--per-image", "/proc/roadseg/e.csv"],
    ["conflate", "{ws}/lines.geojson", "--map", "{ws}/lines.geojson", "--out-dir", "/proc/roadseg"],
    ["export", "{ws}/tiny.pt", "--out", "/proc/roadseg/m.onnx"],
    ["train", "--data", "{ws}/dg", "--out", "/proc/roadseg/run"],
]


def _one_error(ws, argv, capsys) -> tuple[int, str]:
    rc = main([a.format(ws=ws) for a in argv] + ["-q"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return rc, lines[0]


def test_every_command_names_a_damaged_raster_the_same_way(ws, capsys, monkeypatch):
    monkeypatch.chdir(ws)
    before = _tree(ws)
    for argv in DAMAGED:
        rc, line = _one_error(ws, argv, capsys)
        assert rc == 2 and "'" in line and "trunc.tif" in line, (argv[0], line)
        assert "not a raster GDAL can read" in line or "damaged or truncated" in line, (argv[0], line)
    assert _tree(ws) == before


def test_every_command_refuses_an_unwritable_output_before_any_work(ws, capsys, monkeypatch):
    """Refused at the door: no model is loaded and no training data is read first."""
    from roadseg.inference import runtime
    from roadseg.train import loop

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(runtime, "load_predictor", no_work)
    monkeypatch.setattr(loop, "build_run", no_work)
    monkeypatch.chdir(ws)
    before = _tree(ws)
    for argv in UNWRITABLE:
        rc, line = _one_error(ws, argv, capsys)
        assert rc == 2 and "/proc" in line, (argv[0], line)
        assert ".part" not in line and "Errno" not in line, line
    assert _tree(ws) == before


@pytest.mark.parametrize(
    "extra",
    [["--gsd", "inf"], ["--threshold", "1.5"], ["--pixel-size", "-1"], ["--batch-size", "0"], ["--gsd", "x"]],
)
@pytest.mark.parametrize("many", [False, True])
def test_predict_options_are_checked_before_the_model_loads(ws, capsys, monkeypatch, extra, many):
    from roadseg.inference import runtime

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(runtime, "load_predictor", no_work)
    out = ["--out-dir", f"{ws}/never"] if many else ["--prob-out", f"{ws}/never.tif"]
    rc, line = _one_error(ws, ["predict", SCENE, *TINY, *out, *extra], capsys)
    assert rc == 2 and extra[0] in line, line
    assert not (ws / "never").exists() and not (ws / "never.tif").exists()
