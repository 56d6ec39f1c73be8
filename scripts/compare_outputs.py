"""Compare two folders of roadseg outputs file by file: rasters and pictures by bytes,
GeoPackages by layers, features and attributes (their files hold write times), manifests
without the seconds column. Used to show a refactoring changes no output:

    python scripts/compare_outputs.py BEFORE_DIR AFTER_DIR
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def _gpkg_rows(path: Path) -> list[tuple[str, list[tuple]]]:
    import pyogrio

    out = []
    for name, _ in pyogrio.list_layers(path):
        if name == "layer_styles":
            continue
        df = pyogrio.read_dataframe(path, layer=name)
        rows = [tuple(map(str, r)) for r in df.drop(columns="geometry").itertuples(index=False)]
        geoms = [g.wkb for g in df.geometry] if "geometry" in df else []
        out.append((name, list(zip(rows, geoms, strict=False))))
    return out


def _manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in ("seconds", "worker")} for row in csv.DictReader(f)]


def same(a: Path, b: Path) -> bool:
    if a.suffix == ".gpkg":
        return _gpkg_rows(a) == _gpkg_rows(b)
    if a.name == "manifest.csv":
        return _manifest(a) == _manifest(b)
    return a.read_bytes() == b.read_bytes()


def main(before: str, after: str) -> int:
    root_a, root_b = Path(before), Path(after)
    files_a = {p.relative_to(root_a) for p in root_a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(root_b) for p in root_b.rglob("*") if p.is_file()}
    bad = 0
    for rel in sorted(files_a ^ files_b):
        print(f"only in {'before' if rel in files_a else 'after'}: {rel}")
        bad += 1
    for rel in sorted(files_a & files_b):
        ok = same(root_a / rel, root_b / rel)
        bad += not ok
        print(f"{'same' if ok else 'DIFFERENT'}: {rel}")
    print(f"{len(files_a & files_b) - bad} of {len(files_a | files_b)} files the same")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
