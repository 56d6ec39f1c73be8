"""Benchmark region-scale runs: many scenes sequentially against a local Dask cluster, and
predict's peak memory with its defaults.

Part 1 (``scenes``): N synthetic scenes of SIZE^2 (a road grid, 0.7 m pixels, the bundled
model's GSD, so no resampling) go through ``roadseg predict DIR --out-dir`` once sequentially
and once with ``--cluster local:W``, each as a child process whose process tree is sampled for
RSS. Reported: wall time, throughput ratio, per-scene overhead (worker time not spent inside
scenes, per scene), peak RSS per process, and whether the rasters are byte-identical.

Part 2 (``memory``): ``roadseg predict TILE --prob-out`` with the defaults (d4) on a real
1500^2 Massachusetts tile, for the bundled model and dlinknet34, with the peak RSS of each
against the 12.8 GB that issue #14 measured before passes were sized from free memory.

Usage::

    python scripts/benchmark_scale.py scenes --scenes 100 --size 2048 --tta none --workers 2
    python scripts/benchmark_scale.py memory --tile ../shared/data/massachusetts_roads/test_split_jpg/images/1.jpg
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_predict import make_scene

ROADSEG = [sys.executable, "-m", "roadseg"]


def run_sampled(cmd: list[str], every: float = 0.1) -> tuple[float, dict[int, float], int]:
    """Run ``cmd``; (seconds, peak RSS in MiB per process of its tree, exit code)."""
    peaks: dict[int, float] = {}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        rss = p.memory_info().rss / 2**20
                    except psutil.NoSuchProcess:
                        continue
                    peaks[p.pid] = max(peaks.get(p.pid, 0.0), rss)
            except psutil.NoSuchProcess:
                pass
            time.sleep(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, err = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode:
        print(err[-2000:], file=sys.stderr)
    return time.perf_counter() - start, peaks, proc.returncode


def scenes(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        src = tmp / "scenes"
        src.mkdir()
        make_scene(src / "s000.tif", args.size, gsd=0.7)
        for i in range(1, args.scenes):
            shutil.copy(src / "s000.tif", src / f"s{i:03d}.tif")  # distinct files, as a region's tiles
        common = ["predict", str(src), "--tta", args.tta, "--vector-format", args.vector_format, "-q"]
        results = {}
        for name, extra in [
            ("sequential", []),
            (f"local:{args.workers}", ["--cluster", f"local:{args.workers}"]),
        ]:
            out = tmp / name.replace(":", "_")
            seconds, peaks, rc = run_sampled([*ROADSEG, *common, "--out-dir", str(out), *extra])
            with open(out / "manifest.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            busy = sum(float(r["seconds"]) for r in rows)
            workers = 1 if name == "sequential" else args.workers
            results[name] = {
                "seconds": seconds,
                "rc": rc,
                "done": sum(r["status"] == "done" for r in rows),
                "overhead_s": (seconds * workers - busy) / len(rows),
                "scene_s": busy / len(rows),
                "peaks": sorted(peaks.values(), reverse=True),
                "out": out,
            }
            r = results[name]
            print(
                f"{name:<11} {seconds:7.1f} s  {r['done']}/{args.scenes} done  {args.scenes * args.size**2 / 1e6 / seconds:6.2f} Mpx/s  "
                f"scene {r['scene_s']:.2f} s  overhead/scene {r['overhead_s']:.2f} s  "
                f"peak RSS MiB (largest processes) {[round(p) for p in r['peaks'][: workers + 1]]}",
                flush=True,
            )
        seq, clu = results["sequential"], results[f"local:{args.workers}"]
        same = all(
            (seq["out"] / p.name).read_bytes() == p.read_bytes()
            for p in sorted(clu["out"].glob("*.prob.tif"))
        )
        print(
            f"{args.scenes} scenes of {args.size}^2, tta {args.tta}, {psutil.cpu_count()} cores: "
            f"throughput ratio local:{args.workers} / sequential {seq['seconds'] / clu['seconds']:.3f}; "
            f"rasters byte-identical: {same}"
        )


def memory(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        import torch

        from roadseg import create_model, save_model

        torch.manual_seed(0)
        d34 = save_model(create_model("dlinknet34"), tmp / "dlinknet34.pt")
        for name, ckpt in [("bundled (dlinknet_lite0)", None), ("dlinknet34", d34)]:
            cmd = [*ROADSEG, "predict", str(args.tile), "--prob-out", str(tmp / "p.tif"), "-q"]
            if ckpt is not None:
                cmd += ["--checkpoint", str(ckpt)]
            (tmp / "p.tif").unlink(missing_ok=True)
            seconds, peaks, rc = run_sampled(cmd)
            peak_gb = max(peaks.values()) * 2**20 / 1e9
            print(
                f"{name:<25} defaults (d4): {seconds:6.1f} s  peak RSS {peak_gb:.2f} GB "
                f"({12.8 / peak_gb:.1f}x less than the 12.8 GB of issue #14)  rc {rc}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("scenes")
    s.add_argument("--scenes", type=int, default=100)
    s.add_argument("--size", type=int, default=2048)
    s.add_argument("--tta", default="none")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--vector-format", default="gpkg")
    m = sub.add_parser("memory")
    m.add_argument("--tile", type=Path, required=True)
    for p in (s, m):
        p.add_argument("--tmp", default=None, help="folder for the scenes and outputs (default: system temp)")
    args = parser.parse_args()
    {"scenes": scenes, "memory": memory}[args.what](args)


if __name__ == "__main__":
    main()
