"""The *Measure* dock (:class:`MeasureWidget`): grain table, size histogram, distribution plot and ASTM E112
grain size of a Labels layer, with reports and ROI export; :mod:`.measurement` is its worker side,
:mod:`.table`, :mod:`.histogram` and :mod:`.distribution` its views, :mod:`.report` the report panel."""

from .distribution import DistributionPlot
from .dock import MeasureWidget
from .histogram import SizeHistogram
from .measurement import Measurement, measure_labels
from .report import ReportPanel
from .table import GrainTableModel

__all__ = ["DistributionPlot", "GrainTableModel", "MeasureWidget", "Measurement", "ReportPanel", "SizeHistogram",
           "measure_labels"]
