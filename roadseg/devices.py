"""Which device to run on, and the fastest numerics it runs exactly enough.

One home for these choices so that predict, train and the benchmarks agree. Measured on a
2-core AVX512-BF16 CPU (``scripts/benchmark_train.py``, ``scripts/benchmark_predict.py``):
channels_last alone makes CPU convolutions 1.6-2x faster at a ~1e-7 difference, and bf16
autocast another 1.5-2x, so both are used on CPU too, not only on CUDA.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch

from roadseg.errors import InputError

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; explicit names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device must be auto, cpu, cuda, cuda:N or mps; got '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def channels_last(device: torch.device) -> bool:
    """NHWC is faster for convolutions on CUDA (cuDNN) and CPU (oneDNN); MPS is left alone."""
    return device.type in ("cuda", "cpu")


def cpu_native_bf16() -> bool:
    """True where oneDNN runs bf16 in hardware (AVX512-BF16 or AMX); elsewhere it is emulated and slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype for ``device``, or None for float32.

    CUDA: bf16 where supported, else fp16 (which needs a GradScaler in training). CPU: bf16
    only with native support, since emulated bf16 is slower than float32.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        if cpu_native_bf16():
            return torch.bfloat16
        log.info("mixed precision: this CPU has no native bf16; running float32")
        return None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``dtype``, or a no-op for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
