"""Bundled model weights (``default.pt``: see docs/model_card.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from roadseg.errors import CheckpointError


def default_checkpoint() -> Path:
    """Path of the bundled default model."""
    path = Path(str(resources.files("roadseg.weights") / "default.pt"))
    if not path.is_file():
        raise CheckpointError(
            "no --checkpoint given and this installation has no bundled default model "
            f"({path} is missing); pass --checkpoint PATH"
        )
    return path
