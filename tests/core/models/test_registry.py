"""The built-in model registry: names resolve to checkpoint folders, hashes are checked, offline is one line."""
from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request

import pytest
import torch

from napari_grainlab.core.errors import GrainLabError, WeightsError
from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint
from napari_grainlab.core.models import checkpoint as ck
from napari_grainlab.core.models import registry as reg


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    net = build_model(ModelSpec(backbone="resnet18", decoder_channels=(8,)))
    return save_checkpoint(tmp_path_factory.mktemp("reg") / "tiny", net, {"note": "fake generalist"})


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_registry(tmp_path, monkeypatch, tiny, **models):
    root = tmp_path / "pkg"
    (root / "fake").mkdir(parents=True)
    shutil.copy(tiny / "model.safetensors", root / "fake" / "model.safetensors")
    shutil.copy(tiny / "model.json", root / "fake" / "model.json")
    (root / "registry.json").write_text(json.dumps({"format": "napari-grainlab-registry", "format_version": 1,
                                                    "models": models}))
    monkeypatch.setenv("GRAINLAB_REGISTRY", str(root / "registry.json"))
    monkeypatch.setenv("GRAINLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    reg._verified.clear()
    return root


def test_the_package_registry_lists_the_generalist_and_it_is_not_installed_yet(monkeypatch):
    monkeypatch.delenv("GRAINLAB_REGISTRY", raising=False)
    names = [m.name for m in reg.list_models()]
    assert "generalist" in names
    entry = next(m for m in reg.list_models() if m.name == "generalist")
    assert entry.file == "generalist/model.safetensors" and entry.channels == 3
    if reg.installed(entry) == "not installed":
        with pytest.raises(reg.ModelNotInstalledError, match="generalist.*not installed"):
            reg.resolve_model("generalist")


def test_bundled_entry_with_a_good_hash_resolves_and_loads(tmp_path, monkeypatch, tiny):
    root = make_registry(tmp_path, monkeypatch, tiny, fake={
        "file": "fake/model.safetensors", "sha256": sha(tiny / "model.safetensors"), "channels": 1,
        "grain_diameter": 24.0, "description": "a test model"})
    assert reg.is_registry_name("fake") and not reg.is_registry_name("nothing") and not reg.is_registry_name(3)
    assert reg.resolve_model("fake") == (root / "fake").resolve()
    assert reg.resolve_model(tmp_path / "x") == tmp_path / "x"  # paths pass through
    model, meta = ck.load_checkpoint("fake")
    assert meta["note"] == "fake generalist" and not model.training
    assert ck.read_metadata("fake")["note"] == "fake generalist"
    assert ck.check_checkpoint("fake")["backbone"] == "resnet18"
    assert ck.is_checkpoint("fake")
    # an existing folder of the same name wins over the registry
    (tmp_path / "fake").mkdir()
    assert not reg.is_registry_name("fake")


def test_bundled_entry_with_a_bad_hash_is_one_clear_error(tmp_path, monkeypatch, tiny):
    make_registry(tmp_path, monkeypatch, tiny, fake={"file": "fake/model.safetensors", "sha256": "0" * 64})
    with pytest.raises(WeightsError, match=r"'fake'.*corrupt or not the registered file") as info:
        ck.load_checkpoint("fake")
    assert "\n" not in str(info.value)
    with pytest.raises(WeightsError):  # is_checkpoint reports the registry problem instead of answering False
        ck.is_checkpoint("fake")


def test_a_bundled_entry_without_weights_is_not_installed(tmp_path, monkeypatch, tiny):
    make_registry(tmp_path, monkeypatch, tiny, gone={"file": "gone/model.safetensors", "sha256": None})
    with pytest.raises(reg.ModelNotInstalledError, match="'gone' is not installed"):
        ck.read_metadata("gone")
    assert reg.installed(reg.list_models()[0]) == "not installed"


def test_url_entry_offline_fails_with_one_line_naming_the_url(tmp_path, monkeypatch, tiny):
    make_registry(tmp_path, monkeypatch, tiny, remote={"url": "https://example.org/m/remote.safetensors",
                                                       "sha256": sha(tiny / "model.safetensors")})

    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(reg.ModelNotInstalledError) as info:
        reg.resolve_model("remote")
    text = str(info.value)
    assert "https://example.org/m/remote.safetensors" in text and "no network" in text
    assert str(tmp_path / "cache" / "remote" / "model.safetensors") in text and "\n" not in text
    assert isinstance(info.value, GrainLabError)
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_url_entry_downloads_into_the_cache_with_a_hash_check(tmp_path, monkeypatch, tiny):
    make_registry(tmp_path, monkeypatch, tiny, remote={"url": "https://example.org/m/remote.safetensors",
                                                       "sha256": sha(tiny / "model.safetensors")})
    served = {"https://example.org/m/remote.safetensors": tiny / "model.safetensors",
              "https://example.org/m/remote.json": tiny / "model.json"}
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        return open(served[url], "rb")

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    folder = reg.resolve_model("remote")
    assert folder == tmp_path / "cache" / "remote" and len(calls) == 2
    assert reg.installed(reg.list_models()[0]) == "cached"
    assert ck.read_metadata("remote")["note"] == "fake generalist"
    assert len(calls) == 2  # cached: no second download
    # another cache folder from the argument, and a wrong download is refused and not kept
    other = tmp_path / "other"
    served["https://example.org/m/remote.safetensors"] = tiny / "model.json"
    with pytest.raises(WeightsError, match="corrupt or not the registered file"):
        reg.resolve_model("remote", cache_dir=other)
    assert not (other / "remote" / "model.safetensors").exists()


def test_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAINLAB_CACHE", str(tmp_path / "c"))
    assert reg.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GRAINLAB_CACHE")
    assert "napari-grainlab" in str(reg.cache_dir())
    assert reg.cache_dir(tmp_path / "d") == tmp_path / "d"


def test_an_unreadable_registry_is_a_weights_error(tmp_path, monkeypatch):
    bad = tmp_path / "registry.json"
    bad.write_text("{not json")
    monkeypatch.setenv("GRAINLAB_REGISTRY", str(bad))
    with pytest.raises(WeightsError, match="unreadable model registry"):
        reg.list_models()
    assert not reg.is_registry_name("generalist")
