"""QGIS style sidecars beside every output, and QGIS itself applying them (where installed)."""

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import FAST_PREDICT

from roadseg.cli import main
from roadseg.io.styles import KINDS, _template, sidecar


def _predict(tmp_path, scene, ckpt, *extra):
    argv = [
        "predict",
        str(scene),
        "--checkpoint",
        str(ckpt),
        *FAST_PREDICT,
    ]
    return main([*argv, *extra, "-q"])


def test_every_output_gets_its_style(tmp_path, scene_path, varied_checkpoint):
    out = tmp_path / "o"
    out.mkdir()
    rc = _predict(
        tmp_path,
        scene_path,
        varied_checkpoint,
        "--out",
        str(out / "roads.gpkg"),
        "--prob-out",
        str(out / "prob.tif"),
        "--mask-out",
        str(out / "mask.tif"),
    )
    assert rc == 0
    assert (out / "prob.qml").read_bytes() == _template("probability_uint8")
    assert (out / "mask.qml").read_bytes() == _template("mask")
    assert not (out / "roads.qml").exists()  # the GeoPackage holds its style (QGIS's layer_styles)
    assert _embedded(out / "roads.gpkg") == {"roads": _template("lines"), "edges": _template("lines")}
    assert b'name="expression"' in _template("lines") and b"mean_prob" in _template("lines")


def _embedded(gpkg):
    import sqlite3

    con = sqlite3.connect(gpkg)
    try:
        rows = con.execute("SELECT f_table_name, styleQML, useAsDefault FROM layer_styles").fetchall()
    finally:
        con.close()
    assert all(default == 1 for _, _, default in rows)
    return {name: qml.encode() for name, qml, _ in rows}


def test_a_users_own_style_is_kept_and_no_style_writes_none(tmp_path, scene_path, varied_checkpoint):
    mine = tmp_path / "prob.qml"
    mine.write_text("<qgis>my colours</qgis>")
    assert _predict(tmp_path, scene_path, varied_checkpoint, "--prob-out", str(tmp_path / "prob.tif")) == 0
    assert mine.read_text() == "<qgis>my colours</qgis>"
    assert (
        _predict(tmp_path, scene_path, varied_checkpoint, "--mask-out", str(tmp_path / "m.tif"), "--no-style")
        == 0
    )
    assert not (tmp_path / "m.qml").exists()


def test_same_stem_outputs_each_get_their_style(tmp_path, scene_path, varied_checkpoint, capsys):
    """--prob-out r.tif --out r.gpkg: the raster's style is r.qml, the GeoPackage keeps its own
    inside (it was refused before: both wanted r.qml). A GeoJSON has only the sidecar, so with a
    same-stem raster it is still refused, in one line naming r.qml."""
    args = ("--out", str(tmp_path / "r.gpkg"), "--prob-out", str(tmp_path / "r.tif"))
    assert _predict(tmp_path, scene_path, varied_checkpoint, *args) == 0
    assert (tmp_path / "r.qml").read_bytes() == _template("probability_uint8")
    assert _embedded(tmp_path / "r.gpkg")["roads"] == _template("lines")
    rc = _predict(
        tmp_path,
        scene_path,
        varied_checkpoint,
        "--out",
        str(tmp_path / "s.geojson"),
        "--prob-out",
        str(tmp_path / "s.tif"),
    )
    assert rc == 2 and "s.qml" in capsys.readouterr().err
    assert not list(tmp_path.glob("s.*"))


def test_a_users_own_sidecar_beside_a_geopackage_stays_in_force(tmp_path, scene_path, varied_checkpoint):
    mine = tmp_path / "roads.qml"
    mine.write_text("<qgis>my lines</qgis>")
    assert _predict(tmp_path, scene_path, varied_checkpoint, "--out", str(tmp_path / "roads.gpkg")) == 0
    assert mine.read_text() == "<qgis>my lines</qgis>"
    import sqlite3

    con = sqlite3.connect(tmp_path / "roads.gpkg")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert "layer_styles" not in tables  # else QGIS would load ours over the user's


QGIS_PYTHON = shutil.which("python3", path="/usr/bin")


def _has_qgis() -> bool:
    if QGIS_PYTHON is None:
        return False
    return (
        subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], check=False, capture_output=True).returncode
        == 0
    )


@pytest.mark.skipif(not _has_qgis(), reason="QGIS (Debian's python3-qgis) is not installed")
@pytest.mark.heavy  # QGIS in a subprocess
def test_qgis_applies_the_sidecars(tmp_path, scene_path, varied_checkpoint):
    assert (
        _predict(
            tmp_path,
            scene_path,
            varied_checkpoint,
            "--out",
            str(tmp_path / "roads.gpkg"),
            "--prob-out",
            str(tmp_path / "prob.tif"),
            "--mask-out",
            str(tmp_path / "mask.tif"),
        )
        == 0
    )
    script = textwrap.dedent(f"""
        from qgis.core import QgsApplication, QgsRasterLayer, QgsVectorLayer
        app = QgsApplication([], False); app.initQgis()
        p = QgsRasterLayer("{tmp_path / "prob.tif"}", "p"); m = QgsRasterLayer("{tmp_path / "mask.tif"}", "m")
        v = QgsVectorLayer("{tmp_path / "roads.gpkg"}", "v", "ogr")
        for layer in (p, m, v):
            msg, ok = layer.loadDefaultStyle()  # what QGIS does when a user adds the layer
            assert ok, msg
        print(p.renderer().type(), m.renderer().type(), v.renderer().type(),
              v.renderer().symbol().symbolLayerCount())
    """)
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [QGIS_PYTHON, "-c", script], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["singlebandpseudocolor", "paletted", "singleSymbol", "2"]


def test_templates_are_shipped():
    for kind in KINDS:
        assert _template(kind).startswith(b"<!DOCTYPE qgis")
    assert sidecar("a/b.prob.tif") == Path("a/b.prob.qml")
