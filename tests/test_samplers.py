"""Plans draw every random choice of a sample; datasets only read what a draw names."""

import pickle

import pytest
import torch
from test_train import _road_folder, make_deepglobe
from torch.utils.data import DataLoader

from roadseg.config import load_config
from roadseg.errors import InputError
from roadseg.normalization import IMAGENET
from roadseg.train.dataset import build_datasets
from roadseg.train.samplers import Draws, EpochPermutation, SkipSampler


def _multi(tmp_path):
    a = _road_folder(tmp_path / "a", 3, 96, 6, seed=1)
    b = _road_folder(tmp_path / "b", 3, 64, 4, seed=2)
    sets = [
        (
            f"data.sources=[{{root: {a}, gsd_m: 0.5, weight: 2, val_ids: [t0]}}, "
            f"{{root: {b}, gsd_m: 1.0, gsd_range: [0.7, 1.4], val_ids: [t0]}}]"
        ),
        "data.gsd_m=1.0",
        "data.crop_size=32",
        "data.samples_per_epoch=12",
        "data.scale_jitter=1.2",
    ]
    return build_datasets(load_config(None, sets).data, IMAGENET, seed=7)


def test_a_draw_is_a_pure_function_of_epoch_and_index(tmp_path):
    train, _ = _multi(tmp_path)
    forward = [train.plan.draw(2, i) for i in range(12)]
    backward = [train.plan.draw(2, i) for i in reversed(range(12))][::-1]
    assert forward == backward  # asked in any order, in any process: the same draws
    assert forward != [train.plan.draw(3, i) for i in range(12)]  # a new epoch draws anew
    assert pickle.loads(pickle.dumps(forward)) == forward  # they travel to loader workers
    for i in (0, 5):  # the same draw read twice: the same sample
        a, b = train.sample(i, epoch=2), train.sample(i, epoch=2)
        assert all(torch.equal(a[k], b[k]) for k in ("image", "mask", "valid"))


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_loader_workers_give_the_batches_one_process_gives(tmp_path, kind):
    if kind == "single":
        cfg = load_config(None, [f"data.root={make_deepglobe(tmp_path / 'dg', n=6)}", "data.crop_size=32"])
        train, _ = build_datasets(cfg.data, IMAGENET, seed=3)
    else:
        train, _ = _multi(tmp_path)

    def batches(workers: int, start: int) -> list[dict]:
        order = EpochPermutation(len(train), seed=3)
        order.set_epoch(1)
        draws = Draws(train.plan, SkipSampler(order, start), epoch=1)
        return list(DataLoader(train.dataset, sampler=draws, batch_size=2, num_workers=workers))

    one, two = batches(0, 0), batches(2, 0)
    assert len(one) == len(two) >= 2
    for a, b in zip(one, two, strict=True):
        assert a["id"] == b["id"] and a["source"] == b["source"]
        assert all(torch.equal(a[k], b[k]) for k in ("image", "mask", "valid"))
    resumed = batches(0, 2)  # a resume skips the first batch's indices: the rest are identical
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(one[1:], resumed, strict=True))


def test_geotiff_sources_are_refused_with_the_way_out(tmp_path):
    from affine import Affine
    from conftest import road_image, write_raster

    root = tmp_path / "geo"
    root.mkdir()
    write_raster(
        root / "s.tif", road_image(64, 64), crs="EPSG:32633", transform=Affine(0.5, 0, 5e5, 0, -0.5, 4e6)
    )
    (root / "s.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    sets = [f"data.sources=[{{root: {root}, gsd_m: 0.5}}]", "data.gsd_m=0.5", "data.crop_size=32"]
    with pytest.raises(InputError, match=r"data.sources\[0\] .* GeoTIFFs with road vectors.*data.root"):
        build_datasets(load_config(None, sets).data, IMAGENET, seed=0)


def test_tolerance_band_leaves_out_background_near_roads_only():
    import numpy as np

    from roadseg.train.dataset import tolerance_band

    mask = np.zeros((21, 21), np.uint8)
    mask[9:12, :] = 1  # a road 3 px wide
    valid = np.ones_like(mask)
    valid[0, 0] = 0  # already unlabelled: stays so
    out = tolerance_band(mask, valid, 2.4)  # rounds to 2 px
    rows = out[:, 10]
    assert rows.tolist() == [1] * 7 + [0, 0] + [1, 1, 1] + [0, 0] + [1] * 7
    assert out[0, 0] == 0 and valid[7, 10] == 1  # the input is not changed in place
    assert tolerance_band(mask, valid, 0.4) is valid  # under half a pixel: off
    assert tolerance_band(np.zeros_like(mask), valid, 3) is valid  # no road: nothing near one


def test_label_tolerance_applies_to_training_crops_of_its_source_only(tmp_path):
    a = _road_folder(tmp_path / "a", 3, 96, 6, seed=1)
    sets = [
        f"data.sources=[{{root: {a}, gsd_m: 1.0, val_ids: [t0], label_tolerance_m: TOL}}]",
        "data.gsd_m=1.0",
        "data.crop_size=64",
        "data.samples_per_epoch=6",
    ]

    def samples(tol: float) -> tuple[list[dict], dict]:
        cfg = load_config(None, [sets[0].replace("TOL", str(tol)), *sets[1:]])
        train, val = build_datasets(cfg.data, IMAGENET, seed=7)
        assert val is not None
        return [train.sample(i) for i in range(6)], val.sample(0)

    plain, plain_val = samples(0.0)
    tolerant, tolerant_val = samples(3.0)
    left_out = 0
    for p, t in zip(plain, tolerant, strict=True):
        assert torch.equal(p["image"], t["image"]) and torch.equal(p["mask"], t["mask"])
        near = (p["valid"] == 1) & (t["valid"] == 0)
        assert not bool((near & (p["mask"] == 1)).any())  # road pixels always count
        left_out += int(near.sum())
    assert left_out > 0  # background beside the roads was left out
    assert torch.equal(plain_val["valid"], tolerant_val["valid"])  # validation scores every pixel


def test_a_negative_label_tolerance_is_refused():
    from roadseg.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.sources\[0\].label_tolerance_m.*>= 0 metres"):
        load_config(None, ["data.sources=[{root: x, gsd_m: 1.0, label_tolerance_m: -1}]", "data.gsd_m=1.0"])


def test_label_tolerance_of_a_single_dataset_and_where_it_is_refused(tmp_path):
    from roadseg.errors import ConfigError

    root = make_deepglobe(tmp_path / "dg", n=4)
    base = [f"data.root={root}", "data.crop_size=32", "data.val_fraction=0"]
    plain, _ = build_datasets(load_config(None, base).data, IMAGENET, seed=3)
    tolerant, _ = build_datasets(
        load_config(None, [*base, "data.label_tolerance_m=1.0", "data.gsd_m=0.5"]).data, IMAGENET, seed=3
    )
    a, b = plain.sample(0), tolerant.sample(0)
    assert torch.equal(a["mask"], b["mask"]) and int((a["valid"] - b["valid"]).sum()) > 0
    with pytest.raises(ConfigError, match=r"data.label_tolerance_m.*needs data.gsd_m"):
        load_config(None, [*base, "data.label_tolerance_m=1.0", "data.gsd_m=null"])
    with pytest.raises(ConfigError, match=r"data.label_tolerance_m.*each source its own"):
        load_config(
            None, ["data.sources=[{root: x, gsd_m: 1.0}]", "data.gsd_m=1.0", "data.label_tolerance_m=2"]
        )
