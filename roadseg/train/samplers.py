"""Where each training sample comes from: plans that draw, index orders that shuffle.

torchgeo's split: a sampler decides *what* a sample is (which source, which image, which
windows, at what scale, with which augmentation seed); a dataset (``roadseg.train.dataset``)
only reads and transforms what it is told. A :class:`Plan` maps (epoch, index) to a
:class:`Draw` as a pure function of the run's seed, so sample ``index`` of an epoch is the same
in any process, with any number of loader workers, and after a resume; :class:`Draws` turns an
index order (:class:`EpochPermutation`, or torch's DistributedSampler across ranks, skipped
ahead by :class:`SkipSampler` on resume) into the draws a DataLoader hands to the dataset.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Sampler

#: candidate windows drawn per crop, the first mostly-labelled one used (Massachusetts tiles are
#: up to 91 % white no-data)
CROP_TRIES = 5


def sample_seed(*parts: int) -> int:
    """A 32-bit seed from integers, stable across processes and Python versions."""
    digest = hashlib.blake2b(np.asarray(parts, dtype=np.int64).tobytes(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


@dataclass(frozen=True)
class Window:
    """Rows and columns of a source image, in its pixels; it may reach past the image (a crop
    larger than a small image), the part outside is padding marked unlabelled."""

    row: int
    col: int
    height: int
    width: int


@dataclass(frozen=True)
class Draw:
    """One sample: what a dataset reads, and how.

    ``windows`` are candidates in source pixels: the first whose pixels are mostly labelled is
    used (the last if none is); empty means the whole image. With ``size``, the window is resized
    to ``size`` x ``size`` and augmented with ``seed`` (a training crop); without, it is resized
    by ``scale`` (model pixels per source pixel) and padded to the model's multiple
    (validation, as predict sees a scene).
    """

    source: int
    image: int
    seed: int
    windows: tuple[Window, ...] = ()
    size: int | None = None
    scale: float = 1.0


class Plan(Protocol):
    """The draws of an epoch: ``len(plan)`` of them, ``plan.draw(epoch, index)`` each."""

    def __len__(self) -> int: ...

    def draw(self, epoch: int, index: int) -> Draw: ...


def random_window(rng: np.random.Generator, shape: tuple[int, int], size: int) -> Window:
    """A ``size``-square window inside an image of ``shape`` (at 0 along a side shorter than it)."""
    h, w = shape
    row = int(rng.integers(0, max(h, size) - size + 1))
    col = int(rng.integers(0, max(w, size) - size + 1))
    return Window(row, col, size, size)


class RandomCrops:
    """One source: ``per_image`` random crops of ``size`` from each image per epoch (training).

    With ``validation``, one fixed window per image, read as it is (not resized, not augmented):
    the validation of GeoTIFF scenes, which may be far too large to score whole.
    """

    def __init__(
        self,
        shapes: Sequence[tuple[int, int]],
        size: int,
        seed: int,
        *,
        per_image: int = 1,
        validation: bool = False,
    ) -> None:
        self.shapes, self.size, self.seed = list(shapes), size, seed
        self.per_image, self.validation = per_image, validation

    def __len__(self) -> int:
        return len(self.shapes) * self.per_image

    def draw(self, epoch: int, index: int) -> Draw:
        seed = sample_seed(self.seed, 0 if self.validation else epoch, index)
        image = index % len(self.shapes)
        window = random_window(np.random.default_rng(seed), self.shapes[image], self.size)
        return Draw(0, image, seed, (window,), None if self.validation else self.size)


class WholeImages:
    """Every image of every source, whole, resized by its source's scale (validation)."""

    def __init__(self, counts: Sequence[int], scales: Sequence[float], seed: int) -> None:
        self.items = [(k, j) for k, n in enumerate(counts) for j in range(n)]
        self.scales, self.seed = list(scales), seed

    def __len__(self) -> int:
        return len(self.items)

    def draw(self, epoch: int, index: int) -> Draw:
        source, image = self.items[index]
        return Draw(source, image, sample_seed(self.seed, 0, index), scale=self.scales[source])


@dataclass(frozen=True)
class SourceGsd:
    """A source's ground sample distance: ``gsd_m``, or drawn per crop from ``low``-``high``."""

    gsd_m: float
    low: float | None = None
    high: float | None = None


class WeightedCrops:
    """Several sources at one ground sample distance (``data.sources``, training).

    Each crop draws a source by weight and one of its images, a model GSD jittered by up to
    ``jitter`` times either way (and the source's GSD from its range when it is uncertain), and
    windows that cover ``size`` model pixels at that scale; the dataset resizes the window to
    ``size``.
    """

    def __init__(
        self,
        shapes: Sequence[Sequence[tuple[int, int]]],
        weights: Sequence[float],
        gsds: Sequence[SourceGsd],
        *,
        gsd_m: float,
        jitter: float,
        size: int,
        per_epoch: int,
        seed: int,
    ) -> None:
        self.shapes, self.gsds = [list(s) for s in shapes], list(gsds)
        w = np.asarray(weights, dtype=np.float64)
        self.p = w / w.sum()
        self.gsd_m, self.log_jitter, self.size = gsd_m, math.log(jitter), size
        self.per_epoch, self.seed = per_epoch, seed

    def __len__(self) -> int:
        return self.per_epoch

    def draw(self, epoch: int, index: int) -> Draw:
        seed = sample_seed(self.seed, epoch, index)
        rng = np.random.default_rng(seed)
        source = int(rng.choice(len(self.shapes), p=self.p))
        image = int(rng.integers(len(self.shapes[source])))
        gsd = self.gsd_m * math.exp(rng.uniform(-self.log_jitter, self.log_jitter))
        src = self.gsds[source]
        src_gsd = src.gsd_m
        if src.low is not None and src.high is not None:  # an uncertain GSD: draw it
            src_gsd = math.exp(rng.uniform(math.log(src.low), math.log(src.high)))
        window = max(1, round(self.size / (src_gsd / gsd)))  # source px covering size model px
        shape = self.shapes[source][image]
        windows = tuple(random_window(rng, shape, window) for _ in range(CROP_TRIES))
        return Draw(source, image, seed, windows, self.size)


class Draws(Sampler[Draw]):
    """An index order's indices as the draws of ``plan`` in ``epoch`` (the DataLoader's sampler)."""

    def __init__(self, plan: Plan, order: Iterable[int], epoch: int = 0) -> None:
        self.plan, self.order, self.epoch = plan, order, epoch

    def __iter__(self) -> Iterator[Draw]:
        for index in self.order:
            yield self.plan.draw(self.epoch, index)

    def __len__(self) -> int:
        return len(self.order)  # type: ignore[arg-type]  # orders are sized


class EpochPermutation(Sampler[int]):
    """A seeded permutation of ``range(n)`` per epoch (single process)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class SkipSampler(Sampler[int]):
    """Yields a base order's indices from position ``start`` on (mid-epoch resume)."""

    def __init__(self, base: Sampler[int], start: int) -> None:
        self.base, self.start = base, start

    def __iter__(self) -> Iterator[int]:
        for i, idx in enumerate(self.base):
            if i >= self.start:
                yield idx

    def __len__(self) -> int:
        return max(0, len(self.base) - self.start)  # type: ignore[arg-type]
