"""What every command shares: the Typer app, -v/-q, one-line errors and messages, choices."""

from __future__ import annotations

import logging
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from roadseg.errors import InputError


class Tta(str, Enum):
    """--tta: the views averaged per tile."""

    none = "none"
    flip = "flip"
    d4 = "d4"


class ProbDtype(str, Enum):
    """--prob-dtype of the probability raster."""

    uint8 = "uint8"
    float32 = "float32"


class VectorFormat(str, Enum):
    """--vector-format of a many-scene run's road lines."""

    gpkg = "gpkg"
    geojson = "geojson"
    none = "none"


class Geometry(str, Enum):
    """--geometry of vectorize."""

    line = "line"
    polygon = "polygon"


class ProgressMode(str, Enum):
    """--progress: how progress, messages and errors are shown."""

    bar = "bar"
    json = "json"
    none = "none"


def hide_flag_types() -> None:
    """Recent typer prints a ``<bool>`` type beside every flag (--json, --help), which reads as
    "takes a value" and leads to ``--json true``, refused. Flags take no value: show none."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - depends on the installed typer
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_roadseg", False):  # pragma: no cover
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return (
            None
            if getattr(self, "is_flag", False) and not getattr(self, "count", False)
            else shown(self, ctx)
        )

    display_type_rich._roadseg = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


hide_flag_types()

app = typer.Typer(
    name="roadseg",
    help="Road extraction from satellite and aerial imagery: predict, vectorize, train, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

STATE: dict[str, Any] = {
    "verbose": False,
    "terminated": False,
    "root_verbose": False,
    "root_quiet": False,
    "kept": None,
}


def _version(value: bool) -> None:
    if value:
        from roadseg import __version__

        typer.echo(f"roadseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    progress_mode: Annotated[
        ProgressMode,
        typer.Option(
            "--progress",
            help="bar (for a terminal), json (one JSON event per line on stderr: progress, messages, "
            "errors; for programs such as the QGIS plugin) or none. Goes before the command.",
        ),
    ] = ProgressMode.bar,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="More messages; tracebacks on errors (every command).")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors; no progress bars (every command).")
    ] = False,
) -> None:
    """Road extraction from satellite and aerial imagery: predict, vectorize, train, evaluate."""
    STATE["root_verbose"], STATE["root_quiet"] = verbose, quiet
    from roadseg import progress

    progress.set_mode(progress_mode.value)


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="More messages; tracebacks on errors.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors; no progress bar.")]


def path_arg(value: str | None, option: str) -> Path | None:
    """A path option given as text: an empty one (an unset ``$OUTDIR``) is refused, not taken
    as the working folder, which is what Path('') would silently mean."""
    if value is None:
        return None
    if not value.strip():
        raise InputError(f"{option} is empty (an unset variable?); give a path, or leave {option} out")
    if "\x00" in value:
        raise InputError(f"{option} {value[:100]!r} holds a NUL byte; give a path")
    return Path(value)


def need_torch(command: str, extra: str) -> None:
    """train and export run PyTorch; the default install predicts without it."""
    from roadseg.inference.runtime import torch_available

    if not torch_available():
        raise InputError(
            f"roadseg {command} needs PyTorch, which this install lacks (predict, vectorize and evaluate "
            f"do not): pip install '{extra}'"
        )


class JsonLog(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json

        level = "warning" if record.levelno >= logging.WARNING else "info"
        return json.dumps({"event": "message", "level": level, "message": record.getMessage()})


def json_mode() -> bool:
    from roadseg import progress

    return progress.mode() == "json"


def setup(verbose: bool, quiet: bool) -> bool:
    """Logging and warnings for a command; -v/-q count whether given before the command
    (``roadseg -q predict``) or after it (``roadseg predict -q``). Returns the effective quiet."""
    verbose = verbose or STATE["root_verbose"]
    quiet = quiet or STATE["root_quiet"]
    STATE["verbose"] = verbose
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    if json_mode():
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLog())
    for noisy in ("rasterio", "pyogrio", "fiona"):  # GDAL's informational chatter ("Created N records")
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.ERROR)
    if quiet:
        warnings.simplefilter("ignore")
    else:
        warnings.showwarning = show_warning
    return quiet


def show_warning(
    message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    if json_mode():
        from roadseg import progress

        progress.emit("message", level="warning", message=str(message))
    else:
        print(f"warning: {message}", file=sys.stderr)


def echo(text: str) -> None:
    if json_mode():
        from roadseg import progress

        progress.emit("message", level="info", message=text)
    else:
        typer.echo(text, err=True)


#: longest error line printed: a value echoed from a hostile input (a YAML alias bomb's repr
#: was 34.7 MB) is cut, the start says what and where
MAX_ERROR = 400


def error_line(text: str, code: int) -> int:
    """The one error line (or event), capped at MAX_ERROR characters, and the exit code."""
    text = " ".join(text.split())
    if len(text) > MAX_ERROR:
        text = text[: MAX_ERROR - 1] + "…"
    if json_mode():
        from roadseg import progress

        progress.emit("error", message=text, exit_code=code)
    else:
        print(f"error: {text}", file=sys.stderr)
    return code
