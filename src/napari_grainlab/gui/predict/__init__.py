"""The *Predict* dock (:class:`PredictWidget`): a model chooser (:mod:`.model`), the images
(:mod:`.image`), the options generated from ``InferenceOptions`` (:mod:`.options`) and
*Predict folder…* (:mod:`.folder`); the prediction job itself is :mod:`napari_grainlab.gui.jobs.predict`."""

from .dock import PredictWidget
from .options import OptionsPanel

__all__ = ["OptionsPanel", "PredictWidget"]
