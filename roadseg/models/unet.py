"""U-Net baselines: the classic U-Net and a ResNet34-encoder U-Net (SpaceNet-3 winners' family).

Ronneberger et al., "U-Net", MICCAI 2015 (https://arxiv.org/abs/1505.04597).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from roadseg.errors import InputError
from roadseg.models.base import RoadModel
from roadseg.models.blocks import check_input_size, conv_bn_relu
from roadseg.models.encoders import Encoder, EncoderWeights, build_encoder


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(in_channels, out_channels), conv_bn_relu(out_channels, out_channels))


class UNet(RoadModel):
    """Classic U-Net: padded double convs with BatchNorm, max-pool down, transposed-conv up,
    concatenation skips. Returns logits.

    Args:
        depth: number of poolings; input sides must be multiples of ``2 ** depth``.
        base_channels: channels of the first level, doubled at each level.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        classes: int = 1,
        depth: int = 4,
        base_channels: int = 64,
        encoder_weights: None = None,
    ) -> None:
        super().__init__()
        if encoder_weights is not None:
            raise InputError(
                "the classic U-Net has no pretrained encoder to load; set model.encoder_weights=null, "
                "or choose an encoder model (dlinknet_lite0, dlinknet34, resunet34)"
            )
        if depth < 1 or base_channels < 1:
            raise ValueError(f"depth and base_channels must be >= 1, got {depth}, {base_channels}")
        self.size_divisor = 2**depth
        chans = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_double_conv(in_channels, chans[0])])
        self.down.extend(_double_conv(chans[i], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.up_convs = nn.ModuleList(_double_conv(2 * chans[i], chans[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.size_divisor)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, conv in zip(self.up, self.up_convs, strict=True):
            x = conv(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


class ResUNet(RoadModel):
    """ResNet encoder with a U-Net decoder: nearest x2 upsampling, concatenation, double conv."""

    size_divisor = 32

    def __init__(
        self,
        encoder_name: str = "resnet34",
        *,
        in_channels: int = 3,
        classes: int = 1,
        encoder_weights: EncoderWeights = None,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 64, 32),
    ) -> None:
        super().__init__()
        self.encoder: Encoder = build_encoder(encoder_name, in_channels=in_channels, weights=encoder_weights)
        skips = [*reversed(self.encoder.out_channels[:-1]), 0]  # e3, e2, e1, stem, none
        prev = self.encoder.out_channels[-1]
        blocks = []
        for out, skip in zip(decoder_channels, skips, strict=True):
            blocks.append(_double_conv(prev + skip, out))
            prev = out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(prev, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.size_divisor)
        stem, e1, e2, e3, e4 = self.encoder(x)
        d = e4
        for block, skip in zip(self.blocks, (e3, e2, e1, stem, None), strict=True):
            d = F.interpolate(d, scale_factor=2, mode="nearest")
            if skip is not None:
                d = torch.cat([d, skip], dim=1)
            d = block(d)
        return self.head(d)
