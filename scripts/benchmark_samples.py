"""Training samples per second from a config's data, with its label tolerances and with them off.

The data path is what ``roadseg train``'s loader workers run per crop (read, resample, augment,
tolerance band, normalize). Both variants read the same draws, interleaved in one process, after a
warm-up pass that fills the decoded-image cache; the median of the rounds is reported as ms per
sample and as the ratio to the tolerance-free baseline.

Usage: ``python scripts/benchmark_samples.py [--config default_model/v3_cpu_tolerance.yaml]
[--samples 200] [--rounds 5]`` (from the repository root, with ../shared/data beside it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time

from roadseg.config import load_config
from roadseg.normalization import IMAGENET
from roadseg.train.dataset import SampleSet, build_datasets


def _without_tolerance(cfg):  # type: ignore[no-untyped-def]
    data = dataclasses.replace(
        cfg.data,
        label_tolerance_m=0.0,
        sources=[dataclasses.replace(s, label_tolerance_m=0.0) for s in cfg.data.sources],
    )
    return dataclasses.replace(cfg, data=data)


def _seconds(train: SampleSet, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        train.sample(i, epoch=0)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="default_model/v3_cpu_tolerance.yaml")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cfg = load_config(args.config)
    norm = IMAGENET  # the scaling costs the same whatever its numbers
    variants = {
        "tolerance off (baseline)": build_datasets(_without_tolerance(cfg).data, norm, seed=0)[0],
        "as configured": build_datasets(cfg.data, norm, seed=0)[0],
    }
    n = min(args.samples, len(next(iter(variants.values()))))
    for train in variants.values():
        _seconds(train, n)  # warm-up: decode every image once into the cache
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, train in variants.items():
            times[name].append(_seconds(train, n))
    base = statistics.median(times["tolerance off (baseline)"])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"{machine}, {n} samples x {args.rounds} rounds, {args.config}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:26s} {1000 * med / n:7.2f} ms/sample  {med / base:5.3f}x the baseline's time")


if __name__ == "__main__":
    main()
