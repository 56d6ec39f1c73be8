"""Pixel metrics accumulated over images (TP/FP/FN summed, as the DeepGlobe scorer does)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Confusion:
    """Running TP/FP/FN counts; ``update`` ignores pixels outside ``valid``."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def update(self, pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one image (boolean arrays of the same shape)."""
        pred, truth = pred.astype(bool), truth.astype(bool)
        if valid is not None:
            pred, truth = pred & valid, truth & valid
        self.tp += int(np.count_nonzero(pred & truth))
        self.fp += int(np.count_nonzero(pred & ~truth))
        self.fn += int(np.count_nonzero(~pred & truth))

    def add(self, tp: int, fp: int, fn: int) -> None:  # noqa: D102
        self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn

    @property
    def iou(self) -> float:  # noqa: D102
        d = self.tp + self.fp + self.fn
        return self.tp / d if d else 1.0

    @property
    def precision(self) -> float:  # noqa: D102
        d = self.tp + self.fp
        return self.tp / d if d else 1.0

    @property
    def recall(self) -> float:  # noqa: D102
        d = self.tp + self.fn
        return self.tp / d if d else 1.0

    @property
    def f1(self) -> float:  # noqa: D102
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 1.0
