"""Many scenes on many workers: ``roadseg predict ... --out-dir D --cluster local:4|ADDRESS``.

The engine is Dask distributed (``pip install 'roadseg[cluster]'``); why Dask and not Ray is
in docs/scaling.md. One task per scene. Each worker process loads the model once (a
process-wide cache) and runs whole scenes with :func:`roadseg.scenes.scene_row`, the same
code as a sequential run, so the rasters are the same bytes. The client writes the manifest
as results come in. When a worker dies, the scheduler runs its scenes again elsewhere (up to
``distributed.scheduler.allowed-failures`` times); every output is written under a temporary
name and renamed, and the temporary files of killed writers are swept at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from roadseg.errors import InputError
from roadseg.scenes import Folder, Job, LocalFolder, Scene, remove_outputs, scene_row

log = logging.getLogger(__name__)

_INSTALL = "pip install 'roadseg[cluster]'"
#: Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, which also turns off glibc's
#: adaptive mmap threshold: every large array is then mmapped and zero-filled afresh, and a
#: scene ran 2.6x slower in a worker than in a plain process (scripts/benchmark_scale.py).
_TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
_WORKER_LOGGING_KEY = "distributed.nanny.pre-spawn-environ.DASK_LOGGING__DISTRIBUTED"
_models: dict[tuple[str, int, str, Any], Any] = {}


def _model(checkpoint: str, options: Any) -> Any:
    """The worker process's predictor for ``checkpoint``: loaded on its first scene, then reused."""
    from roadseg.inference.runtime import load_predictor

    key = (checkpoint, os.stat(checkpoint).st_mtime_ns, options.device, options.amp)
    if key not in _models:
        _models.clear()
        _models[key] = load_predictor(checkpoint, device=options.device, amp=options.amp)
    return _models[key]


def _scene_task(
    scene: Scene, names: dict[str, str], folder: Folder, checkpoint: str, options: Any
) -> dict[str, Any]:
    """One scene on a worker, with the worker's share of the cores (``ROADSEG_WORKER_THREADS``,
    set for local clusters; unset: every core). A remote folder is written from the worker."""
    threads = int(os.environ.get("ROADSEG_WORKER_THREADS", "0")) or options.threads
    opts = replace(options, threads=threads)
    return scene_row(scene, names, folder, _model(checkpoint, opts), opts)


def parse_cluster(spec: str) -> tuple[str, Any]:
    """``local:N`` (N worker processes here), a scheduler file (``*.json``), or an address."""
    if spec.startswith("local:"):
        try:
            n = int(spec.removeprefix("local:"))
        except ValueError:
            n = 0
        most = 4 * (os.cpu_count() or 1)
        if not 1 <= n <= most:
            raise InputError(
                f"--cluster local:N needs a worker count from 1 to {most} (4 per core here), got '{spec}'; "
                f"each worker holds a model: local:{os.cpu_count() or 1} is one per core"
            )
        return "local", n
    if spec.endswith(".json"):
        if not Path(spec).is_file():
            raise InputError(
                f"scheduler file '{spec}' not found; start one with 'dask scheduler --scheduler-file {spec}'"
            )
        return "file", spec
    if "://" in spec or ":" in spec:
        return "address", spec
    raise InputError(
        f"--cluster must be local:N, a scheduler address (tcp://host:8786) or a scheduler file (.json); got '{spec}'"
    )


@contextlib.contextmanager
def connect(spec: str) -> Iterator[Any]:
    """A Dask client for ``spec`` (see :func:`parse_cluster`); a local cluster lives as long."""
    kind, value = parse_cluster(spec)
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise InputError(f"--cluster needs Dask distributed: {_INSTALL}") from None
    if not logging.getLogger("roadseg").isEnabledFor(logging.DEBUG):
        # Dask's own notices (workers stopped, tasks cancelled) only with -v: the manifest says
        # which worker ran each scene, and errors still show
        logging.getLogger("distributed").setLevel(logging.ERROR)
    if kind == "local":
        import dask

        threads = max(1, (os.cpu_count() or 1) // value)
        env = {"ROADSEG_WORKER_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
        with (
            # workers log only errors (a cancelled task on Ctrl-C is not one)
            dask.config.set({_TRIM_KEY: None, _WORKER_LOGGING_KEY: "error"}),
            _quiet_resource_tracker(),
            LocalCluster(
                n_workers=value,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env=env,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler_file=value) if kind == "file" else Client(value, timeout="30s")
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler at '{value}': {exc}") from None
    except (AssertionError, ValueError, KeyError, TypeError) as exc:  # not a scheduler file Dask wrote
        raise InputError(
            f"--cluster '{value}' is not a Dask scheduler file ({type(exc).__name__}: {str(exc)[:100]}); "
            "start one with 'dask scheduler --scheduler-file FILE'"
        ) from None
    with client:
        yield client


@contextlib.contextmanager
def _quiet_resource_tracker() -> Iterator[None]:
    """multiprocessing's resource tracker, started with the local cluster, warns of the
    workers' semaphores after a Ctrl-C, below roadseg's one-line message: it inherits this."""
    old = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = "ignore::UserWarning:multiprocessing.resource_tracker"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = old


class DaskExecutor:
    """A batch's scenes as Dask tasks (:func:`roadseg.scenes.run_batch` with ``executor=``).

    ``out_dir``, the scenes and the checkpoint must be at the same paths on every worker
    (a shared filesystem). ``client``: an already connected Dask client, for tests.
    """

    def __init__(self, spec: str, client: Any = None) -> None:
        self.spec = spec
        self.local = parse_cluster(spec)[0] == "local"
        self._client = client
        self._ckpt = ""

    def prepare(self, checkpoint: Path | None, options: Any) -> None:
        from roadseg.inference.runtime import bundled_model, read_model_info

        self._ckpt = str(Path(checkpoint or bundled_model(options.device, options.amp)).resolve())
        read_model_info(self._ckpt)  # a bad model fails here, once, not on every worker

    def run(self, jobs: list[Job], folder: Folder, options: Any) -> Iterator[dict[str, Any]]:
        with contextlib.ExitStack() as stack:
            client = self._client or stack.enter_context(connect(self.spec))
            yield from _run(client, jobs, folder, self._ckpt, options)


def _run(client: Any, jobs: list[Job], folder: Folder, ckpt: str, opts: Any) -> Iterator[dict[str, Any]]:
    from dask.distributed import as_completed

    # workers resolve nothing: local paths absolute (a shared filesystem), URLs as they are
    shared = LocalFolder(folder.path.resolve()) if isinstance(folder, LocalFolder) else folder
    futures = {}
    for scene, names in jobs:
        where = scene.resolve() if isinstance(scene, Path) else scene
        fut = client.submit(
            _scene_task, where, names, shared, ckpt, opts, key=f"roadseg-scene-{scene}", pure=False
        )
        futures[fut] = (scene, names)
    for fut in as_completed(futures):
        scene, names = futures[fut]
        try:
            row = fut.result()
            row["scene"] = str(scene)  # as the user named it, like a sequential run
        except Exception as exc:  # noqa: BLE001 - KilledWorker and kin: recorded, the run goes on
            remove_outputs({k: folder.local(n) for k, n in names.items()})
            row = {
                "scene": str(scene),
                "status": "failed",
                "seconds": "",
                "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}",
            }
        fut.release()
        yield row
