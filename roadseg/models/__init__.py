"""Segmentation models. They import only torch and torchvision."""

from roadseg.models.registry import count_parameters, create_model, describe_model, list_models

__all__ = ["count_parameters", "create_model", "describe_model", "list_models"]
