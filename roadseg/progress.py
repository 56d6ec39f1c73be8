"""Progress and messages, for people or for programs: one home for both.

``bar`` mode draws tqdm bars on stderr (a terminal); ``json`` mode writes one JSON object per
line on stderr instead (``roadseg --progress json ...``), which the QGIS plugin reads, so that no
client ever parses a bar's text; ``none`` draws nothing. Library functions ask :func:`bar` for a
progress object and never choose the format.

Events (each a JSON object with ``event``)::

    {"event": "start", "stage": "predict", "total": 12, "unit": "tile"}
    {"event": "progress", "stage": "predict", "done": 5, "total": 12, "note": "0.31 Mpx/s x8 views"}
    {"event": "end", "stage": "predict", "done": 12, "total": 12}
    {"event": "message", "level": "info" | "warning", "message": "..."}
    {"event": "error", "message": "...", "exit_code": 2}
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

MODES = ("bar", "json", "none")
_STATE = {"mode": "bar"}
#: json mode: at most one progress event per stage this often (seconds), plus the last one
MIN_INTERVAL = 0.1


def set_mode(mode: str) -> None:
    """Choose how progress is shown for the rest of the process."""
    if mode not in MODES:
        from roadseg.errors import InputError

        raise InputError(f"--progress must be one of {', '.join(MODES)}; got '{mode}'")
    _STATE["mode"] = mode


def mode() -> str:
    return _STATE["mode"]


def emit(event: str, **fields: Any) -> None:
    """Write one JSON event line on stderr (json mode)."""
    print(json.dumps({"event": event, **fields}), file=sys.stderr, flush=True)


class _JsonBar:
    """tqdm's interface as used by roadseg (update, set_postfix_str, n, close), as events."""

    def __init__(self, total: int, stage: str, unit: str, initial: int = 0) -> None:
        self.total, self.stage, self.n = int(total), stage, int(initial)
        self._note = ""
        self._last = 0.0
        emit("start", stage=stage, total=self.total, unit=unit)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= MIN_INTERVAL or self.n >= self.total:
            self._last = now
            emit("progress", stage=self.stage, done=self.n, total=self.total, note=self._note)

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self._note = text

    def set_postfix(self, **kwargs: Any) -> None:
        self._note = ", ".join(f"{k}={v}" for k, v in kwargs.items())

    def close(self) -> None:
        emit("end", stage=self.stage, done=self.n, total=self.total)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bar(total: int, stage: str, *, unit: str = "it", enabled: bool = True, initial: int = 0) -> Any:
    """A progress object for ``total`` steps of ``stage`` (a context manager with ``update``)."""
    from tqdm import tqdm

    if not enabled or mode() == "none":
        return tqdm(total=total, initial=initial, disable=True)
    if mode() == "json":
        return _JsonBar(total, stage, unit, initial)
    return tqdm(total=total, initial=initial, desc=stage, unit=unit, leave=False, dynamic_ncols=True)
