"""BCE + soft Dice on logits, with an ignore mask (the D-LinkNet loss).

The Dice term is batch-level by default, as in the official code (all pixels of the batch
pooled), with a smoothing term of 1 so an all-background batch gives 0 loss rather than 0/0.
Per image (``per_image``), it is averaged over the images that hold road: an image without road
has no Dice to speak of (with the smoothing term it would push every probability to 0), and
when no image of the batch holds road the batch-level value stands in.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def bce_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    smooth: float = 1.0,
    per_image: bool = False,
) -> torch.Tensor:
    """``bce_weight * BCE + dice_weight * (1 - Dice)`` over valid pixels.

    Shape:
        logits, target, valid: ``(N, 1, H, W)``; valid is 1 where the pixel counts.
    """
    logits = logits.float()
    weight = torch.ones_like(target) if valid is None else valid.float()
    n_valid = weight.sum().clamp_min(1.0)
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum() / n_valid
    prob = torch.sigmoid(logits) * weight
    t = target * weight
    dice = (2 * (prob * t).sum() + smooth) / (prob.sum() + t.sum() + smooth)
    if per_image:
        dims = tuple(range(1, t.dim()))
        roads = t.sum(dims)
        if bool((roads > 0).any()):
            each = (2 * (prob * t).sum(dims) + smooth) / (prob.sum(dims) + roads + smooth)
            dice = each[roads > 0].mean()
    return bce_weight * bce + dice_weight * (1 - dice)
