"""The bundled model's accuracy on held-out Massachusetts tiles (slow; needs ../shared/data).

A regression guard for re-exports: the floor sits just under the measured value (no TTA,
docs/model_card.md), so a broken export, normalization or resampling change fails it.
"""

import pytest

from roadseg.evaluate.tool import evaluate
from roadseg.inference.predict import PredictOptions, predict_raster

MEASURED_BREAKEVEN_NO_TTA = 0.710  # IoU 0.383; with d4 TTA: 0.726 and 0.393


@pytest.mark.slow
def test_bundled_model_on_heldout_massachusetts(tmp_path, shared_data):
    test = shared_data / "massachusetts_roads" / "test_split_jpg"
    if not test.is_dir():
        pytest.skip("massachusetts_roads/test_split_jpg is not in ../shared/data")
    opts = PredictOptions(tta="none", gsd="native", progress=False)
    for image in sorted((test / "images").glob("*.jpg")):
        predict_raster(image, checkpoint=None, prob_out=tmp_path / f"{image.stem}.tif", options=opts)
    res = evaluate(tmp_path, test / "labels", relax_px=3)
    assert len(res.rows) == 6
    assert res.metrics["breakeven"] >= MEASURED_BREAKEVEN_NO_TTA - 0.01
    assert res.metrics["iou"] >= 0.37
