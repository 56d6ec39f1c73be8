"""The training loss: hand-computed values of the batch and per-image Dice terms."""

import pytest
import torch

from roadseg.config import load_config
from roadseg.errors import ConfigError
from roadseg.train.losses import bce_dice_loss

BIG = 30.0  # a logit whose sigmoid is 1 (or 0) to float precision


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Image 0: 4 road pixels predicted exactly; image 1: no road, probability 0.5 everywhere."""
    target = torch.zeros(2, 1, 4, 4)
    target[0, 0, 0] = 1
    logits = torch.full((2, 1, 4, 4), -BIG)
    logits[0, 0, 0] = BIG
    logits[1] = 0.0
    return logits, target


def test_batch_dice_pools_every_pixel_of_the_batch():
    logits, target = _pair()
    loss = bce_dice_loss(logits, target, bce_weight=0.0)
    # 2 * 4 overlap + 1 over (4 + 8 predicted) + 4 true + 1
    assert float(loss) == pytest.approx(1 - 9 / 17, abs=1e-6)


def test_per_image_dice_averages_the_images_that_hold_road():
    logits, target = _pair()
    # image 0 is exact (Dice 1); image 1 holds no road and does not count
    assert float(bce_dice_loss(logits, target, bce_weight=0.0, per_image=True)) == pytest.approx(
        0.0, abs=1e-6
    )
    empty = torch.zeros_like(target)  # no road anywhere: the batch value stands in
    assert float(bce_dice_loss(logits, empty, bce_weight=0.0, per_image=True)) == pytest.approx(
        float(bce_dice_loss(logits, empty, bce_weight=0.0)), abs=1e-7
    )


def test_per_image_dice_gives_a_sparse_image_its_own_weight():
    """One missed road pixel beside a densely labelled image: per image, its gradient is far
    larger than in the pooled batch, where the dense image's pixels dilute it."""
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, 0, 0] = 1  # sparse: one road pixel
    target[1, 0, :4] = 1  # dense: 32 road pixels
    grads = {}
    for per_image in (False, True):
        logits = torch.where(target > 0, torch.tensor(BIG), torch.tensor(-BIG))
        logits[0, 0, 0, 0] = 0.0  # the sparse road pixel at probability 0.5
        logits.requires_grad_(True)
        bce_dice_loss(logits, target, bce_weight=0.0, per_image=per_image).backward()
        grads[per_image] = -float(logits.grad[0, 0, 0, 0])
    assert grads[True] > 5 * grads[False] > 0


def test_dice_mode_is_checked_in_the_config():
    assert load_config(None, ["optim.dice=image"]).optim.dice == "image"
    with pytest.raises(ConfigError, match=r"optim\.dice"):
        load_config(None, ["optim.dice=pixel"])
