"""Test-time augmentation as (forward, inverse) pairs over the dihedral group D4.

``flip`` is the 4 flips used by CRESI; ``d4`` is the 8 views of the official D-LinkNet test
code ({identity, rot90} x {none, v, h, both}). Views run as one batch; their sigmoid
probabilities are averaged, so threshold 0.5 equals the official "sum of 8 > 4.0".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

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


def _forward(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def _inverse(y: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    if k:
        y = torch.rot90(y, -k, dims=(-2, -1))
    return y.flip(-1) if flip else y


def predict_tta(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: str, max_batch: int | None = None
) -> torch.Tensor:
    """Mean sigmoid probability over the TTA views of a normalized batch ``(N, C, T, T)``.

    The ``N * views`` images go through the model in passes of at most ``max_batch`` (None:
    one pass). The result does not depend on it (eval-mode models treat images independently);
    memory and, on a CPU, speed do: small passes stay in cache.
    """
    vs = views(mode)
    if any(k % 2 for k, _ in vs) and x.shape[-1] != x.shape[-2]:
        raise InputError("rotating TTA (d4) needs square tiles")
    batch = torch.cat([_forward(x, k, f) for k, f in vs]) if len(vs) > 1 else x
    step = batch.shape[0] if max_batch is None else max(1, max_batch)
    logits = torch.cat([model(batch[i : i + step]).float() for i in range(0, batch.shape[0], step)])
    probs = torch.sigmoid(logits).chunk(len(vs))
    out = _inverse(probs[0], *vs[0])
    for p, (k, f) in zip(probs[1:], vs[1:], strict=True):
        out = out + _inverse(p, k, f)
    return out / len(vs)
