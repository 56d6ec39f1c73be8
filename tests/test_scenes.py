"""Many scenes in one run: outputs per scene, a manifest, failures recorded, resume."""

import csv
import time

import rasterio
from affine import Affine
from conftest import FAST_PREDICT, road_image, write_raster, write_tiles

from roadseg.cli import main


def _rows(path):
    with open(path, newline="") as f:
        return {r["scene"].rsplit("/", 1)[-1]: r for r in csv.DictReader(f)}


def _setup(tmp_path):
    tiles = write_tiles(tmp_path / "tiles", 2, 96, broken_bytes=3000)
    extra = write_raster(
        tmp_path / "extra.tif", road_image(64, 64, seed=5), transform=Affine(0.5, 0, 0, 0, -0.5, 0)
    )
    (tmp_path / "list.txt").write_text(f"# scenes\n{extra.name}\n")
    return tiles


def test_many_scenes_write_outputs_and_a_manifest_and_go_on_after_a_failure(
    tmp_path, varied_checkpoint, capsys
):
    tiles = _setup(tmp_path)
    out = tmp_path / "out"
    argv = [
        "predict",
        str(tiles),
        f"@{tmp_path / 'list.txt'}",
        "--out-dir",
        str(out),
        "--checkpoint",
        str(varied_checkpoint),
        *FAST_PREDICT,
        "-q",
    ]
    assert main(argv) == 1  # one scene failed: non-zero at the end, after the others
    err = capsys.readouterr().err
    assert "1 of 4 scenes failed" in err and "broken.tif" in err and len(err.strip().splitlines()) == 1
    rows = _rows(out / "manifest.csv")
    assert {k: r["status"] for k, r in rows.items()} == {
        "t0.tif": "done",
        "t1.tif": "done",
        "extra.tif": "done",
        "broken.tif": "failed",
    }
    assert "broken.tif" in rows["broken.tif"]["error"] and float(rows["t0.tif"]["megapixels"]) > 0
    for stem in ("t0", "t1", "extra"):
        with rasterio.open(out / f"{stem}.prob.tif") as ds:
            assert ds.shape in ((96, 96), (64, 64))
        assert (out / f"{stem}.roads.gpkg").is_file()
    assert not list(out.glob("broken.*")) and not list(out.glob(".*"))  # nothing half-written
    # run again: done scenes are skipped (their files untouched), the failed one is tried again
    stamp = (out / "t0.prob.tif").stat().st_mtime_ns
    (tiles / "broken.tif").write_bytes((tiles / "t1.tif").read_bytes())  # the user fixed it
    assert main(argv) == 0
    assert (out / "t0.prob.tif").stat().st_mtime_ns == stamp
    assert {r["status"] for r in _rows(out / "manifest.csv").values()} == {"done"}


def test_many_scenes_checks(tmp_path, varied_checkpoint, capsys):
    tiles = _setup(tmp_path)
    (tmp_path / "b").mkdir()
    write_raster(tmp_path / "b" / "t0.tif", road_image(32, 32))
    base = ["--checkpoint", str(varied_checkpoint), "-q"]
    cases = [
        ([str(tiles / "t0.tif"), str(tiles / "t1.tif"), *base], "need --out-dir"),
        (
            [str(tiles), "--out-dir", str(tmp_path / "o"), "--prob-out", str(tmp_path / "p.tif"), *base],
            "drop --out",
        ),
        (
            [str(tiles / "t0.tif"), str(tmp_path / "b" / "t0.tif"), "--out-dir", str(tmp_path / "o"), *base],
            "unique",
        ),
        ([str(tmp_path / "nothing*.tif"), "--out-dir", str(tmp_path / "o"), *base], "no file matches"),
        ([f"@{tmp_path / 'nope.txt'}", "--out-dir", str(tmp_path / "o"), *base], "nope.txt"),
        ([str(tiles), "--out-dir", str(tmp_path / "o"), "--vector-format", "shp", *base], "--vector-format"),
        ([str(tiles / "t0.tif"), "--out-dir", str(tiles), "--vector-format", "none", *base], None),
    ]
    for argv, message in cases:
        rc = main(["predict", *argv])
        err = capsys.readouterr().err
        if message is None:  # writing next to the inputs is fine: the names differ from every input
            assert rc == 0, err
        else:
            assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "o").exists()


def test_the_next_scene_is_read_ahead_while_the_current_one_runs(tmp_path, varied_checkpoint, monkeypatch):
    from roadseg import scenes as scenes_mod
    from roadseg.inference.predict import PredictOptions

    paths = [write_raster(tmp_path / f"s{i}.tif", road_image(64, 64, seed=i)) for i in range(3)]
    events = []
    warm = scenes_mod.ReadAhead._warm

    def record_warm(self, path):
        events.append(("read", path.name))
        return warm(self, path)

    def record_run(scene, names, folder, predictor, options):
        events.append(("run", scene.name))
        time.sleep(0.2)  # the read-ahead thread finishes meanwhile
        return {"scene": str(scene), "status": "done", "seconds": 0.2, "error": ""}

    monkeypatch.setattr(scenes_mod.ReadAhead, "_warm", record_warm)
    monkeypatch.setattr(scenes_mod, "scene_row", record_run)
    scenes_mod.run_batch(
        paths,
        tmp_path / "out",
        checkpoint=varied_checkpoint,
        options=PredictOptions(),
        outputs=scenes_mod.SceneOutputs(),
    )
    runs = [e for e in events if e[0] == "run"]
    assert runs == [("run", "s0.tif"), ("run", "s1.tif"), ("run", "s2.tif")]
    # each later scene is read while an earlier one runs, before its own run starts
    assert ("read", "s0.tif") not in events
    for name in ("s1.tif", "s2.tif"):
        assert events.index(("read", name)) < events.index(("run", name))
    ahead = scenes_mod.ReadAhead()
    ahead.start(paths[0])
    assert ahead.wait() == paths[0].stat().st_size
    ahead.start(tmp_path / "missing.tif")
    assert ahead.wait() == 0  # its run says why
    ahead.close()
