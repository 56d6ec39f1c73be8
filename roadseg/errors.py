"""One exception tree for everything a user can get wrong.

The CLI maps :class:`InputError` (and its children) to exit code 2 and any other
:class:`RoadsegError` to exit code 1, printing the message as one line.
Messages say what was found, what was expected and how to fix it.
"""

from __future__ import annotations

from typing import Any


class RoadsegError(Exception):
    """Root of all roadseg errors."""


class InputError(RoadsegError, ValueError):
    """Bad user input: a path, a raster, an option value (exit code 2)."""


class CheckpointError(InputError):
    """A checkpoint that cannot be used: missing, corrupt, foreign or unsafe."""


class ConfigError(InputError):
    """An unknown key or a value of the wrong type in a config."""


class WeightsUnavailableError(RoadsegError):
    """Pretrained encoder weights could not be obtained (typically offline)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training after a checkpoint was written: the run folder is kept
    on purpose (``--resume`` continues it), so "no partial output" would be untrue."""

    def __init__(self, run_dir: Any) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir
