"""Building blocks shared by the LinkNet, D-LinkNet and U-Net families."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LinkNetDecoderBlock(nn.Module):
    """LinkNet decoder block: 1x1 C->C/4, 3x3 transposed conv (stride 2), 1x1 -> out.

    ``min_mid`` widens the middle for thin encoders (EfficientNet-Lite's 24-channel stride-4
    map would leave 6). Each conv is followed by BatchNorm and ReLU. Convs keep their bias, as in the official
    D-LinkNet code, so its released weights load one-to-one.
    """

    def __init__(self, in_channels: int, out_channels: int, *, min_mid: int = 0) -> None:
        super().__init__()
        mid = max(in_channels // 4, min_mid)
        self.conv1 = nn.Conv2d(in_channels, mid, 1)
        self.norm1 = nn.BatchNorm2d(mid)
        self.deconv2 = nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1)
        self.norm2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, 1)
        self.norm3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.norm1(self.conv1(x)))
        x = self.relu(self.norm2(self.deconv2(x)))
        return self.relu(self.norm3(self.conv3(x)))


class DilatedCenter(nn.Module):
    """D-LinkNet's center ("Dblock"): cascaded dilated 3x3 convs, output = x + sum of stages.

    No BatchNorm; biases start at zero. Dilations (1, 2, 4, 8) give paths with receptive
    fields 1..31 on the stride-32 map, so a 1024 input's 32x32 map is seen whole.
    """

    def __init__(self, channels: int, dilations: Sequence[int] = (1, 2, 4, 8)) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in dilations)
        for conv in self.convs:
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        y = x
        for conv in self.convs:
            y = torch.relu(conv(y))
            out = out + y
        return out


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (padding 1, no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def check_input_size(x: torch.Tensor, divisor: int) -> None:
    """Raise a clear error when H or W is not a multiple of the model's output stride."""
    h, w = x.shape[-2:]
    if h % divisor or w % divisor:

        def nearest(n: int) -> int:
            return max(divisor, round(n / divisor) * divisor)

        from roadseg.errors import InputError

        raise InputError(
            f"input size {h}x{w} is not a multiple of {divisor}; "
            f"the nearest valid size is {nearest(h)}x{nearest(w)} (pad or crop the input)"
        )
