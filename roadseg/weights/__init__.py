"""Bundled model weights: ``default.pt`` (PyTorch) and its ONNX twin ``default.onnx``, which
predict runs on a CPU and on installs without PyTorch (see docs/model_card.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from roadseg.errors import CheckpointError


def _bundled(name: str) -> Path:
    path = Path(str(resources.files("roadseg.weights") / name))
    if not path.is_file():
        raise CheckpointError(
            "no --checkpoint given and this installation has no bundled default model "
            f"({path} is missing); pass --checkpoint PATH"
        )
    return path


def default_checkpoint() -> Path:
    """Path of the bundled default model (PyTorch)."""
    return _bundled("default.pt")


def default_onnx() -> Path:
    """Path of the bundled default model exported to ONNX (dynamic tile size)."""
    return _bundled("default.onnx")
