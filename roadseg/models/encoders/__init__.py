"""Encoder registry: each family is one module exporting ``ENCODERS`` (name -> spec).

Adding a family is one file plus one line here, as in segmentation_models_pytorch.
"""

from __future__ import annotations

from roadseg.errors import InputError
from roadseg.models.encoders.base import Encoder, EncoderSpec, EncoderWeights
from roadseg.models.encoders.efficientnet_lite import ENCODERS as _LITE
from roadseg.models.encoders.resnet import ENCODERS as _RESNET

ENCODERS: dict[str, EncoderSpec] = {**_RESNET, **_LITE}

__all__ = ["ENCODERS", "Encoder", "EncoderSpec", "EncoderWeights", "build_encoder", "encoder_spec"]


def encoder_spec(name: str) -> EncoderSpec:
    """The spec of a registered encoder, or a clear error listing the valid names."""
    if name not in ENCODERS:
        raise InputError(f"unknown encoder '{name}'; expected one of {sorted(ENCODERS)}")
    return ENCODERS[name]


def build_encoder(name: str, *, in_channels: int = 3, weights: EncoderWeights = None) -> Encoder:
    """Build a registered encoder, optionally with its ImageNet weights."""
    return encoder_spec(name).builder(in_channels=in_channels, weights=weights)
