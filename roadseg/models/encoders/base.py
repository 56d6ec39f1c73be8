"""What an encoder family provides, so that the decoders never name a family.

An encoder is an ``nn.Module`` whose ``forward`` returns five feature maps at strides
2, 4, 8, 16 and 32, with ``out_channels`` giving their widths and ``normalization`` the
input scaling its ImageNet weights expect.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

#: ``encoder_weights`` value: "imagenet", a path to a weights file, or None.
EncoderWeights = str | os.PathLike[str] | None


@dataclass(frozen=True)
class EncoderSpec:
    """One registered encoder: how to build it and what the model names built on it say."""

    #: ``builder(in_channels=..., weights=...)`` returns the encoder module.
    builder: Callable[..., nn.Module]
    #: short name used in model names: ``dlinknet{suffix}``, ``linknet{suffix}``.
    suffix: str
    #: words for ``roadseg models``, e.g. "ResNet34".
    label: str
    #: dilations of the D-LinkNet center on the stride-32 map.
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    #: LinkNet decoder blocks use max(in/4, this) middle channels (0: the paper's in/4).
    decoder_min_mid: int = 0
    #: "linknet": the paper's head (transposed conv to full resolution, two 3x3 convs there);
    #: "light": one 3x3 conv at stride 2 and bilinear x2 upsampling of the logits, for encoders
    #: so cheap that the full-resolution head would be a third of the model's time.
    head: Literal["linknet", "light"] = "linknet"
