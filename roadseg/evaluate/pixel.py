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

    def add(self, tp: int, fp: int, fn: int) -> None:
        self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn

    @property
    def iou(self) -> float:
        d = self.tp + self.fp + self.fn
        return self.tp / d if d else 1.0

    @property
    def precision(self) -> float:
        d = self.tp + self.fp
        return self.tp / d if d else 1.0

    @property
    def recall(self) -> float:
        d = self.tp + self.fn
        return self.tp / d if d else 1.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 1.0


def disk(radius: int) -> np.ndarray:
    """Boolean disk footprint of the given pixel radius."""
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


class RelaxedCurve:
    """Relaxed precision/recall (Mnih & Hinton 2010) at every threshold, from histograms.

    A predicted road pixel is correct if a true road pixel lies within ``radius`` pixels; a
    true road pixel is recalled if a predicted one lies within ``radius``. With one maximum
    filter per image, recall at threshold t is the share of true pixels whose neighbourhood
    maximum is >= t, so one pass gives the whole curve (256 levels) and its breakeven.
    """

    LEVELS = 256

    def __init__(self, radius: int = 3) -> None:
        self.radius = radius
        self.pred_all = np.zeros(self.LEVELS, np.int64)  # predicted pixels by level
        self.pred_near = np.zeros(self.LEVELS, np.int64)  # ... that lie near a true road
        self.truth_near_max = np.zeros(self.LEVELS, np.int64)  # true pixels by max level nearby
        self.truth_total = 0

    def update(self, prob_u8: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one image: probabilities as uint8 levels 0..255 and a boolean truth."""
        from scipy import ndimage

        fp = disk(self.radius)
        valid = np.ones(truth.shape, bool) if valid is None else valid
        near_truth = ndimage.binary_dilation(truth, structure=fp) if self.radius else truth
        near_max = ndimage.maximum_filter(prob_u8, footprint=fp, mode="constant") if self.radius else prob_u8
        self.pred_all += np.bincount(prob_u8[valid].ravel(), minlength=self.LEVELS)
        self.pred_near += np.bincount(prob_u8[valid & near_truth].ravel(), minlength=self.LEVELS)
        t = truth & valid
        self.truth_near_max += np.bincount(near_max[t].ravel(), minlength=self.LEVELS)
        self.truth_total += int(t.sum())

    def merge(self, other: RelaxedCurve) -> None:
        """Add another curve's counts (same radius), e.g. one image's into a dataset total."""
        self.pred_all += other.pred_all
        self.pred_near += other.pred_near
        self.truth_near_max += other.truth_near_max
        self.truth_total += other.truth_total

    def at(self, level: int) -> tuple[float, float]:
        """(relaxed precision, relaxed recall) for prediction ``prob >= level``."""
        pred = self.pred_all[level:].sum()
        precision = float(self.pred_near[level:].sum() / pred) if pred else 1.0
        recall = float(self.truth_near_max[level:].sum() / self.truth_total) if self.truth_total else 1.0
        return precision, recall

    def _crossing(self) -> tuple[int, int, float]:
        """Where precision - recall changes sign: between levels ``a`` and ``b`` at weight ``w``."""
        diffs = [p - r for p, r in (self.at(level) for level in range(1, self.LEVELS))]
        for i in range(1, len(diffs)):
            d0, d1 = diffs[i - 1], diffs[i]
            if d0 <= 0 <= d1 or d0 >= 0 >= d1:
                return i, i + 1, 0.0 if d1 == d0 else d0 / (d0 - d1)
        best = 1 + min(range(len(diffs)), key=lambda i: abs(diffs[i]))
        return best, best, 0.0

    def breakeven(self) -> float:
        """The value where relaxed precision equals relaxed recall (linear interpolation)."""
        a, b, w = self._crossing()
        (p0, r0), (p1, r1) = self.at(a), self.at(b)
        return float(((p0 + w * (p1 - p0)) + (r0 + w * (r1 - r0))) / 2)

    def breakeven_threshold(self) -> float:
        """The probability threshold (0..1) at the breakeven: a calibrated operating point."""
        a, b, w = self._crossing()
        return float((a + w * (b - a)) / (self.LEVELS - 1))
