"""QGIS style sidecars: ``NAME.qml`` beside ``NAME.tif`` / ``NAME.gpkg``, which QGIS applies
when the layer is loaded (probability transparent at 0 rising to red; mask roads in one colour;
lines coloured and widened by ``mean_prob``, with round ends so junctions read as one).

The templates in ``roadseg/styles`` were written by QGIS itself (``scripts/make_qgis_styles.py``).
A ``.qml`` already beside an output that is not one of them is the user's own style: it is kept.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

from roadseg.io.atomic import atomic_path

log = logging.getLogger(__name__)

KINDS = ("probability_uint8", "probability_float32", "mask", "lines", "polygons")


def sidecar(path: str | os.PathLike[str]) -> Path:
    """Where QGIS looks for the style of ``path``."""
    return Path(path).with_suffix(".qml")


def _template(kind: str) -> bytes:
    return (resources.files("roadseg.styles") / f"{kind}.qml").read_bytes()


def _ours(path: Path) -> bool:
    return path.read_bytes() in {_template(k) for k in KINDS}


def write_style(path: str | os.PathLike[str], kind: str) -> Path | None:
    """Write the style of ``kind`` beside ``path``; None where a user's own style is kept."""
    target = sidecar(path)
    if target.exists() and not _ours(target):
        log.warning("kept '%s': it is not a roadseg style (delete it to get roadseg's)", target)
        return None
    with atomic_path(target) as tmp:
        tmp.write_bytes(_template(kind))
    return target


def remove_style(path: str | os.PathLike[str]) -> None:
    """Remove the sidecar of ``path`` if it is roadseg's (a failed scene's); a user's own stays."""
    target = sidecar(path)
    if target.is_file() and _ours(target):
        target.unlink()
