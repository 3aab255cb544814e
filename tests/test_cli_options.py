"""Flags generated from option metadata: ``grainlab train`` from TrainConfig, the prediction flags from
InferenceOptions / BatchOptions (defaults, ranges, lists, switches), and ``--help`` stays light."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from napari_grainlab.cli import build_parser, main
from napari_grainlab.cli._common import options_from_args
from napari_grainlab.core._schema import field_kind, option_fields
from napari_grainlab.core.batch import BatchOptions
from napari_grainlab.core.inference.options import InferenceOptions
from napari_grainlab.core.training.config import TrainConfig


def flag(f: dataclasses.Field) -> str:
    return "--" + (f.metadata.get("cli") or f.name.replace("_", "-"))


def cli_fields(cls: type, exclude=()) -> list[dataclasses.Field]:
    return [f for f in option_fields(cls) if f.metadata.get("cli") is not False and f.name not in exclude]


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_train_defaults_are_the_config_defaults(capsys):
    args = parse("train", "--out", "m")
    cfg = options_from_args(TrainConfig, args, out="m")
    assert cfg == TrainConfig(out="m")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    for f in cli_fields(TrainConfig):
        assert flag(f) in help_text, f.name
    assert "--finetune-stages" in help_text.split("strategies:")[1].split("options:")[0]


def test_train_flags_parse_into_the_config():
    args = parse("train", "--out", "m", "--dropout", "0.5", "--augment", "geometric, noise", "--no-amp",
                 "--oriented-growth", "--steps-per-epoch", "7", "--patch-size", "96")
    cfg = options_from_args(TrainConfig, args, out="m")
    assert (cfg.dropout, cfg.augment, cfg.amp, cfg.oriented_growth, cfg.steps_per_epoch, cfg.patch_size) == (
        0.5, ("geometric", "noise"), False, True, 7, 96)
    assert options_from_args(TrainConfig, parse("train", "--out", "m", "--augment", "none")).augment == ()


def _bad_values(f: dataclasses.Field, kind: type) -> list[str]:
    meta, step = f.metadata, 1 if kind is int else 1e-3
    bad = []
    if meta.get("min") is not None:
        bad.append(str(meta["min"] if meta.get("min_open") else meta["min"] - step))
    if meta.get("max") is not None:
        bad.append(str(meta["max"] if meta.get("max_open") else meta["max"] + step))
    if meta.get("multiple_of"):
        bad.append(str(meta["multiple_of"] * 3 + 1))
    return bad


RANGED = [(cls, f, value) for cls, command in ((TrainConfig, "train"), (BatchOptions, "predict"))
          for f in cli_fields(cls) if field_kind(cls, f.name)[0] in (int, float) and not field_kind(cls, f.name)[2]
          for value in _bad_values(f, field_kind(cls, f.name)[0])]


@pytest.mark.parametrize(("cls", "f", "value"), RANGED, ids=[f"{f.name}={v}" for _, f, v in RANGED])
def test_the_declared_range_is_the_flag_range(cls, f, value, tmp_path, capsys):
    """Each bound of the metadata rejects the value just outside it, before any work, naming the flag."""
    command = ["train", "--out", str(tmp_path / "m")] if cls is TrainConfig else [
        "predict", str(tmp_path / "m"), str(tmp_path / "x.tif"), "--out", str(tmp_path / "o")]
    assert main([*command, flag(f), value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"grainlab: error: argument {flag(f)}: must be ") and "\n" not in err
    kind = field_kind(cls, f.name)[0]
    inside = f.metadata.get("min") if not f.metadata.get("min_open") else f.metadata.get("max")
    if inside is not None and not f.metadata.get("multiple_of"):  # a value on a closed bound is accepted
        parse(*command, flag(f), str(kind(inside)))
    assert not (tmp_path / "m").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize(("command", "cls", "excluded"), [
    (["predict", "m", "x.tif", "--out", "o"], BatchOptions, ()),
    (["eval", "m", "d"], InferenceOptions, ()),
    (["predict-onnx", "m.onnx", "x.tif", "--out", "o"], BatchOptions, ("adabn", "device")),
])
def test_prediction_flags_build_one_options_object(command, cls, excluded):
    assert options_from_args(cls, parse(*command)) == cls()
    args = parse(*command, "--tile", "64", "--overlap", "16", "--batch-size", "2", "--tta", "--histogram-match",
                 "--min-size", "30")
    opts = options_from_args(cls, args)
    assert (opts.tile, opts.overlap, opts.batch_size, opts.tta, opts.histogram_match, opts.min_size) == (
        64, 16, 2, True, True, 30)
    for f in cli_fields(cls):
        present = f.name not in excluded
        assert hasattr(args, f.name) == present, f.name
    if cls is BatchOptions:
        assert options_from_args(cls, parse(*command, "--pixel-size", "0.5", "--overlay")).pixel_size == 0.5


MODULES_AFTER = """
import json, sys
from napari_grainlab.cli import main
try:
    rc = main({argv!r})
except SystemExit as exc:
    rc = exc.code
print(json.dumps({{"rc": rc, "modules": sorted(m.split(".")[0] for m in sys.modules)}}))
"""


@pytest.mark.parametrize("command", ["train", "predict", "eval", "predict-onnx", "measure", "export", "experiment"])
def test_command_help_imports_no_numpy_torch_or_napari(command):
    r = subprocess.run([sys.executable, "-c", MODULES_AFTER.format(argv=[command, "--help"])], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0
    assert not set(res["modules"]) & {"numpy", "torch", "napari", "qtpy", "tqdm", "tifffile", "onnxruntime"}
