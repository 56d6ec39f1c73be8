"""roadseg: road extraction from satellite and aerial imagery (D-LinkNet, LinkNet, U-Net)."""

from roadseg.checkpoint import ModelInfo, load_model, save_model
from roadseg.errors import RoadsegError
from roadseg.models import count_parameters, list_models
from roadseg.checkpoint import build_model as create_model

__version__ = "0.1.0"

__all__ = [
    "ModelInfo",
    "RoadsegError",
    "__version__",
    "count_parameters",
    "create_model",
    "list_models",
    "load_model",
    "save_model",
]
