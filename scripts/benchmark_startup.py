"""Start-up time and peak memory of the commands a new user types first, side by side with the
same commands made to import PyTorch first (what every command paid before the light install).

Each run is a fresh interpreter (as a shell command is); rounds interleave the two variants.
Usage: python scripts/benchmark_startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "--help": ["--help"],
    "--version": ["--version"],
    "models": ["models"],
    "info": ["info"],
}
RUN = (
    "import resource, sys\n"
    "{pre}"
    "from roadseg.cli import main\n"
    "rc = main({argv!r})\n"
    "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def once(argv: list[str], with_torch: bool) -> tuple[float, float]:
    code = RUN.format(pre="import torch\n" if with_torch else "", argv=argv)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{argv} failed: {out.stderr[-500:]}")
    rss_kb = int(next(line.split()[1] for line in out.stderr.splitlines() if line.startswith("MAXRSS")))
    return seconds, rss_kb / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    results: dict[str, dict[str, list[tuple[float, float]]]] = {c: {"now": [], "torch": []} for c in COMMANDS}
    for _ in range(args.rounds):
        for name, argv in COMMANDS.items():
            for variant in ("now", "torch"):
                results[name][variant].append(once(argv, variant == "torch"))
    table = {}
    print(f"{'command':<10} {'now s':>7} {'now MB':>7} {'torch s':>8} {'torch MB':>9} {'faster':>7}")
    for name, runs in results.items():
        now_s = statistics.median(s for s, _ in runs["now"])
        now_mb = statistics.median(m for _, m in runs["now"])
        t_s = statistics.median(s for s, _ in runs["torch"])
        t_mb = statistics.median(m for _, m in runs["torch"])
        table[name] = {
            "s": round(now_s, 3),
            "MB": round(now_mb),
            "torch_s": round(t_s, 3),
            "torch_MB": round(t_mb),
        }
        print(f"{name:<10} {now_s:7.2f} {now_mb:7.0f} {t_s:8.2f} {t_mb:9.0f} {t_s / now_s:6.1f}x")
    print(json.dumps(table))


if __name__ == "__main__":
    main()
