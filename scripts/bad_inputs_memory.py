"""Peak memory of every bad-input case of tests/test_bad_inputs.py, each in its own process.

The hostile-input promise includes "under 1.6 GB of memory" (a zip bomb refused without
inflating it, a mosaic of far-apart scenes refused before it is built). The test suite runs
the cases in one process, where peak memory cannot be told apart; this script runs each as
`roadseg ...` under /usr/bin/time and prints its exit code and peak resident memory:

    python scripts/bad_inputs_memory.py [--limit-mb 1600] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class _Factory:
    def __init__(self, base: Path) -> None:
        self.base = base

    def mktemp(self, name: str) -> Path:
        path = self.base / name
        path.mkdir()
        return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-mb", type=float, default=1600)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT / "tests")]
    import test_bad_inputs as cases

    build = cases.ws._get_wrapped_function()  # the fixture's own function
    worst, failures = 0.0, []
    with tempfile.TemporaryDirectory() as tmp:
        ws = build(_Factory(Path(tmp)))
        for name, argv, code, _ in cases.CASES:
            if args.only not in name:
                continue
            cmd = [a.format(ws=ws) for a in argv] + ["-q"] * (argv[0] != "info")
            run = subprocess.run(
                ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "roadseg", *cmd],
                cwd=ws,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            peak_mb = int(run.stderr.strip().splitlines()[-1]) / 1024
            worst = max(worst, peak_mb)
            flag = "" if peak_mb <= args.limit_mb and run.returncode == code else "  <-- over or wrong code"
            if flag:
                failures.append(name)
            print(f"{name:<45} exit {run.returncode} (want {code})  {peak_mb:7.0f} MB{flag}", flush=True)
    print(
        f"worst peak {worst:.0f} MB; {len(failures)} case(s) over {args.limit_mb:.0f} MB or with another exit code"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
