"""Test-time augmentation as (forward, inverse) pairs over the dihedral group D4.

``flip`` is the 4 flips used by CRESI; ``d4`` is the 8 views of the official D-LinkNet test
code ({identity, rot90} x {none, v, h, both}). Views run as one batch; their probabilities are
averaged, so threshold 0.5 equals the official "sum of 8 > 4.0".

The same code serves numpy arrays (the ONNX Runtime path, no torch installed) and torch
tensors (on the model's device).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from roadseg.errors import InputError

TTAMode = Literal["none", "flip", "d4"]

# A view: (k quarter turns, flip the last axis); applied as flip then rotate.
_VIEWS: dict[str, list[tuple[int, bool]]] = {
    "none": [(0, False)],
    "flip": [(0, False), (0, True), (2, True), (2, False)],  # id, h, v, hv
    "d4": [(k, f) for k in range(4) for f in (False, True)],
}


def views(mode: str) -> list[tuple[int, bool]]:
    """The views of a TTA mode."""
    if mode not in _VIEWS:
        raise InputError(f"--tta must be one of {list(_VIEWS)}, got '{mode}'")
    return _VIEWS[mode]


def _rot90(x: Any, k: int) -> Any:
    if isinstance(x, np.ndarray):
        return np.rot90(x, k, axes=(-2, -1))
    import torch

    return torch.rot90(x, k, dims=(-2, -1))


def _flip(x: Any) -> Any:
    return np.flip(x, -1) if isinstance(x, np.ndarray) else x.flip(-1)


def _forward(x: Any, k: int, flip: bool) -> Any:
    if flip:
        x = _flip(x)
    return _rot90(x, k) if k else x


def _inverse(y: Any, k: int, flip: bool) -> Any:
    if k:
        y = _rot90(y, -k)
    return _flip(y) if flip else y


def predict_tta(probabilities: Callable[[Any], Any], x: Any, mode: str, max_batch: int | None = None) -> Any:
    """Mean probability over the TTA views of a normalized batch ``(N, C, T, T)``.

    ``probabilities`` maps a batch of images to float32 probabilities ``(M, K, T, T)`` (a
    network and its sigmoid, or an ONNX graph that ends in one). The ``N * views`` images go
    through it in passes of at most ``max_batch`` (None: one pass), built one pass at a time,
    so memory holds one pass, not every view of the batch. The result does not depend on the
    pass size: eval-mode models treat images independently, and each tile's views are summed
    in the same order.
    """
    vs = views(mode)
    if any(k % 2 for k, _ in vs) and x.shape[-1] != x.shape[-2]:
        raise InputError("rotating TTA (d4) needs square tiles")
    numpy = isinstance(x, np.ndarray)
    n = x.shape[0]
    order = [(v, i) for v in range(len(vs)) for i in range(n)]  # view-major: the summing order
    step = len(order) if max_batch is None else max(1, max_batch)
    out: Any = None
    for s in range(0, len(order), step):
        chunk = order[s : s + step]
        parts = [_forward(x[i : i + 1], *vs[v]) for v, i in chunk]
        if numpy:
            images: Any = np.ascontiguousarray(np.concatenate(parts))
        else:
            import torch

            images = torch.cat(parts)
        probs = probabilities(images)
        if out is None:
            if numpy:
                out = np.zeros((n, *probs.shape[1:]), dtype=np.float32)
            else:
                import torch

                out = torch.zeros((n, *probs.shape[1:]), dtype=torch.float32, device=probs.device)
        for (v, i), p in zip(chunk, probs, strict=True):
            out[i] += _inverse(p, *vs[v])
    assert out is not None
    return out / len(vs)
