"""D-LinkNet: LinkNet with a cascaded dilated-conv center (DeepGlobe 2018 road winner)."""

from __future__ import annotations

from roadseg.models.blocks import DilatedCenter
from roadseg.models.encoders import EncoderWeights, encoder_spec
from roadseg.models.linknet import LinkNet


def dlinknet(
    encoder_name: str = "resnet34",
    *,
    in_channels: int = 3,
    classes: int = 1,
    encoder_weights: EncoderWeights = None,
) -> LinkNet:
    """Build D-LinkNet as a LinkNet whose center is :class:`DilatedCenter`.

    The dilations are the encoder's (official: 1..8 for ResNet18/34, 1..16 for 50/101).
    """
    model = LinkNet(encoder_name, in_channels=in_channels, classes=classes, encoder_weights=encoder_weights)
    channels = model.encoder.out_channels[-1]
    model.center = DilatedCenter(channels, encoder_spec(encoder_name).dilations)
    return model
