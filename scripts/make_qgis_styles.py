"""Build the QGIS style sidecars roadseg ships (roadseg/styles/*.qml) with QGIS's own API.

QGIS applies ``NAME.qml`` beside ``NAME.tif`` / ``NAME.gpkg`` when the layer is loaded. The
styles are written by QGIS itself, so they are valid for it; roadseg copies them beside its
outputs. Run with a Python that has QGIS (Debian: ``apt install python3-qgis``)::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/make_qgis_styles.py roadseg/styles
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr
from qgis.core import (
    QgsApplication,
    QgsColorRampShader,
    QgsFillSymbol,
    QgsGradientColorRamp,
    QgsGraduatedSymbolRenderer,
    QgsLineSymbol,
    QgsPalettedRasterRenderer,
    QgsProperty,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSimpleLineSymbolLayer,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
    QgsSymbolLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor

#: probability 0 is fully transparent; roads show from faint orange to solid red
PROB_RAMP = [
    (0.0, (255, 120, 0, 0)),
    (0.25, (255, 140, 0, 90)),
    (0.5, (255, 60, 0, 170)),
    (1.0, (220, 0, 0, 235)),
]
#: line colour and width follow mean_prob (QGIS expressions): cold colours, violet to cyan, so that
#: confident roads stand out over the warm probability raster instead of vanishing red on red
LINE_COLOR = "ramp_color(create_ramp(map(0,'#b400ff',0.5,'#0096ff',1,'#00f0ff')), coalesce(\"mean_prob\", 1))"
LINE_WIDTH = '0.5 + 1.1 * coalesce("mean_prob", 1)'


def _raster(path: Path, dtype: int) -> QgsRasterLayer:
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 8, 8, 1, dtype)
    ds.GetRasterBand(1).WriteArray(np.zeros((8, 8)))
    ds = None
    return QgsRasterLayer(str(path), path.stem)


def probability(path: Path, maximum: float, out: Path) -> None:
    layer = _raster(path, gdal.GDT_Byte if maximum > 1 else gdal.GDT_Float32)
    items = [QgsColorRampShader.ColorRampItem(v * maximum, QColor(*rgba), f"{v:g}") for v, rgba in PROB_RAMP]
    ramp = QgsColorRampShader(0, maximum)
    ramp.setColorRampType(QgsColorRampShader.Interpolated)
    ramp.setColorRampItemList(items)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0)
    renderer.setClassificationMax(maximum)
    layer.setRenderer(renderer)
    layer.saveNamedStyle(str(out))


def mask(path: Path, out: Path) -> None:
    layer = _raster(path, gdal.GDT_Byte)
    classes = [
        QgsPalettedRasterRenderer.Class(0, QColor(0, 0, 0, 0), "background"),
        QgsPalettedRasterRenderer.Class(1, QColor(255, 40, 0, 220), "road"),
    ]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.saveNamedStyle(str(out))


def _vector(path: Path, kind: int) -> QgsVectorLayer:
    drv = ogr.GetDriverByName("GPKG")
    ds = drv.CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    lyr = ds.CreateLayer("roads", srs, kind)
    lyr.CreateField(ogr.FieldDefn("mean_prob", ogr.OFTReal))
    ds = None
    return QgsVectorLayer(str(path), "roads", "ogr")


def lines(path: Path, out: Path) -> None:
    layer = _vector(path, ogr.wkbLineString)
    casing = QgsSimpleLineSymbolLayer(QColor(30, 30, 30, 200), 1.0)
    casing.setPenCapStyle(Qt.RoundCap)
    casing.setPenJoinStyle(Qt.RoundJoin)
    casing.setDataDefinedProperty(
        QgsSymbolLayer.PropertyStrokeWidth, QgsProperty.fromExpression(f"{LINE_WIDTH} + 0.5")
    )
    core = QgsSimpleLineSymbolLayer(QColor(255, 200, 0), 0.8)
    core.setPenCapStyle(Qt.RoundCap)  # round ends and joins: lines meeting at a junction read as one
    core.setPenJoinStyle(Qt.RoundJoin)
    core.setDataDefinedProperty(QgsSymbolLayer.PropertyStrokeWidth, QgsProperty.fromExpression(LINE_WIDTH))
    core.setDataDefinedProperty(QgsSymbolLayer.PropertyStrokeColor, QgsProperty.fromExpression(LINE_COLOR))
    symbol = QgsLineSymbol([casing, core])
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.saveNamedStyle(str(out))


def polygons(path: Path, out: Path) -> None:
    layer = _vector(path, ogr.wkbPolygon)
    symbol = QgsFillSymbol.createSimple(
        {"color": "255,90,0,110", "outline_color": "200,30,0,255", "outline_width": "0.4"}
    )
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.saveNamedStyle(str(out))


def _lines_layer(path: Path, fields: list[str], kind: int = ogr.wkbLineString) -> QgsVectorLayer:
    drv = ogr.GetDriverByName("GPKG")
    ds = drv.CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    lyr = ds.CreateLayer("layer", srs, kind)
    for name in fields:
        lyr.CreateField(ogr.FieldDefn(name, ogr.OFTReal))
    ds = None
    return QgsVectorLayer(str(path), "layer", "ogr")


def missing(path: Path, out: Path) -> None:
    """conflate's missing roads: bold magenta over a dark casing, seen on any imagery."""
    layer = _lines_layer(path, ["mean_prob", "length_m"])
    casing = QgsSimpleLineSymbolLayer(QColor(20, 20, 20, 220), 2.2)
    core = QgsSimpleLineSymbolLayer(QColor(255, 0, 200), 1.4)
    for sl in (casing, core):
        sl.setPenCapStyle(Qt.RoundCap)
        sl.setPenJoinStyle(Qt.RoundJoin)
    layer.setRenderer(QgsSingleSymbolRenderer(QgsLineSymbol([casing, core])))
    layer.saveNamedStyle(str(out))


def unsupported(path: Path, out: Path) -> None:
    """conflate's mapped roads without support in the imagery: dashed orange, for review."""
    layer = _lines_layer(path, ["support", "length_m"])
    line = QgsSimpleLineSymbolLayer(QColor(255, 140, 0), 1.0)
    line.setPenStyle(Qt.DashLine)
    layer.setRenderer(QgsSingleSymbolRenderer(QgsLineSymbol([line])))
    layer.saveNamedStyle(str(out))


def completeness(path: Path, out: Path) -> None:
    """conflate's grid: a choropleth of completeness, red (map lacks most roads) to green."""
    layer = _lines_layer(path, ["completeness", "mapped_km", "predicted_km"], ogr.wkbPolygon)
    ramp = QgsGradientColorRamp(QColor(215, 25, 28, 150), QColor(26, 150, 65, 150))
    ramp.setStops([])
    base = QgsFillSymbol.createSimple(
        {"color": "200,200,200,150", "outline_color": "60,60,60,120", "outline_width": "0.2"}
    )
    renderer = QgsGraduatedSymbolRenderer("completeness")
    renderer.setSourceSymbol(base)
    renderer.setSourceColorRamp(ramp)
    renderer.updateClasses(layer, QgsGraduatedSymbolRenderer.EqualInterval, 5)
    edges = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    for i in range(5):
        renderer.updateRangeLowerValue(i, edges[i])
        renderer.updateRangeUpperValue(i, edges[i + 1])
        renderer.updateRangeLabel(i, f"{edges[i]:.0%} - {edges[i + 1]:.0%}")
    renderer.updateColorRamp(ramp)
    layer.setRenderer(renderer)
    layer.saveNamedStyle(str(out))


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "roadseg/styles")
    out.mkdir(parents=True, exist_ok=True)
    app = QgsApplication([], False)
    app.initQgis()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        probability(t / "p8.tif", 255.0, out / "probability_uint8.qml")
        probability(t / "p32.tif", 1.0, out / "probability_float32.qml")
        mask(t / "m.tif", out / "mask.qml")
        lines(t / "l.gpkg", out / "lines.qml")
        polygons(t / "a.gpkg", out / "polygons.qml")
        missing(t / "mi.gpkg", out / "missing.qml")
        unsupported(t / "un.gpkg", out / "unsupported.qml")
        completeness(t / "co.gpkg", out / "completeness.qml")
    app.exitQgis()
    for f in sorted(out.glob("*.qml")):
        print(f, f.stat().st_size)


if __name__ == "__main__":
    main()
