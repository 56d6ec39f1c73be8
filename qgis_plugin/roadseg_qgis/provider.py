"""The roadseg Processing provider and its one setting: the Python that has roadseg installed."""

from processing.core.ProcessingConfig import ProcessingConfig, Setting
from qgis.core import QgsProcessingProvider

from .algorithms import ConflateAlgorithm, EvaluateAlgorithm, PredictRoadsAlgorithm, VectorizeRoadsAlgorithm
from .runner import PYTHON_SETTING


class RoadsegProvider(QgsProcessingProvider):
    def load(self):
        ProcessingConfig.settingIcons[self.name()] = self.icon()
        ProcessingConfig.addSetting(
            Setting(
                self.name(),
                PYTHON_SETTING,
                "Python with roadseg installed (a python executable, or a virtual environment folder)",
                "",
                valuetype=Setting.FILE,
            )
        )
        ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self):
        ProcessingConfig.removeSetting(PYTHON_SETTING)

    def loadAlgorithms(self):
        for alg in (
            PredictRoadsAlgorithm(),
            VectorizeRoadsAlgorithm(),
            EvaluateAlgorithm(),
            ConflateAlgorithm(),
        ):
            self.addAlgorithm(alg)

    def id(self):
        return "roadseg"

    def name(self):
        return "roadseg"

    def longName(self):
        return "roadseg: road extraction (D-LinkNet)"
