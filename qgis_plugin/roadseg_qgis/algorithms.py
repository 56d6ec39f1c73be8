"""Predict roads, Vectorize roads, Evaluate and Find roads missing from a map, as Processing
algorithms that run roadseg."""

import json
import os

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from .runner import run_roadseg

TTA = ["none", "flip", "d4"]
DEVICES = ["auto", "cpu", "cuda"]


def _raster_file(alg, parameters, name, context):
    """The file behind a raster layer parameter: roadseg reads files, not QGIS providers."""
    layer = alg.parameterAsRasterLayer(parameters, name, context)
    if layer is None:
        raise QgsProcessingException(f"{name}: no raster layer given")
    path = layer.source().split("|")[0]
    if layer.providerType() != "gdal" or not os.path.isfile(path):
        raise QgsProcessingException(
            f"'{layer.name()}' is not a raster file (provider {layer.providerType()}); save it as a GeoTIFF first"
        )
    return path


class _Base(QgsProcessingAlgorithm):
    """Processing's boilerplate, from each algorithm's NAME, TITLE and HELP."""

    NAME = TITLE = HELP = ""

    def name(self):
        return self.NAME

    def displayName(self):
        return self.TITLE

    def shortHelpString(self):
        return self.HELP

    def group(self):
        return "Roads"

    def groupId(self):
        return "roads"

    def createInstance(self):
        return type(self)()


class PredictRoadsAlgorithm(_Base):
    INPUT, CHECKPOINT, TTA_MODE, GSD, THRESHOLD = "INPUT", "CHECKPOINT", "TTA", "GSD", "THRESHOLD"
    DEVICE, TILE = "DEVICE", "TILE_SIZE"
    OUTPUT, PROBABILITY, MASK = "OUTPUT", "PROBABILITY", "MASK"

    NAME = "predict"
    TITLE = "Predict roads"
    HELP = (
        "Road centrelines (lines with a mean_prob confidence) and a road probability raster from an "
        "RGB image of any size, with roadseg's D-LinkNet. The image is resampled to the model's pixel size "
        "when needed and the outputs lie on the image's own grid. Leave the model empty for the bundled "
        "one; a roadseg checkpoint, official D-LinkNet .th or roadseg ONNX file also works."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Image (RGB raster)"))
        self.addParameter(
            QgsProcessingParameterFile(
                self.CHECKPOINT, "Model (.pt, .th or .onnx; empty: the bundled model)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.TTA_MODE, "Test-time augmentation (views averaged: 1, 4, 8)", options=TTA, defaultValue=2
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.GSD, "Pixel size for the model: auto, native or metres", defaultValue="auto"
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.THRESHOLD,
                "Road threshold (empty: the model's)",
                type=QgsProcessingParameterNumber.Double,
                minValue=0.01,
                maxValue=0.99,
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", options=DEVICES, defaultValue=0))
        tile = QgsProcessingParameterNumber(
            self.TILE,
            "Tile size (pixels, multiple of 32; 0: roadseg's, 512 on CPU, 1024 on GPU)",
            defaultValue=0,
            minValue=0,
        )
        tile.setFlags(tile.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(tile)
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Road lines"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.PROBABILITY, "Road probability"))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                self.MASK, "Road mask", optional=True, createByDefault=False
            )
        )

    def processAlgorithm(self, parameters, context, feedback):
        scene = _raster_file(self, parameters, self.INPUT, context)
        lines = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        prob = self.parameterAsOutputLayer(parameters, self.PROBABILITY, context)
        mask = self.parameterAsOutputLayer(parameters, self.MASK, context)
        args = ["predict", scene, "--out", lines, "--prob-out", prob]
        if mask:
            args += ["--mask-out", mask]
        ckpt = self.parameterAsFile(parameters, self.CHECKPOINT, context)
        if ckpt:
            args += ["--checkpoint", ckpt]
        args += ["--tta", TTA[self.parameterAsEnum(parameters, self.TTA_MODE, context)]]
        args += ["--gsd", self.parameterAsString(parameters, self.GSD, context) or "auto"]
        args += ["--device", DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]]
        tile = self.parameterAsInt(parameters, self.TILE, context)
        if tile:
            args += ["--tile-size", str(tile), "--overlap", str(max(32, min(128, tile // 8 // 32 * 32)))]
        if parameters.get(self.THRESHOLD) is not None:
            args += ["--threshold", str(self.parameterAsDouble(parameters, self.THRESHOLD, context))]
        run_roadseg(args, feedback, {"predict": (0, 90), "vectorize": (90, 100)}, outputs=[lines, prob, mask])
        results = {self.OUTPUT: lines, self.PROBABILITY: prob}
        if mask:
            results[self.MASK] = mask
        return results


class VectorizeRoadsAlgorithm(_Base):
    INPUT, THRESHOLD, OUTPUT = "INPUT", "THRESHOLD", "OUTPUT"

    NAME = "vectorize"
    TITLE = "Vectorize roads"
    HELP = (
        "Road centrelines from a road probability or mask raster (roadseg's, or any 0-1 / 0-255 raster): "
        "thinned, joined at junctions, short spurs pruned and small gaps closed."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Road probability or mask raster"))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.THRESHOLD,
                "Threshold (probability rasters; empty: 0.5)",
                type=QgsProcessingParameterNumber.Double,
                minValue=0.01,
                maxValue=0.99,
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Road lines"))

    def processAlgorithm(self, parameters, context, feedback):
        raster = _raster_file(self, parameters, self.INPUT, context)
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        args = ["vectorize", raster, "--out", out]
        if parameters.get(self.THRESHOLD) is not None:
            args += ["--threshold", str(self.parameterAsDouble(parameters, self.THRESHOLD, context))]
        run_roadseg(args, feedback, {"vectorize": (0, 100)}, outputs=[out])
        return {self.OUTPUT: out}


class EvaluateAlgorithm(_Base):
    PRED, TRUTH, RELAX, PER_IMAGE = "PRED", "TRUTH", "RELAX", "PER_IMAGE"

    NAME = "evaluate"
    TITLE = "Evaluate"
    HELP = (
        "Scores a prediction against a reference of the same kind: rasters give IoU, F1, relaxed "
        "precision/recall within a tolerance and their breakeven; line layers give APLS and TOPO. "
        "Files or folders (paired by file id)."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFile(self.PRED, "Prediction (raster or lines)"))
        self.addParameter(QgsProcessingParameterFile(self.TRUTH, "Reference (same kind)"))
        self.addParameter(
            QgsProcessingParameterNumber(self.RELAX, "Tolerance (pixels)", minValue=0, defaultValue=3)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.PER_IMAGE,
                "Per-image scores",
                fileFilter="CSV (*.csv)",
                optional=True,
                createByDefault=False,
            )
        )

    def processAlgorithm(self, parameters, context, feedback):
        args = [
            "evaluate",
            "--pred",
            self.parameterAsFile(parameters, self.PRED, context),
            "--truth",
            self.parameterAsFile(parameters, self.TRUTH, context),
            "--relax-px",
            str(self.parameterAsInt(parameters, self.RELAX, context)),
            "--json",
        ]
        per_image = self.parameterAsFileOutput(parameters, self.PER_IMAGE, context)
        if per_image:
            args += ["--per-image", per_image]
        stdout = run_roadseg(args, feedback, {}, outputs=[per_image])
        metrics = json.loads(stdout.strip().splitlines()[-1])
        for key, value in metrics.items():
            feedback.pushInfo(f"{key:<20} {value:.4f}")
        results = dict(metrics)
        if per_image:
            results[self.PER_IMAGE] = per_image
        return results


class ConflateAlgorithm(_Base):
    """What the map is missing: roadseg conflate, its layers loaded with their styles."""

    INPUT, MAP, DISTANCE, FOLDER = "INPUT", "MAP", "DISTANCE", "FOLDER"
    MISSING, UNSUPPORTED, COMPLETENESS, OSM = "MISSING", "UNSUPPORTED", "COMPLETENESS", "OSM"

    NAME = "conflate"
    TITLE = "Find roads missing from a map"
    HELP = (
        "Predicted roads (a roadseg line layer, or a scene that is predicted first) against an existing "
        "road map (OSM .osm/.osm.pbf, GeoJSON or GeoPackage lines): the roads the map lacks (also as an "
        ".osm file JOSM opens as a new layer), the mapped roads the imagery does not support (for "
        "review, never for deletion) and a completeness grid. Distances in metres."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFile(self.INPUT, "Predicted road lines or scene"))
        self.addParameter(QgsProcessingParameterFile(self.MAP, "Existing road map"))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.DISTANCE,
                "Match distance (m)",
                type=QgsProcessingParameterNumber.Double,
                minValue=0.5,
                defaultValue=12.0,
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination(self.FOLDER, "Output folder"))
        for key, label in (
            (self.MISSING, "Missing roads"),
            (self.UNSUPPORTED, "Mapped roads without support"),
            (self.COMPLETENESS, "Completeness grid"),
        ):
            self.addOutput(QgsProcessingOutputVectorLayer(key, label))
        self.addOutput(QgsProcessingOutputFile(self.OSM, "Missing roads for JOSM (.osm)"))

    def processAlgorithm(self, parameters, context, feedback):
        folder = self.parameterAsString(parameters, self.FOLDER, context)
        args = [
            "conflate",
            self.parameterAsFile(parameters, self.INPUT, context),
            "--map",
            self.parameterAsFile(parameters, self.MAP, context),
            "--out-dir",
            folder,
            "--distance-m",
            str(self.parameterAsDouble(parameters, self.DISTANCE, context)),
        ]
        names = ("missing.gpkg", "missing.osm", "unsupported.gpkg", "completeness.gpkg", "summary.json")
        outputs = [os.path.join(folder, n) for n in names]
        run_roadseg(args, feedback, {"predict": (0, 80), "vectorize": (80, 90)}, outputs=outputs)
        return {
            self.FOLDER: folder,
            self.MISSING: outputs[0] + "|layername=missing",
            self.UNSUPPORTED: outputs[2] + "|layername=unsupported",
            self.COMPLETENESS: outputs[3] + "|layername=completeness",
            self.OSM: outputs[1],
        }
