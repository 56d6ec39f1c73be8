"""LinkNet with an optional center block; D-LinkNet is LinkNet plus a dilated center.

Chaurasia & Culurciello, "LinkNet", 2017 (https://arxiv.org/abs/1707.03718);
Zhou et al., "D-LinkNet", CVPRW 2018 (DeepGlobe road winner).
"""

from __future__ import annotations

import torch
from torch import nn

from roadseg.models.base import RoadModel
from roadseg.models.blocks import LinkNetDecoderBlock, check_input_size, conv_bn_relu
from roadseg.models.encoders import Encoder, EncoderWeights, build_encoder, encoder_spec


class LinkNet(RoadModel):
    """Encoder -> optional center -> LinkNet decoder (additive skips) -> head.

    Returns logits at full input resolution.

    Shape:
        input ``(N, in_channels, H, W)`` with H, W multiples of 32;
        output ``(N, classes, H, W)``.
    """

    size_divisor = 32

    def __init__(
        self,
        encoder_name: str = "resnet34",
        *,
        in_channels: int = 3,
        classes: int = 1,
        encoder_weights: EncoderWeights = None,
        center: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder: Encoder = build_encoder(encoder_name, in_channels=in_channels, weights=encoder_weights)
        f = self.encoder.out_channels[1:]  # e1..e4
        mid = encoder_spec(encoder_name).decoder_min_mid
        self.center = center if center is not None else nn.Identity()
        # decoders[0] maps e4 -> e3's channels, ..., decoders[3] maps d2 -> f[0].
        self.decoders = nn.ModuleList(
            [
                LinkNetDecoderBlock(f[3], f[2], min_mid=mid),
                LinkNetDecoderBlock(f[2], f[1], min_mid=mid),
                LinkNetDecoderBlock(f[1], f[0], min_mid=mid),
                LinkNetDecoderBlock(f[0], f[0], min_mid=mid),
            ]
        )
        if encoder_spec(encoder_name).head == "light":
            self.head = nn.Sequential(
                conv_bn_relu(f[0], 32),
                nn.Conv2d(32, classes, 1),
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            )
        else:
            self.head = nn.Sequential(
                nn.ConvTranspose2d(f[0], 32, 4, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, 32, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, classes, 3, padding=1),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.size_divisor)
        _, e1, e2, e3, e4 = self.encoder(x)
        d = self.center(e4)
        for decoder, skip in zip(self.decoders, (e3, e2, e1, None), strict=True):
            d = decoder(d)
            if skip is not None:
                d = d + skip
        return self.head(d)
