import subprocess
import sys

import numpy as np
import rasterio

from roadseg.cli import main


def test_help_and_models(capsys):
    assert main(["--help"]) == 0
    assert "predict" in capsys.readouterr().out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "dlinknet34" in out and "31.10M" in out


def test_info(capsys, tiny_checkpoint):
    assert main(["info", str(tiny_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "unet" in out and "meta.note" in out and "ImageNet" not in out
    assert main(["info"]) == 0  # no argument: the bundled model
    out = capsys.readouterr().out
    assert "default.pt" in out and "training GSD" in out


def test_predict_cli(tmp_path, scene_path, tiny_checkpoint, capsys):
    rc = main(
        [
            "predict", str(scene_path), "--checkpoint", str(tiny_checkpoint),
            "--prob-out", str(tmp_path / "p.tif"), "--mask-out", str(tmp_path / "m.tif"),
            "--tile-size", "64", "--overlap", "16", "--tta", "flip", "-q",
        ]
    )  # fmt: skip
    assert rc == 0
    with rasterio.open(tmp_path / "p.tif") as p:
        assert p.shape == (150, 230) and p.dtypes[0] == "uint8"
        assert np.isfinite(p.read(1)).all()
    assert capsys.readouterr().err == ""


def test_errors_are_one_line_with_exit_code_2(tmp_path, scene_path, tiny_checkpoint, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    cases = [
        ["predict", str(tmp_path / "missing.tif"), "--checkpoint", str(tiny_checkpoint), "--mask-out", str(tmp_path / "m.tif")],
        ["predict", str(scene_path), "--checkpoint", str(bad), "--mask-out", str(tmp_path / "m.tif")],
        ["predict", str(scene_path), "--checkpoint", str(tiny_checkpoint), "--mask-out", str(tmp_path / "m.tif"), "--bands", "1,2,9"],
        ["predict", str(scene_path), "--checkpoint", str(tiny_checkpoint), "--mask-out", str(tmp_path / "x" / "m.tif")],
        ["info", str(bad)],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "m.tif").exists()


def test_usage_error_exit_code(capsys):
    assert main(["predict"]) == 2
    assert main(["nonsense-command"]) == 2


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "roadseg", "--help"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "predict" in out.stdout


def test_predict_out_writes_road_vectors(tmp_path, scene_path, tiny_checkpoint, capsys):
    out = tmp_path / "roads.geojson"
    rc = main(
        [
            "predict", str(scene_path), "--checkpoint", str(tiny_checkpoint), "--out", str(out),
            "--tile-size", "64", "--overlap", "16", "--tta", "none", "--threshold", "0.3",
        ]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    import json

    data = json.loads(out.read_text())
    assert data["type"] == "FeatureCollection"
    # only the requested file is left: the temporary probability raster is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roads.geojson", "scene.tif", "tiny.pt"]
    assert "road lines" in capsys.readouterr().err


def test_predict_bad_out_suffix_fails_before_inference(tmp_path, scene_path, tiny_checkpoint, capsys):
    assert main(["predict", str(scene_path), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "r.kml")]) == 2
    assert "must end in .geojson or .gpkg" in capsys.readouterr().err


def test_predict_geojson_without_crs_fails_before_inference(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    from affine import Affine
    from conftest import road_image, write_raster

    from roadseg.inference import predict as predict_mod

    path = write_raster(tmp_path / "plain.tif", road_image(40, 40), crs=None, transform=Affine(2, 0, 0, 0, 2, 0))
    monkeypatch.setattr(predict_mod, "infer_scene", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    assert main(["predict", str(path), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "r.geojson")]) == 2
    assert "has no CRS" in capsys.readouterr().err


def test_ctrl_c_exits_130_with_one_line(tmp_path, scene_path, tiny_checkpoint, monkeypatch, capsys):
    from roadseg.inference import predict as predict_mod

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_mod, "infer_scene", interrupted)
    rc = main(["predict", str(scene_path), "--checkpoint", str(tiny_checkpoint), "--prob-out", str(tmp_path / "p.tif"), "-q"])
    assert rc == 130
    assert capsys.readouterr().err.strip().endswith("interrupted; no partial output was left behind")
    assert not (tmp_path / "p.tif").exists()
