"""Runs inside QGIS's Python with Deepness's pinned onnxruntime: Deepness's own dock widget,
headless, as a user drives it. Select the layer, load roadseg's exported model, press "Load
default parameters", press Run, and run the map processor the plugin would start on Run.
Writes Deepness's mask as a GeoTIFF on the grid Deepness processed and prints one JSON line
of what it saw; tests/test_deepness.py asserts on it.

Usage: python deepness_check.py DEEPNESS_ROOT SCENE MODEL OUT_MASK_TIF
"""

import json
import os
import sys
from unittest.mock import MagicMock

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

deepness_root, scene, model_path, out_mask = sys.argv[1:5]
app = QgsApplication([], True)  # Deepness builds widgets: a GUI application, offscreen
app.initQgis()
sys.path.insert(0, deepness_root)

from qgis.PyQt.QtWidgets import QMessageBox

error_boxes = []


def _record(*args, **_kw):
    error_boxes.append(" ".join(str(a) for a in args[1:3]))
    return QMessageBox.Ok


QMessageBox.critical = _record  # an error box would block a headless run: record it instead
QMessageBox.warning = _record

import numpy as np
import onnxruntime
from deepness.deepness_dockwidget import DeepnessDockWidget
from deepness.processing.map_processor.map_processing_result import MapProcessingResultSuccess
from deepness.processing.models.model_types import ModelDefinition

report = {"onnxruntime": onnxruntime.__version__}
layer = QgsRasterLayer(scene, "scene")
report["layer_valid"] = layer.isValid()
QgsProject.instance().addMapLayer(layer)

iface = MagicMock()
dock = DeepnessDockWidget(iface)
dock.mMapLayerComboBox_inputLayer.setLayer(layer)
dock.comboBox_processedAreaSelection.setCurrentText("Entire layer")
dock.lineEdit_modelPath.setText(model_path)
dock.pushButton_reloadModel.click()  # what the plugin does after the user picks the file
report["model_class"] = type(dock._model).__name__ if dock._model is not None else None
report["model_info"] = dock.label_modelInfo.text()
dock.pushButton_loadDefaultModelParameters.click()
report["ui"] = {
    "model_type": dock.comboBox_modelType.currentText(),
    "resolution_cm": dock.doubleSpinBox_resolution_cm_px.value(),
    "tile_size": dock.spinBox_tileSize_px.value(),
    "overlap_percent": dock.spinBox_processingTileOverlapPercentage.value(),
    "threshold": dock.doubleSpinBox_probabilityThreshold.value(),
    "threshold_enabled": dock.checkBox_pixelClassEnableThreshold.isChecked(),
    "remove_small": dock.checkBox_removeSmallAreas.isChecked(),
}

emitted = []
dock.run_model_inference_signal.connect(emitted.append)
dock.pushButton_runInference.click()
report["run_emitted"] = len(emitted)
if emitted:
    params = emitted[0]
    processor_class = ModelDefinition.get_definition_for_params(params).map_processor_class
    processor = processor_class(rlayer=layer, vlayer_mask=None, map_canvas=iface.mapCanvas(), params=params)
    processor.run()  # QgsTask.run, synchronously: what the task manager does on Run
    result = processor._processing_result
    report["result"] = type(result).__name__
    report["result_message"] = getattr(result, "message", "")
    if isinstance(result, MapProcessingResultSuccess):
        # a one-channel sigmoid model gets a "background" channel first: value 1, road is 2
        mask = (np.asarray(processor.get_result_img())[0] == 2).astype(np.uint8)
        extent, step = processor.base_extent, processor.rlayer_units_per_pixel
        from osgeo import gdal

        ds = gdal.GetDriverByName("GTiff").Create(out_mask, mask.shape[1], mask.shape[0], 1, gdal.GDT_Byte)
        ds.SetGeoTransform((extent.xMinimum(), step, 0.0, extent.yMaximum(), 0.0, -step))
        ds.SetProjection(layer.crs().toWkt())
        ds.GetRasterBand(1).WriteArray(mask)
        ds = None  # closes and flushes the file
        report["mask_shape"] = list(mask.shape)
        report["road_fraction"] = float(mask.mean())
report["error_boxes"] = error_boxes
print("REPORT " + json.dumps(report))
app.exitQgis()
