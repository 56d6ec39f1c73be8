"""torchvision ResNet encoders returning multi-scale features.

The module names match torchvision's (``conv1``, ``bn1``, ``layer1``..``layer4``) so a
torchvision-format ImageNet state_dict loads directly, minus the classifier.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from roadseg.errors import InputError, WeightsUnavailableError
from roadseg.models.encoders.base import (
    Encoder,
    EncoderSpec,
    EncoderWeights,
    adapt_input_conv,
    read_state_dict,
)
from roadseg.normalization import IMAGENET

_RESNETS = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": (tvm.resnet101, tvm.ResNet101_Weights.IMAGENET1K_V1),
}


class ResNetEncoder(Encoder):
    """ResNet stem + four stages.

    ``forward`` returns ``[stem, e1, e2, e3, e4]`` at strides 2, 4, 8, 16, 32; ``stem`` is
    taken after conv1/bn1/relu and before the max-pool (U-Net decoders use it, LinkNet does not).
    """

    normalization = IMAGENET

    def __init__(
        self, name: str = "resnet34", *, in_channels: int = 3, weights: EncoderWeights = None
    ) -> None:
        super().__init__()
        if name not in _RESNETS:
            raise InputError(f"unknown encoder '{name}'; expected one of {sorted(_RESNETS)}")
        builder, _ = _RESNETS[name]
        net = builder(weights=None)
        self.name = name
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        expansion = 4 if name in ("resnet50", "resnet101") else 1
        self.out_channels = (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)
        if weights is not None:
            self.load_state_dict(_encoder_state_dict(name, weights))
        if in_channels != 3:
            conv = self.conv1
            self.conv1 = adapt_input_conv(
                conv,
                in_channels,
                lambda c: nn.Conv2d(c, 64, 7, stride=2, padding=3, bias=False),
                pretrained=weights is not None,
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        e1 = self.layer1(self.maxpool(stem))
        e2 = self.layer2(e1)
        e3 = self.layer3(e2)
        e4 = self.layer4(e3)
        return [stem, e1, e2, e3, e4]


def _encoder_state_dict(name: str, weights: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Fetch ImageNet weights through torchvision's API, or read a local torchvision file."""
    _, tv_weights = _RESNETS[name]
    if str(weights) == "imagenet":
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(tv_weights.url).name
        if cached.is_file():  # torchvision checks no hash on a cached file
            verify_torchvision_file(cached, tv_weights.url)
        try:
            state = tv_weights.get_state_dict(progress=False)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            filename = Path(tv_weights.url).name
            cache = Path(torch.hub.get_dir()) / "checkpoints" / filename
            raise WeightsUnavailableError(
                f"could not download ImageNet weights for {name} ({filename}): {exc}. "
                f"Offline? Copy that file to {cache}, or pass encoder_weights=/path/to/{filename} "
                "(config key model.encoder_weights), or use encoder_weights=None to start from scratch"
            ) from None
    else:
        path = Path(weights)
        if not path.is_file():
            raise InputError(
                f"encoder weights file '{path}' not found; expected 'imagenet', None or a "
                "path to a torchvision ResNet state_dict (.pth)"
            )
        verify_torchvision_file(path, tv_weights.url)
        state = read_state_dict(path)
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def official_hash_prefix(url: str) -> str:
    """torchvision names weight files ``<name>-<first hex digits of their SHA-256>.pth``."""
    m = re.search(r"-([0-9a-f]{8,})\.pth$", url)
    return m.group(1) if m else ""


def verify_torchvision_file(path: Path, url: str) -> None:
    """Refuse a file named like torchvision's official weights whose SHA-256 does not match.

    A truncated or corrupted copy would otherwise fail deep in unpickling, or load wrong
    weights. Files with other names (the user's own encoders) are not checked.
    """
    prefix = official_hash_prefix(url)
    if path.name != Path(url).name or not prefix:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    got = digest.hexdigest()
    if not got.startswith(prefix):
        raise InputError(
            f"'{path}' is named like torchvision's official weights but its SHA-256 starts with "
            f"{got[: len(prefix)]}, not {prefix}: the file is corrupt or truncated (an interrupted "
            f"download?). Delete it and copy {url} again"
        )


ENCODERS = {
    f"resnet{depth}": EncoderSpec(
        builder=partial(ResNetEncoder, f"resnet{depth}"),
        suffix=str(depth),
        label=f"ResNet{depth}",
        # official D-LinkNet: "Dblock" (1..8) for 18/34, "Dblock_more_dilate" (1..16) for 50/101
        dilations=(1, 2, 4, 8) if depth < 50 else (1, 2, 4, 8, 16),
    )
    for depth in (18, 34, 50, 101)
}
