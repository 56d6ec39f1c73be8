"""What a command may write: never an input, never another output, always a name of its kind.

Every command calls :func:`check_outputs` before any work, so a slip such as
``--prob-out scene.tif`` is refused in one line instead of destroying the user's scene.
Paths are compared after resolving ``..`` and symbolic links; the file suffix sets of the
project live here too.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from roadseg.errors import InputError

RASTER_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".vrt")
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp")
#: road networks as graphs (osmnx's GraphML); written by vectorize and predict, never read
GRAPH_SUFFIXES = (".graphml",)
#: road lines written, by suffix: the OGR driver (GraphML is roadseg's own writer)
VECTOR_DRIVERS = {".geojson": "GeoJSON", ".gpkg": "GPKG", ".graphml": "GraphML"}
#: the suffixes each kind of output may have (its writer picks the format by it)
OUTPUT_SUFFIXES = {
    "geotiff": (".tif", ".tiff"),
    "vector": tuple(VECTOR_DRIVERS),
    "png": (".png",),
    "csv": (".csv",),
    "qml": (".qml",),
    "onnx": (".onnx",),
    "osm": (".osm",),
    "json": (".json",),
}
_FORMATS = {
    "geotiff": "a GeoTIFF",
    "vector": "GeoJSON, GeoPackage or GraphML",
    "png": "a PNG picture",
    "csv": "CSV",
    "qml": "a QGIS style",
    "onnx": "an ONNX model",
    "osm": "OSM XML",
    "json": "JSON",
}


def check_input_file(path: str | os.PathLike[str], what: str, expected: str) -> Path:
    """``path`` as a regular file to read, or one line saying what was found instead: nothing,
    a folder, a named pipe (reading one blocks until a writer comes), a device, a socket, a name
    with a NUL byte or an empty one. ``what`` names the input ("input raster", "checkpoint"),
    ``expected`` what it should be ("a GeoTIFF, COG, VRT, JPEG or PNG file")."""
    text = os.fspath(path)
    if not str(text).strip():
        raise InputError(f"{what} is an empty name (an unset variable?); expected {expected}")
    if "\x00" in str(text):
        raise InputError(f"{what} {str(text)[:200]!r} holds a NUL byte; expected the path of {expected}")
    p = Path(text)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{what} '{p}' not found; check the path") from None
    except OSError as exc:
        raise InputError(f"{what} '{p}' cannot be read ({exc.strerror}); expected {expected}") from None
    if stat.S_ISREG(mode):
        return p
    found = (
        "a folder"
        if stat.S_ISDIR(mode)
        else "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise InputError(f"{what} '{p}' is {found}; expected {expected}")


def _real(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def check_outputs(
    inputs: Mapping[str, Path | None],
    outputs: Mapping[str, tuple[Path | None, str]],
    *,
    new_folders: bool = False,
) -> None:
    """Refuse outputs that would replace an input or each other, that have the wrong suffix,
    or that cannot be written (a missing or read-only folder, a folder named as a file).

    Args:
        inputs: option or argument name -> path read by the command (files or folders).
        outputs: option name -> (path, kind), kind a key of ``OUTPUT_SUFFIXES``.
        new_folders: the command creates the outputs' folder (``--out-dir``): a missing one is
            fine where it can be created.
    """
    seen: dict[str, str] = {}
    real_inputs = {name: _real(p) for name, p in inputs.items() if p is not None}
    for name, (path, kind) in outputs.items():
        if path is None:
            continue
        allowed = OUTPUT_SUFFIXES[kind]
        if path.suffix.lower() not in allowed:
            raise InputError(
                f"{name} '{path}' must end in {' or '.join(allowed)}: it is written as {_FORMATS[kind]}"
            )
        real = _real(path)
        for in_name, in_real in real_inputs.items():
            if real == in_real:
                raise InputError(
                    f"{name} '{path}' is the input {in_name} '{inputs[in_name]}'; roadseg never writes "
                    "over an input: choose another output name"
                )
        if real in seen:
            raise InputError(f"{seen[real]} and {name} both name '{path}'; give each output its own file")
        seen[real] = name
        if new_folders and not path.parent.exists():
            check_creatable(path.parent)
        else:
            check_output_path(path)


def check_creatable(folder: Path) -> None:
    """Refuse a folder that cannot be created: its nearest existing parent is a file or not
    writable (found before the work, not when the first output is written)."""
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot create folder '{folder}': '{parent}' is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or not _can_create(parent):
        raise InputError(f"cannot create folder '{folder}': '{parent}' is not writable; choose another place")


def with_styles(
    outputs: Mapping[str, tuple[Path | None, str]], style: bool
) -> dict[str, tuple[Path | None, str]]:
    """``outputs`` plus the QGIS style sidecar (NAME.qml) of each raster and vector output
    (a GeoPackage stores its style inside, and a GraphML has none)."""
    out = dict(outputs)
    if style:
        for name, (path, kind) in outputs.items():
            if (
                path is not None
                and kind in ("geotiff", "vector")
                and path.suffix.lower() not in (*GRAPH_SUFFIXES, ".gpkg")  # a GeoPackage holds its own
            ):
                out[f"the style of {name}"] = (path.with_suffix(".qml"), "qml")
    return out


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path after checking that its folder exists."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        what = "is a file, not a folder" if parent.exists() else "does not exist"
        raise InputError(f"output folder '{parent}' {what}; create it first or choose another --out path")
    if path.is_dir():
        raise InputError(f"output path '{path}' is a folder; expected a file name")
    if not os.access(parent, os.W_OK | os.X_OK) or not _can_create(parent):
        raise InputError(f"output folder '{parent}' is not writable; choose another place for '{path.name}'")
    return path


_WRITABLE: set[str] = set()


def _can_create(folder: Path) -> bool:
    """Whether a file can really be created in ``folder`` (root passes os.access in /proc and
    /sys, where creating fails: found before the work, not after it). Checked once per folder."""
    key = os.path.realpath(folder)
    if key in _WRITABLE:
        return True
    try:
        fd, probe = tempfile.mkstemp(prefix=".roadseg-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    _WRITABLE.add(key)
    return True


def check_run_folder(run_dir: Path, data_roots: list[Path]) -> None:
    """Refuse a training run folder that is, or lies inside, a data folder it reads."""
    real = Path(_real(run_dir))
    for root in data_roots:
        r = Path(_real(root))
        if real == r or r in real.parents:
            raise InputError(
                f"run folder '{run_dir}' is inside the training data folder '{root}'; "
                "put runs outside the data (e.g. --out runs/my-run)"
            )
