"""Training configuration: frozen dataclasses read from YAML (``configs/*.yaml``).

Unknown keys and values of the wrong type are refused with the key's dotted name;
``--set key=value`` overrides are applied last; the resolved config is saved with the
run and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
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
    #: "imagenet" (mean/std, RGB) or "dlinknet" (official BGR, x/255*3.2-1.6).
    normalization: Literal["imagenet", "dlinknet"] = "imagenet"


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
    #: DeepGlobe masks are 0/255 (sometimes RGB): road where the value is >= this.
    mask_threshold: int = 128
    #: "none", or "white": pixels white in all bands are no-data (Massachusetts Roads tiles).
    invalid_rule: Literal["none", "white"] = "none"
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
    gsd_m: float | None = 0.5
    num_workers: int = 4


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
    raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _build(cls: Any, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or 'top level'}' must be a mapping, got {data!r}")
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
        raise ConfigError(f"config key 'optim.ema_decay': {cfg.optim.ema_decay} is not in [0, 1); try 0.999, or 0 for off")
    return cfg


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
    return config_from_dict(apply_overrides(data, overrides or []))


def save_config(config: TrainConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
