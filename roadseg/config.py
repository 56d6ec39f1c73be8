"""Training configuration: frozen dataclasses read from YAML (``configs/*.yaml``).

Unknown keys and values of the wrong type are refused with the key's dotted name;
``--set key=value`` overrides are applied last; the resolved config is saved with the
run and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from roadseg.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and its initialisation."""

    arch: str = "dlinknet34"
    #: "imagenet" (torchvision weights API), a path to a torchvision state_dict, or null.
    encoder_weights: str | None = "imagenet"
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: start from these weights (fine-tuning): "default" (the bundled model), a roadseg
    #: checkpoint or an official D-LinkNet .th file. Architecture and normalization must match.
    init_checkpoint: str | None = None
    #: "all": every weight of init_checkpoint (same architecture); "encoder": only its encoder
    #: (a new decoder on an encoder already trained on roads; the encoders must match).
    init_scope: Literal["all", "encoder"] = "all"
    #: "encoder": the input scaling the encoder's ImageNet weights expect (ImageNet mean/std for
    #: ResNets and the U-Net, [-1, 1] for EfficientNet-Lite); "imagenet" (mean/std, RGB) or
    #: "dlinknet" (official BGR, x/255*3.2-1.6).
    normalization: Literal["encoder", "imagenet", "dlinknet"] = "encoder"


@dataclass(frozen=True)
class SourceConfig:
    """One dataset of a multi-source training set (``data.sources``), with its own rules."""

    #: the folder (DeepGlobe or images/ + masks/ layout).
    root: str | None = None
    #: ground sample distance of this dataset in metres; its images are resampled to data.gsd_m.
    gsd_m: float | None = None
    #: [low, high]: the GSD is not known exactly (an unpublished one, estimated from cars):
    #: each training crop draws the source's GSD log-uniformly from this range, so the model
    #: never learns one wrong scale; validation uses gsd_m.
    gsd_range: list[float] | None = None
    #: prefix of this source's sample ids (default: the folder name).
    name: str | None = None
    layout: Literal["auto", "deepglobe", "folders"] = "auto"
    #: relative share of the training crops drawn from this source.
    weight: float = 1.0
    mask_threshold: int = 128
    invalid_rule: Literal["none", "white"] = "none"
    #: colour-coded land-cover masks: the RGB of the road class (palette PNGs are converted
    #: to RGB first); every other colour is background, except those in ignore_rgb.
    road_rgb: list[int] | None = None
    #: RGB colours that are "not labelled" (excluded from loss and scores), not background.
    ignore_rgb: list[list[int]] = field(default_factory=list)
    #: metres: how far this source's road labels may lie from the road (registration error,
    #: e.g. OSM centrelines buffered on aerial imagery). Background pixels within this distance
    #: of a road label are left out of the training loss, neither road nor background, so the
    #: model is not taught to hedge where a label may sit off the road (Mnih & Hinton 2012 on
    #: the Massachusetts labels). 0: every pixel counts. Validation always scores every pixel.
    label_tolerance_m: float = 0.0
    val_fraction: float = 0.1
    val_ids: list[str] | None = None
    val_ids_file: str | None = None
    split_seed: int = 0


@dataclass(frozen=True)
class DataConfig:
    """Where the data are and how they are split and sampled."""

    root: str | None = None
    #: auto-detected from the folder, or forced.
    layout: Literal["auto", "deepglobe", "folders", "geotiff"] = "auto"
    val_fraction: float = 0.1
    #: explicit validation ids (overrides val_fraction).
    val_ids: list[str] | None = None
    #: a text file of validation ids, one per line (e.g. the Batra et al. 2019 DeepGlobe split,
    #: data/deepglobe/val.txt of anilbatra2185/road_connectivity); ids not in the data are skipped.
    val_ids_file: str | None = None
    split_seed: int = 0
    crop_size: int = 1024
    #: 1-based bands of the images to train on, as predict's --bands (null: the first three;
    #: a single band is repeated). Images are scaled to 8-bit as predict scales scenes.
    bands: list[int] | None = None
    #: DeepGlobe masks are 0/255 (sometimes RGB): road where the value is >= this.
    mask_threshold: int = 128
    #: "none", or "white": pixels white in all bands are no-data (Massachusetts Roads tiles).
    invalid_rule: Literal["none", "white"] = "none"
    #: metres (needs gsd_m): background this close to a road label is left out of the training
    #: loss, as ``SourceConfig.label_tolerance_m`` (e.g. OSM lines buffered to road_width_m).
    label_tolerance_m: float = 0.0
    #: GeoTIFF + vector labels: road lines are buffered to this width (metres).
    road_width_m: float = 6.0
    #: GeoTIFF + vector labels: layer to read and a pandas query selecting road features.
    label_layer: str | None = None
    label_query: str | None = None
    #: random crops (windows, for GeoTIFF scenes) drawn per image per epoch.
    samples_per_image: int = 1
    #: "dlinknet" (the official recipe) or "strong" (any rotation, scale 0.75-1.33, brightness,
    #: contrast, blur: for a handful of training images).
    augment: Literal["dlinknet", "strong"] = "dlinknet"
    #: with samples_per_image > 1, each data-loader process keeps up to this many MiB of decoded
    #: images (least recently used out), so that a crop does not decode its whole image again.
    cache_mb: float = 1024
    #: ground sample distance of the data in metres, recorded in checkpoints (null: unknown).
    #: With ``sources``, the model's GSD: every source is resampled to it.
    gsd_m: float | None = 0.5
    num_workers: int = 4
    #: several datasets at once, each with its layout, GSD, no-data rule and sampling weight
    #: (then ``root`` and the split keys above are not used).
    sources: list[SourceConfig] = field(default_factory=list)
    #: with ``sources``: training crops per epoch, drawn from the sources by weight.
    samples_per_epoch: int = 1000
    #: with ``sources``: each crop's ground sample distance is gsd_m times a factor drawn
    #: log-uniformly from [1/scale_jitter, scale_jitter] (1: no jitter).
    scale_jitter: float = 1.0
    #: probability of turning a training crop grey (panchromatic scenes reach the model as
    #: one band repeated three times).
    gray_prob: float = 0.0


@dataclass(frozen=True)
class OptimConfig:
    """The D-LinkNet recipe: Adam 2e-4, lr / 5 after 3 epochs without improvement."""

    lr: float = 2e-4
    weight_decay: float = 0.0
    #: "plateau" (the D-LinkNet recipe) or "cosine": lr follows a half cosine from lr to min_lr
    #: over all epochs, per step. Cosine suits a fixed compute budget and a noisy validation
    #: loss, which makes the plateau rule cut the lr too early.
    schedule: Literal["plateau", "cosine"] = "plateau"
    plateau_patience: int = 3
    plateau_factor: float = 0.2
    min_lr: float = 5e-7
    #: the official code watches the training loss; val_loss needs a validation split.
    monitor: Literal["train_loss", "val_loss"] = "train_loss"
    #: > 0: also keep an exponential moving average of the weights (this decay per step), which
    #: is what validation scores and checkpoints hold (0: off).
    ema_decay: float = 0.0
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    #: soft Dice over the whole batch ("batch", the official code) or per image and averaged
    #: over the images that hold road ("image"): with sources of different road density, a
    #: sparse source's roads then weigh as much as a dense one's.
    dice: Literal["batch", "image"] = "batch"


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``roadseg train`` needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 300
    batch_size: int = 4
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    sync_bn: bool = False
    seed: int = 0
    deterministic: bool = False
    #: also write last.pt every N optimizer steps (0: only at epoch ends).
    checkpoint_every: int = 500
    #: cap on steps per epoch (0: the whole training set); for smoke runs.
    max_steps_per_epoch: int = 0
    #: stop cleanly after this many minutes of this process (0: no limit), with last.pt saved
    #: at the step reached, for job time limits; ``--resume`` continues exactly.
    max_minutes: float = 0.0
    threshold: float = 0.5


def _check_type(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _check_type(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': {value!r} is not a valid {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key '{key}': expected null, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"config key '{key}': {value!r} is not one of {list(args)}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        if args and dataclasses.is_dataclass(args[0]):
            return [_build(args[0], v, f"{key}[{i}].") for i, v in enumerate(value)]
        return [_check_type(v, args[0], key) for v in value] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, int) and not isinstance(value, bool):  # ids: val_ids: [104, 113]
        return str(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"config key '{key}': expected {tp.__name__}, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(
        f"config key '{key}': expected {_type_name(tp)}, got {value!r} ({type(value).__name__})"
    )


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _build(cls: Any, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(
            f"config section '{prefix.rstrip('.') or 'top level'}' must be a mapping, got {data!r}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {[prefix + k for k in unknown]}; valid keys in "
            f"'{prefix.rstrip('.') or 'top level'}': {sorted(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value or {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(value, tp, prefix + name)
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Validate a nested dict into a :class:`TrainConfig`."""
    cfg = _build(TrainConfig, data, "")
    if not 0 <= cfg.optim.ema_decay < 1:
        raise ConfigError(
            f"config key 'optim.ema_decay': {cfg.optim.ema_decay} is not in [0, 1); try 0.999, or 0 for off"
        )
    _check_numbers(cfg)
    _check_sources(cfg.data)
    return cfg


#: (dotted key, test, what is expected) for every number a run depends on
_RULES: list[tuple[str, Any, str]] = [
    ("epochs", lambda v: v >= 1, ">= 1"),
    ("batch_size", lambda v: v >= 1, ">= 1"),
    ("data.crop_size", lambda v: v >= 32, ">= 32 (a multiple of the model's 32)"),
    ("data.samples_per_image", lambda v: v >= 1, ">= 1"),
    ("data.num_workers", lambda v: v >= 0, ">= 0"),
    ("data.val_fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("data.cache_mb", lambda v: v >= 0, ">= 0"),
    ("data.road_width_m", lambda v: v > 0, "> 0 metres"),
    ("data.mask_threshold", lambda v: 1 <= v <= 255, "in 1..255"),
    ("data.label_tolerance_m", lambda v: v >= 0, ">= 0 metres (0: every pixel counts)"),
    ("optim.lr", lambda v: v >= 0, ">= 0 (0 keeps the weights as they are)"),
    ("optim.min_lr", lambda v: v >= 0, ">= 0"),
    ("optim.weight_decay", lambda v: v >= 0, ">= 0"),
    ("max_minutes", lambda v: v >= 0, ">= 0 (0: no limit)"),
    ("checkpoint_every", lambda v: v >= 0, ">= 0 (0: epoch ends only)"),
    ("max_steps_per_epoch", lambda v: v >= 0, ">= 0 (0: all)"),
    ("threshold", lambda v: 0 < v < 1, "a probability in (0, 1)"),
]


def _check_numbers(cfg: TrainConfig) -> None:
    for key, ok, expected in _RULES:
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if not (math.isfinite(node) and ok(node)):
            raise ConfigError(f"config key '{key}': {node!r} is not valid; expected {expected}")


def _check_sources(data: DataConfig) -> None:
    tol = data.label_tolerance_m
    if tol > 0 and not data.sources and data.gsd_m is None:
        raise ConfigError(
            "config key 'data.label_tolerance_m': a tolerance in metres needs data.gsd_m, the "
            "data's ground sample distance (e.g. data.gsd_m=0.5)"
        )
    if not data.sources:
        return
    if tol > 0:
        raise ConfigError(
            "config key 'data.label_tolerance_m': with data.sources, give each source its own "
            "(data.sources[i].label_tolerance_m): label styles differ by source"
        )
    if data.gsd_m is None or not data.gsd_m > 0:
        raise ConfigError("config key 'data.gsd_m': data.sources need the model's GSD in metres (e.g. 1.0)")
    if not data.scale_jitter >= 1:
        raise ConfigError(
            f"config key 'data.scale_jitter': {data.scale_jitter} must be >= 1 (1: off, 1.25: +-25 %)"
        )
    if not 0 <= data.gray_prob <= 1:
        raise ConfigError(f"config key 'data.gray_prob': {data.gray_prob} is not a probability in [0, 1]")
    if data.samples_per_epoch < 1:
        raise ConfigError(f"config key 'data.samples_per_epoch': {data.samples_per_epoch} must be >= 1")
    for i, src in enumerate(data.sources):
        key = f"data.sources[{i}]"
        if src.root is None:
            raise ConfigError(f"config key '{key}.root': each source needs the folder of its data")
        if src.gsd_m is None or not src.gsd_m > 0:
            raise ConfigError(f"config key '{key}.gsd_m': give the GSD of '{src.root}' in metres (e.g. 0.5)")
        if not src.weight > 0:
            raise ConfigError(f"config key '{key}.weight': {src.weight} must be > 0")
        if not (math.isfinite(src.label_tolerance_m) and src.label_tolerance_m >= 0):
            raise ConfigError(
                f"config key '{key}.label_tolerance_m': {src.label_tolerance_m!r} is not valid; "
                "expected >= 0 metres (0: every pixel counts)"
            )
        if src.gsd_range is not None:
            lo_hi = src.gsd_range
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= src.gsd_m <= lo_hi[1] or not math.isfinite(lo_hi[1]):
                raise ConfigError(
                    f"config key '{key}.gsd_range': {lo_hi} must be [low, high] metres around gsd_m "
                    f"{src.gsd_m} (e.g. [0.6, 1.3])"
                )
        for name, colours in (
            ("road_rgb", [src.road_rgb] if src.road_rgb else []),
            ("ignore_rgb", src.ignore_rgb),
        ):
            for c in colours:
                if len(c) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in c):
                    raise ConfigError(
                        f"config key '{key}.{name}': {c} is not an RGB triple of 0-255 integers"
                    )
        if src.ignore_rgb and src.road_rgb is None:
            raise ConfigError(f"config key '{key}.ignore_rgb': needs road_rgb (colour-coded masks)")


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(config)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested dict."""
    data = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
        node[parts[-1]] = value
    return data


def load_config(path: str | os.PathLike[str] | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' not found; see configs/ for examples")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file '{path}' cannot be read as text ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"config file '{path}' holds a YAML {type(data).__name__}; expected a mapping of sections "
                "(model:, data:, optim:, ...): see configs/ for examples"
            )
    return config_from_dict(apply_overrides(data, overrides or []))


def save_config(config: TrainConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (atomically: a killed run leaves the old one or none)."""
    from roadseg.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
