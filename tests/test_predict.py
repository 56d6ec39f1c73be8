import logging

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from conftest import road_image, write_raster

import roadseg
from roadseg.checkpoint import ModelInfo
from roadseg.errors import InputError
from roadseg.inference import predict as predict_mod
from roadseg.inference.predict import PredictOptions, predict_raster
from roadseg.inference.torch_runtime import TorchPredictor
from roadseg.io.raster import pixel_sizes_m
from roadseg.models import RoadModel
from roadseg.normalization import Normalization

OPTS = PredictOptions(tile_size=64, overlap=32, batch_size=3, tta="flip", progress=False)


class _Brightness(RoadModel):
    """Logit = a * (mean channel - 0.5): bright pixels are 'road'. Receptive field 1."""

    size_divisor = 1

    def forward(self, x):
        return 10 * (x.mean(1, keepdim=True) - 0.5)


def _model(gsd=None):
    info = ModelInfo(
        arch="test",
        arch_kwargs={},
        in_channels=3,
        normalization=Normalization(mean=(0.0,) * 3, std=(1.0,) * 3),
        gsd_m=gsd,
    )
    return TorchPredictor(_Brightness(), info, device="cpu")


def _expected(img_uint8):
    return 1 / (1 + np.exp(-10 * (img_uint8.astype(np.float64).mean(0) / 255 - 0.5)))


def test_outputs_keep_grid_and_match_pixelwise_model(tmp_path, scene_path):
    res = predict_raster(
        scene_path,
        checkpoint=None,
        prob_out=tmp_path / "p.tif",
        mask_out=tmp_path / "m.tif",
        options=PredictOptions(**{**OPTS.__dict__, "prob_dtype": "float32"}),
        predictor=_model(),
    )
    with (
        rasterio.open(scene_path) as src,
        rasterio.open(res.prob_path) as p,
        rasterio.open(res.mask_path) as m,
    ):
        assert (p.crs, p.transform, p.shape) == (src.crs, src.transform, src.shape)
        assert (m.crs, m.transform, m.shape) == (src.crs, src.transform, src.shape)
        assert p.profile["compress"] == "deflate" and p.profile["tiled"]
        assert p.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        prob = p.read(1)
        np.testing.assert_allclose(prob, _expected(src.read()), atol=1e-5)
        np.testing.assert_array_equal(m.read(1), (prob >= 0.5).astype(np.uint8))
        assert m.read(1).sum() > 0
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.qml", "m.tif", "p.qml", "p.tif", "scene.tif"]


def test_uint8_probability_scaling(tmp_path, scene_path):
    res = predict_raster(
        scene_path, checkpoint=None, prob_out=tmp_path / "p.tif", options=OPTS, predictor=_model()
    )
    with rasterio.open(scene_path) as src, rasterio.open(res.prob_path) as p:
        assert p.dtypes[0] == "uint8"
        assert np.abs(p.read(1).astype(int) - np.rint(_expected(src.read()) * 255)).max() <= 1


def test_nodata_gets_zero_probability(tmp_path):
    img = road_image(100, 120)
    img[:, :30, :50] = 0
    path = write_raster(tmp_path / "nd.tif", img, nodata=0)
    res = predict_raster(path, checkpoint=None, prob_out=tmp_path / "p.tif", options=OPTS, predictor=_model())
    assert res.area_km2 == pytest.approx(100 * 120 * 0.5**2 / 1e6)  # 0.5 m pixels
    assert res.km2_per_h == pytest.approx(res.area_km2 / res.seconds * 3600)
    with rasterio.open(res.prob_path) as p:
        prob = p.read(1)
        assert prob[:30, :50].max() == 0
        assert prob[40:, 60:].min() > 0
        assert p.read_masks(1)[:30, :50].max() == 0 and p.read_masks(1)[50:, 60:].min() == 255


def test_16bit_is_stretched_by_percentiles(tmp_path):
    img8 = road_image(90, 90)
    img16 = (img8.astype(np.uint16) * 8 + 1000).astype(np.uint16)
    a = write_raster(tmp_path / "a.tif", img8)
    b = write_raster(tmp_path / "b.tif", img16)
    pa = predict_raster(a, checkpoint=None, prob_out=tmp_path / "pa.tif", options=OPTS, predictor=_model())
    pb = predict_raster(b, checkpoint=None, prob_out=tmp_path / "pb.tif", options=OPTS, predictor=_model())
    with rasterio.open(pa.prob_path) as x, rasterio.open(pb.prob_path) as y:
        ma, mb = x.read(1) > 127, y.read(1) > 127
    # the stretch maps the bright roads to near 255, so the same pixels come out as road
    assert ma.sum() > 0 and (ma == mb).mean() > 0.99


def test_single_band_is_repeated_with_warning(tmp_path):
    path = write_raster(tmp_path / "pan.tif", road_image(70, 70)[0])
    with pytest.warns(UserWarning, match="single band"):
        res = predict_raster(
            path, checkpoint=None, prob_out=tmp_path / "p.tif", options=OPTS, predictor=_model()
        )
    assert res.prob_path.exists()


def test_no_crs_warns_and_works(tmp_path):
    path = write_raster(
        tmp_path / "plain.tif", road_image(70, 70), crs=None, transform=Affine(2, 0, 0, 0, 2, 0)
    )
    with pytest.warns(UserWarning, match="no CRS"):
        res = predict_raster(
            path, checkpoint=None, mask_out=tmp_path / "m.tif", options=OPTS, predictor=_model()
        )
    assert res.mask_path.exists()


@pytest.fixture
def seen(monkeypatch):
    """The (width, height) of every grid the model runs on."""
    sizes = []
    original = predict_mod.infer_scene

    def spy(ds, *args, **kwargs):
        sizes.append((ds.width, ds.height))
        return original(ds, *args, **kwargs)

    monkeypatch.setattr(predict_mod, "infer_scene", spy)
    return sizes


def test_gsd_resampling_runs_model_at_its_gsd_and_writes_scene_grid(tmp_path, seen):
    path = write_raster(tmp_path / "s.tif", road_image(120, 100))  # 0.5 m pixels
    res = predict_raster(
        path, checkpoint=None, prob_out=tmp_path / "p.tif", options=OPTS, predictor=_model(gsd=1.0)
    )
    assert res.resampled and seen == [(50, 60)]
    with rasterio.open(path) as src, rasterio.open(res.prob_path) as p:
        assert (p.transform, p.shape) == (src.transform, src.shape)
        prob = p.read(1)
        assert prob[41:43].mean() > 180 and prob[80:90].mean() < 120  # the road at rows 40-43 survives
    seen.clear()
    predict_raster(
        path,
        checkpoint=None,
        prob_out=tmp_path / "p2.tif",
        options=PredictOptions(**{**OPTS.__dict__, "gsd": "native"}),
        predictor=_model(gsd=1.0),
    )
    assert seen == [(100, 120)]


def test_geographic_scene_is_resampled_to_square_ground_pixels(tmp_path, seen):
    """At 60° N a 1e-5° pixel is ~0.56 m wide and ~1.12 m tall: each axis gets its own factor."""
    from affine import Affine

    path = write_raster(
        tmp_path / "g.tif",
        road_image(200, 300),
        crs="EPSG:4326",
        transform=Affine(1e-5, 0, 10.0, 0, -1e-5, 60.0015),
    )
    res = predict_raster(
        path, checkpoint=None, prob_out=tmp_path / "p.tif", options=OPTS, predictor=_model(gsd=1.0)
    )
    with rasterio.open(path) as src:
        dx, dy = pixel_sizes_m(src)
    assert 0.55 < dx < 0.57 and 1.11 < dy < 1.12
    assert res.resampled and seen == [(round(300 * dx), round(200 * dy))]
    assert res.area_km2 == pytest.approx(300 * 200 * dx * dy / 1e6)
    with rasterio.open(res.prob_path) as p:
        assert p.shape == (200, 300)


def test_interrupt_leaves_nothing(tmp_path, scene_path, monkeypatch):
    calls = {"n": 0}

    class Boom(_Brightness):
        def forward(self, x):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return super().forward(x)

    info = _model().info
    before = sorted(tmp_path.iterdir())
    with pytest.raises(KeyboardInterrupt):
        predict_raster(
            scene_path,
            checkpoint=None,
            prob_out=tmp_path / "p.tif",
            mask_out=tmp_path / "m.tif",
            options=OPTS,
            predictor=TorchPredictor(Boom(), info, device="cpu"),
        )
    assert sorted(tmp_path.iterdir()) == before


def test_checkpoint_end_to_end(tmp_path, scene_path, varied_checkpoint):
    res = predict_raster(
        scene_path,
        checkpoint=varied_checkpoint,
        mask_out=tmp_path / "m.tif",
        prob_out=tmp_path / "p.tif",
        options=PredictOptions(tile_size=64, overlap=16, tta="d4", progress=False, prob_dtype="float32"),
    )
    with rasterio.open(res.mask_path) as m, rasterio.open(res.prob_path) as p:
        mask, prob = m.read(1), p.read(1)
    assert res.threshold == 0.5
    assert np.array_equal(mask, (prob >= 0.5).astype(np.uint8))  # the mask is the thresholded probability
    assert 0 < mask.mean() < 1


def test_amp_runs_bf16_only_where_the_cpu_has_it(monkeypatch):
    from roadseg import devices

    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_native_bf16", lambda: False)
    assert devices.amp_dtype(cpu, True) is None  # emulated bf16 is slower than float32
    monkeypatch.setattr(devices, "cpu_native_bf16", lambda: True)
    assert devices.amp_dtype(cpu, True) is torch.bfloat16
    assert devices.amp_dtype(cpu, False) is None


@pytest.mark.skipif(
    not __import__("roadseg.devices").devices.cpu_native_bf16(), reason="this CPU runs no native bf16"
)
def test_cpu_amp_stays_close_to_float32(tmp_path, scene_path, tiny_checkpoint):
    """--amp on a CPU with native bf16: the probabilities really change (bf16 ran), the roads do not."""
    probs = []
    for amp in (False, True):
        res = predict_raster(
            scene_path,
            checkpoint=tiny_checkpoint,
            prob_out=tmp_path / f"p{amp}.tif",
            options=PredictOptions(
                tile_size=64, overlap=16, amp=amp, device="cpu", prob_dtype="float32", progress=False
            ),
        )
        with rasterio.open(res.prob_path) as p:
            probs.append(p.read(1))
    assert not np.array_equal(probs[0], probs[1])  # reduced precision did run
    assert np.abs(probs[0] - probs[1]).max() < 0.02


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bands": (1, 5, 2)}, r"band\(s\) \[5\] out of range"),
        ({"tta": "d8"}, "--tta must be one of"),
        ({"overlap": 60}, "--overlap must be between 0 and tile size / 2"),
        ({"threshold": 1.5}, "threshold"),
        ({"device": "cuda:7"} if not torch.cuda.is_available() else {"device": "tpu"}, "device"),
        ({"gsd": "fine"}, "--gsd must be"),
    ],
)
def test_bad_options(tmp_path, scene_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        predict_raster(
            scene_path,
            checkpoint=None,
            prob_out=tmp_path / "p.tif",
            options=PredictOptions(**{**OPTS.__dict__, **kwargs}),
            predictor=_model(),
        )
    assert not (tmp_path / "p.tif").exists()


def test_bad_inputs(tmp_path, scene_path):
    with pytest.raises(InputError, match="not found"):
        predict_raster(
            tmp_path / "nope.tif",
            checkpoint=None,
            prob_out=tmp_path / "p.tif",
            options=OPTS,
            predictor=_model(),
        )
    (tmp_path / "text.tif").write_text("hello")
    with pytest.raises(InputError, match="not a raster GDAL can read"):
        predict_raster(
            tmp_path / "text.tif",
            checkpoint=None,
            prob_out=tmp_path / "p.tif",
            options=OPTS,
            predictor=_model(),
        )
    two = write_raster(tmp_path / "two.tif", road_image(40, 40)[:2])
    with pytest.raises(InputError, match="has 2 band"):
        predict_raster(two, checkpoint=None, prob_out=tmp_path / "p.tif", options=OPTS, predictor=_model())
    with pytest.raises(InputError, match="output folder"):
        predict_raster(
            scene_path,
            checkpoint=None,
            prob_out=tmp_path / "no" / "p.tif",
            options=OPTS,
            predictor=_model(),
        )
    assert not (tmp_path / "p.tif").exists()


def test_output_is_the_same_whatever_the_pass_size(tmp_path, scene_path, varied_checkpoint):
    def run(name, max_pass):
        opts = PredictOptions(
            tile_size=64,
            overlap=16,
            tta="d4",
            batch_size=3,
            progress=False,
            prob_dtype="float32",
            max_pass=max_pass,
        )
        predict_raster(scene_path, checkpoint=varied_checkpoint, prob_out=tmp_path / name, options=opts)
        with rasterio.open(tmp_path / name) as ds:
            return ds.read(1)

    one, all_at_once = run("one.tif", 1), run("all.tif", 24)
    np.testing.assert_allclose(one, all_at_once, atol=1e-6)
    assert one.std() > 0.05


def test_output_is_the_same_whatever_the_batch(tmp_path, scene_path, varied_checkpoint):
    def run(name, batch, max_pass):
        opts = PredictOptions(
            tile_size=64, overlap=16, tta="d4", batch_size=batch, max_pass=max_pass, progress=False
        )
        predict_raster(scene_path, checkpoint=varied_checkpoint, prob_out=tmp_path / name, options=opts)
        with rasterio.open(tmp_path / name) as ds:
            return ds.read(1)

    base = run("a.tif", 1, 1)
    for i, (batch, max_pass) in enumerate([(5, 3), (2, 16), (None, None)]):
        np.testing.assert_array_equal(run(f"b{i}.tif", batch, max_pass), base)


def test_pass_plan_follows_free_memory(varied_checkpoint):
    from roadseg.inference.memory import PassPlan, plan_passes

    predictor = TorchPredictor.load(varied_checkpoint, device="cpu")
    per_1024 = predictor.image_bytes(1024)
    assert predictor.image_bytes(512) * 4 == per_1024
    kw = {"tile": 1024, "views": 8, "batch_size": None, "max_pass": None, "divisor": 32}
    need = predictor.image_bytes
    # plenty: CPU keeps one image per pass (fastest there); CUDA takes what fits, at most a batch
    assert plan_passes(need, cuda=False, free=100 * per_1024, **kw) == PassPlan(1024, 4, 1)
    big = plan_passes(need, cuda=True, free=100 * per_1024, **kw)
    assert (big.tile, big.batch, big.per_pass) == (1024, 6, 48)
    assert plan_passes(need, cuda=True, free=10 * per_1024, **kw).per_pass == 5
    # one 1024 image does not fit: the tile halves until it does (half of what is free is the budget)
    assert plan_passes(need, cuda=False, free=per_1024 * 2 // 3, **kw).tile == 512
    assert plan_passes(need, cuda=False, free=per_1024 // 4, **kw).tile == 256
    assert plan_passes(need, cuda=False, free=1, **kw).tile == 256  # the floor
    # explicit sizes are kept
    assert plan_passes(need, cuda=True, free=10 * per_1024, **{**kw, "batch_size": 2, "max_pass": 3}) == (
        PassPlan(1024, 2, 3)
    )


def test_low_memory_shrinks_the_tile_and_still_predicts(tmp_path, scene_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)  # an earlier quiet CLI test leaves the root logger at ERROR
    predictor = _model()
    monkeypatch.setattr(TorchPredictor, "free_bytes", lambda self: 1)
    opts = PredictOptions(tile_size=512, overlap=64, tta="none", progress=False, prob_dtype="float32")
    scene = write_raster(tmp_path / "big.tif", road_image(600, 700))
    res = predict_raster(
        scene, checkpoint=None, prob_out=tmp_path / "p.tif", options=opts, predictor=predictor
    )
    assert "512-px tiles do not fit, using 256-px tiles" in caplog.text
    assert res.tiles > 4  # 256-px tiles over 600 x 700
    with rasterio.open(scene) as src, rasterio.open(res.prob_path) as p:
        np.testing.assert_allclose(p.read(1), _expected(src.read()), atol=1e-5)


def test_out_of_gpu_memory_halves_the_pass_and_retries(tmp_path, scene_path, varied_checkpoint, caplog):
    """A fake CUDA OOM above 4 images per pass: the batch is redone in smaller passes, the
    smaller size is kept for the next batches, and the result equals the unconstrained run."""
    model, info = roadseg.load_model(varied_checkpoint)
    sizes = []

    class Tight(RoadModel):
        size_divisor = 2

        def forward(self, x):
            sizes.append(x.shape[0])
            if x.shape[0] > 4:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return model(x)

    opts = PredictOptions(
        tile_size=64, overlap=16, tta="d4", batch_size=2, progress=False, prob_dtype="float32", max_pass=16
    )
    predict_raster(
        scene_path,
        checkpoint=None,
        prob_out=tmp_path / "a.tif",
        options=opts,
        predictor=TorchPredictor(Tight(), info, device="cpu"),
    )
    predict_raster(
        scene_path,
        checkpoint=None,
        prob_out=tmp_path / "b.tif",
        options=opts,
        predictor=TorchPredictor(model, info, device="cpu"),
    )
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        np.testing.assert_allclose(a.read(1), b.read(1), atol=1e-6)
    sizes = [n for n in sizes if n > 1]  # batch-1 calls: prepare_model checking its BatchNorm folding
    assert sizes[:3] == [16, 8, 4] and set(sizes[3:]) == {4}
    assert "retrying with 4 images per pass" in caplog.text


def test_pixel_size_lets_a_scene_without_crs_run_at_the_models_scale(tmp_path):
    """A PNG-like scene (no CRS) declared at 0.5 m runs exactly as the same pixels georeferenced
    at 0.5 m: resampled to the model's 1 m and back onto the scene's own pixel grid."""
    import warnings

    img = road_image(200, 160)
    utm = Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0)
    geo = write_raster(tmp_path / "geo.tif", img, transform=utm)
    plain = write_raster(tmp_path / "plain.tif", img, crs=None, transform=Affine.identity())
    opts = PredictOptions(**{**OPTS.__dict__, "prob_dtype": "float32"})
    a = predict_raster(
        geo, checkpoint=None, prob_out=tmp_path / "a.tif", options=opts, predictor=_model(gsd=1.0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = predict_raster(
            plain,
            checkpoint=None,
            prob_out=tmp_path / "b.tif",
            options=PredictOptions(**{**opts.__dict__, "pixel_size": 0.5}),
            predictor=_model(gsd=1.0),
        )
        c = predict_raster(
            plain, checkpoint=None, prob_out=tmp_path / "c.tif", options=opts, predictor=_model(gsd=1.0)
        )
    assert a.resampled and b.resampled and not c.resampled
    assert b.area_km2 == pytest.approx(a.area_km2) and a.tiles == b.tiles
    with rasterio.open(a.prob_path) as pa, rasterio.open(b.prob_path) as pb:
        assert pb.crs is None and pb.transform == Affine.identity() and pb.shape == pa.shape
        np.testing.assert_allclose(pb.read(1), pa.read(1), atol=1e-6)
    with pytest.raises(InputError, match="--pixel-size is for scenes without a CRS"):
        predict_raster(
            geo,
            checkpoint=None,
            prob_out=tmp_path / "d.tif",
            options=PredictOptions(**{**opts.__dict__, "pixel_size": 0.5}),
            predictor=_model(gsd=1.0),
        )
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="--pixel-size must be"):
            predict_raster(
                plain,
                checkpoint=None,
                prob_out=tmp_path / "e.tif",
                options=PredictOptions(**{**opts.__dict__, "pixel_size": bad}),
                predictor=_model(gsd=1.0),
            )
    assert not (tmp_path / "d.tif").exists() and not (tmp_path / "e.tif").exists()
