"""The QGIS plugin, in real QGIS (Debian's python3-qgis, offscreen): Predict roads on the Paris
sample with progress, styled layers rendered to a PNG, Cancel leaving nothing, a clear
message without roadseg, and the installable zip. Skips where QGIS is not installed."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_styles import QGIS_PYTHON, _has_qgis

pytestmark = pytest.mark.heavy  # QGIS in a subprocess: seconds of CPU

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "examples" / "paris_spacenet_img1447.tif"


def test_plugin_zip_is_installable(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_qgis_plugin.py"), "--out-dir", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    (zipped,) = tmp_path.glob("roadseg_qgis-*.zip")
    assert str(zipped) in out.stdout
    names = zipfile.ZipFile(zipped).namelist()
    for need in ("__init__.py", "metadata.txt", "plugin.py", "provider.py", "algorithms.py", "runner.py"):
        assert f"roadseg_qgis/{need}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.skipif(not _has_qgis(), reason="QGIS (Debian's python3-qgis) is not installed")
def test_plugin_predicts_renders_and_cancels_in_qgis(tmp_path):
    png = tmp_path / "qgis.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "ROADSEG_PYTHON": sys.executable}
    proc = subprocess.run(
        [
            QGIS_PYTHON,
            str(ROOT / "tests" / "qgis" / "plugin_check.py"),
            str(ROOT / "qgis_plugin"),
            str(SCENE),
            str(tmp_path),
            str(png),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(lines[-1].removeprefix("REPORT "))
    assert report["algorithms"] == [
        "roadseg:conflate",
        "roadseg:evaluate",
        "roadseg:predict",
        "roadseg:vectorize",
    ]
    assert report["valid"] == {"scene": True, "prob": True, "lines": True}
    assert report["features"] > 5
    # the sidecar styles were applied on load: a colour ramp, and lines graduated by mean_prob
    assert report["renderers"]["prob"] == "singlebandpseudocolor"
    assert report["renderers"]["lines"] in ("graduatedSymbol", "singleSymbol", "RuleRenderer")
    progress = report["progress"]
    assert len(set(progress)) >= 5 and progress == sorted(progress) and max(progress) >= 90
    assert report["vectorize_features"] > 5
    assert report["evaluate"]["apls"] == 1.0  # the lines against themselves
    # (those two ran from a folder holding a broken roadseg/ package) and left no file open
    assert report["resource_warnings"] == []
    # conflate against a complete map: nothing missing, the grid styled as a choropleth
    conf = report["conflate"]
    assert conf["MISSING"][:2] == [True, 0] and conf["COMPLETENESS"][0] and conf["COMPLETENESS"][1] > 0
    assert conf["COMPLETENESS"][2] == "graduatedSymbol" and report["conflate_osm"]
    assert (
        report["roadseg_error"].startswith("roadseg failed (exit 2): ")
        and "nope.gpkg" in report["roadseg_error"]
    )
    assert "{" not in report["roadseg_error"]  # the message, not the JSON event
    assert "cancelled" in report["cancel"] and report["left_after_cancel"] == []
    assert (
        "roadseg was not found" in report["missing_python"]
        and "Processing > Providers > roadseg" in report["missing_python"]
    )
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    red = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
    assert img.shape == (900, 900, 3) and red.mean() > 0.005  # the probability ramp shows
    # the lines are cold colours (violet to cyan by mean_prob) over the warm probability: they
    # stand out even where the probability is at its reddest (they were red on red before)
    cold = (img[..., 2] > 150) & (img[..., 0] < 120)
    assert cold.mean() > 0.002
