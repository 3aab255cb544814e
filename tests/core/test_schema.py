"""Options declared once: field metadata drives validation (core._schema)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pytest

from napari_grainlab.core._schema import check_options, field_kind, option, option_fields, option_range_text
from napari_grainlab.core.errors import ConfigError, GrainLabError
from napari_grainlab.core.inference.options import InferenceOptions
from napari_grainlab.core.synthetic import SynthParams
from napari_grainlab.core.training import TrainConfig


@dataclass
class Example:
    count: int = option(3, min=1, max=10, help="how many")
    ratio: float = option(0.5, min=0.0, max=1.0, max_open=True)
    rate: float = option(1e-3, min=0.0, min_open=True)
    size: int = option(64, min=32, multiple_of=32)
    mode: str = option("a", choices=("a", "b"))
    flag: bool = option(False)
    limit: int | None = option(None, min=1)
    tags: tuple[str, ...] = option(("x",), choices=("x", "y"))
    _private: int = 0


def _bad(**changes) -> str:
    obj = dataclasses.replace(Example(), **changes)
    with pytest.raises(ConfigError) as info:
        check_options(obj, ConfigError)
    return str(info.value)


def test_defaults_pass_and_private_fields_are_not_options():
    check_options(Example(), ConfigError)
    assert [f.name for f in option_fields(Example)][-1] == "tags"


@pytest.mark.parametrize("changes, text", [
    ({"count": 0}, "count: must be >= 1, got 0"),
    ({"count": 11}, "count: must be <= 10, got 11"),
    ({"ratio": 1.0}, "ratio: must be < 1, got 1.0"),
    ({"rate": 0.0}, "rate: must be > 0, got 0.0"),
    ({"size": 48}, "size: must be a multiple of 32, got 48"),
    ({"size": 0}, "size: must be >= 32, got 0"),
    ({"mode": "c"}, "mode: unknown value 'c'; choose one of 'a', 'b'"),
    ({"flag": 1}, "flag: expected true/false, got 1"),
    ({"count": 2.5}, "count: expected an integer, got 2.5"),
    ({"count": True}, "count: expected an integer, got True"),
    ({"limit": 0}, "limit: must be >= 1, got 0"),
    ({"tags": ("x", "z")}, "tags: unknown value 'z'"),
    ({"ratio": math.nan}, "ratio: must be a finite number"),
    ({"count": None}, "count: a value is required"),
])
def test_bad_values_name_the_option_and_the_rule(changes, text):
    assert text in _bad(**changes)


def test_open_bounds_admit_values_just_inside():
    check_options(dataclasses.replace(Example(), ratio=0.999, rate=1e-12, limit=None, size=32), ConfigError)


def test_field_kind_reads_optional_and_tuple_annotations():
    assert field_kind(Example, "limit") == (int, True, False)
    assert field_kind(Example, "tags") == (str, False, True)
    assert field_kind(Example, "ratio") == (float, False, False)


def test_range_text():
    f = {f.name: f for f in option_fields(Example)}
    assert option_range_text(f["ratio"]) == "in [0, 1)"
    assert option_range_text(f["rate"]) == "> 0"
    assert option_range_text(f["mode"]) == "one of a, b"


def test_every_option_of_the_real_schemas_is_documented_and_its_default_valid():
    for cls in (TrainConfig, InferenceOptions):
        cls()  # defaults pass their own ranges
        for f in option_fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
    for f in option_fields(SynthParams().tessellation):
        assert f.metadata.get("help")


def test_train_config_ranges_come_from_the_metadata():
    meta = {f.name: f.metadata for f in option_fields(TrainConfig)}
    assert meta["dropout"]["max"] == 0.95
    TrainConfig(dropout=0.95)
    with pytest.raises(ConfigError, match=r"dropout: must be <= 0.95"):
        TrainConfig(dropout=0.96)
    with pytest.raises(ConfigError, match="val_fraction"):
        TrainConfig(val_fraction=meta["val_fraction"]["max"] + 0.01)
    with pytest.raises(ConfigError, match="patch_size: must be a multiple of 32"):
        TrainConfig(patch_size=100)
    assert issubclass(ConfigError, GrainLabError)


def test_synth_params_use_the_same_checks():
    from napari_grainlab.core.synthetic import ParameterError

    with pytest.raises(ParameterError, match=r"tessellation.size_sigma: must be <= 1.5"):
        SynthParams.from_dict({"tessellation": {"size_sigma": 2.0}}).validate()
