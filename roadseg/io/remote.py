"""Scenes and outputs that are URLs: the one home of remote paths.

Scenes are read by GDAL's virtual file systems (``s3://b/k`` -> ``/vsis3/b/k``, ``https://`` ->
``/vsicurl/https://``), so a Cloud-Optimized GeoTIFF is read window by window with HTTP range
requests, never downloaded whole. Listing a prefix and writing outputs go through fsspec
(s3fs, gcsfs, adlfs): each output is finished in a local staging folder, then uploaded in one
request, so no partial object ever becomes visible. Credentials come from the standard chains
(``AWS_*`` variables, profiles, instance roles); ``AWS_ENDPOINT_URL`` points both GDAL and
fsspec at an S3-compatible server (MinIO, moto). Nothing here prints a credential.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from roadseg.errors import InputError

#: URL scheme -> GDAL virtual file system prefix
GDAL_PREFIX = {"s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/", "http": "/vsicurl/", "https": "/vsicurl/"}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: GDAL settings for COG reads over a network (a user's own environment wins): no directory
#: listing on open (one request instead of dozens), bounded retries of transient errors
#: (429/5xx), merged range requests, a block cache for the headers
GDAL_DEFAULTS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.vrt,.png,.jpg,.jpeg,.jp2",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "VSI_CACHE": "TRUE",
}


class StacAsset(str):
    """An asset's URL (or path) that knows its item's id: a str, so it goes wherever a scene
    URL goes (GDAL, the manifest), and :func:`roadseg.io.remote.stem_of` names outputs by the id."""

    item_id: str
    #: 1-based bands holding red, green, blue (from the asset's eo:bands), or None
    bands: tuple[int, ...] | None
    #: the item's or asset's gsd in metres, or None
    gsd: float | None

    def __new__(  # noqa: PYI034 - Self is 3.11+
        cls, href: str, item_id: str, bands: tuple[int, ...] | None = None, gsd: float | None = None
    ) -> StacAsset:
        obj = super().__new__(cls, href)
        obj.item_id, obj.bands, obj.gsd = item_id, bands, gsd
        return obj

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # pickled to Dask workers
        return (StacAsset, (str(self), self.item_id, self.bands, self.gsd))


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
    return isinstance(path, str) and bool(_URL.match(path))


def check_url(url: str, what: str = "scene") -> str:
    """``url`` if roadseg can read its scheme; one line naming the schemes otherwise."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in GDAL_PREFIX:
        raise InputError(
            f"{what} '{url[:200]}' has the scheme '{scheme}://', which roadseg cannot read; "
            f"use {', '.join(f'{s}://' for s in GDAL_PREFIX)} or a local path"
        )
    if not urlsplit(url).netloc:
        raise InputError(f"{what} '{url[:200]}' names no bucket or host; expected e.g. s3://bucket/scene.tif")
    return url


def configure_gdal() -> None:
    """GDAL settings for remote reads, as environment defaults (GDAL reads its config from the
    environment, in this process and in Dask workers alike); ``AWS_ENDPOINT_URL(_S3)`` becomes
    GDAL's S3 endpoint so one variable serves boto, s3fs and GDAL."""
    for key, value in GDAL_DEFAULTS.items():
        os.environ.setdefault(key, value)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "AWS_S3_ENDPOINT" not in os.environ:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        os.environ["AWS_S3_ENDPOINT"] = parts.netloc
        os.environ.setdefault("AWS_HTTPS", "NO" if parts.scheme == "http" else "YES")
        os.environ.setdefault("AWS_VIRTUAL_HOSTING", "FALSE")  # path-style: what S3-compatible servers take


def gdal_path(url: str) -> str:
    """The GDAL virtual-file-system path of ``url``."""
    check_url(url)
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme in ("http", "https"):
        return f"/vsicurl/{url}"
    return GDAL_PREFIX[scheme] + rest


def url_of(name: str) -> str:
    """The URL a user gave for GDAL's name of it (``/vsis3/b/k`` -> ``s3://b/k``); other names as they are."""
    if name.startswith("/vsicurl/"):
        return name.removeprefix("/vsicurl/")
    for scheme, prefix in GDAL_PREFIX.items():
        if prefix != "/vsicurl/" and name.startswith(prefix):
            return f"{scheme}://{name.removeprefix(prefix)}"
    return name


def name_of(scene: str | os.PathLike[str]) -> str:
    """The file name of a scene, local or remote (a URL's query left out)."""
    if is_url(scene):
        return PurePosixPath(urlsplit(str(scene)).path).name
    return Path(scene).name


def stem_of(scene: str | os.PathLike[str]) -> str:
    """What a scene's outputs are named after: its file name without the suffix, or a STAC
    item's id."""
    if isinstance(scene, StacAsset):
        return scene.item_id
    return PurePosixPath(name_of(scene)).stem


def list_scenes(url: str, suffixes: tuple[str, ...]) -> list[str]:
    """The raster URLs under a prefix (``s3://b/scenes/``) or matching a glob
    (``s3://b/scenes/*.tif``), sorted; listed through fsspec."""
    check_url(url)
    fs, root = filesystem(url)
    scheme = url.split("://", 1)[0]
    try:
        if any(c in root for c in "*?["):
            found = fs.glob(root)
        else:
            found = fs.find(root.rstrip("/"))
    except FileNotFoundError:
        found = []
    except PermissionError as exc:
        raise InputError(f"cannot list '{url}': access denied ({exc}); check the credentials") from None
    except OSError as exc:
        raise InputError(f"cannot list '{url}': {' '.join(str(exc).split())[:200]}") from None
    rasters = sorted(f"{scheme}://{p}" for p in found if PurePosixPath(p).suffix.lower() in suffixes)
    if not rasters:
        raise InputError(f"'{url}' holds no raster ({', '.join(suffixes)})")
    return rasters


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path within it; one line naming the package to
    install when the scheme's is missing."""
    try:
        import fsspec
    except ImportError:
        raise InputError("remote folders need fsspec: pip install 'roadseg[cloud]'") from None
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise InputError(
            f"'{url}' needs a filesystem package ({exc}): pip install 'roadseg[cloud]'"
        ) from None
    return fs, root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class RemoteFolder:
    """An output folder in object storage (``--out-dir s3://bucket/results/``).

    Writers write into a local staging folder (one per process, so Dask workers on one machine
    do not collide); :meth:`publish` uploads finished files, each in one request, and removes
    the local copies. Picklable: a worker rebuilds its filesystem client.
    """

    def __init__(self, url: str) -> None:
        check_url(url, "--out-dir")
        if url.split("://", 1)[0].lower() in ("http", "https"):
            raise InputError(f"--out-dir '{url}' is a web address; roadseg writes to s3://, gs:// or az://")
        self.url = url.rstrip("/")
        self._fs: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "_fs": None}

    def __str__(self) -> str:
        return self.url

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = filesystem(self.url)[0]
        return self._fs

    def _key(self, name: str) -> str:
        return f"{self.url}/{name}"

    def stage(self) -> Path:
        """This process's local staging folder for this remote folder."""
        digest = hashlib.sha1(self.url.encode()).hexdigest()[:12]
        folder = Path(tempfile.gettempdir()) / f"roadseg-stage-{digest}-{os.getpid()}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def local(self, name: str) -> Path:
        return self.stage() / name

    def sweep_stages(self) -> None:
        """Remove this folder's staging folders whose process is gone (a killed Dask worker's),
        and this process's own: call it when no writer of this run is left on this machine."""
        import shutil

        digest = hashlib.sha1(self.url.encode()).hexdigest()[:12]
        for folder in Path(tempfile.gettempdir()).glob(f"roadseg-stage-{digest}-*"):
            pid = int(folder.name.rsplit("-", 1)[1])
            if pid == os.getpid() or not _alive(pid):
                shutil.rmtree(folder, ignore_errors=True)

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self._key(name)))

    def fetch(self, name: str) -> Path | None:
        """Download ``name`` into the staging folder (the manifest of an earlier run); None if absent."""
        target = self.local(name)
        try:
            self.fs.get_file(self._key(name), str(target))
        except FileNotFoundError:
            return None
        return target

    def publish(self, paths: list[Path], *, keep: bool = False) -> None:
        """Upload finished local files (and their QGIS style sidecars) under their names."""
        from roadseg.io.styles import sidecar

        for path in paths:
            for p in (path, sidecar(path)):
                if p.is_file():
                    self.fs.put_file(str(p), self._key(p.name))
                    if not keep:
                        p.unlink()

    def check_writable(self) -> None:
        """Fail at the door when the bucket is missing or not ours to write."""
        probe = self._key(f".roadseg-probe-{os.getpid()}")
        try:
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)
        except PermissionError as exc:
            raise InputError(f"cannot write to --out-dir '{self.url}': access denied ({exc})") from None
        except (FileNotFoundError, OSError) as exc:
            raise InputError(
                f"cannot write to --out-dir '{self.url}': {' '.join(str(exc).split())[:200]}"
            ) from None
