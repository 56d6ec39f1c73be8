import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
import torch
from PIL import Image

import roadseg
from roadseg.cli import main
from roadseg.config import load_config
from roadseg.errors import ConfigError, InputError
from roadseg.io.raster import pixel_sizes_m
from roadseg.train import engine as engine_mod
from roadseg.train import loop as loop_mod
from roadseg.train import run as run_mod
from roadseg.train.dataset import discover, split
from roadseg.train.loop import TrainingDiverged, fit


def make_deepglobe(root: Path, n: int = 6, size: int = 64, seed: int = 0) -> Path:
    """Tiny DeepGlobe-layout dataset: bright roads (rows/columns) on textured ground."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.integers(30, 110, size=(size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        r, c = rng.integers(8, size - 8, 2)
        mask[r : r + 4, :] = 255
        mask[:, c : c + 4] = 255
        img[mask > 0] = rng.integers(180, 230, size=(int((mask > 0).sum()), 3), dtype=np.uint8)
        Image.fromarray(img).save(root / f"{i}_sat.jpg", quality=95)
        Image.fromarray(np.stack([mask] * 3, -1)).save(root / f"{i}_mask.png")  # RGB masks, as DeepGlobe
    return root


def tiny_cfg(data: Path, **overrides):
    sets = [
        f"data.root={data}",
        "model.arch=unet",
        "model.encoder_weights=null",
        "model.kwargs={depth: 2, base_channels: 8}",
        "data.crop_size=64",
        "data.num_workers=0",
        "batch_size=2",
        "amp=false",
        "deterministic=true",
        "optim.lr=0.01",
    ]
    sets += [f"{k}={v}" for k, v in overrides.items()]
    return load_config(None, sets)


def _rows(run: Path):
    with open(run / "log.csv") as f:
        return list(csv.DictReader(f))


def _interrupted_at_call(n: int):
    """The training loss, raising KeyboardInterrupt at its n-th call (a kill at a known step)."""
    real, calls = engine_mod.bce_dice_loss, {"n": 0}

    def loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return loss


def test_overfits_tiny_dataset(tmp_path):
    data = make_deepglobe(tmp_path / "dg", n=8)
    cfg = tiny_cfg(data, epochs=25, **{"data.val_fraction": 0.25})
    fit(cfg, tmp_path / "run", progress=False)
    rows = _rows(tmp_path / "run")
    first, last = rows[0], rows[-1]
    assert float(last["train_loss"]) < 0.6 * float(first["train_loss"])
    road_fraction = 0.12  # ~2 x 4 px lines in 64 px: chance IoU is about this
    assert float(last["val_iou"]) > 3 * road_fraction
    _, info = roadseg.load_model(tmp_path / "run" / "best.pt")
    assert info.gsd_m == 0.5 and info.meta["config"]["model"]["arch"] == "unet"


def _weights(path):
    return roadseg.load_model(path)[0].state_dict()


def _assert_same(a, b):
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_at_epoch_boundary_is_exact(tmp_path):
    data = make_deepglobe(tmp_path / "dg", n=5)
    fit(tiny_cfg(data, epochs=2), tmp_path / "a", progress=False)  # 4 train samples: 2 steps/epoch
    fit(tiny_cfg(data, epochs=1), tmp_path / "b", progress=False)
    fit(tiny_cfg(data, epochs=2), tmp_path / "b", resume=True, progress=False)
    _assert_same(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt"))
    assert [r["epoch"] for r in _rows(tmp_path / "b")] == ["1", "2"]


def test_init_checkpoint_starts_from_its_weights(tmp_path):
    data = make_deepglobe(tmp_path / "dg", n=5)
    fit(tiny_cfg(data, epochs=2), tmp_path / "a", progress=False)
    # lr 0 (and no min_lr stop): Adam leaves every parameter where init_checkpoint put it
    fit(
        tiny_cfg(
            data,
            epochs=1,
            **{"model.init_checkpoint": tmp_path / "a" / "last.pt", "optim.lr": 0.0, "optim.min_lr": 0.0},
        ),
        tmp_path / "b",
        progress=False,
    )
    a, b = (
        roadseg.load_model(tmp_path / "a" / "last.pt")[0],
        roadseg.load_model(tmp_path / "b" / "last.pt")[0],
    )
    params_b = dict(b.named_parameters())
    for name, p in a.named_parameters():
        assert torch.equal(p, params_b[name]), name
    fresh = roadseg.create_model("unet", depth=2, base_channels=8)
    assert not torch.equal(next(fresh.parameters()), next(b.parameters()))


def test_init_checkpoint_errors(tmp_path):
    data = make_deepglobe(tmp_path / "dg", n=5)
    fit(tiny_cfg(data, epochs=1), tmp_path / "a", progress=False)
    ckpt = tmp_path / "a" / "last.pt"
    with pytest.raises(
        InputError, match=r"holds unet .*'base_channels': 8.* set model.arch and model.kwargs"
    ):
        fit(
            tiny_cfg(data, **{"model.init_checkpoint": ckpt, "model.kwargs": "{depth: 2, base_channels: 4}"}),
            tmp_path / "b",
            progress=False,
        )
    with pytest.raises(InputError, match=r"set model\.normalization to match"):
        fit(
            tiny_cfg(data, **{"model.init_checkpoint": ckpt, "model.normalization": "dlinknet"}),
            tmp_path / "c",
            progress=False,
        )
    with pytest.raises(InputError, match="not found"):
        fit(tiny_cfg(data, **{"model.init_checkpoint": tmp_path / "nope.pt"}), tmp_path / "d", progress=False)


@pytest.mark.parametrize(("schedule", "ema"), [("plateau", 0.0), ("cosine", 0.0), ("cosine", 0.9)])
def test_resume_after_kill_mid_epoch_is_exact(tmp_path, monkeypatch, schedule, ema):
    data = make_deepglobe(tmp_path / "dg", n=9)  # 8 train samples, batch 2: 4 steps
    # cosine changes the lr every step, so a resumed run only matches if the lr is restored;
    # with EMA, both the average (the checkpoint's weights) and the raw weights must come back
    cfg = tiny_cfg(data, epochs=1, checkpoint_every=1, **{"optim.schedule": schedule, "optim.ema_decay": ema})
    fit(cfg, tmp_path / "a", progress=False)
    real = engine_mod.bce_dice_loss
    monkeypatch.setattr(engine_mod, "bce_dice_loss", _interrupted_at_call(4))
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "b", progress=False)
    monkeypatch.setattr(engine_mod, "bce_dice_loss", real)
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["train_state"]
    assert (state["epoch"], state["step_in_epoch"]) == (0, 3)
    fit(cfg, tmp_path / "b", resume=True, progress=False)
    _assert_same(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt"))
    if ema:
        raw = [
            torch.load(tmp_path / r / "last.pt", weights_only=True)["train_state"]["raw_state_dict"]
            for r in "ab"
        ]
        _assert_same(*raw)


def test_ema_weights_are_the_average_that_is_validated_and_saved(tmp_path, monkeypatch):
    data = make_deepglobe(tmp_path / "dg", n=5)  # 4 train samples, batch 2: 2 steps
    seen = []

    class Recording(run_mod.Ema):
        def __init__(self, model, decay):
            super().__init__(model, decay)
            seen.append({k: v.clone() for k, v in model.state_dict().items()})

        def update(self, model):
            super().update(model)
            seen.append({k: v.clone() for k, v in model.state_dict().items()})

    monkeypatch.setattr(run_mod, "Ema", Recording)
    fit(tiny_cfg(data, epochs=1, **{"optim.ema_decay": 0.5}), tmp_path / "run", progress=False)
    w0, w1, w2 = seen
    saved = _weights(tmp_path / "run" / "last.pt")
    raw = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["train_state"]["raw_state_dict"]
    for k, v in saved.items():
        if v.is_floating_point():  # warm-up decays min(0.5, (1 + n) / (10 + n)): 1/10, then 2/11
            e1 = 0.1 * w0[k] + 0.9 * w1[k]
            torch.testing.assert_close(v, 2 / 11 * e1 + 9 / 11 * w2[k])
            assert torch.equal(raw[k], w2[k])
    assert any(not torch.equal(saved[k], w2[k]) for k in saved if saved[k].is_floating_point())
    _assert_same(saved, _weights(tmp_path / "run" / "best.pt"))  # validated and kept as best
    with pytest.raises(ConfigError, match=r"optim.ema_decay.*not in \[0, 1\)"):
        tiny_cfg(data, **{"optim.ema_decay": 1.0})


@pytest.mark.parametrize(
    ("minutes", "stop", "message"),
    [(0.4, (0, 3, 3), "epoch 1, step 3"), (0.6, (1, 0, 4), "the end of epoch 1")],  # 24 s, 36 s
)
def test_max_minutes_stops_cleanly_and_resume_is_exact(tmp_path, monkeypatch, caplog, minutes, stop, message):
    data = make_deepglobe(tmp_path / "dg", n=9)  # 8 train samples, batch 2: 4 steps per epoch
    fit(tiny_cfg(data, epochs=2, **{"optim.schedule": "cosine"}), tmp_path / "a", progress=False)

    class Clock:  # each reading is 10 s after the last; the first sets the deadline
        now = -10.0
        perf_counter = staticmethod(loop_mod.time.perf_counter)

        @classmethod
        def monotonic(cls):
            cls.now += 10.0
            return cls.now

    monkeypatch.setattr(loop_mod, "time", Clock)
    caplog.set_level(logging.WARNING, logger=loop_mod.__name__)  # a CLI test may have set the root to ERROR
    limited = tiny_cfg(data, epochs=2, max_minutes=minutes, **{"optim.schedule": "cosine"})
    fit(limited, tmp_path / "b", progress=False)
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["train_state"]
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == stop
    assert f"max_minutes ({minutes}) reached at {message}" in caplog.text
    assert len(_rows(tmp_path / "b")) == stop[0]  # a row per finished epoch
    monkeypatch.undo()
    fit(tiny_cfg(data, epochs=2), tmp_path / "b", resume=True, progress=False)  # the limit is not saved
    _assert_same(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt"))


def test_cosine_schedule_decays_to_min_lr_per_step(tmp_path):
    data = make_deepglobe(tmp_path / "dg", n=5)  # 4 train samples, batch 2: 2 steps per epoch
    fit(
        tiny_cfg(data, epochs=3, **{"optim.schedule": "cosine", "optim.min_lr": 1e-4}),
        tmp_path / "r",
        progress=False,
    )
    lrs = [float(r["lr"]) for r in _rows(tmp_path / "r")]
    # half cosine over 6 steps from 0.01: after steps 2, 4 and 6
    expected = [1e-4 + (0.01 - 1e-4) * (1 + np.cos(np.pi * k / 6)) / 2 for k in (2, 4, 6)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)


@pytest.mark.skipif(
    not __import__("roadseg.devices").devices.cpu_native_bf16(), reason="this CPU runs no native bf16"
)
def test_amp_on_cpu_trains(tmp_path):
    """amp=true on a CPU with native bf16: training runs in bf16 (its losses differ from float32's
    in the low digits) and learns the same (losses within a few percent)."""
    data = make_deepglobe(tmp_path / "dg", n=5)
    losses = {}
    for amp in ("true", "false"):
        fit(tiny_cfg(data, epochs=2, amp=amp), tmp_path / amp, progress=False)
        losses[amp] = [float(r["train_loss"]) for r in _rows(tmp_path / amp)]
    assert all(np.isfinite(v) for v in losses["true"])
    assert losses["true"] != losses["false"]  # bf16 really ran
    assert np.allclose(losses["true"], losses["false"], rtol=0.05)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    data = make_deepglobe(tmp_path / "dg", n=5)
    cfg = tiny_cfg(data, epochs=3)
    real = engine_mod.bce_dice_loss
    calls = {"n": 0}

    def nan_later(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 3 else loss  # epoch 1: 2 train + 1 val call

    monkeypatch.setattr(engine_mod, "bce_dice_loss", nan_later)
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2"):
        fit(cfg, tmp_path / "run", progress=False)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["train_state"]["epoch"] == 1


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['optim.learning_rate'\]"):
        load_config(None, ["optim.learning_rate=0.1"])
    with pytest.raises(ConfigError, match="config key 'epochs': expected int"):
        load_config(None, ["epochs=many"])
    with pytest.raises(ConfigError, match=r"'model\.normalization'"):
        load_config(None, ["model.normalization=zscore"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    cfg = load_config(Path(__file__).parents[1] / "configs" / "deepglobe.yaml", ["optim.lr=1e-3"])
    assert cfg.optim.lr == 1e-3 and cfg.model.arch == "dlinknet34" and cfg.data.crop_size == 1024


ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    "path",
    sorted([*(ROOT / "configs").glob("*.yaml"), *(ROOT / "default_model").glob("*.yaml")]),
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    roadseg.create_model(cfg.model.arch, **cfg.model.kwargs)


@pytest.mark.parametrize("arch", ["linknet34", "resunet34", "dlinknet_lite0"])
def test_one_deepglobe_config_serves_every_architecture(arch):
    cfg = load_config(ROOT / "configs" / "deepglobe.yaml", [f"model.arch={arch}"])
    roadseg.create_model(cfg.model.arch, **cfg.model.kwargs)
    with pytest.raises(InputError, match="encoder_weights=null"):  # the U-Net has no encoder to load
        roadseg.create_model("unet", encoder_weights="imagenet")


def test_discovery_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no training data found"):
        discover(load_config(None, [f"data.root={empty}"]).data)
    data = make_deepglobe(tmp_path / "dg", n=3)
    (data / "1_mask.png").unlink()
    with pytest.raises(InputError, match=r"1 image\(s\) .* have no mask \(1_sat.jpg\)"):
        discover(load_config(None, [f"data.root={data}"]).data)
    folders = tmp_path / "f"
    (folders / "images").mkdir(parents=True)
    (folders / "labels").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folders / "images" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folders / "labels" / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folders / "images" / "b.png")
    with pytest.raises(InputError, match=r"b.png\); expected a file with the same name stem in 'labels/'"):
        discover(load_config(None, [f"data.root={folders}"]).data)


def test_val_ids_file(tmp_path):
    data = make_deepglobe(tmp_path / "dg", n=5)
    ids = tmp_path / "val.txt"
    ids.write_text("1\n3\n\n999\n")  # 999: in the published split, not in this copy of the data
    cfg = load_config(None, [f"data.root={data}", f"data.val_ids_file={ids}"]).data
    with pytest.warns(UserWarning, match="1 of the 3 ids .* validating on the 2 found"):
        train, val = split(discover(cfg)[1], cfg)
    assert [s.id for s in val] == ["1", "3"] and [s.id for s in train] == ["0", "2", "4"]
    ids.write_text("777\n")
    with pytest.raises(InputError, match="none of the 1 ids"):
        split(discover(cfg)[1], cfg)
    both = load_config(None, [f"data.root={data}", f"data.val_ids_file={ids}", "data.val_ids=[1]"]).data
    assert both.val_ids == ["1"]  # numeric DeepGlobe ids need no quotes
    with pytest.raises(InputError, match="not both"):
        split(discover(both)[1], both)


@pytest.mark.parametrize("preset", ["dlinknet", "strong"])
def test_augmentation_is_seeded_and_keeps_image_and_labels_aligned(preset):
    from roadseg.train.augment import augment, train_transform

    size = 96
    mask = np.zeros((size, size), np.uint8)
    mask[44:52, :] = 1  # one horizontal road
    image = np.full((size, size, 3), 60, np.uint8)
    image[mask > 0] = 220
    tf = train_transform(preset)
    angles = []
    for seed in range(30):
        a, b = (
            augment(tf, image, mask, np.ones_like(mask), seed),
            augment(tf, image, mask, np.ones_like(mask), seed),
        )
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        im, m, v = a
        assert set(np.unique(m)) <= {0, 1} and set(np.unique(v)) <= {0, 1}
        assert ((im.mean(axis=2) > 140) == (m > 0))[v > 0].mean() > 0.95  # road pixels stay under the label
        ys, xs = np.nonzero(m)
        if len(ys) > 50:  # direction of the road: principal axis of its pixels, folded to [0, 45] degrees
            _, vecs = np.linalg.eigh(np.cov(np.stack([xs, ys])))
            deg = abs(np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))) % 90
            angles.append(min(deg, 90 - deg))
    if preset == "dlinknet":
        assert max(angles) < 2  # flips, rot90 and axis scaling keep roads on the axes
    else:
        assert max(angles) > 15  # any angle


def test_white_nodata_is_invalid(tmp_path):
    from roadseg.normalization import IMAGENET
    from roadseg.train.dataset import build_datasets

    data = make_deepglobe(tmp_path / "dg", n=2)
    for i in range(2):
        img = np.asarray(Image.open(data / f"{i}_sat.jpg")).copy()
        img[:, :20] = 255
        Image.fromarray(img).save(data / f"{i}_sat.png")
        (data / f"{i}_sat.jpg").unlink()
    sets = [f"data.root={data}", "data.crop_size=64", "data.invalid_rule=white", "data.val_fraction=0.5"]
    _, val = build_datasets(load_config(None, sets).data, IMAGENET, seed=0)
    assert val is not None
    valid = val.sample(0)["valid"]
    assert valid[0, :, :20].sum() == 0 and valid[0, :, 25:].min() == 1


def test_decoded_image_cache_gives_the_same_samples_and_stays_in_budget(tmp_path, monkeypatch):
    from roadseg.normalization import IMAGENET
    from roadseg.train import dataset as ds_mod
    from roadseg.train.augment import train_transform
    from roadseg.train.samplers import RandomCrops

    data = make_deepglobe(tmp_path / "dg", n=4, size=128)
    sets = [f"data.root={data}", "data.crop_size=64", "data.samples_per_image=5"]
    _, samples = discover(load_config(None, sets).data)
    decodes = {"n": 0}
    real = ds_mod.read_image

    def counting(path, bands):
        decodes["n"] += 1
        return real(path, bands)

    monkeypatch.setattr(ds_mod, "read_image", counting)
    # one image is 128*128*5 bytes = 80 KiB: a 0.2 MiB budget holds two of the four
    cached = ds_mod.RoadDataset(samples, IMAGENET, transform=train_transform(), cache_mb=0.2)
    plain = ds_mod.RoadDataset(samples, IMAGENET, transform=train_transform(), cache_mb=0)
    plan = RandomCrops([cached.shape(j) for j in range(4)], 64, seed=0, per_image=5)
    assert decodes["n"] == 0  # the plan reads headers, not pixels
    for i in range(len(plan)):
        a, b = cached[plan.draw(0, i)], plain[plan.draw(0, i)]
        for key in ("image", "mask", "valid"):
            assert torch.equal(a[key], b[key])
    assert len(cached._cache) == 2 and cached._cache_bytes <= 0.2 * 2**20
    # plain decodes once per sample (20); cached: 4 misses per pass over 0, 1, 2, 3, 0, 1, ...
    assert decodes["n"] == 20 + 20
    decodes["n"] = 0
    for i in (0, 4, 8):  # the same image three times
        cached[plan.draw(1, i)]
    assert decodes["n"] <= 1
    image, _, _ = cached.load(0)
    with pytest.raises(ValueError, match="read-only"):
        image[0, 0, 0] = 1


def test_train_cli_and_resume(tmp_path, capsys, monkeypatch):
    data = make_deepglobe(tmp_path / "dg", n=5)
    base = [
        "--data",
        str(data),
        "--set",
        "model.arch=unet",
        "--set",
        "model.encoder_weights=null",
        "--set",
        "model.kwargs={depth: 1, base_channels: 4}",
        "--crop-size",
        "64",
        "--batch-size",
        "2",
        "--set",
        "data.num_workers=0",
        "-q",
    ]
    assert main(["train", "--out", str(tmp_path / "run"), "--epochs", "1", *base]) == 0
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "2", "-q"]) == 0
    assert [r["epoch"] for r in _rows(tmp_path / "run")] == ["1", "2"]
    # a time limit stops after the first step; a resume without --max-minutes has none
    assert main(["train", "--out", str(tmp_path / "t"), "--epochs", "1", "--max-minutes", "1e-6", *base]) == 0
    assert torch.load(tmp_path / "t" / "last.pt", weights_only=True)["train_state"]["global_step"] == 1
    assert main(["train", "--resume", str(tmp_path / "t"), "--epochs", "2", "-q"]) == 0
    assert [r["epoch"] for r in _rows(tmp_path / "t")] == ["1", "2"]
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(tmp_path / "nope"), "-q"]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # bad input leaves no run folder behind
    bad_init = ["--set", f"model.init_checkpoint={tmp_path / 'nope.pt'}"]  # found after data and model
    assert main(["train", "--out", str(tmp_path / "bad"), *base, *bad_init]) == 2
    assert not (tmp_path / "bad").exists()


def test_ctrl_c_in_training_says_what_was_kept(tmp_path, capsys, monkeypatch):
    """Interrupted before its first checkpoint a run leaves nothing; after one, its folder stays
    on purpose and the line says how to continue it (not "no partial output")."""
    data = make_deepglobe(tmp_path / "dg", n=9)  # 8 training samples, batch 2: 4 steps per epoch
    base = ["--data", str(data), "--set", "model.arch=unet", "--set", "model.encoder_weights=null"]
    base += ["--set", "model.kwargs={depth: 1, base_channels: 4}", "--crop-size", "64", "--batch-size", "2"]
    base += ["--set", "data.num_workers=0", "--set", "checkpoint_every=2", "--epochs", "2", "-q"]
    monkeypatch.setattr(engine_mod, "bce_dice_loss", _interrupted_at_call(2))  # before step 2's checkpoint
    assert main(["train", "--out", str(tmp_path / "early"), *base]) == 130
    assert "no partial output was left behind" in capsys.readouterr().err
    assert not (tmp_path / "early").exists()
    monkeypatch.setattr(engine_mod, "bce_dice_loss", _interrupted_at_call(4))  # after it
    assert main(["train", "--out", str(tmp_path / "kept"), *base]) == 130
    err = capsys.readouterr().err
    assert f"continue it with roadseg train --resume {tmp_path / 'kept'}" in err and "no partial" not in err
    assert (tmp_path / "kept" / "last.pt").is_file()
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path / "kept"), "-q"]) == 0
    assert [r["epoch"] for r in _rows(tmp_path / "kept")] == ["1", "2"]


@pytest.mark.heavy  # two processes, about 20 s
def test_ddp_two_gloo_processes(tmp_path):
    data = make_deepglobe(tmp_path / "dg", n=9)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "roadseg",
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--crop-size",
        "64",
        "--batch-size",
        "2",
        "-q",
        "--set",
        "model.arch=unet",
        "--set",
        "model.encoder_weights=null",
        "--set",
        "model.kwargs={depth: 1, base_channels: 4}",
        "--set",
        "data.num_workers=0",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = _rows(tmp_path / "run")
    assert [r["epoch"] for r in rows] == ["1", "2"]  # rank 0 alone logs
    # 8 train samples over 2 processes x batch 2: 2 steps per epoch
    assert rows[-1]["step"] == "4"
    assert roadseg.load_model(tmp_path / "run" / "last.pt")[1].arch == "unet"
    # a time limit: both processes agree to stop after the first step of epoch 3 (no hang)
    resume = [
        *cmd[: cmd.index("train") + 1],
        "--resume",
        str(tmp_path / "run"),
        "--epochs",
        "4",
        "--max-minutes",
        "1e-6",
        "--device",
        "cpu",
        "-q",
    ]
    out = subprocess.run(resume, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["train_state"]["global_step"] == 5
    assert len(_rows(tmp_path / "run")) == 2


def test_geotiff_layout_rasterizes_lines_to_metres_on_the_ground(tmp_path):
    """EPSG:4326 at 60° N: a 6 m road is 6 m wide whether it runs E-W or N-S."""
    import geopandas as gpd
    from affine import Affine
    from conftest import road_image, write_raster
    from shapely.geometry import LineString

    from roadseg.normalization import IMAGENET
    from roadseg.train.dataset import GeoWindowDataset

    root = tmp_path / "geo"
    root.mkdir()
    t = Affine(1e-5, 0, 10.0, 0, -1e-5, 60.002)  # ~0.56 m wide, ~1.11 m tall pixels
    write_raster(root / "scene.tif", road_image(160, 320), crs="EPSG:4326", transform=t)
    x0, y0 = t @ (0, 0)
    x1, y1 = t @ (320, 160)
    ew = LineString([(x0, (y0 + y1) / 2), (x1, (y0 + y1) / 2)])  # along a parallel
    ns = LineString([((x0 + x1) / 2, y0), ((x0 + x1) / 2, y1)])  # along a meridian
    gpd.GeoDataFrame(geometry=[ew, ns], crs="EPSG:4326").to_file(root / "scene.gpkg")
    cfg = load_config(None, [f"data.root={root}", "data.crop_size=512", "data.road_width_m=6"]).data
    layout, samples = discover(cfg)
    assert layout == "geotiff" and [s.id for s in samples] == ["scene"]
    ds = GeoWindowDataset(samples, IMAGENET, road_width_m=6)
    assert ds.shape(0) == (160, 320)
    image, mask, valid = ds.read(0, None)
    assert image.shape == (160, 320, 3) and valid.all()
    with rasterio.open(root / "scene.tif") as src:
        dx, dy = pixel_sizes_m(src)
    rows = mask[:, 10].sum() * dy  # the E-W road crossed N-S, in metres
    cols = mask[10, :].sum() * dx  # the N-S road crossed E-W
    assert abs(rows - 6) <= dy and abs(cols - 6) <= dx


def test_geotiff_layout_one_vector_file_for_rasters_in_two_crss(tmp_path):
    """The label cache is per (file, CRS): a shared vector file serves each raster in its own CRS."""
    import geopandas as gpd
    from affine import Affine
    from conftest import road_image, write_raster
    from shapely.geometry import LineString

    from roadseg.normalization import IMAGENET
    from roadseg.train.dataset import GeoWindowDataset

    root = tmp_path / "geo"
    root.mkdir()
    utm = Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0)  # EPSG:32633, 64 x 64 px
    write_raster(root / "a_utm.tif", road_image(64, 64), crs="EPSG:32633", transform=utm)
    with rasterio.open(root / "a_utm.tif") as src:
        west, south, east, north = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    geo = Affine((east - west) / 64, 0, west, 0, -(north - south) / 64, north)
    write_raster(root / "b_geo.tif", road_image(64, 64), crs="EPSG:4326", transform=geo)
    mid = (south + north) / 2
    gpd.GeoDataFrame(geometry=[LineString([(west, mid), (east, mid)])], crs="EPSG:4326").to_file(
        root / "roads.gpkg"
    )
    cfg = load_config(None, [f"data.root={root}", "data.crop_size=64", "data.road_width_m=4"]).data
    _, samples = discover(cfg)
    ds = GeoWindowDataset(samples, IMAGENET, road_width_m=4)
    for i in range(2):  # same file, both CRSs: the road crosses the middle of both scenes
        mask = ds.read(i, None)[1]
        assert mask[28:36].sum() > 0 and mask[:20].sum() == 0 and mask[44:].sum() == 0


def _road_folder(root: Path, n: int, size: int, width: int, seed: int) -> Path:
    """images/ + masks/ with one vertical road ``width`` pixels wide per image."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img = rng.integers(30, 110, size=(size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        c = int(rng.integers(size // 4, size // 2))
        mask[:, c : c + width] = 255
        img[mask > 0] = 210
        Image.fromarray(img).save(root / "images" / f"t{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"t{i}.png")
    return root


def _sources(tmp_path: Path) -> list[str]:
    fine = _road_folder(tmp_path / "fine", 4, 128, 8, seed=1)  # 0.5 m: an 8-px road is 4 m
    coarse = _road_folder(tmp_path / "coarse", 4, 64, 4, seed=2)  # 1 m: a 4-px road is 4 m
    return [
        (
            f"data.sources=[{{root: {fine}, gsd_m: 0.5, weight: 3, val_ids: [t0]}}, "
            f"{{root: {coarse}, gsd_m: 1.0, weight: 1, val_ids: [t0]}}]"
        ),
        "data.gsd_m=1.0",
        "data.crop_size=32",
        "data.samples_per_epoch=40",
        "data.augment=dlinknet",
    ]


def test_multi_source_resamples_every_source_to_the_model_gsd(tmp_path):
    from roadseg.normalization import IMAGENET
    from roadseg.train.dataset import build_datasets

    cfg = load_config(None, _sources(tmp_path)).data
    train, val = build_datasets(cfg, IMAGENET, seed=0)
    assert val is not None and len(train) == 40 and len(val) == 2
    picked = [train.plan.draw(0, i).source for i in range(40)]
    assert 20 <= picked.count(0) <= 38  # weight 3 : 1
    assert {train.sample(i)["source"] for i in range(40)} == {"fine", "coarse"}
    for i in range(40):
        sample = train.sample(i)
        y, v = sample["mask"], sample["valid"]
        widths = (y[0] * v[0]).sum(1)  # road pixels per row: the road runs top to bottom
        full = widths[(v[0].sum(1) == 32) & (widths > 0)]
        if len(full):  # 4 m at 1 m pixels, within the recipe's +-10 % scale and rot90
            assert 3 <= float(full.median()) <= 5 or float(full.max()) >= 28
    sizes = sorted(tuple(val.sample(i)["image"].shape[1:]) for i in range(2))
    assert sizes == [(64, 64), (64, 64)]  # the 128-px 0.5 m image becomes 64 px at 1 m


def test_multi_source_training_smoke(tmp_path):
    sets = [
        *_sources(tmp_path),
        "model.arch=unet",
        "model.encoder_weights=null",
        "model.kwargs={depth: 2, base_channels: 8}",
        "data.num_workers=0",
        "batch_size=4",
        "amp=false",
        "epochs=2",
        "data.scale_jitter=1.2",
        "data.gray_prob=0.5",
    ]
    row = fit(load_config(None, sets), tmp_path / "run", progress=False)
    assert row["epoch"] == 2 and row["val_iou"] is not None
    _, info = roadseg.load_model(tmp_path / "run" / "best.pt")
    assert info.gsd_m == 1.0
    assert [s["gsd_m"] for s in info.meta["config"]["data"]["sources"]] == [0.5, 1.0]


@pytest.mark.parametrize(
    ("sets", "match"),
    [
        (["data.sources=[{root: x}]"], r"data.sources\[0\].gsd_m"),
        (["data.sources=[{gsd_m: 1}]"], r"data.sources\[0\].root"),
        (["data.sources=[{root: x, gsd_m: 1, weight: 0}]"], "weight"),
        (["data.sources=[{root: x, gsd_m: 1, colour: red}]"], r"data.sources\[0\].colour"),
        (["data.sources=[{root: x, gsd_m: 1}]", "data.scale_jitter=0.5"], "scale_jitter"),
        (["data.sources=[{root: x, gsd_m: 1}]", "data.gsd_m=null"], "data.gsd_m"),
    ],
)
def test_multi_source_config_errors(sets, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, sets)


def test_resuming_a_cosine_run_with_other_epochs_replans_its_end(tmp_path, monkeypatch):
    """Cut short (a time limit) or extended, the lr goes on from where it was and ends at min_lr."""
    data = make_deepglobe(tmp_path / "dg", n=9)  # 8 train samples, batch 2: 4 steps per epoch
    sets = {"optim.schedule": "cosine", "optim.lr": 0.01, "optim.min_lr": 1e-4}
    # 4 training + 1 validation call per epoch: call 11 is the first step of epoch 3
    monkeypatch.setattr(engine_mod, "bce_dice_loss", _interrupted_at_call(11))
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_cfg(data, epochs=10, **sets), tmp_path / "run", progress=False)
    monkeypatch.undo()
    lr_before = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["train_state"]["optimizer"][
        "param_groups"
    ][0]["lr"]
    assert lr_before > 0.008  # 2 of 10 planned epochs: still high
    rows = []
    for epochs in (3, 5):  # shortened from the planned 10 to 3, then extended to 5
        fit(tiny_cfg(data, epochs=epochs, **sets), tmp_path / "run", resume=True, progress=False)
        rows = _rows(tmp_path / "run")
        assert abs(float(rows[-1]["lr"]) - 1e-4) < 1e-9  # annealed at the new last epoch
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[1] < lrs[0] and lrs[2] == pytest.approx(1e-4)  # no jump, down to min_lr
    assert lrs[3] <= lrs[2] * 1.0001  # extended: it stays at the floor instead of climbing back


def _colour_folder(root: Path) -> Path:
    """A land-cover dataset as Dubai's: road (110, 193, 228), building, "unlabeled" grey and
    black; one mask saved as a palette PNG."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    road, building, grey = (110, 193, 228), (60, 16, 152), (155, 155, 155)
    for i in range(3):
        mask = np.zeros((64, 64, 3), np.uint8)
        mask[:] = building
        mask[:, 20:28] = road
        mask[:8] = grey  # not labelled: neither road nor background
        mask[60:, :4] = 0
        Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(root / "images" / f"p{i}.jpg")
        im = Image.fromarray(mask)
        (im.quantize(8) if i == 0 else im).save(root / "masks" / f"p{i}.png")
    return root


def test_colour_coded_masks_road_and_ignore_colours(tmp_path):
    from roadseg.normalization import IMAGENET
    from roadseg.train.dataset import build_datasets

    root = _colour_folder(tmp_path / "dubai")
    sets = [
        (
            f"data.sources=[{{root: {root}, gsd_m: 1.0, road_rgb: [110, 193, 228], "
            "ignore_rgb: [[155, 155, 155], [0, 0, 0]], val_ids: [p0, p1]}]"
        ),
        "data.gsd_m=1.0",
        "data.crop_size=32",
    ]
    _, val = build_datasets(load_config(None, sets).data, IMAGENET, seed=0)
    assert val is not None
    for i in range(2):  # p0 is a palette PNG: the same labels come out
        sample = val.sample(i)
        y, v = sample["mask"][0].numpy(), sample["valid"][0].numpy()
        assert y[8:, 20:28].all() and y[8:, :20].sum() == 0 and y[8:, 28:].sum() == 0
        assert v[:8].sum() == 0 and v[60:, :4].sum() == 0 and v[8:60].all()  # grey, black: ignored
    with pytest.raises(ConfigError, match="road_rgb"):
        load_config(None, [f"data.sources=[{{root: {root}, gsd_m: 1, ignore_rgb: [[0, 0, 0]]}}]"])
    with pytest.raises(ConfigError, match="RGB triple"):
        load_config(None, [f"data.sources=[{{root: {root}, gsd_m: 1, road_rgb: [300, 0, 0]}}]"])


def test_uncertain_source_gsd_is_drawn_from_its_range(tmp_path):
    """gsd_range: each training crop covers a window for a GSD drawn in [low, high] (so the
    source pixel count per crop varies), validation resamples with the nominal gsd_m."""
    from roadseg.normalization import IMAGENET
    from roadseg.train.dataset import MultiSourceDataset, build_datasets

    root = _road_folder(tmp_path / "u", 2, 128, 8, seed=3)
    base = ["data.gsd_m=1.0", "data.crop_size=32", "data.samples_per_epoch=30"]
    src = f"{{root: {root}, gsd_m: 1.0, val_ids: [t0]"
    windows = {}
    for name, extra in (("point", ""), ("range", ", gsd_range: [0.5, 2.0]")):
        train, val = build_datasets(
            load_config(None, [f"data.sources=[{src}{extra}}}]", *base]).data, IMAGENET, 0
        )
        windows[name] = [train.plan.draw(0, i).windows[0].height for i in range(30)]
        assert isinstance(train.dataset, MultiSourceDataset)
        assert tuple(train.sample(0)["image"].shape[1:]) == (32, 32)  # every window resized to the crop
        assert val is not None and tuple(val.sample(0)["image"].shape[1:]) == (128, 128)
    assert set(windows["point"]) == {32}  # same GSD as the model, no jitter: 32 source px
    assert min(windows["range"]) <= 20 and max(windows["range"]) >= 48  # 16-64 px
    with pytest.raises(ConfigError, match="gsd_range"):
        load_config(None, [f"data.sources=[{src}, gsd_range: [1.2, 2.0]}}]", *base])


def test_unetpp_trains_with_deep_supervision_and_resumes_exactly(tmp_path, monkeypatch):
    data = make_deepglobe(tmp_path / "dg", n=9)
    sets = {"model.arch": "unetpp_lite0", "model.kwargs": "{}", "optim.lr": 0.001, "checkpoint_every": 1}
    cfg = tiny_cfg(data, epochs=1, **sets)
    calls = []
    real = engine_mod.bce_dice_loss

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_mod, "bce_dice_loss", counting)
    fit(cfg, tmp_path / "a", progress=False)
    assert len(calls) == 4 * 4 + 1  # 4 steps x 4 heads, one validation image x 1 head
    monkeypatch.setattr(engine_mod, "bce_dice_loss", _interrupted_at_call(4 * 2 + 1))
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "b", progress=False)
    monkeypatch.setattr(engine_mod, "bce_dice_loss", real)
    fit(cfg, tmp_path / "b", resume=True, progress=False)
    _assert_same(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt"))
    model, info = roadseg.load_model(tmp_path / "a" / "last.pt")
    assert info.arch == "unetpp_lite0" and not model.training
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)  # inference: one map


def test_init_scope_encoder_copies_only_the_encoder(tmp_path):
    data = make_deepglobe(tmp_path / "dg", n=5)
    lite = {"model.arch": "dlinknet_lite0", "model.kwargs": "{}", "epochs": 1}
    fit(tiny_cfg(data, **lite), tmp_path / "d", progress=False)
    donor = _weights(tmp_path / "d" / "last.pt")
    cfg = tiny_cfg(
        data,
        **{
            "model.arch": "unetpp_lite0",
            "model.kwargs": "{}",
            "model.init_checkpoint": tmp_path / "d" / "last.pt",
            "model.init_scope": "encoder",
            "epochs": 1,
            "max_steps_per_epoch": 0,
        },
    )
    model = roadseg.models.create_model("unetpp_lite0")
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    run_mod._init_from(model, cfg, run_mod._normalization(cfg, model))
    enc = {k[len("encoder.") :]: v for k, v in donor.items() if k.startswith("encoder.")}
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, enc[k].to(v.dtype)), k
    for k, v in model.state_dict().items():  # the nested decoder keeps its fresh init
        if not k.startswith("encoder."):
            assert torch.equal(v, fresh[k]), k
    bad = tiny_cfg(
        data,
        **{
            **lite,
            "model.arch": "unetpp18",
            "model.init_checkpoint": tmp_path / "d" / "last.pt",
            "model.init_scope": "encoder",
        },
    )
    with pytest.raises(InputError, match="does not match the encoder"):
        m = roadseg.models.create_model("unetpp18")
        run_mod._init_from(m, bad, run_mod._normalization(bad, m))
