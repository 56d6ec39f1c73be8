"""What every roadseg model is, so callers read attributes instead of probing for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Architecture:
    """What a checkpoint records to rebuild a model: its registry name and keyword arguments
    (``encoder_weights`` left out: the checkpoint holds every weight)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


class RoadModel(nn.Module):
    """A road segmentation network: (N, C, H, W) images in, (N, 1, H, W) logits out.

    ``size_divisor``: H and W must be multiples of it (the encoder's total stride).
    ``architecture``: set by :func:`roadseg.models.create_model`; :func:`roadseg.save_model`
    records it, so a model carries its own description wherever it travels.
    """

    size_divisor: int = 32
    architecture: Architecture | None = None
