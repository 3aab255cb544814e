"""Settings of the ASTM E112 grain-size methods, declared once.

:class:`GrainSizeSettings` holds every setting of :func:`napari_grainlab.core.grainsize.grain_size`: the
test lines of the Heyn intercept method, the Abrams three-circle pattern, the sub-fields of the
planimetric method, what counts as a grain-boundary gap and the counting tolerances. Its fields carry
their ranges and help (see :mod:`napari_grainlab.core._schema`): the flags of ``grainlab measure`` are
derived from them.

This module imports no numpy (the command line imports it to build its parser).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ._schema import check_options, option, option_fields
from .errors import ConfigError

__all__ = ["METHODS", "GrainSizeSettings", "resolve_settings"]

#: the grain-size methods of :func:`~napari_grainlab.core.grainsize.grain_size`
METHODS = ("planimetric", "intercept", "circles")


@dataclass(frozen=True)
class GrainSizeSettings:
    """Settings of an ASTM E112 grain-size measurement (lengths in px of the label image)."""

    # ------------------------------------------------------------------ intercept
    directions: tuple[float, ...] = option((0.0, 45.0, 90.0, 135.0), min=-360.0, max=360.0, group="Intercept",
                                           metavar="DEG",
                                           help="directions of the test lines in degrees, counter-clockwise from "
                                                "+x with y up (intercept method)")
    line_spacing: float | None = option(None, min=1.0, max=1e6, suffix=" px", special="auto", group="Intercept",
                                        metavar="PX",
                                        help="distance between parallel test lines in px (auto: 1.5 x the square "
                                             "root of the mean grain area, so that lines are more than one grain "
                                             "apart)")
    line_count: int | None = option(None, min=1, max=100_000, special="auto", group="Intercept", metavar="N",
                                    help="a fixed number of parallel test lines per direction instead of a "
                                         "spacing (each at the centre of one of N equal bands across the field)")
    min_line_fraction: float = option(0.5, min=0.0, max=1.0, group="Intercept", metavar="F",
                                      help="test lines whose length (clipped to the image) is under this fraction of the "
                                           "longest line of their direction are not used (the short lines of "
                                           "oblique directions in the field's corners)")
    # -------------------------------------------------------------------- circles
    circle_radius: float | None = option(None, min=3.0, max=1e6, suffix=" px", special="auto", group="Circles",
                                         metavar="PX",
                                         help="radius of the largest of the three circles in px (auto: the "
                                              "largest that fits the grid of placements)")
    circle_grid: int = option(2, min=1, max=100, group="Circles", metavar="N",
                              help="the three-circle pattern is placed N x N times on a grid over the field; each "
                                   "placement is one measurement")
    circle_triple_point: float = option(1.5, min=1.0, max=2.0, group="Circles", metavar="C",
                                        help="what a test circle's crossing at a triple point counts (1.5 as on "
                                             "straight lines; 2 for the count some circle procedures use)")
    # ---------------------------------------------------------------- planimetric
    tiles: int = option(3, min=1, max=100, group="Planimetric", metavar="N",
                        help="planimetric method on one image: statistics over N x N sub-fields, each with its own "
                             "edge rule")
    corner_quarter: bool = option(True, group="Planimetric",
                                  help="E112 rectangle rule: the grains at the four corners of a field count 1/4 "
                                       "(else 1/2 like the other grains cut by the edge)")
    # ------------------------------------------------------------------- counting
    gap_width: float = option(3.0, min=0.0, max=1000.0, suffix=" px", group="Counting", metavar="PX",
                              help="unlabelled (0) bands up to this wide are grain-boundary gaps (a crossing of "
                                   "one gap counts once), also where two of them cross; wider unlabelled regions "
                                   "are not part of the field")
    triple_point_radius: float = option(1.0, min=0.5, max=10.0, suffix=" px", group="Counting", metavar="PX",
                                        help="a test line that passes this close to a point where 3 grains meet "
                                             "crosses a triple point: the crossings there count 1.5 together (2 "
                                             "where 4 grains meet)")
    tangent_length: float = option(1.0, min=0.0, max=100.0, suffix=" px", group="Counting", metavar="PX",
                                   help="a detour into another grain shorter than this along a test line is a "
                                        "tangent hit (counts 1) or part of one crossing")
    # --------------------------------------------------------------- distributions
    bins_per_decade: int = option(10, min=1, max=100, group="Distributions", metavar="N",
                                  help="logarithmic bins per factor of ten of the grain-area and intercept-length "
                                       "histograms")
    # ---------------------------------------------------------------------- twins
    twins: str = option("exclude", choices=("exclude", "count"), group="Twins", cli=False,
                        help="with a twin-boundary mask: G excludes twin boundaries (twins merged into their "
                             "parent grain, the E112 practice) or counts them as grain boundaries; both G are "
                             "reported")

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-safe values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def resolve_settings(settings: GrainSizeSettings | dict | None = None, **overrides: Any) -> GrainSizeSettings:
    """A checked :class:`GrainSizeSettings` from an instance, a dict and / or keyword overrides.

    An unknown name or a value out of range raises :class:`ConfigError` naming the setting."""
    if settings is None:
        base = GrainSizeSettings()
    elif isinstance(settings, GrainSizeSettings):
        base = settings
    elif isinstance(settings, dict):
        overrides = {**settings, **overrides}
        base = GrainSizeSettings()
    else:
        raise ConfigError(f"settings must be GrainSizeSettings or a dict, got {type(settings).__name__}")
    names = {f.name for f in option_fields(GrainSizeSettings)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown grain-size setting {unknown[0]!r}; known: {', '.join(sorted(names))}")
    if "directions" in overrides and overrides["directions"] is not None:
        d = overrides["directions"]
        overrides["directions"] = tuple(float(v) for v in (d if isinstance(d, (list, tuple)) else (d,)))
    for name in ("line_spacing", "circle_radius", "min_line_fraction", "circle_triple_point", "gap_width",
                 "triple_point_radius", "tangent_length"):
        v = overrides.get(name)
        if isinstance(v, int) and not isinstance(v, bool):
            overrides[name] = float(v)
    out = dataclasses.replace(base, **overrides)
    check_options(out, ConfigError)
    if not out.directions:
        raise ConfigError("directions: give at least one test-line direction")
    return out
