import subprocess
import sys

import rasterio
from conftest import FAST_PREDICT, road_image, write_raster

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
    assert "default.pt" in out and "model GSD" in out


def test_predict_cli(tmp_path, scene_path, varied_checkpoint, capsys):
    rc = main(
        [
            "predict",
            str(scene_path),
            "--checkpoint",
            str(varied_checkpoint),
            "--prob-out",
            str(tmp_path / "p.tif"),
            "--mask-out",
            str(tmp_path / "m.tif"),
            "--tile-size",
            "64",
            "--overlap",
            "16",
            "--tta",
            "flip",
            "-q",
        ]
    )
    assert rc == 0
    with rasterio.open(tmp_path / "p.tif") as p, rasterio.open(tmp_path / "m.tif") as m:
        assert p.shape == m.shape == (150, 230) and p.dtypes[0] == "uint8"
        assert p.crs == m.crs and p.transform == m.transform  # on the scene's grid
        prob, mask = p.read(1), m.read(1)
    assert prob.min() < 50 and prob.max() > 150  # a probability over its range, not a constant
    # the mask is the probability at 0.5; uint8 rounding may move a pixel on the boundary
    assert ((prob >= 128) == (mask == 1)).mean() > 0.999
    assert capsys.readouterr().err == ""


def test_errors_are_one_line_with_exit_code_2(tmp_path, scene_path, tiny_checkpoint, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    cases = [
        [
            "predict",
            str(tmp_path / "missing.tif"),
            "--checkpoint",
            str(tiny_checkpoint),
            "--mask-out",
            str(tmp_path / "m.tif"),
        ],
        ["predict", str(scene_path), "--checkpoint", str(bad), "--mask-out", str(tmp_path / "m.tif")],
        [
            "predict",
            str(scene_path),
            "--checkpoint",
            str(tiny_checkpoint),
            "--mask-out",
            str(tmp_path / "m.tif"),
            "--bands",
            "1,2,9",
        ],
        [
            "predict",
            str(scene_path),
            "--checkpoint",
            str(tiny_checkpoint),
            "--mask-out",
            str(tmp_path / "x" / "m.tif"),
        ],
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
    out = subprocess.run(
        [sys.executable, "-m", "roadseg", "--help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and "predict" in out.stdout


def test_predict_out_writes_road_vectors(tmp_path, scene_path, tiny_checkpoint, capsys):
    out = tmp_path / "roads.geojson"
    rc = main(
        [
            "predict",
            str(scene_path),
            "--checkpoint",
            str(tiny_checkpoint),
            "--out",
            str(out),
            *FAST_PREDICT,
            "--threshold",
            "0.3",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    import json

    data = json.loads(out.read_text())
    assert data["type"] == "FeatureCollection"
    # only the requested file is left: the temporary probability raster is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "roads.geojson",
        "roads.qml",
        "scene.tif",
        "tiny.pt",
    ]
    assert "road lines" in capsys.readouterr().err


def test_predict_bad_out_suffix_fails_before_inference(tmp_path, scene_path, tiny_checkpoint, capsys):
    assert (
        main(
            [
                "predict",
                str(scene_path),
                "--checkpoint",
                str(tiny_checkpoint),
                "--out",
                str(tmp_path / "r.kml"),
            ]
        )
        == 2
    )
    assert "must end in .geojson or .gpkg" in capsys.readouterr().err


def test_predict_geojson_without_crs_fails_before_inference(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    from affine import Affine
    from conftest import road_image, write_raster

    from roadseg.inference import predict as predict_mod

    path = write_raster(
        tmp_path / "plain.tif", road_image(40, 40), crs=None, transform=Affine(2, 0, 0, 0, 2, 0)
    )
    monkeypatch.setattr(
        predict_mod, "infer_scene", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran"))
    )
    assert (
        main(
            ["predict", str(path), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "r.geojson")]
        )
        == 2
    )
    assert "has no CRS" in capsys.readouterr().err


def test_ctrl_c_exits_130_with_one_line(tmp_path, scene_path, tiny_checkpoint, monkeypatch, capsys):
    from roadseg.inference import predict as predict_mod

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_mod, "infer_scene", interrupted)
    rc = main(
        [
            "predict",
            str(scene_path),
            "--checkpoint",
            str(tiny_checkpoint),
            "--prob-out",
            str(tmp_path / "p.tif"),
            "-q",
        ]
    )
    assert rc == 130
    assert capsys.readouterr().err.strip().endswith("interrupted; no partial output was left behind")
    assert not (tmp_path / "p.tif").exists()


def _sigterm_self(*args, **kwargs):
    import os
    import signal
    import time

    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)  # the handler raises here
    raise AssertionError("SIGTERM was not handled")


def test_sigterm_cleans_up_like_ctrl_c(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    """SIGTERM (schedulers, timeout) mid-run: exit 143, one line, no output and no temporary
    file, also the resampling stage file predict keeps beside the outputs."""
    from affine import Affine
    from conftest import road_image, write_raster

    from roadseg.inference import predict as predict_mod

    scene = write_raster(
        tmp_path / "in.tif", road_image(64, 64), transform=Affine(2, 0, 500000, 0, -2, 4000000)
    )
    real = predict_mod.infer_scene
    seen = []

    def stage_then_term(ds, *args, **kwargs):
        seen.extend(p.name for p in tmp_path.rglob("*"))  # the resampling stage exists now
        _sigterm_self()
        return real(ds, *args, **kwargs)

    monkeypatch.setattr(predict_mod, "infer_scene", stage_then_term)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc = main(
        [
            "predict",
            str(scene),
            "--checkpoint",
            str(tiny_checkpoint),
            "--gsd",
            "1",
            "--prob-out",
            str(tmp_path / "p.tif"),
            "--mask-out",
            str(tmp_path / "m.tif"),
            "-q",
        ]
    )
    assert rc == 143
    assert capsys.readouterr().err.strip() == "terminated (SIGTERM); no partial output was left behind"
    assert "model_grid.tif" in seen
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_sigterm_while_saving_a_checkpoint_leaves_no_part_file(tmp_path, monkeypatch, capsys):
    """A DDP job whose worker dies is stopped by torchrun with SIGTERM to the others: rank 0
    may be writing last.pt. The partial file goes, and a first-epoch run leaves no folder."""
    import torch
    from test_train import make_deepglobe

    from roadseg import checkpoint as ckpt_mod

    data = make_deepglobe(tmp_path / "dg", n=5)
    real_save = torch.save

    def partial_save(obj, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        _sigterm_self()
        real_save(obj, path, *a, **k)

    monkeypatch.setattr(ckpt_mod.torch, "save", partial_save)
    rc = main(
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--crop-size",
            "32",
            "--set",
            "model.arch=unet",
            "--set",
            "model.encoder_weights=null",
            "--set",
            "model.kwargs={depth: 1, base_channels: 4}",
            "--set",
            "data.num_workers=0",
            "-q",
        ]
    )
    assert rc == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert not list(tmp_path.rglob("*.part*"))


def test_help_shows_no_value_for_flags(capsys):
    """Flags take no value: no ``<bool>`` beside --json, --help or --style/--no-style, which
    led users to type ``--json true`` (refused)."""
    for command in ("predict", "vectorize", "evaluate", "train", "export", "info", "models"):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "--help" in text and "<bool>" not in text, command
    assert main(["predict", "--help"]) == 0
    assert "METRES" in capsys.readouterr().out  # --pixel-size says what it takes


def test_preview_alone_draws_the_road_lines(tmp_path, paris_crop):
    """--preview without --out: the same picture as with --out (scene, probability and lines),
    nothing else left behind."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    assert main(["predict", str(paris_crop), "--preview", str(a / "p.png"), "-q"]) == 0
    assert (
        main(["predict", str(paris_crop), "--preview", str(b / "p.png"), "--out", str(b / "r.gpkg"), "-q"])
        == 0
    )
    import pyogrio

    assert len(pyogrio.read_dataframe(b / "r.gpkg", layer="roads")) > 0  # there are lines to draw
    assert (a / "p.png").read_bytes() == (b / "p.png").read_bytes()
    assert sorted(p.name for p in a.iterdir()) == ["p.png"]


def test_progress_json_is_an_event_per_line(tmp_path, paris_crop, capsys):
    """--progress json: every stderr line is one JSON event (what the QGIS plugin reads), the
    stages start, progress monotonically to their total and end; an error is an event too."""
    import json

    assert main(["--progress", "json", "predict", str(paris_crop), "--out", str(tmp_path / "r.gpkg")]) == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.err.splitlines() if line.strip()]
    assert events and all("event" in e for e in events)
    for stage in ("predict", "vectorize"):
        mine = [e for e in events if e.get("stage") == stage]
        assert mine[0]["event"] == "start" and mine[-1]["event"] == "end"
        done = [e["done"] for e in mine if e["event"] == "progress"]
        assert done == sorted(done) and done[-1] == mine[0]["total"]
    assert any(e["event"] == "message" and "road lines" in e["message"] for e in events)
    assert (
        main(["--progress", "json", "predict", str(tmp_path / "nope.tif"), "--out", str(tmp_path / "x.gpkg")])
        == 2
    )
    (error,) = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert error["event"] == "error" and error["exit_code"] == 2 and "nope.tif" in error["message"]
    assert main(["--progress", "fancy", "models"]) == 2
    assert "'fancy' is not one of 'bar', 'json', 'none'" in capsys.readouterr().err


def test_sigterm_inside_gdal_is_still_a_sigterm(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    """A SIGTERM that lands inside a GDAL read comes back as GDAL's read error (rasterio turns
    the handler's exception into RasterioIOError, roadseg into 'cannot be read'): exit 143 and
    the terminated line, not exit 2 and a bad-input message."""
    from affine import Affine
    from conftest import road_image, write_raster

    from roadseg.errors import InputError
    from roadseg.inference import predict as predict_mod

    scene = write_raster(
        tmp_path / "in.tif", road_image(64, 64), transform=Affine(0.5, 0, 500000, 0, -0.5, 4000000)
    )

    def term_inside_gdal(*args, **kwargs):
        try:
            _sigterm_self()
        except KeyboardInterrupt:
            raise InputError(
                "'in.tif' cannot be read (Read failed.): the file is damaged or truncated"
            ) from None

    monkeypatch.setattr(predict_mod, "infer_scene", term_inside_gdal)
    rc = main(
        [
            "predict",
            str(scene),
            "--checkpoint",
            str(tiny_checkpoint),
            "--prob-out",
            str(tmp_path / "p.tif"),
            "-q",
        ]
    )
    assert rc == 143
    assert capsys.readouterr().err.strip() == "terminated (SIGTERM); no partial output was left behind"
    assert not (tmp_path / "p.tif").exists() and not list(tmp_path.glob(".*part*"))


def test_quiet_and_verbose_work_before_or_after_the_command(tmp_path, capsys):
    """`roadseg -q predict ...` and `roadseg predict ... -q` are the same; the root flags do not
    leak into the next call in the same process."""
    scene = tmp_path / "s.tif"
    write_raster(scene, road_image(64, 64))
    for i, argv in enumerate((["-q", "predict", str(scene)], ["predict", str(scene), "-q"])):
        assert main([*argv, "--prob-out", str(tmp_path / f"p{i}.tif"), "--tta", "none"]) == 0
        assert capsys.readouterr().err == ""
    assert main(["predict", str(scene), "--prob-out", str(tmp_path / "p2.tif"), "--tta", "none"]) == 0
    assert "wrote" in capsys.readouterr().err  # not quiet any more
