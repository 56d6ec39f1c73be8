"""BatchNorm folded into convolutions for inference: same function, fewer passes."""

import pytest
import torch
from torch import nn

from roadseg.models import create_model
from roadseg.models.fuse import fold_batchnorm


def _random_statistics(model):
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("name", ["dlinknet_lite0", "linknet18", "resunet34", "unet"])
def test_every_batchnorm_is_folded_and_the_function_is_kept(name):
    model = _random_statistics(
        create_model(name, **({"depth": 2, "base_channels": 8} if name == "unet" else {}))
    )
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-4)


def test_a_model_built_otherwise_is_returned_unchanged():
    class Misleading(nn.Module):  # registers conv then bn, but applies the bn to the input
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            return self.conv(self.bn(x))

    model = _random_statistics(Misleading())
    assert fold_batchnorm(model) is model
