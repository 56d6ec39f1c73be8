"""Segmentation models. They import only torch and torchvision."""

from roadseg.models.registry import Architecture, count_parameters, create_model, describe_model, list_models

__all__ = ["Architecture", "count_parameters", "create_model", "describe_model", "list_models"]
