"""Settings of the measurement report (:mod:`napari_grainlab.core.report`), declared once.

:class:`ReportOptions` holds what a user may set about a report: its title, how large its pictures
are and the threshold that turns a twin-boundary probability into a mask. Its fields carry their
ranges and help (see :mod:`napari_grainlab.core._schema`): the report flags of ``grainlab measure``
are derived from them.

This module imports no numpy (the command line imports it to build its parser).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ._schema import check_options, option
from .errors import ConfigError

__all__ = ["REPORT_SUFFIXES", "ReportOptions"]

#: the report formats, by file suffix
REPORT_SUFFIXES = (".html", ".htm", ".pdf")


@dataclass(frozen=True)
class ReportOptions:
    """What a measurement report shows and how large its pictures are."""

    title: str | None = option(None, group="Report", cli="report-title", metavar="TEXT", widget="hidden",
                        help="the report's title (default: the name of the micrograph, or 'Grain size report' for "
                             "several)")
    max_side: int = option(1600, min=64, max=20000, suffix=" px", group="Report", cli="report-max-side",
                           metavar="PX",
                           help="pictures in the report are reduced so that their longest side is at most this "
                                "(keeps reports small)")
    twin_threshold: float = option(0.5, min=0.0, max=1.0, min_open=True, max_open=True, group="Report",
                                   metavar="P",
                                   help="a twin-boundary probability image counts as twin boundary where it is above "
                                        "this (bool and 0 / 1 masks are taken as they are)")

    def validate(self) -> ReportOptions:
        check_options(self, ConfigError)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
