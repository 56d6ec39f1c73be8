"""ONNX models at run time: ONNX Runtime behind the Predictor interface, without PyTorch.

The graph (``roadseg export``) takes the normalized RGB image ``(N, C, H, W)`` and returns the
road probability; its metadata (roadseg's ModelInfo as JSON under ``roadseg``) is validated
exactly as a checkpoint's is (:func:`roadseg.model_info.info_from_dict`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from roadseg.errors import CheckpointError, InputError
from roadseg.inference.memory import free_host_bytes
from roadseg.inference.tta import predict_tta
from roadseg.model_info import ModelInfo, info_from_dict

#: metadata key holding roadseg's ModelInfo as JSON
META_KEY = "roadseg"
INSTALL = "pip install onnxruntime (it comes with pip install roadseg)"


def session(path: str | os.PathLike[str], threads: int = 0) -> Any:
    """A CPU ONNX Runtime session (``threads`` intra-op threads; 0: ONNX Runtime's default)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError(f"an .onnx model needs ONNX Runtime: {INSTALL}") from None
    from roadseg.io.paths import check_input_file

    path = check_input_file(path, "model", "an .onnx file written by roadseg export (--checkpoint PATH)")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise CheckpointError(
            f"'{path}' is not an ONNX model ONNX Runtime can load ({' '.join(str(exc).split())[:200]})"
        ) from None


def read_info(path: str | os.PathLike[str], sess: Any = None) -> ModelInfo:
    """The validated ModelInfo of an ONNX file written by ``roadseg export``; the graph's input
    and output are checked against it (an Identity graph is no road model)."""
    sess = sess or session(path)
    custom = sess.get_modelmeta().custom_metadata_map
    if META_KEY not in custom:
        raise CheckpointError(
            f"'{path}' has no roadseg metadata: only ONNX files written by 'roadseg export' can be run "
            "(their normalization, GSD and threshold are needed)"
        )
    try:
        meta = json.loads(custom[META_KEY])
    except ValueError as exc:
        raise CheckpointError(f"'{path}': roadseg metadata is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"'{path}': roadseg metadata is a {type(meta).__name__}, not a mapping")
    info = info_from_dict(
        {**meta, "meta": {"exported_from": meta.get("exported_from"), "parameters": meta.get("parameters")}},
        f"'{path}'",
        source="onnx",
    )
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    shape_in = inputs[0].shape if len(inputs) == 1 else None
    shape_out = outputs[0].shape if len(outputs) == 1 else None
    if shape_in is None or shape_out is None or len(shape_in) != 4 or len(shape_out) != 4:
        raise CheckpointError(
            f"'{path}': expected one (N, C, H, W) input and one (N, 1, H, W) output, found inputs "
            f"{[i.shape for i in inputs]} and outputs {[o.shape for o in outputs]}; is it a roadseg export?"
        )
    if shape_in[1] != info.in_channels or shape_out[1] != 1 or "float" not in inputs[0].type:
        raise CheckpointError(
            f"'{path}': the graph takes {inputs[0].type} {shape_in} and gives {shape_out}, but its metadata "
            f"says {info.in_channels} float channel(s) in and one probability out"
        )
    return info


class OnnxPredictor:
    """An ONNX Runtime session running tiles on the CPU, with numpy TTA."""

    device_type = "cpu"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._session = session(self.path)
        self.info = read_info(self.path, self._session)
        self.threads = 0
        first = self._session.get_inputs()[0]
        self._input = first.name
        h, w = first.shape[-2:]
        #: the one tile side a fixed-size export runs (Deepness's layout), None if any size runs
        self.fixed_size: int | None = h if isinstance(h, int) and h == w else None
        if self.fixed_size is not None and self.fixed_size % self.info.size_divisor:
            raise CheckpointError(
                f"'{path}': fixed input {self.fixed_size} px is not a multiple of {self.info.size_divisor}"
            )

    def set_threads(self, threads: int | None) -> None:
        """Rebuild the session with ``threads`` intra-op threads (None: ONNX Runtime's default),
        once: predict calls this for every scene of a run."""
        wanted = threads or 0
        if wanted != self.threads:
            self._session, self.threads = session(self.path, wanted), wanted

    def free_bytes(self) -> int:
        return free_host_bytes()

    def image_bytes(self, tile: int) -> int:
        # ONNX Runtime's activations live outside Python: count the input and the output
        return (self.info.in_channels + 1) * 4 * tile * tile

    def _probs(self, images: np.ndarray) -> np.ndarray:
        out = self._session.run(None, {self._input: images})[0]
        return np.asarray(out, dtype=np.float32)

    def probabilities(self, tiles: np.ndarray, tta: str, per_pass: int | None) -> np.ndarray:
        x = self.info.normalization.apply(tiles)
        return np.asarray(predict_tta(self._probs, x, tta, per_pass)[:, 0], dtype=np.float32)
