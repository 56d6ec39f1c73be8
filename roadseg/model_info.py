"""What a model file says about its model besides the weights, checked the same way for every
format (roadseg checkpoints, official D-LinkNet files, ONNX exports).

A leaf module without torch: the ONNX runtime path and ``roadseg info`` of an ONNX file use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from roadseg.errors import CheckpointError
from roadseg.normalization import Normalization


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint says about its model, besides the weights."""

    arch: str
    arch_kwargs: dict[str, Any]
    in_channels: int
    normalization: Normalization
    gsd_m: float | None = None
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "roadseg"
    #: the model's input sides must be multiples of this (32 for every roadseg network).
    size_divisor: int = 32


#: largest input-side multiple a model may declare (a bigger one is a corrupt file)
MAX_DIVISOR = 1024


def info_from_dict(data: dict[str, Any], where: str, *, source: str = "roadseg") -> ModelInfo:
    """A validated :class:`ModelInfo` from a checkpoint's or an ONNX file's metadata dict.

    Every value that predict would act on is checked here, once for all formats: a threshold
    outside (0, 1) would write an empty or full mask, a non-positive GSD or divisor would
    divide by zero or resample to nothing.
    """
    try:
        info = ModelInfo(
            arch=str(data["arch"]),
            arch_kwargs=dict(data.get("arch_kwargs") or {}),
            in_channels=_int(data.get("in_channels", 3)),
            normalization=Normalization.from_dict(data["normalization"]),
            gsd_m=None if data.get("gsd_m") is None else float(data["gsd_m"]),
            threshold=float(data.get("threshold", 0.5)),
            meta=dict(data.get("meta") or {}),
            source=source,
            size_divisor=_int(data.get("size_divisor", 32)),
        )
    except KeyError as exc:
        raise CheckpointError(f"{where} lacks the key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where} has a malformed field: {exc}") from None
    check_info(info, where)
    return info


def _int(value: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, str))
        or float(value) != int(float(value))
    ):
        raise ValueError(f"{value!r} is not a whole number")
    return int(float(value))


def check_info(info: ModelInfo, where: str) -> None:
    """Refuse metadata predict cannot act on sensibly, naming the field and the valid range."""
    if info.gsd_m is not None and not (math.isfinite(info.gsd_m) and info.gsd_m > 0):
        raise CheckpointError(f"{where}: gsd_m {info.gsd_m} is not a positive pixel size in metres")
    if not (math.isfinite(info.threshold) and 0 < info.threshold < 1):
        raise CheckpointError(f"{where}: threshold {info.threshold} is not a probability in (0, 1)")
    if not 1 <= info.in_channels <= 64:
        raise CheckpointError(f"{where}: in_channels {info.in_channels} must be 1..64")
    if not 1 <= info.size_divisor <= MAX_DIVISOR:
        raise CheckpointError(f"{where}: size_divisor {info.size_divisor} must be 1..{MAX_DIVISOR}")
    n = len(info.normalization.mean)
    if n not in (1, info.in_channels):
        raise CheckpointError(
            f"{where}: normalization has {n} channel(s) but the model takes {info.in_channels}"
        )
