"""Training data: discovery, deterministic splits and the datasets that read samples.

Layouts (``data.layout: auto`` detects them):

- ``deepglobe``: ``<id>_sat.jpg`` + ``<id>_mask.png`` in one folder;
- ``folders``: ``images/`` + ``masks/`` (or ``labels/``, ``groundtruth/``), files paired by name stem;
- ``geotiff``: georeferenced rasters with road vectors (``<stem>.gpkg``/``.geojson`` beside
  each raster, or one vector file for all), lines buffered to ``road_width_m`` and
  rasterized on the fly for each window.

torchgeo's split: a plan (``roadseg.train.samplers``) draws what each sample is, from (seed,
epoch, index) alone; a dataset reads what a :class:`~roadseg.train.samplers.Draw` names and
returns a dict. With ``data.sources``, :class:`MultiSourceDataset` holds one
:class:`RoadDataset` per source and hands each draw to its source's. So a run gives the same
batches whatever the worker count, and a resumed run continues exactly.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from roadseg.config import DataConfig, SourceConfig
from roadseg.errors import InputError
from roadseg.io.paths import RASTER_SUFFIXES, VECTOR_SUFFIXES
from roadseg.normalization import Normalization
from roadseg.train.augment import augment, train_transform
from roadseg.train.samplers import (
    Draw,
    Plan,
    RandomCrops,
    SourceGsd,
    WeightedCrops,
    WholeImages,
    Window,
)


@dataclass(frozen=True)
class Sample:
    """One image and its label source."""

    id: str
    image: Path
    label: Path


def discover(cfg: DataConfig | SourceConfig) -> tuple[str, list[Sample]]:
    """Find the samples under ``cfg.root``; returns (layout, samples)."""
    if cfg.root is None:
        raise InputError("no training data: pass --data DIR (or set data.root in the config)")
    root = Path(cfg.root)
    if not root.is_dir():
        what = "is a file" if root.exists() else "not found"
        raise InputError(
            f"data folder '{root}' {what}; --data takes the folder that holds the training images"
        )
    layout = cfg.layout
    if layout == "auto":
        if any(root.glob("*_sat.*")):
            layout = "deepglobe"
        elif (root / "images").is_dir():
            layout = "folders"
        elif any(p.suffix.lower() in (".tif", ".tiff") for p in root.iterdir()):
            layout = "geotiff"
        else:
            raise InputError(
                f"no training data found in '{root}': expected <id>_sat.jpg + <id>_mask.png files, "
                "images/ + masks/ (or labels/) folders, or GeoTIFFs with road vector files"
            )
    samples = {"deepglobe": _deepglobe, "folders": _folders, "geotiff": _geotiff}[layout](root)
    if not samples:
        raise InputError(f"no training samples found in '{root}' (layout {layout})")
    return layout, samples


def _unpaired(root: Path, missing: list[str], expected: str) -> InputError:
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return InputError(f"{len(missing)} image(s) in '{root}' have no mask ({shown}); expected {expected}")


def _deepglobe(root: Path) -> list[Sample]:
    samples, missing = [], []
    for image in sorted(root.glob("*_sat.*")):
        sid = image.name.rsplit("_sat.", 1)[0]
        masks = sorted(root.glob(f"{sid}_mask.*"))
        if not masks:
            missing.append(image.name)
        else:
            samples.append(Sample(sid, image, masks[0]))
    if missing:
        raise _unpaired(root, missing, "<id>_mask.png beside each <id>_sat.jpg")
    return samples


def _folders(root: Path) -> list[Sample]:
    label_dir = next((root / d for d in ("masks", "labels", "groundtruth") if (root / d).is_dir()), None)
    if label_dir is None:
        raise InputError(f"'{root}/images' has no sibling 'masks/', 'labels/' or 'groundtruth/' folder")
    labels = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() in RASTER_SUFFIXES}
    samples, missing = [], []
    for image in sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in RASTER_SUFFIXES):
        if image.stem in labels:
            samples.append(Sample(image.stem, image, labels[image.stem]))
        else:
            missing.append(image.name)
    if missing:
        raise _unpaired(root, missing, f"a file with the same name stem in '{label_dir.name}/'")
    return samples


def _geotiff(root: Path) -> list[Sample]:
    rasters = sorted(p for p in root.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    shared = [p for p in root.iterdir() if p.suffix.lower() in VECTOR_SUFFIXES]
    samples, missing = [], []
    for r in rasters:
        own = [r.with_suffix(s) for s in VECTOR_SUFFIXES if r.with_suffix(s).exists()]
        if own:
            samples.append(Sample(r.stem, r, own[0]))
        elif len(shared) == 1:
            samples.append(Sample(r.stem, r, shared[0]))
        else:
            missing.append(r.name)
    if missing:
        raise _unpaired(root, missing, "<stem>.gpkg/.geojson beside each raster, or a single vector file")
    return samples


def split(samples: list[Sample], cfg: DataConfig | SourceConfig) -> tuple[list[Sample], list[Sample]]:
    """Deterministic train/validation split: explicit ids, an id file, or a seeded fraction."""
    if cfg.val_ids is not None and cfg.val_ids_file is not None:
        raise InputError("set data.val_ids or data.val_ids_file, not both")
    if cfg.val_ids_file is not None:
        val = _ids_from_file(Path(cfg.val_ids_file), samples)
    elif cfg.val_ids is not None:
        ids = {s.id for s in samples}
        unknown = sorted(set(cfg.val_ids) - ids)
        if unknown:
            raise InputError(f"data.val_ids not found among the samples: {unknown[:5]}")
        val = [s for s in samples if s.id in set(cfg.val_ids)]
    else:
        order = np.random.default_rng(cfg.split_seed).permutation(len(samples))
        n_val = round(len(samples) * cfg.val_fraction)
        if cfg.val_fraction > 0 and len(samples) > 1:
            n_val = max(1, n_val)
        val = [samples[i] for i in sorted(order[:n_val])]
    val_set = {s.id for s in val}
    return [s for s in samples if s.id not in val_set], val


def _ids_from_file(path: Path, samples: list[Sample]) -> list[Sample]:
    if not path.is_file():
        raise InputError(f"data.val_ids_file '{path}' not found")
    wanted = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    val = [s for s in samples if s.id in wanted]
    if not val:
        raise InputError(
            f"none of the {len(wanted)} ids in '{path}' is among the {len(samples)} samples "
            f"(e.g. '{next(iter(sorted(wanted)), '')}' vs '{samples[0].id}'); is it the split of this dataset?"
        )
    if len(val) < len(wanted):
        warnings.warn(
            f"{len(wanted) - len(val)} of the {len(wanted)} ids in '{path}' are not in the data; "
            f"validating on the {len(val)} found",
            stacklevel=3,
        )
    return val


def read_image(path: Path, bands: list[int] | None) -> np.ndarray:
    """An image as the model sees it, HxWx3 uint8: predict's band choice and 8-bit stretch."""
    from roadseg.io.raster import SceneReader, open_raster, select_bands

    with open_raster(path) as ds:
        chosen = select_bands(ds.count, bands, 3, str(path))
        return np.ascontiguousarray(SceneReader(ds, chosen).read_all().transpose(1, 2, 0))


@dataclass(frozen=True)
class LabelColours:
    """Colour-coded land-cover masks: the road class's RGB and the "not labelled" RGBs."""

    road: tuple[int, int, int]
    ignore: tuple[tuple[int, int, int], ...] = ()


def _rgb(values: Any) -> tuple[int, int, int]:
    """A config's [r, g, b] list (checked to be three 0-255 values at load) as a tuple."""
    r, g, b = (int(v) for v in values)
    return r, g, b


def _read_mask(
    path: Path, threshold: int, colours: LabelColours | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Road mask HxW {0,1}, and with ``colours`` the labelled pixels HxW {0,1} (else None)."""
    try:
        with Image.open(path) as im:
            if colours is None:
                return (np.asarray(im.convert("L")) >= threshold).astype(np.uint8), None
            rgb = np.asarray(im.convert("RGB"))  # palette PNGs too
    except OSError as exc:  # truncated or not an image at all
        raise InputError(
            f"label '{path}' cannot be read ({exc}); replace the file or remove its pair"
        ) from None
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]

    def code(c: tuple[int, int, int]) -> int:
        return (c[0] << 16) | (c[1] << 8) | c[2]

    mask = (packed == code(colours.road)).astype(np.uint8)
    valid = ~np.isin(packed, [code(c) for c in colours.ignore])
    return mask, valid.astype(np.uint8)


class RoadDataset(Dataset):
    """One source's image/mask pairs (DeepGlobe or folder layout), read as a :class:`Draw` says.

    ``dataset[draw]`` is a dict: ``image`` (3, H, W) normalized float, ``mask`` and ``valid``
    (1, H, W) float {0, 1}, ``source`` (the source's name) and ``id`` (the sample's). The
    dataset decides nothing random: every choice is in the draw (``roadseg.train.samplers``).
    """

    def __init__(
        self,
        samples: list[Sample],
        normalization: Normalization,
        *,
        name: str = "",
        bands: list[int] | None = None,
        mask_threshold: int = 128,
        invalid_rule: str = "none",
        colours: LabelColours | None = None,
        transform: A.Compose | None = None,
        pad_multiple: int = 32,
        cache_mb: float = 0.0,
        label_tolerance_px: float = 0.0,
    ) -> None:
        self.samples, self.norm, self.name = samples, normalization, name
        #: training crops: background within this many output pixels of a road label is not
        #: scored (``SourceConfig.label_tolerance_m``); validation ignores it
        self.label_tolerance_px = label_tolerance_px
        self.bands, self.mask_threshold, self.invalid_rule = bands, mask_threshold, invalid_rule
        self.colours, self.transform, self.pad_multiple = colours, transform, pad_multiple
        #: decoded-image cache budget in bytes (0: decode every time)
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_bytes = 0

    def __len__(self) -> int:
        return len(self.samples)

    def shape(self, image: int) -> tuple[int, int]:
        """(height, width) of an image, from its header (what a plan draws windows in)."""
        from roadseg.io.raster import open_raster

        with open_raster(self.samples[image].image) as ds:
            return ds.height, ds.width

    def load(self, image: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image HxWx3 uint8, mask HxW {0,1}, valid HxW {0,1}, whole (read-only if cached).

        Decoding a 1500² PNG takes about 80 ms, ten times the rest of a 320² sample; with several
        crops per image, decoded images are kept in a per-process LRU cache of ``cache_mb``.
        """
        if self.cache_bytes <= 0:
            return self._decode(image)
        hit = self._cache.get(image)
        if hit is not None:
            self._cache.move_to_end(image)
            return hit
        arrays = self._decode(image)
        for a in arrays:
            a.flags.writeable = False  # shared by later crops: nothing may change it in place
        self._cache[image] = arrays
        self._cache_bytes += sum(a.nbytes for a in arrays)
        while self._cache_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= sum(a.nbytes for a in old)
        return arrays

    def _decode(self, image: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.samples[image]
        pixels = read_image(s.image, self.bands)
        mask, labelled = _read_mask(s.label, self.mask_threshold, self.colours)
        if mask.shape != pixels.shape[:2]:
            raise InputError(
                f"'{s.label.name}' is {mask.shape[::-1]} but '{s.image.name}' is {pixels.shape[1::-1]}"
            )
        valid = np.ones_like(mask) if labelled is None else labelled
        if self.invalid_rule == "white":
            valid[(pixels >= 250).all(axis=2)] = 0  # near-white: JPEG or resampled fill counts too
        return pixels, mask, valid

    def read(self, image: int, window: Window | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The part of ``window`` inside the image (the whole image for None)."""
        arrays = self.load(image)
        if window is None:
            return arrays
        rows = slice(window.row, window.row + window.height)
        cols = slice(window.col, window.col + window.width)
        return arrays[0][rows, cols], arrays[1][rows, cols], arrays[2][rows, cols]

    def __getitem__(self, draw: Draw) -> dict[str, Any]:
        image, mask, valid = self._cut(draw)
        if draw.size is not None:  # a training crop: the window resized to size, augmented
            image, mask, valid = resample(image, mask, valid, draw.size, draw.size)
            if self.transform is not None:
                image, mask, valid = augment(self.transform, image, mask, valid, draw.seed)
            valid = tolerance_band(mask, valid, self.label_tolerance_px)
        else:  # validation: as predict sees a scene, at the model's GSD, padding unlabelled
            h, w = mask.shape
            size = max(1, round(h * draw.scale)), max(1, round(w * draw.scale))
            image, mask, valid = resample(image, mask, valid, *size)
            image, mask, valid = _pad_to_multiple(image, mask, valid, self.pad_multiple)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
        return {
            "image": self.norm.apply(x)[0],
            "mask": torch.from_numpy(np.ascontiguousarray(mask)).float()[None],
            "valid": torch.from_numpy(np.ascontiguousarray(valid)).float()[None],
            "source": self.name,
            "id": self.samples[draw.image].id,
        }

    def _cut(self, draw: Draw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first candidate window that is mostly labelled (or the last); a crop's window is
        padded where it reaches past the image, the padding unlabelled."""
        if not draw.windows:
            return self.read(draw.image, None)
        for window in draw.windows:
            image, mask, valid = self.read(draw.image, window)
            if draw.size is not None:
                image, mask, valid = _pad_to(image, mask, valid, window.height, window.width)
            if valid.mean() >= 0.5:
                break
        return image, mask, valid


def tolerance_band(mask: np.ndarray, valid: np.ndarray, radius_px: float) -> np.ndarray:
    """``valid`` with the background within ``radius_px`` (a disc) of a road pixel made invalid:
    a misplaced label's true road is then neither rewarded nor punished."""
    r = round(radius_px)
    if r < 1 or not mask.any():
        return valid
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    near = cv2.dilate(mask.astype(np.uint8), disc).astype(bool) & (mask == 0)
    out = valid.copy()
    out[near] = 0
    return out


def _pad_to(
    image: np.ndarray, mask: np.ndarray, valid: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-pad at the bottom and right to at least ``height`` x ``width`` (padding invalid)."""
    ph, pw = max(0, height - mask.shape[0]), max(0, width - mask.shape[1])
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        mask, valid = np.pad(mask, ((0, ph), (0, pw))), np.pad(valid, ((0, ph), (0, pw)))
    return image, mask, valid


def _pad_to_multiple(
    image: np.ndarray, mask: np.ndarray, valid: np.ndarray, multiple: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = mask.shape
    return _pad_to(image, mask, valid, h + -h % multiple, w + -w % multiple)


def resample(
    image: np.ndarray, mask: np.ndarray, valid: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize a sample to ``height`` x ``width``: area averaging when shrinking, bilinear when
    growing (as predict's resampling view), labels thresholded at half so thin roads survive."""
    if mask.shape == (height, width):
        return image, mask, valid
    interp = cv2.INTER_AREA if height < mask.shape[0] else cv2.INTER_LINEAR

    def fit(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a, (width, height), interpolation=interp)

    image = fit(np.ascontiguousarray(image))
    mask = (fit(mask.astype(np.float32)) >= 0.5).astype(np.uint8)
    valid = (fit(valid.astype(np.float32)) >= 0.5).astype(np.uint8)
    return image, mask, valid


class MultiSourceDataset(Dataset):
    """Several sources' datasets behind one (``data.sources``): a draw is read by its source's."""

    def __init__(self, parts: list[RoadDataset]) -> None:
        self.parts = parts

    def __getitem__(self, draw: Draw) -> dict[str, Any]:
        return self.parts[draw.source][draw]


@dataclass(frozen=True)
class SampleSet:
    """A dataset and the plan that draws from it: ``len(plan)`` samples per epoch."""

    dataset: RoadDataset | MultiSourceDataset
    plan: Plan

    def __len__(self) -> int:
        return len(self.plan)

    def sample(self, index: int, epoch: int = 0) -> dict[str, Any]:
        """Sample ``index`` of ``epoch``, as the data loader would give it."""
        return self.dataset[self.plan.draw(epoch, index)]


def build_datasets(
    cfg: DataConfig, normalization: Normalization, seed: int, *, pad_multiple: int = 32
) -> tuple[SampleSet, SampleSet | None]:
    """The training and validation samples that ``cfg`` describes (validation None: no split);
    validation images are padded to ``pad_multiple`` (the model's size divisor)."""
    transform = train_transform(cfg.augment, cfg.gray_prob)
    if cfg.sources:
        return _multi_source(cfg, normalization, seed, transform, pad_multiple)
    layout, samples = discover(cfg)
    train_s, val_s = split(samples, cfg)
    if not train_s:
        raise InputError("the validation split took every sample; lower data.val_fraction")
    common: dict[str, Any] = {
        "name": Path(str(cfg.root)).name,
        "bands": cfg.bands,
        "mask_threshold": cfg.mask_threshold,
        "invalid_rule": cfg.invalid_rule,
        "pad_multiple": pad_multiple,
    }
    if layout == "geotiff":
        common.update(label_layer=cfg.label_layer, label_query=cfg.label_query, road_width_m=cfg.road_width_m)
    kind: type[RoadDataset] = GeoWindowDataset if layout == "geotiff" else RoadDataset
    cache_mb = cfg.cache_mb if cfg.samples_per_image > 1 else 0.0
    tolerance_px = cfg.label_tolerance_m / cfg.gsd_m if cfg.gsd_m else 0.0  # gsd_m: checked by the config
    train_ds = kind(
        train_s,
        normalization,
        transform=transform,
        cache_mb=cache_mb,
        label_tolerance_px=tolerance_px,
        **common,
    )
    shapes = [train_ds.shape(j) for j in range(len(train_s))]
    train = SampleSet(train_ds, RandomCrops(shapes, cfg.crop_size, seed, per_image=cfg.samples_per_image))
    if not val_s:
        return train, None
    val_ds = kind(val_s, normalization, **common)
    val_plan: Plan = (
        RandomCrops([val_ds.shape(j) for j in range(len(val_s))], cfg.crop_size, seed, validation=True)
        if layout == "geotiff"  # scenes may be huge: one fixed window each
        else WholeImages([len(val_s)], [1.0], seed)
    )
    return train, SampleSet(val_ds, val_plan)


def _multi_source(
    cfg: DataConfig, normalization: Normalization, seed: int, transform: A.Compose, pad_multiple: int
) -> tuple[SampleSet, SampleSet | None]:
    """``data.sources``: one dataset per source, crops drawn by weight at one GSD."""
    gsd_m = float(cfg.gsd_m)  # type: ignore[arg-type]  # checked by the config
    weights = np.array([src.weight for src in cfg.sources], dtype=np.float64)
    shares = weights / weights.sum()
    train_parts, val_parts, val_scales = [], [], []
    for i, (src, share) in enumerate(zip(cfg.sources, shares, strict=True)):
        layout, samples = discover(src)
        if layout == "geotiff":
            raise InputError(
                f"data.sources[{i}] '{src.root}' holds GeoTIFFs with road vectors; data.sources take "
                "image/mask pairs (<id>_sat.jpg + <id>_mask.png, or images/ + masks/): train on "
                "GeoTIFF scenes with data.root (--data) alone"
            )
        train_s, val_s = split(samples, src)
        if not train_s:
            raise InputError(
                f"the validation split took every sample of '{src.root}'; lower its val_fraction"
            )
        name = src.name or Path(str(src.root)).name  # ids unique across sources
        train_s, val_s = ([replace(s, id=f"{name}/{s.id}") for s in part] for part in (train_s, val_s))
        common: dict[str, Any] = {
            "name": name,
            "bands": cfg.bands,
            "mask_threshold": src.mask_threshold,
            "invalid_rule": src.invalid_rule,
            "colours": (
                LabelColours(_rgb(src.road_rgb), tuple(_rgb(c) for c in src.ignore_rgb))
                if src.road_rgb is not None
                else None
            ),
            "pad_multiple": pad_multiple,
        }
        train_parts.append(
            RoadDataset(
                train_s,
                normalization,
                transform=transform,
                cache_mb=cfg.cache_mb * share,
                label_tolerance_px=src.label_tolerance_m / gsd_m,  # at the crop's nominal GSD
                **common,
            )
        )
        if val_s:
            val_parts.append(RoadDataset(val_s, normalization, **common))
            val_scales.append(float(src.gsd_m) / gsd_m)  # type: ignore[arg-type]  # checked by the config
    plan = WeightedCrops(
        [[part.shape(j) for j in range(len(part))] for part in train_parts],
        [src.weight for src in cfg.sources],
        [
            SourceGsd(float(s.gsd_m), *(s.gsd_range or (None, None)))  # type: ignore[arg-type]
            for s in cfg.sources
        ],
        gsd_m=gsd_m,
        jitter=cfg.scale_jitter,
        size=cfg.crop_size,
        per_epoch=cfg.samples_per_epoch,
        seed=seed,
    )
    train = SampleSet(MultiSourceDataset(train_parts), plan)
    if not val_parts:
        return train, None
    val_plan = WholeImages([len(p) for p in val_parts], val_scales, seed)
    return train, SampleSet(MultiSourceDataset(val_parts), val_plan)


def road_shapes(df: Any, crs: Any, width_m: float) -> Any:
    """Road label geometries in ``crs``: lines buffered to ``width_m`` metres, polygons as they are.

    Lines are buffered in the local UTM zone, so the width is metres on the ground in any CRS
    (a buffer in degrees would be 1.5 times wider N-S than E-W at 49° N).
    """
    import geopandas as gpd

    utm = df.estimate_utm_crs()
    geoms = df.to_crs(utm).geometry
    lines = geoms.geom_type.isin(["LineString", "MultiLineString"])
    return gpd.GeoSeries(geoms.where(~lines, geoms.buffer(width_m / 2)), crs=utm).to_crs(crs)


class GeoWindowDataset(RoadDataset):
    """Georeferenced scenes with road vectors, rasterized on the fly for each window read.

    Lines are buffered to ``road_width_m``; polygons are used as they are. Nodata is invalid.
    """

    def __init__(
        self,
        samples: list[Sample],
        normalization: Normalization,
        *,
        label_layer: str | None = None,
        label_query: str | None = None,
        road_width_m: float = 6.0,
        **kw: Any,
    ) -> None:
        super().__init__(samples, normalization, **kw)
        self.label_layer, self.label_query, self.road_width_m = label_layer, label_query, road_width_m
        self._labels: dict[tuple[Path, str], Any] = {}
        self._stretch: dict[Path, Any] = {}  # per scene, as predict computes it

    def _vectors(self, s: Sample, crs: Any) -> Any:
        key = (s.label, str(crs))  # one vector file may serve rasters in different CRSs
        if key not in self._labels:
            import geopandas as gpd

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                df = gpd.read_file(s.label, layer=self.label_layer)
            if self.label_query:
                df = df.query(self.label_query)
            df = df[df.geometry.notna()]
            self._labels[key] = road_shapes(df, crs, self.road_width_m)
        return self._labels[key]

    def read(self, image: int, window: Window | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from rasterio.features import rasterize
        from rasterio.windows import Window as RioWindow
        from rasterio.windows import transform as window_transform

        from roadseg.io.raster import SceneReader, open_raster, select_bands

        s = self.samples[image]
        with open_raster(s.image) as ds:
            if window is None:
                win = RioWindow(0, 0, ds.width, ds.height)
            else:  # the part inside the scene
                h, w = min(window.height, ds.height - window.row), min(window.width, ds.width - window.col)
                win = RioWindow(window.col, window.row, w, h)
            reader = SceneReader(
                ds, select_bands(ds.count, self.bands, 3, str(s.image)), self._stretch.get(s.image)
            )
            self._stretch[s.image] = reader.stretch
            pixels = reader.read_window(win).transpose(1, 2, 0)
            valid = (ds.dataset_mask(window=win) > 0).astype(np.uint8)
            shapes = self._vectors(s, ds.crs)
            mask = rasterize(
                [(g, 1) for g in shapes if not g.is_empty],
                out_shape=(int(win.height), int(win.width)),
                transform=window_transform(win, ds.transform),
                dtype="uint8",
            )
        return np.ascontiguousarray(pixels), mask, valid
