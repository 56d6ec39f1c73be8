"""roadseg: road extraction from satellite and aerial imagery (D-LinkNet, LinkNet, U-Net).

The public API is imported lazily, so tools that need no torch (vectorize, evaluate) start
fast and small.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "ModelInfo": "roadseg.model_info",
    "load_model": "roadseg.checkpoint",
    "save_model": "roadseg.checkpoint",
    "create_model": "roadseg.models",
    "count_parameters": "roadseg.models",
    "list_models": "roadseg.models",
    "RoadsegError": "roadseg.errors",
}

__all__ = [*_API, "__version__"]  # noqa: PLE0604 - the keys of _API are strings


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'roadseg' has no attribute '{name}'")
    module = importlib.import_module(_API[name])
    value = getattr(module, name)
    globals()[name] = value
    return value
