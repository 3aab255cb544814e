"""The *Measure* dock (:class:`MeasureWidget`): grain table, size histogram and ASTM E112 grain
size of a Labels layer; :mod:`.measurement` is its worker side, :mod:`.table` and
:mod:`.histogram` its views."""

from .dock import MeasureWidget
from .histogram import SizeHistogram
from .measurement import Measurement, measure_labels
from .table import GrainTableModel

__all__ = ["GrainTableModel", "MeasureWidget", "Measurement", "SizeHistogram", "measure_labels"]
