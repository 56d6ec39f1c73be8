"""The predict tool: a raster of any size in, probability and mask rasters out.

Windows are read on a background thread, run through a Predictor (ONNX Runtime, or PyTorch on
its device) with TTA in batches, blended into row strips and streamed to Cloud-Optimized
GeoTIFFs. Nothing here imports torch: the light install predicts with ONNX Runtime alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import queue
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.crs
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from roadseg import progress
from roadseg.errors import InputError
from roadseg.inference.memory import plan_passes
from roadseg.inference.runtime import Predictor, load_predictor
from roadseg.inference.stitch import StripStitcher
from roadseg.inference.tiling import TileGrid, check_tiling, plan_tiles
from roadseg.inference.tta import views
from roadseg.io.kinds import KIND_TAG
from roadseg.io.paths import check_output_path
from roadseg.io.raster import (
    SceneReader,
    StripWriter,
    has_invalid_pixels,
    has_valid_pixels,
    open_raster,
    pixel_sizes_m,
    resampled_grid,
    select_bands,
    valid_mask,
)
from roadseg.io.styles import write_style

log = logging.getLogger(__name__)

#: tile side by device type when --tile-size is not given. On a CPU 512-px tiles (overlap 64)
#: ran the bundled model 2.4x faster than 1024 (cache-sized activations, less overlap work) at
#: the same held-out accuracy (relaxed breakeven 0.8752 vs 0.8757, docs/benchmarks.md).
DEFAULT_TILE = {"cpu": 512}
GPU_TILE = 1024
#: GDAL block cache during predict (MiB): about a row of tiles, independent of scene size.
GDAL_CACHE_MB = 64
#: Resample when the scene's GSD differs from the model's by more than this fraction.
GSD_TOLERANCE = 0.10
#: Resampling limits per side (see _check_resampling): 2.5 m imagery for a 0.8 m model is 3x,
#: 3 cm drone imagery is 27x smaller.
MAX_UPSAMPLE = 4
MAX_DOWNSAMPLE = 40


@dataclass(frozen=True)
class PredictOptions:
    """Everything ``roadseg predict`` can be told, with its defaults."""

    tta: str = "d4"
    #: window side; None: 512 on a CPU, 1024 elsewhere (DEFAULT_TILE)
    tile_size: int | None = None
    #: overlap between windows; None: an eighth of the tile
    overlap: int | None = None
    #: windows per batch; None: from free memory on CUDA, 4 on a CPU
    batch_size: int | None = None
    device: str = "auto"
    bands: tuple[int, ...] | None = None
    threshold: float | None = None  # None: the checkpoint's
    gsd: str = "auto"  # auto | native | metres
    amp: bool | None = None  # None: on for CUDA
    prob_dtype: str = "uint8"
    progress: bool = True
    #: images (tiles x TTA views) per forward pass; None: from free memory (1 on a CPU)
    max_pass: int | None = None
    #: write a QGIS style sidecar (NAME.qml) beside each raster
    style: bool = True
    #: CPU threads for the model; None: every core (a cluster worker gets its share)
    threads: int | None = None
    #: metres per pixel of a scene without a CRS (a PNG or JPEG): predict then resamples it to
    #: the model's GSD as it would a georeferenced scene
    pixel_size: float | None = None


@dataclass(frozen=True)
class PredictResult:
    """What a predict run wrote and how fast it went."""

    prob_path: Path | None
    mask_path: Path | None
    seconds: float
    megapixels: float
    tiles: int
    threshold: float
    model_gsd_m: float | None
    scene_gsd_m: float | None
    resampled: bool
    #: ground area of the scene (None without a CRS): what GIS users budget in.
    area_km2: float | None = None

    @property
    def mpx_per_s(self) -> float:
        return self.megapixels / max(self.seconds, 1e-9)

    @property
    def km2_per_h(self) -> float | None:
        area = self.area_km2
        return None if area is None else area / max(self.seconds, 1e-9) * 3600


def _batches(
    reader: SceneReader, grid: TileGrid, batch_size: int
) -> Iterator[list[tuple[int, int, np.ndarray]]]:
    batch = []
    for i, r in enumerate(grid.rows):
        for j, c in enumerate(grid.cols):
            batch.append((i, j, reader.read(r, c, grid.tile)))
            if len(batch) == batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


def _background(it: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run an iterator on a thread, ``depth`` items ahead, so the device never waits on disk."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=work, daemon=True, name="roadseg-reader")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def infer_scene(
    ds: Any,
    predictor: Predictor,
    bands: tuple[int, ...],
    sink: Callable[[int, np.ndarray], None],
    opts: PredictOptions,
) -> int:
    """Run tiled TTA inference over ``ds``; ``sink`` receives probability row strips."""
    info = predictor.info
    divisor = info.size_divisor
    fixed = predictor.fixed_size  # an ONNX file exported for Deepness
    if fixed and opts.tile_size not in (None, fixed):
        raise InputError(
            f"this ONNX model runs only {fixed}-px tiles (its input size is fixed): drop --tile-size, "
            "or export with 'roadseg export --dynamic'"
        )
    device = predictor.device_type
    tile = fixed or (DEFAULT_TILE.get(device, GPU_TILE) if opts.tile_size is None else opts.tile_size)
    overlap = tile // 8 if opts.overlap is None else opts.overlap
    check_tiling(tile, overlap, divisor)
    if not fixed:
        tile, overlap = _fit_tile(ds.height, ds.width, tile, overlap, divisor)
    n_views = len(views(opts.tta))
    plan = plan_passes(
        predictor.image_bytes,
        tile=tile,
        views=n_views,
        free=predictor.free_bytes(),
        cuda=device == "cuda",
        batch_size=opts.batch_size,
        max_pass=opts.max_pass,
        divisor=divisor,
        fixed_tile=bool(fixed),
    )
    if plan.tile != tile:
        overlap = min(overlap, plan.tile // 4 // divisor * divisor or divisor)
    opts = dataclasses.replace(opts, tile_size=plan.tile, overlap=overlap)
    grid = plan_tiles(ds.height, ds.width, plan.tile, overlap)
    reader = SceneReader(ds, bands)
    stitcher = StripStitcher(grid, sink)
    start = time.perf_counter()
    tile_px = plan.tile**2
    with progress.bar(
        len(grid), "predict", unit="tile", enabled=opts.progress
    ) as bar:  # closed, and so cleared, on errors too: the error stays one line
        for batch in _background(_batches(reader, grid, plan.batch)):
            x = np.stack([t for _, _, t in batch]).astype(np.float32, copy=False)
            probs = predictor.probabilities(x, opts.tta, plan.per_pass)
            for (i, j, _), p in zip(batch, probs, strict=True):
                stitcher.add(i, j, p)
            bar.update(len(batch))
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{bar.n * tile_px / 1e6 / max(elapsed, 1e-9):.2f} Mpx/s x{n_views} views")
    stitcher.finish()
    return len(grid)


def _fit_tile(height: int, width: int, tile: int, overlap: int, divisor: int) -> tuple[int, int]:
    """Shrink the tile for a scene smaller than one tile: the scene plus the blend margins,
    rounded up to the model's multiple (a 160-px scene needs no 1024-px tile x 8 views)."""
    margin = overlap // 4
    need = -(-(max(height, width) + 2 * margin) // divisor) * divisor
    if need >= tile:
        return tile, overlap
    return need, min(overlap, need // 2)


def predict_raster(
    scene: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None,
    prob_out: str | os.PathLike[str] | None = None,
    mask_out: str | os.PathLike[str] | None = None,
    options: PredictOptions | None = None,
    predictor: Predictor | None = None,
) -> PredictResult:
    """Predict road probability (and a thresholded mask) for a whole scene.

    Outputs lie on the scene's own grid (CRS, transform, size), as COGs; nodata pixels get
    probability 0 and are marked in the outputs' mask band. Pass ``predictor`` to reuse a
    loaded model instead of ``checkpoint`` (None: the bundled model).
    """
    opts = options or PredictOptions()
    if prob_out is None and mask_out is None:
        raise InputError("nothing to write: give --prob-out, --mask-out or --out")
    outs = [check_output_path(p) for p in (prob_out, mask_out) if p is not None]
    check_options(opts)
    if predictor is None:
        predictor = load_predictor(checkpoint, device=opts.device, amp=opts.amp)
    predictor.set_threads(opts.threads)
    info = predictor.info
    threshold = info.threshold if opts.threshold is None else opts.threshold

    src = open_raster(scene)
    # GDAL's block cache defaults to 5 % of RAM and fills with scene size: bound it
    with src, rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024):
        if src.crs is None:
            hint = "" if opts.pixel_size else "; pass --pixel-size METRES so the model sees it at its scale"
            warnings.warn(
                f"'{scene}' has no CRS: outputs are in pixel coordinates and cannot be placed on a map{hint}",
                stacklevel=2,
            )
        elif opts.pixel_size is not None:
            raise InputError(
                f"--pixel-size is for scenes without a CRS; '{scene}' has {src.crs.to_string()[:60]}, which "
                "gives its pixel size: drop --pixel-size (or use --gsd to choose the model's)"
            )
        bands = select_bands(src.count, opts.bands, info.in_channels, str(scene))
        if not has_valid_pixels(src):
            raise InputError(
                f"'{scene}' has no valid pixels: every pixel is nodata (or masked); nothing to predict"
            )
        declared = None if opts.pixel_size is None else (opts.pixel_size, opts.pixel_size)
        sizes = pixel_sizes_m(src) or declared
        scene_gsd = None if sizes is None else (sizes[0] + sizes[1]) / 2
        target_gsd = _target_gsd(opts.gsd, info.gsd_m, sizes)
        writers = _open_writers(src, prob_out, mask_out, opts.prob_dtype, with_mask=has_invalid_pixels(src))
        try:
            start = time.perf_counter()
            with contextlib.ExitStack() as stack:  # the reader owns src: masks read through their own handle
                mask_ds = stack.enter_context(open_raster(src.name)) if has_invalid_pixels(src) else None
                final_sink = _final_sink(src, writers, threshold, opts.prob_dtype, mask_ds)
                if target_gsd is None or sizes is None:
                    tiles = infer_scene(src, predictor, bands, final_sink, opts)
                else:
                    tiles = _infer_resampled(
                        src, sizes, target_gsd, predictor, bands, final_sink, opts, outs[0]
                    )
            paths = {k: w.close() for k, w in writers.items()}
            if opts.style:
                for key, path in paths.items():
                    write_style(path, "mask" if key == "mask" else f"probability_{opts.prob_dtype}")
            seconds = time.perf_counter() - start
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
    return PredictResult(
        prob_path=paths.get("prob"),
        mask_path=paths.get("mask"),
        seconds=seconds,
        megapixels=src.width * src.height / 1e6,
        area_km2=None if sizes is None else src.width * src.height * sizes[0] * sizes[1] / 1e6,
        tiles=tiles,
        threshold=threshold,
        model_gsd_m=info.gsd_m,
        scene_gsd_m=scene_gsd,
        resampled=target_gsd is not None,
    )


def check_options(opts: PredictOptions) -> None:
    """Every option that can be checked before the model and the scene are opened."""
    if opts.prob_dtype not in ("uint8", "float32"):
        raise InputError(f"--prob-dtype must be uint8 or float32, got '{opts.prob_dtype}'")
    views(opts.tta)
    if opts.threshold is not None and not 0 < opts.threshold < 1:
        raise InputError(f"--threshold must be a probability between 0 and 1, got {opts.threshold}")
    if opts.gsd not in ("auto", "native"):
        parse_gsd(opts.gsd)
    if opts.pixel_size is not None and not (math.isfinite(opts.pixel_size) and 0 < opts.pixel_size <= 1000):
        raise InputError(
            f"--pixel-size must be the scene's pixel size in metres, in (0, 1000] (e.g. 0.5); got {opts.pixel_size}"
        )
    if opts.batch_size is not None and opts.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {opts.batch_size}")
    if opts.max_pass is not None and opts.max_pass < 1:
        raise InputError(f"max_pass must be >= 1 image per forward pass, got {opts.max_pass}")
    if opts.device not in ("auto", "cpu"):
        from roadseg.inference.runtime import torch_available

        if not torch_available():
            raise InputError(
                f"--device {opts.device} needs PyTorch, which is not installed: pip install 'roadseg[torch]' "
                "(without it predict runs on the CPU through ONNX Runtime)"
            )
        from roadseg.devices import resolve_device

        resolve_device(opts.device)


def _target_gsd(mode: str, model_gsd: float | None, sizes: tuple[float, float] | None) -> float | None:
    """GSD (m) the model should see, or None to run on the native grid.

    ``sizes`` are the scene's pixel width and height in metres; either one off the model's
    GSD by more than the tolerance (non-square ground pixels included) means resampling.
    """
    if mode == "native":
        return None
    if mode != "auto":
        value = parse_gsd(mode)
        if sizes is None:
            raise InputError(
                "--gsd METRES needs to know the scene's pixel size: it has no CRS, so pass --pixel-size METRES"
            )
        _check_resampling(sizes, value, "--gsd")
        return value
    if model_gsd is None or sizes is None:
        return None
    if all(abs(s - model_gsd) / model_gsd <= GSD_TOLERANCE for s in sizes):
        return None
    _check_resampling(sizes, model_gsd, "the model's GSD")
    log.info("scene pixels %.3f x %.3f m differ from the model's %.3f m: resampling", *sizes, model_gsd)
    return model_gsd


def parse_gsd(text: str) -> float:
    """``--gsd`` as metres: a finite positive number."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"--gsd must be auto, native or a pixel size in metres; got '{text}'") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"--gsd must be a positive pixel size in metres (e.g. 0.5), got '{text}'")
    return value


def _check_resampling(sizes: tuple[float, float], target: float, what: str) -> None:
    """Refuse resampling so extreme that the run would never end or see nothing.

    Enlarging more than ``MAX_UPSAMPLE`` times per side multiplies the work (1000 m pixels
    at 0.5 m: 4 million times the tiles); shrinking more than ``MAX_DOWNSAMPLE`` times turns
    roads into sub-pixel lines and the scene into a few pixels.
    """
    factor = max(sizes) / target
    if factor > MAX_UPSAMPLE or factor < 1 / MAX_DOWNSAMPLE:
        how = f"enlarge it {factor:.3g}x per side" if factor > 1 else f"shrink it {1 / factor:.3g}x per side"
        raise InputError(
            f"the scene's pixels are {sizes[0]:.3g} x {sizes[1]:.3g} m and {what} is {target:g} m: resampling "
            f"would {how} (allowed: {MAX_UPSAMPLE}x larger to {MAX_DOWNSAMPLE}x smaller). Is the scene's CRS "
            "right? Pass --gsd native to run on the scene's own pixels"
        )


def _open_writers(
    src: Any, prob_out: Any, mask_out: Any, prob_dtype: str, *, with_mask: bool
) -> dict[str, StripWriter]:
    common = {"width": src.width, "height": src.height, "crs": src.crs, "transform": src.transform}
    writers: dict[str, StripWriter] = {}
    try:
        if prob_out is not None:
            writers["prob"] = StripWriter(
                prob_out, dtype=prob_dtype, with_mask=with_mask, tags={KIND_TAG: "probability"}, **common
            )
        if mask_out is not None:
            writers["mask"] = StripWriter(
                mask_out, dtype="uint8", with_mask=with_mask, tags={KIND_TAG: "mask"}, **common
            )
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    return writers


def _final_sink(
    src: Any, writers: dict[str, StripWriter], threshold: float, prob_dtype: str, mask_ds: Any
) -> Callable[[int, np.ndarray], None]:
    """Mask nodata (``mask_ds``: a second handle of the scene, or None), quantize and write
    strips on the scene's grid."""

    def sink(row0: int, probs: np.ndarray) -> None:
        valid = None
        if mask_ds is not None:
            valid = valid_mask(mask_ds, Window(0, row0, src.width, probs.shape[0]))
            probs = np.where(valid, probs, 0.0)
        if "prob" in writers:
            out = (
                probs.astype(np.float32) if prob_dtype == "float32" else np.rint(probs * 255).astype(np.uint8)
            )
            writers["prob"].write(out, valid)
        if "mask" in writers:
            writers["mask"].write((probs >= threshold).astype(np.uint8), valid)

    return sink


def _infer_resampled(
    src: Any,
    sizes: tuple[float, float],
    target_gsd: float,
    predictor: Predictor,
    bands: tuple[int, ...],
    final_sink: Callable[[int, np.ndarray], None],
    opts: PredictOptions,
    out_hint: Path,
) -> int:
    """Infer on a grid resampled to ``target_gsd``, then warp probabilities back to the scene grid.

    Both steps stream through GDAL warped VRTs, so memory stays bounded. A scene without a CRS
    (its ``sizes`` declared by --pixel-size) is warped on a stand-in projected grid of that pixel
    size: source and target share the CRS, so the warp is a pure resampling.
    """
    if src.crs is None:
        crs = rasterio.crs.CRS.from_epsg(3857)  # a stand-in: only its units (metres) matter here
        src_transform = Affine(sizes[0], 0, 0, 0, -sizes[1], 0)
        width = max(1, round(src.width * sizes[0] / target_gsd))
        height = max(1, round(src.height * sizes[1] / target_gsd))
        transform = src_transform @ Affine.scale(src.width / width, src.height / height)
        fake = {"src_crs": crs, "src_transform": src_transform}
    else:
        crs, src_transform, fake = src.crs, src.transform, {}
        width, height, transform = resampled_grid(src, target_gsd)
    with tempfile.TemporaryDirectory(dir=out_hint.parent, prefix=".roadseg-") as tmp:
        stage = Path(tmp) / "model_grid.tif"
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": 1,
            "dtype": "float32",
            "crs": crs,
            "transform": transform,
            "tiled": True,
            "compress": "deflate",
            "BIGTIFF": "IF_SAFER",
        }
        with (
            WarpedVRT(
                src,
                crs=crs,
                transform=transform,
                width=width,
                height=height,
                resampling=Resampling.bilinear,
                **fake,
            ) as vrt,
            rasterio.open(stage, "w", **profile) as dst,
        ):

            def stage_sink(row0: int, probs: np.ndarray) -> None:
                dst.write(probs.astype(np.float32), 1, window=Window(0, row0, width, probs.shape[0]))

            tiles = infer_scene(vrt, predictor, bands, stage_sink, opts)
        with (
            open_raster(stage) as staged,
            WarpedVRT(
                staged,
                crs=crs,
                transform=src_transform,
                width=src.width,
                height=src.height,
                resampling=Resampling.bilinear,
            ) as back,
        ):
            step = StripWriter.BLOCK
            for row0 in range(0, src.height, step):
                n = min(step, src.height - row0)
                final_sink(row0, back.read(1, window=Window(0, row0, src.width, n)))
    return tiles
