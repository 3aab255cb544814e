"""``grainlab train --config FILE``: training options from a JSON recipe, overridden by later flags."""

from __future__ import annotations

import json

import pytest

from napari_grainlab.cli import build_parser, main
from napari_grainlab.cli._common import options_from_args
from napari_grainlab.core.training.config import TrainConfig


def _config(tmp_path, **values):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def _train_config(argv):
    args = build_parser().parse_args(argv)
    return options_from_args(TrainConfig, args, task="segment", out="m")


def test_recipe_values_replace_the_defaults(tmp_path):
    recipe = _config(tmp_path, epochs=7, augment=["geometric", "colour"], channels="3", grain_diameter=32.0,
                     _about="ignored: keys starting with _ are comments")
    cfg = _train_config(["train", "--config", str(recipe), "--out", "m"])
    assert cfg.epochs == 7
    assert cfg.augment == ("geometric", "colour")
    assert cfg.channels == "3" and cfg.grain_diameter == 32.0
    assert cfg.lr == TrainConfig().lr  # not in the file: the default


def test_flags_after_config_override_it(tmp_path):
    recipe = _config(tmp_path, epochs=7, lr=0.01)
    cfg = _train_config(["train", "--config", str(recipe), "--epochs", "3", "--out", "m"])
    assert cfg.epochs == 3 and cfg.lr == 0.01


def test_a_run_config_json_is_a_recipe(tmp_path):
    """The config.json a run writes (it also holds out, task and classes) can start another run."""
    written = TrainConfig(task="segment", out="old", epochs=5, patch_size=128).to_dict()
    recipe = _config(tmp_path, **written)
    cfg = _train_config(["train", "--config", str(recipe), "--out", "m"])
    assert cfg.epochs == 5 and cfg.patch_size == 128 and cfg.out == "m"


@pytest.mark.parametrize(("content", "message"), [
    ('{"no_such_option": 1}', "unknown training option 'no_such_option'"),
    ("[1, 2]", "expected a JSON object"),
    ("{not json", "not JSON"),
])
def test_bad_recipes_are_one_line_usage_errors(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    code = main(["train", "--config", str(path), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_shipped_generalist_recipes_are_valid():
    from importlib.resources import files

    folder = files("napari_grainlab") / "models" / "generalist"
    for name in ("recipe.json", "recipe-gpu.json"):
        cfg = _train_config(["train", "--config", str(folder / name), "--out", "m"])
        cfg.validate()
        assert cfg.channels == "3" and cfg.synthetic == "randomized" and cfg.grain_diameter
