"""ONNX models: ``roadseg export CKPT --out model.onnx``, and ``predict --checkpoint model.onnx``.

The exported graph takes the normalized RGB image ``(N, C, H, W)`` and returns the road
probability ``(N, 1, H, W)``: BatchNorm is folded, a BGR model (the official D-LinkNet) has its
channel swap inside the graph, and the sigmoid is the last node. That is the contract of QGIS's
Deepness plugin, whose metadata keys the file carries beside roadseg's own (normalization, GSD,
threshold, architecture), so one file runs in Deepness, in any ONNX Runtime, and in
``roadseg predict``, which runs it through ONNX Runtime alone (roadseg/inference/onnx_runtime.py) with
the same tiling, TTA, GSD handling and outputs.

By default H = W = the tile size and only the batch is dynamic: Deepness reads the tile size
from the input shape and fails on a symbolic one (its docs allow only a dynamic batch).
``dynamic=True`` writes H and W as any multiple of the model's divisor, for other runtimes.

Opset 18 in an IR version 9 file: ONNX Runtime 1.15 and later load it, Deepness's pinned
onnxruntime 1.17.0 included (torch writes IR 10 by default, which 1.17 refuses); opset 18 is the
lowest the torch.export-based exporter writes without a lossy down-conversion.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from roadseg.errors import CheckpointError, InputError
from roadseg.inference.onnx_runtime import META_KEY, session
from roadseg.io.atomic import atomic_path
from roadseg.normalization import Normalization

log = logging.getLogger(__name__)

OPSET = 18
#: The IR version written: 9 is the newest ONNX Runtime 1.17 (Deepness's pin) reads.
IR_VERSION = 9
_INSTALL = "pip install 'roadseg[onnx]'"
#: largest |ONNX - PyTorch| probability accepted by the export's own check
EXPORT_TOLERANCE = 1e-4


class _Graph(nn.Module):
    """What is exported: channel swap (BGR models), the network, sigmoid."""

    def __init__(self, model: nn.Module, order: list[int] | None) -> None:
        super().__init__()
        self.model = model
        self.order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.order is not None:
            x = x[:, self.order]
        return torch.sigmoid(self.model(x))


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    tile_size: int = 512,
    overlap: int = 64,
    dynamic: bool = False,
) -> dict[str, Any]:
    """Export a checkpoint (roadseg or official D-LinkNet) to ONNX at ``out``, atomically.

    The input is ``tile_size`` square with a dynamic batch, or any multiple of the model's
    divisor with ``dynamic``. The export checks itself: ONNX Runtime must give PyTorch's
    probabilities within ``EXPORT_TOLERANCE`` on a random batch, or nothing is written.
    Returns the metadata.
    """
    try:
        import onnx
        import onnxruntime  # noqa: F401 - the self-check below needs it
    except ImportError:
        raise InputError(f"roadseg export needs onnx, onnxscript and onnxruntime: {_INSTALL}") from None
    from roadseg.checkpoint import load_model
    from roadseg.models.fuse import fold_batchnorm

    if Path(checkpoint).suffix.lower() == ".onnx":
        raise InputError(
            f"'{checkpoint}' is already an ONNX file; export reads a roadseg .pt or D-LinkNet .th"
        )

    loaded, info = load_model(checkpoint)
    divisor = loaded.size_divisor
    model = fold_batchnorm(loaded.float().eval())
    check_export_tiling(tile_size, overlap, divisor)
    norm = info.normalization
    c = info.in_channels
    order = None
    if norm.channel_order == "BGR" and c >= 3:
        order = [2, 1, 0, *range(3, c)]
        # the graph swaps channels itself, so its input (and Deepness's) is RGB
        norm = Normalization(
            mean=_rgb(norm.mean, c),
            std=_rgb(norm.std, c),
            channel_order="RGB",
            scale=norm.scale,
        )
    graph = _Graph(model, order).eval()
    side = 8 * divisor if dynamic else tile_size
    example = torch.randn(2, c, side, side)
    dims: dict[int, Any] = {0: torch.export.Dim("batch")}
    if dynamic:
        dims |= {2: divisor * torch.export.Dim("h32"), 3: divisor * torch.export.Dim("w32")}
    meta = {
        "arch": info.arch,
        "arch_kwargs": info.arch_kwargs,
        "in_channels": c,
        "normalization": norm.to_dict(),
        "gsd_m": info.gsd_m,
        "threshold": info.threshold,
        "size_divisor": divisor,
        "source": info.source,
        "exported_from": Path(checkpoint).name,
        "parameters": sum(p.numel() for p in model.parameters()),  # after folding BatchNorm
    }
    deepness = {
        "model_type": "Segmentor",
        "class_names": {"0": "road"},
        "seg_thresh": info.threshold,
        "tiles_size": tile_size,  # the name in Deepness's documentation
        "tile_size": tile_size,  # the name its current code reads (ModelBase.get_metadata_tile_size)
        "tiles_overlap": round(100 * overlap / tile_size),
        "seg_small_segment": 0,  # else Deepness median-filters the mask (9 x 9)
        "standardization_mean": list(norm.mean),
        "standardization_std": list(norm.std),
    }
    if info.gsd_m is not None:
        deepness["resolution"] = round(info.gsd_m * 100, 3)  # cm per pixel
    quiet = not logging.getLogger("roadseg").isEnabledFor(logging.DEBUG)
    with atomic_path(out) as tmp:
        with (
            torch.no_grad(),
            contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext(),
            _quiet_loggers("onnxscript", "onnx_ir", "torch.onnx") if quiet else contextlib.nullcontext(),
        ):
            program = torch.onnx.export(
                graph,
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=["image"],
                output_names=["probability"],
                dynamic_shapes=(dims,),
                optimize=True,
                verbose=False,
            )
        if program is None:  # torch returns None only when exporting to a file it writes itself
            raise RuntimeError("torch.onnx.export returned no program")
        proto = program.model_proto
        proto.ir_version = IR_VERSION
        for key, value in {
            **{k: json.dumps(v) for k, v in deepness.items()},
            META_KEY: json.dumps(meta),
        }.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.doc_string = f"roadseg {info.arch}: road probability from a normalized RGB image"
        onnx.save(proto, tmp)
        _check_export(tmp, graph, example, dynamic)
    return {**deepness, META_KEY: meta}


def check_export_tiling(tile_size: int, overlap: int, divisor: int) -> None:
    """The tile size and overlap written for Deepness: a positive multiple of the model's
    divisor, and an overlap under half the tile (Deepness takes it as a percentage)."""
    if tile_size <= 0 or tile_size % divisor:
        raise InputError(f"--tile-size must be a positive multiple of {divisor} (got {tile_size}); try 512")
    if not 0 <= overlap < tile_size // 2:
        raise InputError(
            f"--overlap must be at least 0 and under half the tile size {tile_size} (got {overlap}); try "
            f"{tile_size // 8}"
        )


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """The exporter's progress lines and graph-rewrite notes, only with -v."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _rgb(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    if len(values) == 1:
        return values
    return (values[2], values[1], values[0], *values[3:channels])


def _check_export(path: Path, graph: nn.Module, example: torch.Tensor, dynamic: bool) -> None:
    """Run the file in ONNX Runtime on another batch size (and a non-square shape if dynamic)."""
    _, c, h, _ = example.shape
    x = torch.randn(3, c, h // 2, h + h // 4) if dynamic else torch.randn(1, c, h, h)
    got = session(path).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        want = graph(x).numpy()
    err = float(np.abs(got - want).max())
    if not err <= EXPORT_TOLERANCE:
        raise CheckpointError(
            f"the ONNX export differs from PyTorch by {err:.2g} (allowed {EXPORT_TOLERANCE:g}); nothing was written"
        )
    log.info("ONNX export checked: max |ONNX - PyTorch| = %.2g on %s", err, tuple(x.shape))
