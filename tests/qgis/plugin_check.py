"""Runs inside QGIS's Python (Debian's python3-qgis, headless): the roadseg plugin's Predict
roads on a scene, the outputs loaded as layers with their styles, the map rendered to a PNG,
then a run cancelled part-way. Prints one JSON line of what it saw; tests/test_qgis_plugin.py
asserts on it. Usage: python3 plugin_check.py PLUGIN_PARENT SCENE WORKDIR PNG
"""

import gc
import json
import os
import shutil
import sys
import time
import warnings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (
    QgsApplication,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

plugin_parent, scene, work, png = sys.argv[1:5]
resource_warnings = []
warnings.simplefilter("always", ResourceWarning)
_show = warnings.showwarning


def _record(message, category, *args, **kwargs):
    if issubclass(category, ResourceWarning):
        resource_warnings.append(str(message))
    _show(message, category, *args, **kwargs)


warnings.showwarning = _record
# "defaults" (the README picture): the algorithm's defaults. Otherwise 0.3 m pixels and 128-px
# tiles, so that the progress bar has many steps to follow.
MAIN = {} if sys.argv[5:] == ["defaults"] else {"GSD": "0.3", "TILE_SIZE": 128}
app = QgsApplication([], False)
app.initQgis()
sys.path.insert(0, "/usr/share/qgis/python/plugins")
from processing.core.Processing import Processing

Processing.initialize()
import processing

sys.path.insert(0, plugin_parent)
from roadseg_qgis.provider import RoadsegProvider

provider = RoadsegProvider()
QgsApplication.processingRegistry().addProvider(provider)
report = {"algorithms": sorted(a.id() for a in provider.algorithms())}


class Recorder(QgsProcessingFeedback):
    def __init__(self, cancel_at=None):
        super().__init__()
        self.progress, self.cancel_at = [], cancel_at
        self.progressChanged.connect(self._progress)

    def _progress(self, value):
        self.progress.append(value)
        if self.cancel_at is not None and value >= self.cancel_at:
            self.cancel()


lines, prob = os.path.join(work, "roads.gpkg"), os.path.join(work, "prob.tif")
feedback = Recorder()
start = time.time()
result = processing.run(
    "roadseg:predict",
    {"INPUT": scene, "OUTPUT": lines, "PROBABILITY": prob, **MAIN},
    feedback=feedback,
)
report["seconds"] = round(time.time() - start, 1)
report["progress"] = [round(p) for p in feedback.progress]
report["outputs"] = sorted(os.path.basename(p) for p in result.values())

layers = {
    "scene": QgsRasterLayer(scene, "scene"),
    "prob": QgsRasterLayer(prob, "probability"),
    "lines": QgsVectorLayer(lines, "roads"),
}
report["valid"] = {k: lay.isValid() for k, lay in layers.items()}
report["renderers"] = {
    "prob": layers["prob"].renderer().type(),
    "lines": layers["lines"].renderer().type(),
}
report["features"] = layers["lines"].featureCount()

settings = QgsMapSettings()
settings.setLayers([layers["lines"], layers["prob"], layers["scene"]])  # top first
settings.setDestinationCrs(layers["scene"].crs())
settings.setExtent(layers["scene"].extent())
settings.setOutputSize(QSize(900, 900))
settings.setBackgroundColor(QColor("white"))
job = QgsMapRendererSequentialJob(settings)
job.start()
job.waitForFinished()
image = job.renderedImage()
report["png_saved"] = image.save(png, "PNG")

# cancel part-way (after the first tiles: the model is loaded and the outputs'
# temporary files are open): nothing may be left behind
work2 = os.path.join(work, "cancel")
os.makedirs(work2)
feedback = Recorder(cancel_at=1)
try:
    processing.run(
        "roadseg:predict",
        {
            "INPUT": scene,
            "TTA": 2,
            "GSD": "0.3",
            "TILE_SIZE": 128,
            "OUTPUT": os.path.join(work2, "roads.gpkg"),
            "PROBABILITY": os.path.join(work2, "prob.tif"),
        },
        feedback=feedback,
    )
    report["cancel"] = "not cancelled"
except QgsProcessingException as exc:
    report["cancel"] = str(exc)
report["left_after_cancel"] = sorted(os.listdir(work2))

# Vectorize roads on the probability, then Evaluate the lines against a copy of themselves, from a
# working folder that holds a broken roadseg/ package: the plugin must run the installed one
shadow = os.path.join(work, "shadow")
os.makedirs(os.path.join(shadow, "roadseg"))
with open(os.path.join(shadow, "roadseg", "__init__.py"), "w") as f:
    f.write("raise ImportError('a roadseg folder in the working directory')\n")
os.chdir(shadow)
vec = processing.run(
    "roadseg:vectorize", {"INPUT": prob, "OUTPUT": os.path.join(work, "v.gpkg")}, feedback=Recorder()
)
report["vectorize_features"] = QgsVectorLayer(vec["OUTPUT"], "v").featureCount()
shutil.copy(lines, os.path.join(work, "truth.gpkg"))
scores = processing.run(
    "roadseg:evaluate", {"PRED": lines, "TRUTH": os.path.join(work, "truth.gpkg")}, feedback=Recorder()
)
report["evaluate"] = {k: v for k, v in scores.items() if isinstance(v, float)}
# Find roads missing from a map: the predicted lines against themselves as the map (complete)
conf = processing.run(
    "roadseg:conflate",
    {"INPUT": lines, "MAP": os.path.join(work, "truth.gpkg"), "FOLDER": os.path.join(work, "conflate")},
    feedback=Recorder(),
)
report["conflate"] = {}
for key in ("MISSING", "UNSUPPORTED", "COMPLETENESS"):
    lay = QgsVectorLayer(conf[key], key.lower(), "ogr")
    lay.loadDefaultStyle()
    report["conflate"][key] = [lay.isValid(), lay.featureCount(), lay.renderer().type()]
report["conflate_osm"] = os.path.getsize(conf["OSM"]) > 0
gc.collect()
report["resource_warnings"] = resource_warnings
# roadseg's own error reaches the user as its one line (read from the JSON error event)
try:
    processing.run(
        "roadseg:evaluate",
        {"PRED": os.path.join(work, "nope.gpkg"), "TRUTH": os.path.join(work, "truth.gpkg")},
        feedback=Recorder(),
    )
    report["roadseg_error"] = "ran"
except QgsProcessingException as exc:
    report["roadseg_error"] = str(exc)

# a Python without roadseg: a clear message
os.environ["ROADSEG_PYTHON"] = "/nonexistent/python"
try:
    processing.run(
        "roadseg:vectorize", {"INPUT": prob, "OUTPUT": os.path.join(work, "v.gpkg")}, feedback=Recorder()
    )
    report["missing_python"] = "ran"
except QgsProcessingException as exc:
    report["missing_python"] = str(exc)

print("REPORT " + json.dumps(report))
app.exitQgis()
