"""Many scenes in one run: ``roadseg predict A.tif B.tif tiles/ @list.txt --out-dir results``.

The model loads once. Each scene writes ``<stem>.prob.tif`` and ``<stem>.roads.gpkg`` (or
``.geojson``; optionally ``<stem>.mask.tif``) into the output folder, each file atomically, and
one row of ``manifest.csv``: status, seconds, megapixels, km², road km, error. A scene that
fails (corrupt, unreadable, no CRS for GeoJSON, ...) is recorded as failed and the run goes on.
Started again, a run skips the scenes the manifest lists as done whose files exist, so an
interrupted or partly failed run resumes where it stopped.
"""

from __future__ import annotations

import csv
import glob
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from roadseg.errors import InputError, RoadsegError
from roadseg.io.atomic import atomic_path
from roadseg.io.paths import RASTER_SUFFIXES, check_outputs, with_styles
from roadseg.io.remote import RemoteFolder, check_url, is_url, list_scenes, name_of, stem_of
from roadseg.io.stac import looks_like_stac, read_stac
from roadseg.io.styles import remove_style

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
FIELDS = ["scene", "status", "seconds", "megapixels", "area_km2", "road_km", "outputs", "worker", "error"]


#: a scene: a local path, or a URL (s3://, gs://, az://, https://) read by GDAL with range requests
Scene = Path | str


def as_scene(text: str) -> Scene:
    """A scene argument as given: a URL stays text (Path would fold its ``//``), the rest a Path."""
    return check_url(text) if is_url(text) else Path(text)


def expand_scenes(args: list[str], stac_asset: str | None = None) -> list[Scene]:
    """Scenes from arguments: files, folders (their rasters), globs, URLs, prefixes or globs of
    URLs (``s3://bucket/scenes/``, ``s3://bucket/scenes/*.tif``), and ``@list.txt`` files of one
    path or URL per line (relative paths start at the list's folder); a ``.json`` argument is a
    STAC Item or ItemCollection, one scene per item (``stac_asset``: which asset)."""
    scenes: list[Scene] = []
    for text in map(str, args):
        arg = Path(text)
        if looks_like_stac(text):
            scenes += read_stac(text, stac_asset)
        elif is_url(text):
            check_url(text)
            if text.endswith("/") or any(c in text.split("://", 1)[1] for c in "*?["):
                scenes += list_scenes(text, RASTER_SUFFIXES)
            else:
                scenes.append(text)
        elif text.startswith("@"):
            listing = Path(text[1:])
            if not listing.is_file():
                raise InputError(
                    f"scene list '{listing}' not found; @FILE names a text file of one scene path per line"
                )
            try:
                text_lines = listing.read_text().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(
                    f"scene list '{listing}' cannot be read as text ({exc}); one path per line"
                ) from None
            named: list[Scene] = []
            for number, line in enumerate(text_lines, 1):
                line = line.strip()
                if not line or line.startswith("#"):  # blank lines and comments are skipped
                    continue
                if "\x00" in line:
                    raise InputError(
                        f"scene list '{listing}' line {number} holds a NUL byte; one path per line"
                    )
                if is_url(line):
                    named.append(check_url(line))
                    continue
                p = Path(line)
                named.append(p if p.is_absolute() else listing.parent / p)
            if not named:
                raise InputError(
                    f"scene list '{listing}' names no scene (only blank lines or # comments); one path per line"
                )
            scenes += named
        elif any(c in text for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(text))
            if not found:
                raise InputError(f"no file matches '{text}'")
            scenes += found
        elif arg.is_dir():
            found = sorted(p for p in arg.iterdir() if p.suffix.lower() in RASTER_SUFFIXES and p.is_file())
            if not found:
                raise InputError(f"folder '{arg}' holds no raster ({', '.join(RASTER_SUFFIXES)})")
            scenes += found
        else:
            scenes.append(arg)
    stems: dict[str, Scene] = {}
    for scene in scenes:
        other = stems.setdefault(stem_of(scene), scene)
        if other != scene:
            raise InputError(
                f"'{other}' and '{scene}' would write the same outputs ({stem_of(scene)}.*): give scenes unique "
                "names or run them into separate --out-dir folders"
            )
    return scenes


@dataclass(frozen=True)
class SceneOutputs:
    """What each scene writes into the output folder."""

    vector_format: str = "gpkg"  # gpkg | geojson | none
    mask: bool = False

    def names(self, scene: Scene) -> dict[str, str]:
        """The file names a scene writes, by kind (prob, mask, roads)."""
        stem = stem_of(scene)
        out = {"prob": f"{stem}.prob.tif"}
        if self.mask:
            out["mask"] = f"{stem}.mask.tif"
        if self.vector_format != "none":
            out["roads"] = f"{stem}.roads.{self.vector_format}"
        return out


class LocalFolder:
    """An output folder on this machine (or a filesystem every worker shares): outputs are
    written in place, so publishing is nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def stage(self) -> Path:
        return self.path

    def local(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return (self.path / name).is_file()

    def publish(self, paths: list[Path], *, keep: bool = False) -> None:
        pass


#: where a batch's outputs go: a local folder, or object storage through a local staging folder
Folder = LocalFolder | RemoteFolder


@dataclass
class Manifest:
    """The run's rows by scene, rewritten atomically after every scene."""

    path: Path
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        manifest = cls(path)
        if path.is_file():
            try:
                with open(path, newline="") as f:
                    reader = csv.DictReader(f)
                    if not {"scene", "status"} <= set(reader.fieldnames or []):
                        raise InputError(
                            f"'{path}' is not a roadseg manifest (its columns are {reader.fieldnames}); "
                            "choose another --out-dir, or move that file away"
                        )
                    manifest.rows = {row["scene"]: row for row in reader}
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise InputError(f"'{path}' cannot be read as a roadseg manifest ({exc})") from None
        return manifest

    def done(self, scene: Scene, names: dict[str, str], folder: Folder) -> bool:
        row = self.rows.get(str(scene))
        return row is not None and row["status"] == "done" and all(folder.exists(n) for n in names.values())

    def record(self, row: dict[str, Any], folder: Folder | None = None) -> None:
        self.rows[row["scene"]] = row
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(self.rows.values())
        if folder is not None:
            folder.publish([self.path], keep=True)


def check_scene_outputs(scenes: list[Scene], folder: Folder, outputs: SceneOutputs, style: bool) -> None:
    """Refuse, before any work, an output that would replace an input or another output, or a
    folder that cannot be written."""
    if outputs.vector_format not in ("gpkg", "geojson", "none"):
        raise InputError(f"--vector-format must be gpkg, geojson or none, got '{outputs.vector_format}'")
    if isinstance(folder, RemoteFolder):
        urls = {str(s) for s in scenes if is_url(s)}
        for scene in scenes:
            for name in outputs.names(scene).values():
                if f"{folder.url}/{name}" in urls:
                    raise InputError(
                        f"output '{folder.url}/{name}' is the input scene of that name; roadseg never writes over "
                        "an input: choose another --out-dir"
                    )
        folder.check_writable()
        return
    inputs = {f"scene '{s}'": s for s in scenes if isinstance(s, Path)}
    kinds = {"prob": "geotiff", "mask": "geotiff", "roads": "vector"}
    for scene in scenes:
        named = {
            f"{k} of '{name_of(scene)}'": (folder.local(n), kinds[k]) for k, n in outputs.names(scene).items()
        }
        check_outputs(inputs, with_styles(named, style), new_folders=True)


def scene_row(
    scene: Scene, names: dict[str, str], folder: Folder, predictor: Any, options: Any
) -> dict[str, Any]:
    """Run one scene of a batch (:func:`roadseg.pipeline.run_scene`) into ``folder``; its
    manifest row, failed or done.

    A bad scene (corrupt, unreadable, not found, access denied, no CRS for GeoJSON, ...) is a
    failed row, not an exception, and leaves none of its outputs behind. A remote folder gets
    each output once it is complete.
    """
    from roadseg.pipeline import SceneJob, quiet, run_scene

    paths = {k: folder.local(n) for k, n in names.items()}
    start = time.perf_counter()
    row: dict[str, Any] = {
        "scene": str(scene),
        "outputs": " ".join(p.name for p in paths.values()),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    job = SceneJob(
        scene,
        prob=paths["prob"],
        mask=paths.get("mask"),
        roads=paths.get("roads"),
        labels=tuple((k, f"{k} of '{name_of(scene)}'") for k in ("prob", "mask", "roads", "preview")),
    )
    try:
        res = run_scene(job, predictor, quiet(options))
        folder.publish(list(paths.values()))
        row.update(
            status="done",
            megapixels=round(res.prediction.megapixels, 3),
            road_km=None if res.road_km is None else round(res.road_km, 3),
            area_km2=None if res.prediction.area_km2 is None else round(res.prediction.area_km2, 4),
            error="",
        )
    except (RoadsegError, OSError) as exc:  # this scene is bad; the others may not be
        remove_outputs(paths)
        row.update(status="failed", error=" ".join(str(exc).split())[:500])
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def remove_outputs(paths: dict[str, Path]) -> None:
    """Remove a scene's outputs, their styles and any temporary file a killed writer left."""
    for p in paths.values():
        p.unlink(missing_ok=True)
        remove_style(p)
        for leftover in p.parent.glob(f".{glob.escape(p.name)}.*.part*"):
            leftover.unlink(missing_ok=True)


def sweep_partials(out_dir: Path, scenes: list[Scene], outputs: SceneOutputs) -> None:
    """Remove the temporary files of writers that died mid-write (a killed process or worker).

    Call it only when no writer of these outputs runs: at the start and end of a run.
    """
    for scene in scenes:
        for name in outputs.names(scene).values():
            for leftover in out_dir.glob(f".{glob.escape(name)}.*.part*"):
                leftover.unlink(missing_ok=True)
    for stage in out_dir.glob(".roadseg-*"):  # predict's resampling stage folders
        shutil.rmtree(stage, ignore_errors=True)


class ReadAhead:
    """Reads the next scene's file into the OS page cache on a thread while the current one
    runs, so the next scene's statistics and tiles come from memory, not from disk or a
    network share. Files larger than a quarter of the free memory are read only in part."""

    CHUNK = 8 << 20

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roadseg-readahead")
        self._future: Future[int] | None = None

    def start(self, path: Scene) -> None:
        if isinstance(path, Path):  # a remote scene is read in windows, never whole
            self._future = self._pool.submit(self._warm, path)
        else:
            self._future = None

    def wait(self) -> int:
        """Bytes read for the scene started last (0 if it could not be read: its run will say why)."""
        return 0 if self._future is None else self._future.result()

    def _warm(self, path: Path) -> int:
        import psutil

        limit = psutil.virtual_memory().available // 4
        done = 0
        try:
            with open(path, "rb", buffering=0) as f:
                while done < limit and (chunk := f.read(self.CHUNK)):
                    done += len(chunk)
        except OSError:
            return 0
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


#: one scene of a batch: the scene and the file names it writes, by kind
Job = tuple[Scene, dict[str, str]]


class Executor(Protocol):
    """Runs a batch's scenes somewhere and yields their manifest rows as they finish."""

    #: every writer runs on this machine: after an interruption no writer is left to race
    local: bool

    def prepare(self, checkpoint: Path | None, options: Any) -> None:
        """Load or check the model once, before the output folder is touched."""

    def run(self, jobs: list[Job], folder: Folder, options: Any) -> Iterator[dict[str, Any]]:
        """Rows of the jobs, in the order they finish."""
        ...


class Sequential:
    """Scenes one after another in this process: the model loads once, and the next scene's
    file is read ahead while the current one runs."""

    local = True

    def __init__(self) -> None:
        self._predictor: Any = None

    def prepare(self, checkpoint: Path | None, options: Any) -> None:
        from roadseg.inference.runtime import load_predictor

        self._predictor = load_predictor(checkpoint, device=options.device, amp=options.amp)

    def run(self, jobs: list[Job], folder: Folder, options: Any) -> Iterator[dict[str, Any]]:
        ahead = ReadAhead()
        try:
            for i, (scene, names) in enumerate(jobs):
                ahead.wait()
                if i + 1 < len(jobs):
                    ahead.start(jobs[i + 1][0])
                yield scene_row(scene, names, folder, self._predictor, options)
        finally:
            ahead.close()


def run_batch(
    scenes: list[Scene],
    out_dir: Path | RemoteFolder,
    *,
    checkpoint: Path | None,
    options: Any,
    outputs: SceneOutputs,
    executor: Executor | None = None,
) -> Manifest:
    """Predict every scene into ``out_dir`` (a folder, or object storage), sequentially or on
    ``executor`` (a Dask cluster); returns the manifest, failed scenes included. Scenes the
    manifest lists as done whose files exist are skipped, so a run started again resumes (from
    the remote manifest for a remote folder)."""
    executor = executor or Sequential()
    folder: Folder = out_dir if isinstance(out_dir, RemoteFolder) else LocalFolder(out_dir)
    check_scene_outputs(scenes, folder, outputs, options.style)
    from roadseg.inference.predict import check_options

    check_options(options)  # before the model loads
    executor.prepare(checkpoint, options)
    stage = folder.stage() if isinstance(folder, RemoteFolder) else folder.path
    created = not stage.exists()
    stage.mkdir(parents=True, exist_ok=True)
    if isinstance(folder, RemoteFolder):
        manifest = Manifest.read(folder.fetch(MANIFEST) or folder.local(MANIFEST))
    else:
        manifest = Manifest.read(folder.local(MANIFEST))
    sweep_partials(stage, scenes, outputs)
    todo = [s for s in scenes if not manifest.done(s, outputs.names(s), folder)]
    if len(todo) < len(scenes):
        log.info("%d of %d scenes done in an earlier run: skipped", len(scenes) - len(todo), len(scenes))
    finished = False
    try:
        jobs = [(s, outputs.names(s)) for s in todo]
        for i, row in enumerate(executor.run(jobs, folder, replace(options, progress=False)), 1):
            manifest.record(row, folder)
            _log_row(i, len(todo), row)
        finished = True
    finally:
        # every job has ended, or (interrupted) no writer of ours runs any more: sweep; a
        # remote cluster's orphaned tasks are swept by the next run's start
        if finished or executor.local:
            sweep_partials(stage, scenes, outputs)
        if isinstance(folder, RemoteFolder):
            folder.sweep_stages()  # every finished file is uploaded; a killed worker's are partial
        elif created and not finished and not any(stage.iterdir()):
            stage.rmdir()  # a scheduler that never answered leaves no empty folder behind
    return manifest


def _log_row(i: int, n: int, row: dict[str, Any]) -> None:
    log.info(
        "[%d/%d] %s: %s (%.1f s)%s",
        i,
        n,
        row["scene"],
        row["status"],
        row["seconds"],
        f": {row['error']}" if row["error"] else "",
    )
