import numpy as np
import torch
from PIL import Image

import roadseg
from roadseg.cli import main
from roadseg.errors import CheckpointError
from roadseg.weights import default_checkpoint


def test_predict_preview_shows_probability_and_lines(tmp_path, scene_path, tiny_checkpoint):
    rc = main(
        [
            "predict", str(scene_path), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "r.gpkg"),
            "--preview", str(tmp_path / "p.png"), "--tile-size", "64", "--overlap", "16", "--tta", "none",
            "--threshold", "0.3", "-q",
        ]
    )  # fmt: skip
    assert rc == 0
    img = np.asarray(Image.open(tmp_path / "p.png"))
    assert img.shape == (150, 230, 3)  # small scenes keep their size


def test_vectorize_preview_draws_lines(tmp_path):
    from conftest import write_raster

    m = np.zeros((300, 2400), np.uint8)
    m[150:156, 10:2390] = 1
    path = write_raster(tmp_path / "m.tif", m)
    assert main(["vectorize", str(path), "--out", str(tmp_path / "r.gpkg"), "--preview", str(tmp_path / "v.png"), "-q"]) == 0
    img = np.asarray(Image.open(tmp_path / "v.png"))
    assert img.shape == (150, 1200, 3)  # downsampled to 1200 px on the long side
    yellow = (img[..., 0] > 200) & (img[..., 1] > 180) & (img[..., 2] < 80)
    assert yellow[70:80].any() and not yellow[:60].any()


def test_preview_needs_png(tmp_path, scene_path, tiny_checkpoint, capsys):
    assert main(["predict", str(scene_path), "--checkpoint", str(tiny_checkpoint), "--preview", str(tmp_path / "p.jpg")]) == 2
    assert "--preview" in (err := capsys.readouterr().err) and "must end in .png" in err


def test_half_precision_weights_load_as_float32(tmp_path):
    model = roadseg.create_model("unet", depth=1, base_channels=4).half()
    path = roadseg.save_model(model, tmp_path / "h.pt")
    assert torch.load(path, weights_only=True)["state_dict"]["head.weight"].dtype == torch.float16
    loaded, _ = roadseg.load_model(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_default_model_is_used_without_checkpoint(tmp_path, scene_path, capsys):
    try:
        path = default_checkpoint()
    except CheckpointError as exc:  # an installation without bundled weights says so clearly
        assert "pass --checkpoint PATH" in str(exc)
        return
    _, info = roadseg.load_model(path)
    assert info.gsd_m is not None and info.meta.get("config")
    rc = main(["predict", str(scene_path), "--mask-out", str(tmp_path / "m.tif"), "--tile-size", "256",
               "--tta", "none", "--gsd", "native", "-q"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
