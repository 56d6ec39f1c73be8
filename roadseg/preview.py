"""A PNG preview of a result: the scene, the road probability in red and the lines in yellow,
downsampled to a readable size, so a person can check the output without opening QGIS."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from PIL import Image, ImageDraw
from rasterio.enums import Resampling

from roadseg.io.atomic import atomic_path
from roadseg.io.raster import Stretch, open_raster, read_checked, select_bands

MAX_SIDE = 1200


def _read_rgb(ds: Any, shape: tuple[int, int], bands: Sequence[int] | None) -> np.ndarray:
    """The scene as predict showed it to the model: same bands, same stretch, downsampled."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predict already said so about a single band
        chosen = select_bands(ds.count, bands, 3, ds.name)
    unique = sorted(set(chosen))
    data = read_checked(ds, ds.read, unique, out_shape=(len(unique), *shape), resampling=Resampling.average)
    rgb = Stretch.of_scene(ds, unique).apply(data)[[unique.index(b) for b in chosen]]
    return rgb.transpose(1, 2, 0)


def render_preview(
    out: str | os.PathLike[str],
    *,
    scene: str | os.PathLike[str] | None,
    prob: str | os.PathLike[str] | None,
    lines: list[Any] | None = None,
    max_side: int = MAX_SIDE,
    bands: Sequence[int] | None = None,
) -> Path:
    """Write the preview PNG. ``lines`` are in the CRS and on the grid of ``scene`` (or ``prob``)."""
    base = scene or prob
    if base is None:
        raise ValueError("render_preview needs a scene or a probability raster")
    with open_raster(base) as ds:
        scale = min(1.0, max_side / max(ds.width, ds.height))
        shape = (max(1, round(ds.height * scale)), max(1, round(ds.width * scale)))
        inverse = ~ds.transform
        if scene is not None:
            rgb = _read_rgb(ds, shape, bands).astype(np.float32)
        else:
            rgb = np.full((*shape, 3), 40, np.float32)
    if prob is not None:
        with open_raster(prob) as ps:
            p = read_checked(ps, ps.read, 1, out_shape=shape, resampling=Resampling.bilinear).astype(
                np.float32
            )
            p = p / 255 if ps.dtypes[0] == "uint8" else p
        alpha = np.clip(p, 0, 1)[..., None] * 0.6
        rgb = rgb * (1 - alpha) + np.array([255, 40, 40], np.float32) * alpha
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    if lines:
        draw = ImageDraw.Draw(image)
        sx, sy = shape[1] / (ds.width), shape[0] / (ds.height)
        for line in lines:
            xy = shapely.get_coordinates(line)
            cols, rows = inverse * (xy[:, 0], xy[:, 1])
            draw.line(list(zip(cols * sx, rows * sy, strict=True)), fill=(255, 220, 0), width=2)
    with atomic_path(out) as tmp:
        image.save(tmp, format="PNG")
    return Path(out)
