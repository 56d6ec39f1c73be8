"""Raster input and output with bounded memory.

Input: open and validate a scene, choose bands, scale to 8-bit (percentile stretch from a
decimated read), read any window with reflect padding past the edges, nodata masks.
Output: rows written strip by strip into a tiled GeoTIFF, then copied to a Cloud-Optimized
GeoTIFF under a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.shutil import copy as rio_copy
from rasterio.windows import Window

from roadseg.errors import InputError
from roadseg.io.atomic import atomic_path

log = logging.getLogger(__name__)

#: Longest side of the decimated read used for percentile statistics.
STATS_SIZE = 1024


def open_raster(path: str | os.PathLike[str]) -> rasterio.DatasetReader:
    """Open a raster for reading (a local file or a URL: s3://, gs://, az://, https://),
    turning every failure into one clear line."""
    from roadseg.io import remote

    if remote.is_url(path):
        return _open_remote(remote.gdal_path(str(path)), str(path))
    if str(path).startswith("/vsi"):  # GDAL's own name of a remote file (a dataset's .name)
        return _open_remote(str(path), str(path))
    from roadseg.io.paths import check_input_file

    path = check_input_file(path, "input raster", "a raster file (GeoTIFF, COG, VRT, JPEG, PNG)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(path)
    except RasterioIOError as exc:
        raise InputError(
            f"'{path}' is not a raster GDAL can read ({str(exc).splitlines()[0][:200]}); "
            "expected a GeoTIFF, COG, VRT, JPEG or PNG"
        ) from None
    if ds.width == 0 or ds.height == 0 or ds.count == 0:
        ds.close()
        raise InputError(f"raster '{path}' is empty ({ds.width}x{ds.height}, {ds.count} bands)")
    if ds.driver == "VRT":
        try:
            _check_vrt(ds, path)
        except BaseException:
            ds.close()
            raise
    return ds


def _open_remote(gdal_name: str, url: str) -> rasterio.DatasetReader:
    """A scene in object storage or on a web server, read by GDAL with range requests."""
    from roadseg.io import remote

    remote.configure_gdal()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(gdal_name)
    except RasterioIOError as exc:
        raise InputError(f"'{url}' cannot be read: {_remote_reason(exc)}") from None
    if ds.width == 0 or ds.height == 0 or ds.count == 0:
        ds.close()
        raise InputError(f"raster '{url}' is empty ({ds.width}x{ds.height}, {ds.count} bands)")
    return ds


def _remote_reason(exc: BaseException) -> str:
    """GDAL's reason for a failed remote open, with what to do about the usual ones."""
    text = _gdal_reason(exc)
    low = text.lower()
    if "404" in low or "does not exist" in low or "not found" in low or "no such file" in low:
        return f"not found ({text}); check the bucket, key or address"
    if "403" in low or "access denied" in low or "forbidden" in low or "credentials" in low:
        return f"access denied ({text}); check the credentials (AWS_* variables or profile) and the bucket policy"
    if "timed out" in low or "timeout" in low or "could not resolve" in low or "connect" in low:
        return f"the server did not answer ({text}); check the address and the network (GDAL retried 3 times)"
    return f"{text}; expected a GeoTIFF/COG, VRT, JPEG or PNG"


def _check_vrt(ds: Any, path: Path) -> None:
    """A VRT opens whatever its sources are; a missing or self-referencing source fails only at
    the first read, deep in the work. Find it at the door, naming the source."""
    own = os.path.realpath(path)
    for name in ds.files[1:]:
        if "/vsi" not in name and not os.path.exists(name):
            raise InputError(
                f"VRT '{path}' names a source '{name}' that does not exist; fix the path in the VRT "
                '(relativeToVRT="1" paths start at the VRT\'s folder)'
            )
        if os.path.realpath(name) == own:
            raise InputError(f"VRT '{path}' names itself as a source; point it at the rasters it mosaics")
    try:
        ds.read(1, window=Window(0, 0, 1, 1))
    except RasterioIOError as exc:
        raise InputError(
            f"VRT '{path}' cannot be read ({_gdal_reason(exc)}); check the sources it names"
        ) from None


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """Parse ``"1,2,3"`` into 1-based band indexes."""
    if text is None or not text.strip():
        return None
    try:
        bands = tuple(int(b) for b in text.replace(" ", "").split(","))
    except ValueError:
        raise InputError(f"--bands must be comma-separated band numbers like 1,2,3; got '{text}'") from None
    return bands


def select_bands(count: int, bands: Sequence[int] | None, needed: int, name: str) -> tuple[int, ...]:
    """Choose the 1-based bands to read for a model taking ``needed`` channels.

    Default: the first ``needed`` bands. A single-band scene feeding an RGB model is repeated
    to three bands with a warning (panchromatic imagery).
    """
    if bands is not None:
        bad = [b for b in bands if not 1 <= b <= count]
        if bad:
            raise InputError(f"band(s) {bad} out of range: '{name}' has bands 1..{count}")
        if len(bands) == 1 and needed == 3:
            warnings.warn(f"'{name}': one band selected; repeating it to 3 channels", stacklevel=2)
            return (bands[0],) * 3
        if len(bands) != needed:
            raise InputError(f"--bands lists {len(bands)} band(s) but the model takes {needed} channels")
        return tuple(bands)
    if count >= needed:
        return tuple(range(1, needed + 1))
    if count == 1 and needed == 3:
        warnings.warn(
            f"'{name}' has a single band (panchromatic?); repeating it to 3 channels for an RGB model",
            stacklevel=2,
        )
        return (1, 1, 1)
    raise InputError(
        f"'{name}' has {count} band(s) but the model takes {needed}; pass --bands to choose them"
    )


def pixel_sizes_m(ds: Any) -> tuple[float, float] | None:
    """Pixel width and height in metres, or None without a CRS.

    Geographic CRSs are measured on the ellipsoid at the scene centre, where a square degree
    pixel is not square on the ground (at 49° N it is 1.5 times taller than wide).
    """
    if ds.crs is None:
        return None
    t = ds.transform
    if ds.crs.is_geographic:
        from pyproj import Geod

        geod = Geod(ellps="WGS84")
        cx, cy = t @ (ds.width / 2, ds.height / 2)
        x1, y1 = t @ (ds.width / 2 + 1, ds.height / 2)
        x2, y2 = t @ (ds.width / 2, ds.height / 2 + 1)
        return float(geod.inv(cx, cy, x1, y1)[2]), float(geod.inv(cx, cy, x2, y2)[2])
    unit = ds.crs.linear_units_factor[1] if ds.crs.linear_units_factor else 1.0
    return float(math.hypot(t.a, t.d) * unit), float(math.hypot(t.b, t.e) * unit)


def resampled_grid(ds: Any, gsd_m: float) -> tuple[int, int, Affine]:
    """(width, height, transform) of ``ds``'s extent on square ``gsd_m`` ground pixels.

    Each axis gets its own factor, so a geographic grid also becomes square on the ground;
    the CRS stays the scene's. ``ds`` must have a CRS.
    """
    sizes = pixel_sizes_m(ds)
    if sizes is None:
        raise InputError("resampling to a pixel size in metres needs a raster with a CRS")
    width = max(1, round(ds.width * sizes[0] / gsd_m))
    height = max(1, round(ds.height * sizes[1] / gsd_m))
    return width, height, ds.transform @ Affine.scale(ds.width / width, ds.height / height)


def pixel_size_m(ds: Any) -> float | None:
    """Ground sample distance in metres (mean of width and height), or None without a CRS."""
    sizes = pixel_sizes_m(ds)
    return None if sizes is None else (sizes[0] + sizes[1]) / 2


def has_invalid_pixels(ds: Any) -> bool:
    """Whether any band declares invalid pixels (nodata value, alpha or mask band)."""
    return any(MaskFlags.all_valid not in flags for flags in ds.mask_flag_enums)


def has_valid_pixels(ds: Any) -> bool:
    """Whether any pixel is valid, from a decimated read of the dataset mask."""
    if not has_invalid_pixels(ds):
        return True
    factor = max(1.0, max(ds.height, ds.width) / STATS_SIZE)
    shape = (max(1, round(ds.height / factor)), max(1, round(ds.width / factor)))
    return bool((read_checked(ds, ds.dataset_mask, out_shape=shape, resampling=Resampling.nearest) > 0).any())


def read_checked(ds: Any, read: Any, *args: Any, **kwargs: Any) -> Any:  # an ndarray, masked if asked
    """Call a reading method of ``ds``; a damaged or truncated file becomes one line naming it."""
    try:
        return read(*args, **kwargs)
    except (RasterioIOError, rasterio.errors.RasterioError) as exc:
        # a resampling view (WarpedVRT) is named after the user's file, not "WarpedVRT(...)"
        from roadseg.io.remote import url_of

        name = url_of(getattr(getattr(ds, "src_dataset", None), "name", None) or ds.name)
        raise InputError(
            f"'{name}' cannot be read ({_gdal_reason(exc)}): the file is damaged or truncated; copy or "
            "download it again"
        ) from None


def _gdal_reason(exc: BaseException) -> str:
    """GDAL's own words: rasterio's "Read failed. See previous exception for details." points
    at the chained error that says what failed."""
    lines: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(lines) < 5:
        text = str(seen).strip()
        lines.append(text.splitlines()[0] if text else type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    useful = [line for line in lines if "previous exception" not in line]
    return (useful[0] if useful else lines[0])[:160]


def valid_mask(ds: Any, window: Window) -> np.ndarray:
    """Boolean mask of valid pixels (nodata value, alpha band or mask band all honoured)."""
    return read_checked(ds, ds.dataset_mask, window=window) > 0


class Stretch:
    """How a scene's raw band values become 0..255: the one rule for predict, training and previews.

    8-bit bands pass through. 16-bit and float bands are stretched per band between their 2nd
    and 98th percentiles over the whole scene's valid pixels (from a decimated read of at most
    ``STATS_SIZE`` pixels a side), so every window of a scene is scaled alike.
    """

    def __init__(self, lohi: np.ndarray | None) -> None:
        self.lohi = lohi

    @classmethod
    def of_scene(cls, ds: Any, bands: Sequence[int]) -> Stretch:
        """The stretch of ``bands`` (1-based, each once) of an open dataset."""
        if np.dtype(ds.dtypes[bands[0] - 1]) == np.uint8:
            return cls(None)
        factor = max(1.0, max(ds.height, ds.width) / STATS_SIZE)
        shape = (max(1, round(ds.height / factor)), max(1, round(ds.width / factor)))
        data = read_checked(
            ds, ds.read, list(bands), out_shape=(len(bands), *shape), resampling=Resampling.nearest
        )
        mask = read_checked(ds, ds.dataset_mask, out_shape=shape, resampling=Resampling.nearest) > 0
        lohi = np.zeros((len(bands), 2), dtype=np.float64)
        for i, band in enumerate(data):
            values = band[mask & np.isfinite(band)]
            if values.size == 0:
                raise InputError(f"'{ds.name}' has no valid (non-nodata) pixels")
            lo, hi = np.percentile(values, [2, 98])
            lohi[i] = (lo, hi if hi > lo else lo + 1)
        log.info("percentile stretch (2-98%%) per band: %s", lohi.tolist())
        return cls(lohi)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Scale raw values ``(bands, H, W)`` to uint8."""
        if self.lohi is None:
            return data.astype(np.uint8, copy=False)
        lo = self.lohi[:, 0, None, None]
        hi = self.lohi[:, 1, None, None]
        scaled = (data.astype(np.float32) - lo) / (hi - lo) * 255.0
        return np.nan_to_num(np.clip(scaled, 0, 255), nan=0).astype(np.uint8)


class SceneReader:
    """Reads windows of selected bands as uint8 (:class:`Stretch`), with reflect padding
    beyond the edges. Training reads its images through the same class (``read_all``)."""

    def __init__(self, ds: Any, bands: Sequence[int], stretch: Stretch | None = None) -> None:
        self.ds = ds
        self.bands = tuple(bands)
        self.unique = sorted(set(self.bands))
        self.index = [self.unique.index(b) for b in self.bands]
        self.height, self.width = ds.height, ds.width
        #: pass the stretch of an earlier reader of the same scene to skip the statistics read
        self.stretch = stretch or Stretch.of_scene(ds, self.unique)

    def read_all(self) -> np.ndarray:
        """The whole scene, ``(C, H, W)`` uint8."""
        return self.stretch.apply(read_checked(self.ds, self.ds.read, self.unique))[self.index]

    def read_window(self, window: Window) -> np.ndarray:
        """One window inside the scene, ``(C, h, w)`` uint8."""
        return self.stretch.apply(read_checked(self.ds, self.ds.read, self.unique, window=window))[self.index]

    def read(self, row: int, col: int, size: int) -> np.ndarray:
        """Read a ``size`` x ``size`` window at (row, col), which may lie partly outside.

        Pixels outside the scene mirror those inside (numpy "reflect", repeated as needed), so
        every tile is full size whatever the scene size. Returns ``(C, size, size)`` uint8.
        """
        rows = reflect_index(np.arange(row, row + size), self.height)
        cols = reflect_index(np.arange(col, col + size), self.width)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        data = read_checked(self.ds, self.ds.read, self.unique, window=Window(c0, r0, c1 - c0, r1 - r0))
        data = data[:, rows - r0][:, :, cols - c0]
        return self.stretch.apply(data)[self.index]


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map any integer positions onto 0..n-1 by mirror reflection without repeating the edge."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


class StripWriter:
    """Writes full-width row strips of a single-band raster, then publishes it as a COG.

    Rows go to a tiled, DEFLATE-compressed GeoTIFF in the target's folder; :meth:`close`
    copies it to a Cloud-Optimized GeoTIFF (GDAL's COG driver streams it) under a temporary
    name and renames that onto the target. Strips are buffered up to whole block rows so no
    compressed block is written twice.
    """

    BLOCK = 512

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        dtype: str,
        crs: Any,
        transform: Any,
        with_mask: bool,
        tags: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self._atomic = atomic_path(self.path)
        self._final_tmp = self._atomic.__enter__()
        self._stage = self._final_tmp.with_name(self._final_tmp.name + ".stage.tif")
        self.width, self.height, self.with_mask = width, height, with_mask
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": 1,
            "dtype": dtype,
            "crs": crs,
            "transform": transform,
            "tiled": True,
            "blockxsize": self.BLOCK,
            "blockysize": self.BLOCK,
            "compress": "deflate",
            "BIGTIFF": "IF_SAFER",
        }
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self._ds = rasterio.open(self._stage, "w", **profile)
        if tags:
            self._ds.update_tags(**tags)
        self._pending: list[np.ndarray] = []
        self._pending_mask: list[np.ndarray] = []
        self._row = 0  # first row not yet written

    def write(self, data: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Append the next rows (``(rows, width)``); ``mask`` marks valid pixels."""
        self._pending.append(data)
        if self.with_mask:
            self._pending_mask.append(np.ones_like(data, bool) if mask is None else mask)
        rows = sum(p.shape[0] for p in self._pending)
        if rows >= self.BLOCK or self._row + rows >= self.height:
            self._flush(final=self._row + rows >= self.height)

    def _flush(self, final: bool) -> None:
        data = np.concatenate(self._pending)
        n = data.shape[0] if final else (data.shape[0] // self.BLOCK) * self.BLOCK
        window = Window(0, self._row, self.width, n)
        self._ds.write(data[:n], 1, window=window)
        self._pending = [data[n:]] if n < data.shape[0] else []
        if self.with_mask:
            mask = np.concatenate(self._pending_mask)
            self._ds.write_mask(mask[:n].astype(np.uint8) * 255, window=window)
            self._pending_mask = [mask[n:]] if n < mask.shape[0] else []
        self._row += n

    def close(self) -> Path:
        """Finish the file and publish it at its target path."""
        try:
            if self._row != self.height:
                raise RuntimeError(f"wrote {self._row} of {self.height} rows")
            self._ds.close()
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                rio_copy(
                    self._stage,
                    self._final_tmp,
                    driver="COG",
                    compress="DEFLATE",
                    blocksize=self.BLOCK,
                    overview_resampling="average",
                    BIGTIFF="IF_SAFER",
                )
            self._atomic.__exit__(None, None, None)
        except BaseException as exc:
            self.abort(exc)
            raise
        finally:
            self._stage.unlink(missing_ok=True)
        return self.path

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop everything written so far; nothing appears at the target path."""
        if not self._ds.closed:
            self._ds.close()
        self._stage.unlink(missing_ok=True)
        err = exc or RuntimeError("aborted")
        with contextlib.suppress(BaseException):  # the temp file is removed either way
            self._atomic.__exit__(type(err), err, None)
