"""QGIS plugin entry point: QGIS calls classFactory when it loads the plugin."""


def classFactory(iface):
    from .plugin import RoadsegPlugin

    return RoadsegPlugin(iface)
