"""One scene, start to end: predict, then lines, then a picture; the only place they are chained.

``roadseg predict scene.tif --out ...``, a many-scene run (:mod:`roadseg.scenes`) and a Dask
worker (:mod:`roadseg.cluster`) all run a :class:`SceneJob` through :func:`run_scene`, so a
scene gives the same bytes whoever runs it. :func:`check_job` does every check that needs no
model and no pixels (outputs writable, none replacing an input or another output, a CRS where
GeoJSON needs one), so a doomed job fails before minutes of inference, not after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from roadseg.errors import InputError
from roadseg.inference.predict import PredictOptions, PredictResult, check_options, predict_raster
from roadseg.inference.runtime import Predictor
from roadseg.io.paths import check_output_path, check_outputs, with_styles

if TYPE_CHECKING:
    from roadseg.vectorize.tool import VectorizeResult


@dataclass(frozen=True)
class SceneJob:
    """What one scene writes. ``prob`` may be None with ``roads`` or ``preview``: the
    probability raster then lives in a temporary folder beside them and is removed."""

    scene: Path | str  # a local path or a URL (roadseg.io.remote)
    prob: Path | None = None
    mask: Path | None = None
    roads: Path | None = None
    preview: Path | None = None
    #: how messages name each output (the CLI's option names; a batch's "prob of 'a.tif'")
    labels: tuple[tuple[str, str], ...] = (
        ("prob", "--prob-out"),
        ("mask", "--mask-out"),
        ("roads", "--out"),
        ("preview", "--preview"),
    )

    def outputs(self) -> dict[str, Path]:
        """The files this job writes, by kind (prob, mask, roads, preview), set ones only."""
        named = {"prob": self.prob, "mask": self.mask, "roads": self.roads, "preview": self.preview}
        return {k: p for k, p in named.items() if p is not None}


@dataclass(frozen=True)
class SceneResult:
    """What :func:`run_scene` did: the prediction's figures and, with ``roads``, the lines'."""

    job: SceneJob
    prediction: PredictResult
    lines: VectorizeResult | None

    @property
    def road_km(self) -> float | None:
        if self.lines is None or self.lines.total_length_m is None:
            return None
        return self.lines.total_length_m / 1000


_KINDS = {"prob": "geotiff", "mask": "geotiff", "roads": "vector", "preview": "png"}


def check_job(
    job: SceneJob, *, checkpoint: Path | None = None, options: PredictOptions | None = None
) -> None:
    """Refuse a job that cannot end well, before any work: nothing to write, an output that
    would replace an input or another output, a folder that cannot be written, a scene that
    cannot be opened, GeoJSON lines for a scene that has no CRS, options out of range."""
    options = options or PredictOptions()
    check_options(options)
    style = options.style
    outputs = job.outputs()
    if not outputs:
        raise InputError("nothing to write: give --out roads.geojson, --prob-out, --mask-out or --preview")
    labels = dict(job.labels)
    named = {labels[k]: (p, _KINDS[k]) for k, p in outputs.items() if k != "preview"}
    if "preview" in outputs:  # a picture has no style sidecar
        preview = {labels["preview"]: (outputs["preview"], "png")}
    else:
        preview = {}
    scene = job.scene if isinstance(job.scene, Path) else None  # a URL cannot be overwritten from here
    check_outputs({"scene": scene, "--checkpoint": checkpoint}, {**with_styles(named, style), **preview})
    from roadseg.io.raster import open_raster

    with open_raster(job.scene) as ds:  # a missing or unreadable scene, before the model loads
        if job.roads is not None:
            from roadseg.vectorize.geo import check_placeable

            check_placeable(job.roads, ds.crs, str(job.scene))


def run_scene(job: SceneJob, predictor: Predictor, options: PredictOptions) -> SceneResult:
    """Predict ``job.scene`` with ``predictor`` and write every output the job names.

    Raises on a bad scene (the caller decides whether that ends the run or is one failed
    row); an output that was not finished is not left behind.
    """
    from roadseg.vectorize.tool import VectorizeOptions, vectorize_raster

    options = _from_stac(job.scene, options)
    check_job(job, options=options)
    with _prob_target(job) as prob_path:
        prediction = predict_raster(
            job.scene,
            checkpoint=None,
            prob_out=prob_path,
            mask_out=job.mask,
            options=options,
            predictor=predictor,
        )
        lines = None
        if prob_path is not None and (job.roads is not None or job.preview is not None):
            vopts = VectorizeOptions(
                threshold=prediction.threshold,
                progress=options.progress,
                style=options.style and job.roads is not None,
                pixel_size_m=options.pixel_size,
                pixel_coords=job.roads is None,  # lines only for the picture: any grid will do
                source_name=f"the prediction of '{job.scene}'",
            )
            with contextlib.ExitStack() as stack:
                if job.roads is None:  # a preview alone still draws the road lines
                    folder = check_output_path(job.preview).parent  # type: ignore[arg-type]
                    tmp = stack.enter_context(tempfile.TemporaryDirectory(dir=folder, prefix=".roadseg-"))
                    lines = vectorize_raster(prob_path, Path(tmp) / "lines.gpkg", vopts)
                else:
                    lines = vectorize_raster(prob_path, job.roads, vopts)
        if job.preview is not None:
            from roadseg.preview import render_preview

            render_preview(
                job.preview,
                scene=job.scene,
                prob=prob_path,
                lines=lines.geoms if lines else None,
                bands=options.bands,
            )
    return SceneResult(job, prediction, lines if job.roads is not None else None)


def _from_stac(scene: Path | str, options: PredictOptions) -> PredictOptions:
    """A STAC asset's band order (eo:bands red, green, blue) and, for a raster without a CRS,
    its gsd as the pixel size, unless the user gave --bands or --pixel-size."""
    from roadseg.io.remote import StacAsset

    if not isinstance(scene, StacAsset):
        return options
    if options.bands is None and scene.bands is not None:
        options = dataclasses.replace(options, bands=scene.bands)
    if options.pixel_size is None and scene.gsd is not None:
        from roadseg.io.raster import open_raster

        with open_raster(scene) as ds:
            if ds.crs is None:
                options = dataclasses.replace(options, pixel_size=scene.gsd)
    return options


@contextlib.contextmanager
def _prob_target(job: SceneJob) -> Iterator[Path | None]:
    """The probability raster predict writes: the job's, or a temporary one that lines or a
    picture need, in a hidden folder beside them (same filesystem, removed on the way out)."""
    beside = job.roads or job.preview
    if job.prob is not None or beside is None:
        yield job.prob
        return
    folder = check_output_path(beside).parent
    with tempfile.TemporaryDirectory(dir=folder, prefix=".roadseg-") as tmp:
        yield Path(tmp) / "prob.tif"


def quiet(options: PredictOptions) -> PredictOptions:
    """``options`` without progress bars: a batch reports per scene, not per tile."""
    return dataclasses.replace(options, progress=False)
