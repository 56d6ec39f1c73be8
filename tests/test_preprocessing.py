"""One preprocessing: a scene reaches the model identically through predict and training."""

import numpy as np
import pytest
import torch
from conftest import write_raster
from PIL import Image

from roadseg.io.raster import SceneReader, Stretch, open_raster, select_bands
from roadseg.models.encoders.efficientnet_lite import LITE_NORMALIZATION
from roadseg.preview import _read_rgb
from roadseg.train.dataset import GeoWindowDataset, RoadDataset, Sample, read_image
from roadseg.train.samplers import Draw, Window


def _scene16(path, bands=4, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.gamma(2.0, 300.0, size=(bands, 96, 128)).astype(np.uint16)
    data[1] += 1000  # bands with different ranges: a per-band stretch differs from a joint one
    return write_raster(path, data)


def _predict_input(path, bands, size):
    """What predict feeds the model for the tile at (0, 0): its reader and normalization."""
    with open_raster(path) as ds:
        reader = SceneReader(ds, select_bands(ds.count, bands, 3, str(path)))
        tile = reader.read(0, 0, size)
    return LITE_NORMALIZATION.apply(torch.from_numpy(tile)[None])[0]


@pytest.mark.parametrize("bands", [None, [3, 2, 1]])
def test_training_and_predict_feed_the_model_the_same_tensor(tmp_path, bands):
    scene = _scene16(tmp_path / "scene.tif")
    mask = tmp_path / "mask.png"
    Image.fromarray(np.zeros((96, 128), np.uint8)).save(mask)
    val = RoadDataset([Sample("s", scene, mask)], LITE_NORMALIZATION, bands=bands)
    sample = val[Draw(0, 0, seed=0)]  # whole image, padded to 32: 96 x 128 already
    x, valid = sample["image"], sample["valid"]
    expected = _predict_input(scene, bands, 128)[:, :96, :128]
    assert torch.equal(x, expected)
    assert valid.all()
    # the stretch is per band over the scene: band 2's extra 1000 does not change the picture
    assert read_image(scene, bands).mean(axis=(0, 1)).std() < 5


def test_geotiff_windows_are_stretched_like_the_whole_scene(tmp_path):
    import geopandas as gpd
    from shapely.geometry import LineString

    scene = _scene16(tmp_path / "scene.tif", bands=3)
    with open_raster(scene) as ds:
        x0, y0 = ds.transform @ (0, 48)
        x1, _ = ds.transform @ (128, 48)
        whole = SceneReader(ds, (1, 2, 3)).read_all()
    gpd.GeoDataFrame(geometry=[LineString([(x0, y0), (x1, y0)])], crs="EPSG:32633").to_file(
        tmp_path / "scene.gpkg"
    )
    ds_geo = GeoWindowDataset([Sample("s", scene, tmp_path / "scene.gpkg")], LITE_NORMALIZATION)
    for r, c in ((0, 0), (17, 40), (32, 64)):
        image, _, _ = ds_geo.read(0, Window(r, c, 64, 64))
        assert np.array_equal(image, whole[:, r : r + 64, c : c + 64].transpose(1, 2, 0))


def test_preview_shows_the_stretch_the_model_saw(tmp_path):
    scene = _scene16(tmp_path / "scene.tif", bands=3)
    with open_raster(scene) as ds:
        rgb = _read_rgb(ds, (96, 128), [3, 2, 1])
        assert np.array_equal(rgb, SceneReader(ds, (3, 2, 1)).read_all().transpose(1, 2, 0))


def test_eight_bit_passes_through_and_a_single_band_is_repeated(tmp_path):
    grey = write_raster(tmp_path / "pan.tif", np.arange(96 * 128, dtype=np.uint8).reshape(96, 128))
    with pytest.warns(UserWarning, match="single band"):
        image = read_image(grey, None)
    with open_raster(grey) as ds:
        assert Stretch.of_scene(ds, [1]).lohi is None
        assert np.array_equal(image[..., 0], ds.read(1))
    assert np.array_equal(image[..., 0], image[..., 2])
