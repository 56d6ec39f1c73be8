"""What an encoder family provides, so that the decoders never name a family.

An encoder is an ``nn.Module`` whose ``forward`` returns five feature maps at strides
2, 4, 8, 16 and 32, with ``out_channels`` giving their widths and ``normalization`` the
input scaling its ImageNet weights expect.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from roadseg.normalization import Normalization


class Encoder(nn.Module):
    """Five feature maps at strides 2-32 out; ``out_channels`` their widths, ``normalization``
    the input scaling its pretrained weights expect."""

    out_channels: tuple[int, ...]
    normalization: Normalization


#: ``encoder_weights`` value: "imagenet", a path to a weights file, or None.
EncoderWeights = str | os.PathLike[str] | None


@dataclass(frozen=True)
class EncoderSpec:
    """One registered encoder: how to build it and what the model names built on it say."""

    #: ``builder(in_channels=..., weights=...)`` returns the encoder module.
    builder: Callable[..., Encoder]
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


def adapt_input_conv(
    rgb: nn.Conv2d, in_channels: int, make: Callable[[int], nn.Conv2d], *, pretrained: bool
) -> nn.Conv2d:
    """A first conv taking ``in_channels`` bands (``make(in_channels)``), filled from ``rgb``.

    With pretrained weights: one band gets the sum of the RGB kernels (a grey image gives the
    RGB response); otherwise band i copies RGB kernel i % 3, scaled by 3 / bands so the
    activation scale is unchanged. Without, the new conv keeps its random init.
    """
    if in_channels < 1:
        from roadseg.errors import InputError

        raise InputError(f"in_channels must be >= 1, got {in_channels}")
    new = make(in_channels)
    if pretrained:
        with torch.no_grad():
            w = rgb.weight
            if in_channels == 1:
                new.weight.copy_(w.sum(dim=1, keepdim=True))
            else:
                new.weight.copy_(w[:, torch.arange(in_channels) % 3] * (3.0 / in_channels))
    return new


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A weights file as data (``weights_only``); any failure is one line naming the file."""
    from roadseg.errors import InputError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a user-file problem
        raise InputError(f"cannot read encoder weights '{path}': {exc}") from None
    if not isinstance(state, dict):
        raise InputError(f"encoder weights '{path}' hold a {type(state).__name__}, not a state_dict")
    return state
