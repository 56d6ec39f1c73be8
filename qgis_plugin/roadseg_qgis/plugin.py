"""Registers the roadseg Processing provider (and nothing else: no toolbar, no dock)."""

from qgis.core import QgsApplication

from .provider import RoadsegProvider


class RoadsegPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):
        self.provider = RoadsegProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
