"""``python -m roadseg``."""

from roadseg.cli import run

run()
