"""Render layers as QGIS draws them (their default styles: .qml sidecars, styles stored in
GeoPackages) into a PNG, for the docs' pictures. Run with QGIS's Python, e.g.:

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/render_qgis_map.py OUT.png SCENE.tif \\
        DIR/completeness.gpkg DIR/unsupported.gpkg DIR/missing.gpkg

Layers are drawn in the order given (the first at the bottom); the map covers the first layer.
"""

import sys

from qgis.core import (
    QgsApplication,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor


def main() -> None:
    out, *paths = sys.argv[1:]
    app = QgsApplication([], False)
    app.initQgis()
    layers = []
    for path in paths:
        if path.lower().endswith((".tif", ".tiff")):
            layer = QgsRasterLayer(path, path)
        else:
            layer = QgsVectorLayer(path, path, "ogr")
        layer.loadDefaultStyle()
        if not layer.isValid():
            raise SystemExit(f"QGIS cannot load {path}")
        layers.append(layer)
    settings = QgsMapSettings()
    settings.setLayers(layers[::-1])  # top first
    settings.setDestinationCrs(layers[0].crs())
    settings.setExtent(layers[0].extent())
    settings.setOutputSize(QSize(800, 800))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    job.renderedImage().save(out, "PNG")
    print(out)


if __name__ == "__main__":
    main()
