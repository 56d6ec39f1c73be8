import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from conftest import FAST_PREDICT
from PIL import Image
from scipy import ndimage

import roadseg
from roadseg.cli import main
from roadseg.errors import CheckpointError
from roadseg.weights import default_checkpoint


def test_predict_preview_shows_probability_and_lines(tmp_path, scene_path, varied_checkpoint):
    rc = main(
        [
            "predict",
            str(scene_path),
            "--checkpoint",
            str(varied_checkpoint),
            "--out",
            str(tmp_path / "r.gpkg"),
            "--preview",
            str(tmp_path / "p.png"),
            "--prob-out",
            str(tmp_path / "prob.tif"),
            *FAST_PREDICT,
            "-q",
        ]
    )
    assert rc == 0
    img = np.asarray(Image.open(tmp_path / "p.png")).astype(int)
    assert img.shape == (150, 230, 3)  # small scenes keep their size
    with rasterio.open(scene_path) as s, rasterio.open(tmp_path / "prob.tif") as p:
        scene, prob = s.read().transpose(1, 2, 0).astype(int), p.read(1) / 255
    yellow = (img[..., 0] > 200) & (img[..., 1] > 180) & (img[..., 2] < 80)
    assert len(gpd.read_file(tmp_path / "r.gpkg")) > 0 and yellow.sum() > 20  # the lines are drawn
    rest = ~ndimage.binary_dilation(yellow, iterations=2)
    # elsewhere the scene is tinted red in proportion to the probability (alpha 0.6 * p)
    expected_red = scene[..., 0] * (1 - 0.6 * prob) + 255 * 0.6 * prob
    assert np.abs(img[..., 0] - expected_red)[rest].max() <= 2
    assert prob[rest].std() > 0.1 and (img[..., 0] - scene[..., 0])[rest & (prob > 0.8)].mean() > 40


def test_vectorize_preview_draws_lines(tmp_path):
    from conftest import write_raster

    m = np.zeros((300, 2400), np.uint8)
    m[150:156, 10:2390] = 1
    path = write_raster(tmp_path / "m.tif", m)
    assert (
        main(
            [
                "vectorize",
                str(path),
                "--out",
                str(tmp_path / "r.gpkg"),
                "--preview",
                str(tmp_path / "v.png"),
                "-q",
            ]
        )
        == 0
    )
    img = np.asarray(Image.open(tmp_path / "v.png"))
    assert img.shape == (150, 1200, 3)  # downsampled to 1200 px on the long side
    yellow = (img[..., 0] > 200) & (img[..., 1] > 180) & (img[..., 2] < 80)
    assert yellow[70:80].any() and not yellow[:60].any()


def test_preview_needs_png(tmp_path, scene_path, tiny_checkpoint, capsys):
    assert (
        main(
            [
                "predict",
                str(scene_path),
                "--checkpoint",
                str(tiny_checkpoint),
                "--preview",
                str(tmp_path / "p.jpg"),
            ]
        )
        == 2
    )
    assert "--preview" in (err := capsys.readouterr().err) and "must end in .png" in err


def test_half_precision_weights_load_as_float32(tmp_path):
    model = roadseg.create_model("unet", depth=1, base_channels=4).half()
    path = roadseg.save_model(model, tmp_path / "h.pt")
    assert torch.load(path, weights_only=True)["state_dict"]["head.weight"].dtype == torch.float16
    loaded, _ = roadseg.load_model(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_missing_bundled_weights_are_explained(tmp_path, monkeypatch):
    from roadseg import weights

    monkeypatch.setattr(weights.resources, "files", lambda pkg: tmp_path)
    with pytest.raises(CheckpointError, match="pass --checkpoint PATH"):
        default_checkpoint()


def test_default_model_is_used_without_checkpoint(tmp_path, scene_path, capsys):
    path = default_checkpoint()  # shipped in the package: its absence is a failure here
    _, info = roadseg.load_model(path)
    assert info.gsd_m is not None and info.meta.get("config")
    rc = main(
        [
            "predict",
            str(scene_path),
            "--mask-out",
            str(tmp_path / "m.tif"),
            "--tile-size",
            "256",
            "--tta",
            "none",
            "--gsd",
            "native",
            "-q",
        ]
    )
    assert rc == 0, capsys.readouterr().err
