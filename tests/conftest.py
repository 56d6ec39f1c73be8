"""Shared fixtures: tiny synthetic georeferenced rasters and tiny checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.windows
import torch
from affine import Affine

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

UTM_TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0)


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    transform: Affine = UTM_TRANSFORM,
    nodata: float | None = None,
) -> Path:
    """Write ``(bands, H, W)`` or ``(H, W)`` data as a GeoTIFF."""
    if data.ndim == 2:
        data = data[None]
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": str(data.dtype),
        "transform": transform,
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


#: predict options for CLI tests that check files and messages, not accuracy: small tiles, no TTA
FAST_PREDICT = ["--tile-size", "64", "--overlap", "16", "--tta", "none"]


def write_tiles(folder: Path, n: int, size: int, *, broken_bytes: int | None = None) -> Path:
    """``n`` adjacent ``size``² road scenes ``t0.tif``... at 0.5 m in ``folder``, plus a
    truncated copy of the first as ``broken.tif`` when ``broken_bytes`` is given."""
    folder.mkdir()
    for i in range(n):
        write_raster(
            folder / f"t{i}.tif",
            road_image(size, size, seed=i),
            transform=Affine(0.5, 0, 500000 + size / 2 * i, 0, -0.5, 4000000),
        )
    if broken_bytes is not None:
        (folder / "broken.tif").write_bytes((folder / "t0.tif").read_bytes()[:broken_bytes])
    return folder


def road_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB scene with bright straight 'roads' on textured ground."""
    rng = np.random.default_rng(seed)
    img = rng.integers(40, 90, size=(3, height, width), dtype=np.uint8)
    img[:, height // 3 : height // 3 + 4, :] = 220
    img[:, :, width // 2 : width // 2 + 4] = 220
    return img


@pytest.fixture
def scene_path(tmp_path: Path) -> Path:
    return write_raster(tmp_path / "scene.tif", road_image(150, 230))


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A fast 'unet' (depth 1, 4 channels) checkpoint with random weights."""
    from roadseg import create_model, save_model

    torch.manual_seed(0)
    model = create_model("unet", depth=1, base_channels=4)
    return save_model(model, tmp_path / "tiny.pt", gsd_m=None, threshold=0.5, note="test")


@pytest.fixture
def varied_checkpoint(tmp_path: Path) -> Path:
    """A tiny 'unet' whose probabilities spread over 0-1 on ``road_image`` (a random one sits
    near one value): BatchNorm gains x4, head bias 0."""
    from roadseg import create_model, save_model

    torch.manual_seed(0)
    model = create_model("unet", depth=1, base_channels=4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.mul_(4)
        model.head.bias.zero_()
    return save_model(model, tmp_path / "varied.pt", gsd_m=None, threshold=0.5)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present (a user's clone has no shared/)")
    return SHARED


PARIS = Path(__file__).resolve().parents[1] / "examples" / "paris_spacenet_img1447.tif"


@pytest.fixture(scope="module")
def paris_crop(tmp_path_factory):
    """A 320 x 320 corner of the Paris sample (real imagery, lon/lat grid, 0.3 m: resampled)."""
    out = tmp_path_factory.mktemp("paris") / "crop.tif"
    with rasterio.open(PARIS) as src:
        profile = {
            **src.profile,
            "width": 320,
            "height": 320,
            "transform": src.window_transform(rasterio.windows.Window(0, 0, 320, 320)),
        }
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read(window=rasterio.windows.Window(0, 0, 320, 320)))
    return out


@pytest.fixture(autouse=True)
def _restore_logging():
    """A CLI call sets the root logger's level (ERROR with -q) and handlers for the process;
    start each test at Python's default level and put the handlers back after it, so caplog
    sees the warnings a test asserts on."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.WARNING)  # Python's default, whatever a module-scoped fixture's CLI call set
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


def kill_a_writer(holds, killed: list, stop) -> None:
    """Kill (SIGKILL) the first child process seen holding open a file whose path ``holds(path)``
    accepts (a worker mid-write); ``(pid, path)`` goes to ``killed``. Run on a thread until
    ``stop``."""
    import os
    import signal
    import time

    import psutil

    me = psutil.Process()
    while not stop.is_set() and not killed:
        for child in me.children(recursive=True):
            try:
                held = [f.path for f in child.open_files() if holds(f.path)]
                if held:
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append((child.pid, held[0]))
                    return
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        time.sleep(0.01)
