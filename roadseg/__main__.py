"""``python -m roadseg``."""

from roadseg.cli import run

if __name__ == "__main__":  # worker processes (spawn) import this module without running it
    run()
