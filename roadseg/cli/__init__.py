"""The ``roadseg`` command line: each command parses, calls one library function, renders.

One module per command; what they share (the app, -v/-q, one-line errors, choices) is in
``_app``. Exit codes: 0 success, 2 bad input or usage, 1 any other failure, 130 interrupted,
143 terminated. Messages and progress go to stderr; results (tables, JSON) to stdout.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import traceback
from typing import Any

import typer

try:  # typer >= 0.20 vendors click as typer._click and raises its exceptions; older typer uses click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import ClickException  # type: ignore[assignment]


from roadseg.cli._app import STATE, app, error_line, json_mode
from roadseg.errors import InputError, RoadsegError

__all__ = ["app", "main", "run"]

# each module registers its commands; --help lists them in this order
for _module in ("predict", "vectorize", "conflate", "evaluate", "train", "info"):
    importlib.import_module(f"roadseg.cli.{_module}")


NOTHING_LEFT = "no partial output was left behind"


def _one_line(exc: BaseException) -> str:
    """The message as one line; an error re-raised from a DataLoader worker carries the worker's
    traceback in its text, of which the last line is the message."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and "DataLoader worker" in lines[0]:
        last = lines[-1]
        return last.split(": ", 1)[1] if last.startswith("roadseg.errors.") else last
    return " ".join(lines)


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (job schedulers, ``timeout``, torchrun stopping a failed job) unwinds like
    Ctrl-C, so every temporary file is removed on the way out."""
    STATE["terminated"] = True
    raise KeyboardInterrupt


def _interrupted() -> int:
    cause, code = ("terminated (SIGTERM)", 143) if STATE.get("terminated") else ("interrupted", 130)
    # a training run keeps its last checkpoint for --resume; everything else leaves nothing
    text = f"{cause}; {STATE.get('kept') or NOTHING_LEFT}"
    if json_mode():
        return error_line(text.removeprefix("error: "), code)
    print(text, file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map errors to one-line messages and exit codes."""
    STATE.update(terminated=False, verbose=False, root_verbose=False, root_quiet=False, kept=None)
    from roadseg import progress

    progress.set_mode("bar")  # until the --progress option is read
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rv = app(args=argv, prog_name="roadseg", standalone_mode=False)
        if rv == 130:  # typer turns Ctrl-C into Exit(130) and, not standalone, returns the code
            return _interrupted()
        return rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        return int(exc.exit_code)
    except ClickException as exc:  # usage errors: one line too, with where to read more
        ctx = getattr(exc, "ctx", None)
        where = (
            f"roadseg {ctx.info_name} --help"
            if ctx is not None and ctx.info_name != "roadseg"
            else "roadseg --help"
        )
        return error_line(f"{exc.format_message()} (see {where})", int(exc.exit_code))
    except (KeyboardInterrupt, typer.Abort):
        return _interrupted()
    except RoadsegError as exc:
        if STATE["terminated"]:  # SIGTERM inside a GDAL call comes back as GDAL's read error
            return _interrupted()
        if STATE["verbose"]:
            traceback.print_exc()
        return error_line(_one_line(exc), 2 if isinstance(exc, InputError) else 1)
    except Exception as exc:  # noqa: BLE001 - last resort: one line unless -v
        if STATE["terminated"]:
            return _interrupted()
        if STATE["verbose"]:
            traceback.print_exc()
        return error_line(f"{type(exc).__name__}: {exc} (run with -v for the traceback)", 1)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run() -> None:
    """Console-script wrapper."""
    sys.exit(main())
