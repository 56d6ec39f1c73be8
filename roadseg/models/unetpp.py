"""UNet++: nested dense skip paths, deep supervision, pruning at inference.

Zhou et al., "UNet++: A Nested U-Net Architecture for Medical Image Segmentation", DLMIA 2018
(https://arxiv.org/abs/1807.10165), and "UNet++: Redesigning Skip Connections", TMI 2019.

Node X[i][j] (level i = stride 2^(i+1), column j >= 1) sees every earlier node of its level and
the upsampled node X[i+1][j-1]. The top row X[0][1..4] each carries a head; training averages
the loss over the four (deep supervision), and a model pruned to ``level`` L computes only the
nodes with i + j <= L and answers from X[0][L]: fewer nodes, same weights.

Node widths follow the encoder's first four maps (capped at 64) and each node is one 1x1
fusion plus one 3x3 conv: the paper's two 3x3 convs at 32-512 channels would cost ten times
this lite encoder on a CPU.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from roadseg.models.base import RoadModel
from roadseg.models.blocks import check_input_size, conv_bn_relu
from roadseg.models.encoders import Encoder, EncoderWeights, build_encoder

#: levels below the stride-32 bottom: X[0] .. X[3] (strides 2..16)
DEPTH = 4


def _node(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        conv_bn_relu(out_channels, out_channels),
    )


class UNetPlusPlus(RoadModel):
    """Encoder -> nested decoder -> stride-2 heads (bilinear x2 to full resolution).

    In training mode with ``deep_supervision`` the forward returns the logits of every head
    X[0][1..level] (a list); otherwise one logits tensor, from X[0][level].

    Shape:
        input ``(N, in_channels, H, W)`` with H, W multiples of 32;
        output ``(N, classes, H, W)``.
    """

    size_divisor = 32

    def __init__(
        self,
        encoder_name: str = "efficientnet-lite0",
        *,
        in_channels: int = 3,
        classes: int = 1,
        encoder_weights: EncoderWeights = None,
        level: int = DEPTH,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        if not 1 <= level <= DEPTH:
            from roadseg.errors import InputError

            raise InputError(f"UNet++ level must be 1..{DEPTH} (pruning depth), got {level}")
        self.level, self.deep_supervision = level, deep_supervision
        self.encoder: Encoder = build_encoder(encoder_name, in_channels=in_channels, weights=encoder_weights)
        enc = self.encoder.out_channels  # strides 2, 4, 8, 16, 32
        width = [max(16, min(64, c)) for c in enc[:DEPTH]]
        # nodes[i][j - 1] is X[i][j]; its inputs: j nodes of width[i] (X[i][0] at the encoder's
        # width) and the upsampled X[i+1][j-1]
        self.nodes = nn.ModuleList()
        for i in range(DEPTH):
            row = nn.ModuleList()
            for j in range(1, DEPTH - i + 1):
                below = enc[i + 1] if j == 1 else width[i + 1]
                row.append(_node(enc[i] + (j - 1) * width[i] + below, width[i]))
            self.nodes.append(row)
        self.heads = nn.ModuleList(nn.Conv2d(width[0], classes, 1) for _ in range(DEPTH))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input_size(x, self.size_divisor)
        feats = self.encoder(x)
        grid: list[list[torch.Tensor]] = [[f] for f in feats]  # grid[i][j] = X[i][j]
        for j in range(1, self.level + 1):
            for i in range(self.level - j + 1):  # only the nodes that X[0][level] needs
                up = F.interpolate(
                    grid[i + 1][j - 1], size=grid[i][0].shape[-2:], mode="bilinear", align_corners=False
                )
                grid[i].append(cast(nn.ModuleList, self.nodes[i])[j - 1](torch.cat([*grid[i], up], dim=1)))
        size = x.shape[-2:]

        def head(j: int) -> torch.Tensor:
            logits = self.heads[j - 1](grid[0][j])
            return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

        if self.training and self.deep_supervision:
            return [head(j) for j in range(1, self.level + 1)]
        return head(self.level)
