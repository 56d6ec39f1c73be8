"""Training data: discovery, deterministic splits and the torch datasets.

Layouts (``data.layout: auto`` detects them):

- ``deepglobe``: ``<id>_sat.jpg`` + ``<id>_mask.png`` in one folder;
- ``folders``: ``images/`` + ``masks/`` (or ``labels/``, ``groundtruth/``), files paired by name stem;
- ``geotiff``: georeferenced rasters with road vectors (``<stem>.gpkg``/``.geojson`` beside
  each raster, or one vector file for all), lines buffered to ``road_width_m`` and
  rasterized on the fly for random windows.

With ``data.sources``, several such folders train together (:class:`MultiSourceDataset`):
each crop comes from a source drawn by weight and is resampled from the source's GSD to the
model's, with a random scale around it.

Every sample's crop and augmentation are seeded from (seed, epoch, index), so a run gives
the same batches whatever the worker count, and a resumed run continues exactly.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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


def sample_seed(*parts: int) -> int:
    """A 32-bit seed from integers, stable across processes and Python versions."""
    digest = hashlib.blake2b(np.asarray(parts, dtype=np.int64).tobytes(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


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
    """Image/mask pairs (DeepGlobe or folder layout) as normalized tensors.

    Returns ``(image (3, H, W) float, mask (1, H, W) float, valid (1, H, W) float)``: random
    crops of ``crop_size`` for training; whole images (padded to ``pad_multiple``) for validation.
    """

    def __init__(
        self,
        samples: list[Sample],
        cfg: DataConfig,
        normalization: Normalization,
        *,
        train: bool,
        seed: int = 0,
        colours: LabelColours | None = None,
    ) -> None:
        self.samples, self.cfg, self.norm, self.train, self.seed = samples, cfg, normalization, train, seed
        self.colours = colours
        self.epoch = 0
        self.pad_multiple = 32
        #: decoded-image cache budget in bytes (0: decode every time)
        self.cache_bytes = int(cfg.cache_mb * 2**20) if train and cfg.samples_per_image > 1 else 0
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_bytes = 0
        self.tf = train_transform(cfg.augment, cfg.gray_prob) if train else None

    def set_epoch(self, epoch: int) -> None:
        """Change the seeds of crops and augmentations (call before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples) * (self.cfg.samples_per_image if self.train else 1)

    def load(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image HxWx3 uint8, mask HxW {0,1}, valid HxW {0,1} for one sample (read-only if cached).

        Decoding a 1500² PNG takes about 80 ms, ten times the rest of a 320² sample; with several
        crops per image, decoded images are kept in a per-process LRU cache of ``cache_mb``.
        """
        key = index % len(self.samples)
        if self.cache_bytes <= 0:
            return self._decode(key)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        arrays = self._decode(key)
        for a in arrays:
            a.flags.writeable = False  # shared by later crops: nothing may change it in place
        self._cache[key] = arrays
        self._cache_bytes += sum(a.nbytes for a in arrays)
        while self._cache_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= sum(a.nbytes for a in old)
        return arrays

    def _decode(self, key: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.samples[key]
        image = read_image(s.image, self.cfg.bands)
        mask, labelled = _read_mask(s.label, self.cfg.mask_threshold, self.colours)
        if mask.shape != image.shape[:2]:
            raise InputError(
                f"'{s.label.name}' is {mask.shape[::-1]} but '{s.image.name}' is {image.shape[1::-1]}"
            )
        valid = np.ones_like(mask) if labelled is None else labelled
        if self.cfg.invalid_rule == "white":
            valid[(image >= 250).all(axis=2)] = 0  # near-white: JPEG or resampled fill counts too
        return image, mask, valid

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seed = sample_seed(self.seed, self.epoch, index)
        rng = np.random.default_rng(seed)
        image, mask, valid = self.load(index, rng)
        if self.train:
            image, mask, valid = _crop(image, mask, valid, self.cfg.crop_size, rng)
        else:  # validation scores whole images, padded to the model's multiple (padding invalid)
            image, mask, valid = _pad_to_multiple(image, mask, valid, self.pad_multiple)
        if self.tf is not None:
            image, mask, valid = augment(self.tf, image, mask, valid, seed)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
        x = self.norm.apply(x)[0]
        y = torch.from_numpy(np.ascontiguousarray(mask)).float()[None]
        v = torch.from_numpy(np.ascontiguousarray(valid)).float()[None]
        return x, y, v


def _pad_to_multiple(
    image: np.ndarray, mask: np.ndarray, valid: np.ndarray, multiple: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = mask.shape
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        mask, valid = np.pad(mask, ((0, ph), (0, pw))), np.pad(valid, ((0, ph), (0, pw)))
    return image, mask, valid


def _crop(
    image: np.ndarray, mask: np.ndarray, valid: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random crop to ``size``; smaller images are padded, the padding marked invalid."""
    h, w = mask.shape
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        mask = np.pad(mask, ((0, ph), (0, pw)))
        valid = np.pad(valid, ((0, ph), (0, pw)))
        h, w = mask.shape
    r, c = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    sl = (slice(r, r + size), slice(c, c + size))
    return image[sl], mask[sl], valid[sl]


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


#: crops tried before accepting one that is mostly no-data
_CROP_TRIES = 5


class MultiSourceDataset(Dataset):
    """Several datasets at one ground sample distance (``data.sources``).

    Training: ``samples_per_epoch`` crops; each picks a source by weight and an image of it,
    cuts a window that covers ``crop_size`` pixels at gsd_m times a random scale factor, and
    resamples it to ``crop_size``. Validation: every source's validation images, whole,
    resampled to gsd_m (as predict would).
    """

    def __init__(
        self,
        parts: list[tuple[SourceConfig, list[Sample]]],
        cfg: DataConfig,
        normalization: Normalization,
        *,
        train: bool,
        seed: int = 0,
    ) -> None:
        self.cfg, self.norm, self.train, self.seed, self.epoch = cfg, normalization, train, seed, 0
        self.sources = [src for src, _ in parts]
        weights = np.array([src.weight for src in self.sources], dtype=np.float64)
        self.p = weights / weights.sum()
        self.parts = []
        for (src, samples), share in zip(parts, self.p, strict=True):
            sub_cfg = replace(
                cfg, sources=[], invalid_rule=src.invalid_rule, mask_threshold=src.mask_threshold
            )
            colours = (
                LabelColours(_rgb(src.road_rgb), tuple(_rgb(c) for c in src.ignore_rgb))
                if src.road_rgb is not None
                else None
            )
            sub = RoadDataset(samples, sub_cfg, normalization, train=False, seed=seed, colours=colours)
            sub.cache_bytes = int(cfg.cache_mb * share * 2**20) if train else 0
            self.parts.append(sub)
        self.items = [(k, j) for k, sub in enumerate(self.parts) for j in range(len(sub.samples))]
        self.pad_multiple = 32
        self.tf = train_transform(cfg.augment, cfg.gray_prob) if train else None

    set_epoch = RoadDataset.set_epoch

    def __len__(self) -> int:
        return self.cfg.samples_per_epoch if self.train else len(self.items)

    def pick(self, index: int) -> tuple[int, int, np.random.Generator]:
        """(source, image, generator for the rest) of sample ``index`` in this epoch."""
        rng = np.random.default_rng(sample_seed(self.seed, self.epoch, index))
        if not self.train:
            return (*self.items[index], rng)
        k = int(rng.choice(len(self.parts), p=self.p))
        return k, int(rng.integers(len(self.parts[k].samples))), rng

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k, j, rng = self.pick(index)
        seed = sample_seed(self.seed, self.epoch, index)
        image, mask, valid = self.parts[k].load(j, rng)
        gsd = float(self.cfg.gsd_m)  # type: ignore[arg-type]  # checked by the config
        if self.train:
            jitter = math.log(self.cfg.scale_jitter)
            gsd *= math.exp(rng.uniform(-jitter, jitter))
        src_gsd = float(self.sources[k].gsd_m)  # type: ignore[arg-type]  # checked by the config
        if self.train and self.sources[k].gsd_range is not None:  # an uncertain GSD: draw it
            lo, hi = self.sources[k].gsd_range  # type: ignore[misc]
            src_gsd = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        factor = src_gsd / gsd  # model px per source px
        size = self.cfg.crop_size
        if self.train:
            window = max(1, round(size / factor))
            full = (image, mask, valid)
            for _ in range(_CROP_TRIES):  # Massachusetts tiles are up to 91 % white no-data
                image, mask, valid = _crop(*full, window, rng)
                if valid.mean() >= 0.5:
                    break
            image, mask, valid = resample(image, mask, valid, size, size)
            assert self.tf is not None
            image, mask, valid = augment(self.tf, image, mask, valid, seed)
        else:
            h, w = mask.shape
            image, mask, valid = resample(
                image, mask, valid, max(1, round(h * factor)), max(1, round(w * factor))
            )
            image, mask, valid = _pad_to_multiple(image, mask, valid, self.pad_multiple)
        x = self.norm.apply(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None])[0]
        y = torch.from_numpy(np.ascontiguousarray(mask)).float()[None]
        v = torch.from_numpy(np.ascontiguousarray(valid)).float()[None]
        return x, y, v


def build_datasets(
    cfg: DataConfig, normalization: Normalization, seed: int
) -> tuple[RoadDataset | MultiSourceDataset, RoadDataset | MultiSourceDataset | None]:
    """The training and validation datasets that ``cfg`` describes (validation None: no split)."""
    if cfg.sources:
        train_parts, val_parts = [], []
        for src in cfg.sources:
            _, samples = discover(src)
            train_s, val_s = split(samples, src)
            if not train_s:
                raise InputError(
                    f"the validation split took every sample of '{src.root}'; lower its val_fraction"
                )
            name = src.name or Path(str(src.root)).name  # ids unique across sources
            train_s, val_s = ([replace(s, id=f"{name}/{s.id}") for s in part] for part in (train_s, val_s))
            train_parts.append((src, train_s))
            if val_s:
                val_parts.append((src, val_s))
        train_ds = MultiSourceDataset(train_parts, cfg, normalization, train=True, seed=seed)
        val_ds = (
            MultiSourceDataset(val_parts, cfg, normalization, train=False, seed=seed) if val_parts else None
        )
        return train_ds, val_ds
    layout, samples = discover(cfg)
    train_s, val_s = split(samples, cfg)
    if not train_s:
        raise InputError("the validation split took every sample; lower data.val_fraction")
    ds_cls: type[RoadDataset] = GeoWindowDataset if layout == "geotiff" else RoadDataset
    train_set = ds_cls(train_s, cfg, normalization, train=True, seed=seed)
    val_set = ds_cls(val_s, cfg, normalization, train=False, seed=seed) if val_s else None
    return train_set, val_set


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
    """Random windows of georeferenced scenes with road vectors rasterized on the fly.

    Lines are buffered to ``road_width_m``; polygons are used as they are. Nodata is invalid.
    Each scene gives ``samples_per_image`` windows per epoch (one for validation).
    """

    def __init__(
        self, samples: list[Sample], cfg: DataConfig, normalization: Normalization, **kw: Any
    ) -> None:
        super().__init__(samples, cfg, normalization, **kw)
        self._labels: dict[tuple[Path, str], Any] = {}
        self._stretch: dict[Path, Any] = {}  # per scene, as predict computes it

    def _vectors(self, s: Sample, crs: Any) -> Any:
        key = (s.label, str(crs))  # one vector file may serve rasters in different CRSs
        if key not in self._labels:
            import geopandas as gpd

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                df = gpd.read_file(s.label, layer=self.cfg.label_layer)
            if self.cfg.label_query:
                df = df.query(self.cfg.label_query)
            df = df[df.geometry.notna()]
            self._labels[key] = road_shapes(df, crs, self.cfg.road_width_m)
        return self._labels[key]

    def load(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from rasterio.features import rasterize
        from rasterio.windows import Window
        from rasterio.windows import transform as window_transform

        from roadseg.io.raster import SceneReader, open_raster, select_bands

        s = self.samples[index % len(self.samples)]
        with open_raster(s.image) as ds:
            size = self.cfg.crop_size
            h, w = min(size, ds.height), min(size, ds.width)
            r = int(rng.integers(0, ds.height - h + 1))
            c = int(rng.integers(0, ds.width - w + 1))
            win = Window(c, r, w, h)
            reader = SceneReader(
                ds, select_bands(ds.count, self.cfg.bands, 3, str(s.image)), self._stretch.get(s.image)
            )
            self._stretch[s.image] = reader.stretch
            image = reader.read_window(win).transpose(1, 2, 0)
            valid = (ds.dataset_mask(window=win) > 0).astype(np.uint8)
            shapes = self._vectors(s, ds.crs)
            mask = rasterize(
                [(g, 1) for g in shapes if not g.is_empty],
                out_shape=(h, w),
                transform=window_transform(win, ds.transform),
                dtype="uint8",
            )
        return np.ascontiguousarray(image), mask, valid
