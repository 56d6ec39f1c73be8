"""The real client: QGIS's Deepness plugin (0.6.5, unmodified, ../shared/third_party) runs the
file `roadseg export` writes with its defaults, under the onnxruntime its installer pins
(<= 1.17.0), driven through its own dock widget as a user would ("Load default parameters",
Run). Its mask must agree with `roadseg predict --tta none` on a projected copy of the Paris
sample. Skips where QGIS or the Deepness copy is absent."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import SHARED
from rasterio.warp import Resampling, calculate_default_transform, reproject
from test_styles import QGIS_PYTHON, _has_qgis

from roadseg.checkpoint import load_model
from roadseg.cli import main
from roadseg.weights import default_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PARIS = ROOT / "examples" / "paris_spacenet_img1447.tif"
DEEPNESS = SHARED.parent / "third_party" / "deepness-0.6.5"
#: what Deepness's installer puts in (python_requirements/requirements.txt)
DEEPNESS_PACKAGES = ["onnxruntime==1.17.0", "opencv-python-headless==4.9.0.80", "numpy<2"]

pytestmark = [
    pytest.mark.heavy,  # QGIS and Deepness in a subprocess: seconds of CPU
    pytest.mark.skipif(not _has_qgis(), reason="QGIS (Debian's python3-qgis) is not installed"),
    pytest.mark.skipif(
        not (DEEPNESS / "deepness").is_dir(), reason="../shared/third_party/deepness-0.6.5 absent"
    ),
]


@pytest.fixture(scope="session")
def deepness_python():
    """QGIS's Python with Deepness's packages in a venv beside it (kept between runs)."""
    venv = (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "roadseg-tests"
        / "deepness-ort-1.17.0"
    )
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([QGIS_PYTHON, "-m", "venv", "--system-site-packages", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *DEEPNESS_PACKAGES], check=True, capture_output=True
        )
    return python


@pytest.fixture(scope="module")
def projected_paris(tmp_path_factory):
    """The Paris sample warped from lon/lat to UTM 31N at its own 0.3 m: Deepness converts
    metres to degrees at the equator's rate, so a projected layer is what the README advises."""
    out = tmp_path_factory.mktemp("deepness") / "paris_utm.tif"
    with rasterio.open(PARIS) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:32631", src.width, src.height, *src.bounds, resolution=0.3
        )
        profile = {
            **src.profile,
            "crs": "EPSG:32631",
            "transform": transform,
            "width": width,
            "height": height,
        }
        with rasterio.open(out, "w", **profile) as dst:
            for b in range(1, src.count + 1):
                reproject(
                    rasterio.band(src, b),
                    rasterio.band(dst, b),
                    resampling=Resampling.bilinear,
                    dst_nodata=0,
                )
    return out


def test_deepness_runs_the_default_export(tmp_path, deepness_python, projected_paris):
    model = tmp_path / "roads.onnx"
    assert main(["export", "--out", str(model), "-q"]) == 0
    prob = tmp_path / "prob.tif"
    args = ["predict", str(projected_paris), "--prob-out", str(prob), "--tta", "none", "-q", "--no-style"]
    assert main(args) == 0
    deepness_mask = tmp_path / "deepness_mask.tif"
    script = ROOT / "tests" / "qgis" / "deepness_check.py"
    proc = subprocess.run(
        [str(p) for p in (deepness_python, script, DEEPNESS, projected_paris, model, deepness_mask)],
        capture_output=True,
        text=True,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        timeout=600,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(lines[-1].removeprefix("REPORT "))
    print("Deepness:", {k: v for k, v in report.items() if k != "model_info"})
    assert report["onnxruntime"] == "1.17.0"
    assert report["error_boxes"] == [], report["error_boxes"]
    assert report["model_class"] == "Segmentor", report["model_info"]
    _, info = load_model(default_checkpoint())
    ui = report["ui"]
    assert ui["model_type"] == "Segmentor"
    assert ui["resolution_cm"] == pytest.approx(info.gsd_m * 100, abs=0.01)
    assert (ui["tile_size"], ui["overlap_percent"]) == (512, 12)
    assert ui["threshold_enabled"] and ui["threshold"] == pytest.approx(info.threshold, abs=0.01)
    assert not ui["remove_small"]  # seg_small_segment 0: no median filter
    assert report["run_emitted"] == 1 and report["result"] == "MapProcessingResultSuccess"

    # roadseg's probability onto Deepness's grid (0.7 m), thresholded as Deepness does
    with rasterio.open(deepness_mask) as d, rasterio.open(prob) as p:
        theirs = d.read(1).astype(bool)
        ours = np.zeros(theirs.shape, np.float32)
        reproject(
            p.read(1).astype(np.float32) / 255,
            ours,
            src_transform=p.transform,
            src_crs=p.crs,
            dst_transform=d.transform,
            dst_crs=d.crs,
            resampling=Resampling.bilinear,
        )
    ours_mask = ours >= info.threshold
    iou = (ours_mask & theirs).sum() / max(1, (ours_mask | theirs).sum())
    print(
        f"Deepness vs roadseg predict --tta none: IoU {iou:.3f}, road {theirs.mean():.3f} vs {ours_mask.mean():.3f}"
    )
    assert theirs.mean() > 0.02
    assert iou >= 0.74  # measured: 0.813 with v2, 0.772 with v3, 0.762 with v3.1 (wider, softer road edges)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-s"]))
