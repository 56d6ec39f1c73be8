"""The one interface predict runs a model through, whatever executes it.

A :class:`Predictor` turns raw tiles into TTA-averaged road probabilities, both numpy, so the
scene pipeline (reading, tiling, stitching, writing) never touches torch: ONNX Runtime runs
the bundled model on a machine without PyTorch, and a PyTorch checkpoint runs on its device
(CUDA, MPS or CPU) with the same pipeline.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from roadseg.errors import InputError
from roadseg.model_info import ModelInfo

log = logging.getLogger(__name__)


class Predictor(Protocol):
    """A loaded model ready for tiles."""

    info: ModelInfo
    #: "cpu", "cuda" or "mps": where the work runs (tile size and batching depend on it).
    device_type: str
    #: the one tile side a fixed-size ONNX export runs (Deepness's layout), else None.
    fixed_size: int | None

    def probabilities(self, tiles: np.ndarray, tta: str, per_pass: int | None) -> np.ndarray:
        """``(N, C, T, T)`` raw pixel values (0..255 as float32) -> ``(N, T, T)`` float32
        probabilities averaged over the TTA views, in passes of ``per_pass`` images."""
        ...

    def image_bytes(self, tile: int) -> int:
        """An upper bound of one ``tile``-px image's activations in a forward pass."""
        ...

    def free_bytes(self) -> int:
        """Memory free for the work now (VRAM on CUDA, host RAM otherwise)."""
        ...

    def set_threads(self, threads: int | None) -> None:
        """Use ``threads`` CPU threads (None: every core)."""
        ...


def torch_available() -> bool:
    """Whether PyTorch is installed (the light install has only ONNX Runtime)."""
    return importlib.util.find_spec("torch") is not None


def load_predictor(
    checkpoint: str | os.PathLike[str] | None,
    *,
    device: str = "auto",
    amp: bool | None = None,
) -> Predictor:
    """The predictor of a model file: ``.onnx`` through ONNX Runtime, anything else
    (a roadseg checkpoint, an official D-LinkNet ``.th``) through PyTorch.

    Without ``checkpoint``, the bundled model: its ONNX twin on a CPU (no PyTorch needed, and
    faster there), its PyTorch weights on a GPU or when ``amp`` is asked for.
    """
    if checkpoint is None:
        checkpoint = bundled_model(device, amp)
    path = Path(checkpoint)
    if path.suffix.lower() == ".onnx":
        if device not in ("auto", "cpu"):
            raise InputError(
                f"--device {device}: an .onnx model runs on the CPU through ONNX Runtime; drop --device, "
                "or pass the PyTorch checkpoint (.pt) to run on a GPU"
            )
        if amp:
            raise InputError("--amp applies to PyTorch models; an .onnx model runs in float32")
        from roadseg.inference.onnx_runtime import OnnxPredictor

        return OnnxPredictor(path)
    if not torch_available():
        raise InputError(
            f"'{path}' is a PyTorch checkpoint, and PyTorch is not installed: install it with "
            "pip install 'roadseg[torch]', or export the model to ONNX on a machine that has it "
            "(roadseg export CKPT --out model.onnx --dynamic) and pass the .onnx file"
        )
    from roadseg.inference.torch_runtime import TorchPredictor

    return TorchPredictor.load(path, device=device, amp=amp)


def bundled_model(device: str = "auto", amp: bool | None = None) -> Path:
    """The bundled model file predict runs for ``device``/``amp``: ONNX on a CPU, PyTorch on a GPU."""
    from roadseg.weights import default_checkpoint, default_onnx

    if not torch_available():
        if device not in ("auto", "cpu") or amp:
            raise InputError(
                f"{'--amp' if amp else '--device ' + device} needs PyTorch, which is not installed: "
                "pip install 'roadseg[torch]'"
            )
        return default_onnx()
    if amp or device not in ("auto", "cpu"):
        return default_checkpoint()
    if device == "auto":
        from roadseg.devices import resolve_device

        if resolve_device("auto").type != "cpu":
            return default_checkpoint()
    path = default_onnx()
    log.debug("using the bundled default model (%s)", path.name)
    return path


def read_model_info(path: str | os.PathLike[str]) -> tuple[ModelInfo, int | None]:
    """``(info, parameters)`` of a model file, validated, on no device: an ``.onnx`` file
    without torch, a checkpoint with it (``roadseg info``, and a cluster's check before the
    workers load it)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from roadseg.inference.onnx_runtime import read_info

        info = read_info(path)
        params = info.meta.get("parameters")
        return info, int(params) if isinstance(params, int) else None
    if not torch_available():
        raise InputError(
            f"'{path}' is a PyTorch checkpoint, and PyTorch is not installed: pip install 'roadseg[torch]'"
        )
    from roadseg.checkpoint import load_model
    from roadseg.models import count_parameters

    model, info = load_model(path)
    return info, count_parameters(model)
