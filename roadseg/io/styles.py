"""QGIS styles, which QGIS applies when the layer is loaded (probability transparent at 0 rising
to red; mask roads in one colour; lines violet to cyan and widened by ``mean_prob``, with round
ends so junctions read as one): ``NAME.qml`` beside a GeoTIFF or GeoJSON, and inside a
GeoPackage (its ``layer_styles`` table, as QGIS's "save style in database" writes it), so that
``a.tif`` and ``a.gpkg`` never compete for ``a.qml``.

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

KINDS = (
    "probability_uint8",
    "probability_float32",
    "mask",
    "lines",
    "polygons",
    "missing",
    "unsupported",
    "completeness",
)


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


#: the layer_styles table as QGIS creates it in a GeoPackage
_LAYER_STYLES = """CREATE TABLE IF NOT EXISTS layer_styles (
    id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT(256), f_table_schema TEXT(256),
    f_table_name TEXT(256), f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT,
    styleSLD TEXT, useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30),
    update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"""


def embeds_style(path: str | os.PathLike[str]) -> bool:
    """Whether the style of ``path`` goes inside the file (GeoPackage) rather than beside it."""
    return Path(path).suffix.lower() == ".gpkg"


def embed_style(gpkg: str | os.PathLike[str], layers: list[str], kind: str) -> None:
    """Store the style of ``kind`` in ``gpkg`` as the default style of each of ``layers``.

    Called on the file before it is moved into place; the table is the one QGIS writes
    (QGIS 3.22 loads it as the layer's default style, checked in tests/test_styles.py)."""
    import sqlite3

    qml = _template(kind).decode("utf-8")
    con = sqlite3.connect(os.fspath(gpkg))
    try:
        con.execute(_LAYER_STYLES)
        for layer in layers:
            row = con.execute(
                "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (layer,)
            ).fetchone()
            if row is None:
                continue
            con.execute(
                "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
                "styleName, styleQML, styleSLD, useAsDefault, description, owner, ui) "
                "VALUES ('', '', ?, ?, ?, ?, '', 1, 'roadseg', '', '')",
                (layer, row[0], f"roadseg {kind}", qml),
            )
        con.commit()
    finally:
        con.close()


def remove_style(path: str | os.PathLike[str]) -> None:
    """Remove the sidecar of ``path`` if it is roadseg's (a failed scene's); a user's own stays."""
    target = sidecar(path)
    if target.is_file() and _ours(target):
        target.unlink()
