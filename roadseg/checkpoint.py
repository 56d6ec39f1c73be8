"""The roadseg checkpoint format, and import of the official D-LinkNet ``.th`` files.

A checkpoint is data, never code: it is read with ``torch.load(weights_only=True)`` and
holds only dicts, lists, numbers, strings and tensors::

    {format, version, arch, arch_kwargs, in_channels, normalization, gsd_m, threshold,
     meta, state_dict}
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from roadseg.errors import CheckpointError, InputError
from roadseg.io.atomic import atomic_path
from roadseg.model_info import ModelInfo, check_info, info_from_dict
from roadseg.models import RoadModel, create_model
from roadseg.normalization import IMAGENET, OFFICIAL_DLINKNET, Normalization

__all__ = ["ModelInfo", "load_model", "read_checkpoint", "save_model"]

FORMAT = "roadseg-checkpoint"
VERSION = 1


def save_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    normalization: Normalization = IMAGENET,
    gsd_m: float | None = None,
    threshold: float = 0.5,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    **meta: Any,
) -> Path:
    """Write ``model`` and its metadata to one file, atomically.

    ``arch``/``arch_kwargs`` default to the model's ``.architecture`` (set by ``create_model``).
    ``meta`` (training config, metrics, ...) must hold plain data. ``extra`` adds top-level
    keys (a training run's optimizer state, for instance) that :func:`load_model` ignores.
    """
    module: nn.Module = (
        inner if isinstance(inner := getattr(model, "module", None), nn.Module) else model
    )  # DDP
    built = module.architecture if isinstance(module, RoadModel) else None
    arch = arch or (built.name if built is not None else None)
    if arch is None:
        raise CheckpointError("save_model needs arch=...: the model was not built by roadseg.create_model")
    kwargs = dict(arch_kwargs if arch_kwargs is not None else (built.kwargs if built is not None else {}))
    kwargs.pop("encoder_weights", None)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "arch_kwargs": kwargs,
        "in_channels": int(kwargs.get("in_channels", 3)),
        "normalization": normalization.to_dict(),
        "gsd_m": None if gsd_m is None else float(gsd_m),
        "threshold": float(threshold),
        "meta": _plain(meta, "meta"),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }
    if extra:
        payload.update(_plain(extra, "extra"))
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _plain(value: Any, where: str) -> Any:
    """Convert metadata to what ``weights_only`` loading accepts: plain containers, str, numbers,
    bools, None and tensors. ``str``/``int`` subclasses (torch.__version__, Path) become plain."""
    if value is None or isinstance(value, (bool, torch.Tensor)):
        return value
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalars
        return value.item()
    if isinstance(value, dict):
        # keep int keys: optimizer state is keyed by parameter index
        return {(k if type(k) in (int, str) else str(k)): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CheckpointError(f"cannot store {type(value).__name__} at {where} in a checkpoint: only plain data")


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint file as data (``weights_only=True``), with one-line errors."""
    from roadseg.io.paths import check_input_file

    try:
        path = check_input_file(path, "checkpoint", "a checkpoint file (pass --checkpoint PATH)")
    except InputError as exc:
        raise CheckpointError(str(exc)) from None
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint '{path}' is empty (0 bytes); was the download or copy interrupted?"
        )
    _check_declared_size(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means an unusable file
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        with open(path, "rb") as f:
            head = f.read(4)
        if "Unsupported global" in text or (head[:1] == b"\x80" and "WeightsUnpickler" in text):
            reason = "it contains Python objects other than tensors and plain data, which are never executed"
        elif not any(head):
            reason = "it starts with zero bytes, not a PyTorch zip archive: an unfinished download or copy?"
        elif "legacy .tar format" in text:
            reason = "it is in PyTorch's legacy tar format, which cannot be read as data: re-save it with a recent torch.save"
        elif head[:2] == b"PK":
            reason = "the PyTorch zip archive is damaged or truncated"
        elif "WeightsUnpickler" in text:  # neither zip (PK..) nor pickle (0x80..) magic
            reason = "its bytes are neither a PyTorch zip archive nor a pickle: corrupt, or another format"
        raise CheckpointError(
            f"cannot load checkpoint '{path}': not a readable PyTorch file ({reason[:300]}). "
            "Expected a roadseg checkpoint or an official D-LinkNet .th state_dict; is the file complete?"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"checkpoint '{path}' holds a {type(data).__name__}; expected a roadseg checkpoint dict "
            "or a D-LinkNet state_dict"
        )
    return data


#: a checkpoint's zip members are stored, not compressed (torch.save): a member that declares far
#: more bytes than the file holds is a zip bomb, refused before anything is inflated
MAX_INFLATION = 2.0
INFLATION_SLACK = 64 * 2**20


def _check_declared_size(path: Path) -> None:
    """Refuse a zip whose declared uncompressed size is far beyond its file size, from the
    central directory alone (a 1 MB file inflating to 1 GiB peaked at 2.7 GB before)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            declared = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load reports a damaged archive in its own words
    size = path.stat().st_size
    if declared > MAX_INFLATION * size + INFLATION_SLACK:
        raise CheckpointError(
            f"checkpoint '{path}' declares {declared / 2**20:,.0f} MiB of content in a {size / 2**20:,.1f} MiB "
            "file (a compressed archive; torch.save stores tensors uncompressed): refused without "
            "inflating it. Is it really a roadseg checkpoint?"
        )


def load_model(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> tuple[RoadModel, ModelInfo]:
    """Load a roadseg checkpoint or an official D-LinkNet ``.th`` file.

    Returns:
        ``(model, info)`` with the model in eval mode on ``map_location``.
    """
    if Path(path).suffix.lower() == ".onnx":
        raise CheckpointError(
            f"'{path}' is an ONNX file: predict runs it (--checkpoint), and in Python "
            "roadseg.inference.runtime.load_predictor; load_model reads PyTorch checkpoints"
        )
    data = read_checkpoint(path)
    if data.get("format") == FORMAT:
        info, state = _parse_roadseg(data, path)
    elif _is_official_dlinknet(data):
        info, state = _parse_official(data)
    else:
        keys = ", ".join(list(data)[:5])
        raise CheckpointError(
            f"checkpoint '{path}' is not a roadseg checkpoint nor an official D-LinkNet state_dict "
            f"(first keys: {keys})"
        )
    bad = [
        k
        for k, v in state.items()
        if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        raise CheckpointError(
            f"checkpoint '{path}' holds NaN or infinite weights in {len(bad)} tensor(s) (first: {bad[0]}); "
            "it comes from a diverged run: use an earlier checkpoint"
        )
    try:
        model = create_model(info.arch, **info.arch_kwargs)
    except InputError as exc:  # the name came from the file: say which file
        raise CheckpointError(f"checkpoint '{path}': {exc}") from None
    # weights may be stored in half precision (the bundled model is): compute in float32
    state = {
        k: v.float() if torch.is_tensor(v) and v.dtype in (torch.float16, torch.bfloat16) else v
        for k, v in state.items()
    }
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"checkpoint '{path}' does not fit architecture {info.arch}: {' '.join(first[:2])[:300]}"
        ) from None
    info = replace(info, size_divisor=model.size_divisor)
    return model.to(map_location).eval(), info


def _parse_roadseg(data: dict[str, Any], path: str | os.PathLike[str]) -> tuple[ModelInfo, dict[str, Any]]:
    if data.get("version", 0) > VERSION:
        raise CheckpointError(
            f"checkpoint '{path}' has format version {data['version']}; this roadseg reads up to "
            f"{VERSION}: upgrade roadseg"
        )
    info = info_from_dict(data, f"checkpoint '{path}'")
    state = data.get("state_dict")
    if not isinstance(state, dict):
        what = "lacks the key 'state_dict'" if state is None else f"state_dict is a {type(state).__name__}"
        raise CheckpointError(f"checkpoint '{path}' {what}, not a mapping of weights")
    return info, state


# --- official D-LinkNet (zlckanata/DeepGlobe-Road-Extraction-Challenge) -------------------

_OFFICIAL_RENAMES: list[tuple[str, str | Callable[[re.Match[str]], str]]] = [
    (r"^firstconv\.", "encoder.conv1."),
    (r"^firstbn\.", "encoder.bn1."),
    (r"^encoder(\d)\.", r"encoder.layer\1."),
    (r"^dblock\.dilate(\d)\.", lambda m: f"center.convs.{int(m.group(1)) - 1}."),
    (r"^decoder(\d)\.", lambda m: f"decoders.{4 - int(m.group(1))}."),
    (r"^finaldeconv1\.", "head.0."),
    (r"^finalconv2\.", "head.2."),
    (r"^finalconv3\.", "head.4."),
]
_BLOCKS_TO_DEPTH = {
    (2, 2, 2, 2, False): 18,
    (3, 4, 6, 3, False): 34,
    (3, 4, 6, 3, True): 50,
    (3, 4, 23, 3, True): 101,
}


def _strip_module(key: str) -> str:
    return key.removeprefix("module.")


def _is_official_dlinknet(data: dict[str, Any]) -> bool:
    keys = {_strip_module(k) for k in data}
    return "firstconv.weight" in keys and "dblock.dilate1.weight" in keys


def _parse_official(data: dict[str, Any]) -> tuple[ModelInfo, dict[str, Any]]:
    state = {_strip_module(k): v for k, v in data.items()}
    blocks: list[int] = []
    for i in range(1, 5):
        idx = {int(k.split(".")[1]) for k in state if k.startswith(f"encoder{i}.")}
        blocks.append(len(idx))
    bottleneck = "encoder1.0.conv3.weight" in state
    depth = _BLOCKS_TO_DEPTH.get((blocks[0], blocks[1], blocks[2], blocks[3], bottleneck))
    if depth is None:
        raise CheckpointError(f"D-LinkNet state_dict with an unknown ResNet layout {blocks}")
    renamed: dict[str, Any] = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _OFFICIAL_RENAMES:
            new, n = re.subn(pattern, repl, new)
            if n:
                break
        renamed[new] = value
    # Saved by PyTorch 0.2: BatchNorm has no num_batches_tracked buffer yet.
    for key in [k for k in renamed if k.endswith(".running_mean")]:
        renamed.setdefault(key.replace(".running_mean", ".num_batches_tracked"), torch.tensor(0))
    in_channels = int(state["firstconv.weight"].shape[1])
    classes = int(state["finalconv3.weight"].shape[0])
    info = ModelInfo(
        arch=f"dlinknet{depth}",
        arch_kwargs={"in_channels": in_channels, "classes": classes},
        in_channels=in_channels,
        normalization=OFFICIAL_DLINKNET,
        gsd_m=0.5,  # DeepGlobe imagery
        threshold=0.5,  # mean of sigmoids > 0.5 == official "sum of 8 TTA views > 4.0"
        meta={"origin": "official D-LinkNet weights (DeepGlobe 2018)"},
        source="official-dlinknet",
    )
    check_info(info, "official D-LinkNet state_dict")
    return info, renamed
