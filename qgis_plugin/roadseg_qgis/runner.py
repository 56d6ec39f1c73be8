"""Runs the installed roadseg in its own Python, with QGIS's progress bar and Cancel.

The plugin never imports roadseg (QGIS's Python is not roadseg's): it runs
``PYTHON -m roadseg --progress json ...`` and reads the events roadseg writes on stderr, one
JSON object per line (progress of each stage, messages, the error), so no text of a progress
bar is ever parsed. Cancel sends SIGTERM (terminate on Windows); roadseg then removes its
temporary files and exits, so a cancelled run leaves no output.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from qgis.core import QgsProcessingException

PYTHON_SETTING = "ROADSEG_PYTHON"
ENV_VAR = "ROADSEG_PYTHON"


def _setting():
    try:
        from processing.core.ProcessingConfig import ProcessingConfig

        return ProcessingConfig.getSetting(PYTHON_SETTING) or ""
    except ImportError:  # outside QGIS's Processing (plugin tests)
        return ""


def _python_in(path):
    """A python executable from a path that is one, or a virtual environment folder."""
    if os.path.isdir(path):
        for rel in ("bin/python3", "bin/python", "Scripts/python.exe"):
            candidate = os.path.join(path, rel)
            if os.path.isfile(candidate):
                return candidate
        return None
    return path if os.path.isfile(path) else shutil.which(path)


def find_python():
    """The configured Python (setting, then $ROADSEG_PYTHON, then the one beside a roadseg on
    PATH), checked to import roadseg; a QgsProcessingException says how to fix it otherwise."""
    tried = []
    configured = _setting() or os.environ.get(ENV_VAR, "")
    candidates = [configured] if configured else []
    script = shutil.which("roadseg")
    if script:
        with open(script, "rb") as f:
            first = f.readline().decode("utf-8", "replace").strip()
        if first.startswith("#!"):
            candidates.append(first[2:].strip().split()[0])
    for candidate in candidates:
        python = _python_in(candidate)
        if python is None:
            tried.append(f"'{candidate}' (not found)")
            continue
        probe = subprocess.run(
            [python, "-c", "import roadseg; print(roadseg.__version__)"],
            capture_output=True,
            text=True,
            check=False,
            cwd=_neutral_dir(),  # a roadseg/ folder in QGIS's working folder must not pass the probe
            **_hidden_window(),
        )
        if probe.returncode == 0:
            return python
        tried.append(f"'{python}' (cannot import roadseg)")
    raise QgsProcessingException(
        "roadseg was not found"
        + (f": tried {', '.join(tried)}" if tried else "")
        + ". Install it (pip install . in the roadseg repository) and set the Python or virtual environment to use under "
        "Settings > Options > Processing > Providers > roadseg (or the ROADSEG_PYTHON environment variable)."
    )


def _neutral_dir():
    """An empty folder to run roadseg in: ``python -c``/``-m`` put the working folder first on
    sys.path, so a checkout (or any roadseg/ folder) there would shadow the installed package."""
    global _NEUTRAL
    if _NEUTRAL is None or not os.path.isdir(_NEUTRAL):
        _NEUTRAL = tempfile.mkdtemp(prefix="roadseg-qgis-")
    return _NEUTRAL


_NEUTRAL = None


def _hidden_window():
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NO_WINDOW}
    return {}


def run_roadseg(args, feedback, stages, outputs=()):
    """Run ``roadseg ARGS``; ``stages`` maps a bar name to its (start, end) share of 0-100.

    Returns stdout. Raises QgsProcessingException with roadseg's own error line on failure,
    or "cancelled" when the user pressed Cancel: the process is terminated (it removes its
    temporary files) and the ``outputs`` this run created, finished ones included, are removed
    with their styles; a file that existed before the run is never touched.
    """
    python = find_python()
    new = [p for p in outputs if p and not os.path.exists(p)]
    cmd = [python, "-m", "roadseg", "--progress", "json", *args]
    feedback.pushCommandInfo(" ".join(cmd))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=_neutral_dir(), **_hidden_window()
    )
    lines = []
    out = []

    def read_err():
        buf = b""
        while True:
            chunk = proc.stderr.read1(4096) if hasattr(proc.stderr, "read1") else proc.stderr.read(1)
            if not chunk:
                break
            buf += chunk
            *parts, buf = re.split(rb"[\r\n]", buf)
            lines.extend(p.decode("utf-8", "replace") for p in parts if p.strip())
        if buf.strip():
            lines.append(buf.decode("utf-8", "replace"))

    def read_out():
        out.append(proc.stdout.read().decode("utf-8", "replace"))

    readers = [threading.Thread(target=read_err, daemon=True), threading.Thread(target=read_out, daemon=True)]
    for t in readers:
        t.start()
    seen = 0
    cancelled = False
    errors = []
    while proc.poll() is None:
        if feedback.isCanceled():
            cancelled = True
            proc.terminate()  # SIGTERM: roadseg cleans up and exits 143
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            break
        seen = _follow(lines, seen, feedback, stages, errors)
        time.sleep(0.05)
    for t in readers:
        t.join(timeout=5)
    for pipe in (proc.stdout, proc.stderr):  # else a ResourceWarning per run in QGIS's log
        pipe.close()
    _follow(lines, seen, feedback, stages, errors)
    if cancelled:
        for path in new:
            for leftover in (path, os.path.splitext(path)[0] + ".qml"):
                if os.path.exists(leftover):
                    os.remove(leftover)
        raise QgsProcessingException("cancelled: roadseg was stopped and left no output")
    if proc.returncode != 0:
        message = errors[-1] if errors else (lines[-1] if lines else "(no message)")
        raise QgsProcessingException(f"roadseg failed (exit {proc.returncode}): {message}")
    return "".join(out)


def _follow(lines, seen, feedback, stages, errors):
    """Act on the event lines after ``seen``: progress of a known stage moves the bar within
    its share, messages go to the log, error messages are collected in ``errors``; a line that
    is not an event (a library's own warning) goes to the log as it is."""
    for line in lines[seen:]:
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or "event" not in event:
            feedback.pushInfo(line)
            continue
        kind = event["event"]
        if kind == "progress" and event.get("stage") in stages and event.get("total"):
            start, end = stages[event["stage"]]
            feedback.setProgress(start + (end - start) * min(1.0, event["done"] / event["total"]))
        elif kind == "message":
            text = event.get("message", "")
            if event.get("level") == "warning" and hasattr(feedback, "pushWarning"):
                feedback.pushWarning(text)
            else:
                feedback.pushInfo(text)
        elif kind == "error":
            errors.append(event.get("message", ""))
    return len(lines)
