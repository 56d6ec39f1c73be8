"""Zip qgis_plugin/roadseg_qgis into an installable QGIS plugin (Plugins > Install from ZIP).

python scripts/make_qgis_plugin.py [--out-dir dist]
"""

from __future__ import annotations

import argparse
import configparser
import zipfile
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[1] / "qgis_plugin" / "roadseg_qgis"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out-dir", type=Path, default=Path("dist"))
    args = parser.parse_args()
    meta = configparser.ConfigParser()
    meta.read(PLUGIN / "metadata.txt")
    version = meta["general"]["version"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"roadseg_qgis-{version}.zip"
    tmp = out.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(PLUGIN.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                z.write(path, Path(PLUGIN.name) / path.relative_to(PLUGIN))
    tmp.replace(out)
    print(out)


if __name__ == "__main__":
    main()
