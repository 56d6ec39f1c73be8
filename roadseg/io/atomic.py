"""Write-to-temp-then-rename, so an interrupted run never leaves a half-written file."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from roadseg.errors import InputError
from roadseg.io.paths import check_output_path


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
