"""Write-to-temp-then-rename, so an interrupted run never leaves a half-written file."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from roadseg.errors import InputError


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


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary file lives in the same folder (same filesystem, so the rename is
    atomic) and keeps the target's suffix, because GDAL/OGR choose drivers by it.
    On any exception, including KeyboardInterrupt, the temporary file is removed.
    """
    target = check_output_path(target)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".part{target.suffix}", dir=target.parent or "."
    )
    os.close(fd)
    os.unlink(tmp)  # writers (GDAL, OGR, torch) create the file themselves
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except PermissionError:
        raise InputError(f"cannot write '{target}': permission denied") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
            raise InputError(f"cannot write '{target}': {os.strerror(exc.errno)}") from None
        raise
    finally:
        for leftover in (tmp_path, Path(str(tmp_path) + ".aux.xml")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
