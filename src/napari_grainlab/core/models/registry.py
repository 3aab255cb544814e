"""The built-in models: a registry name (``generalist``) is accepted wherever a model folder is.

The registry is one JSON file, ``napari_grainlab/models/registry.json`` (``"models": {name: entry}``), so
adding a model is one entry. An entry names its weights either as a ``file`` inside that package folder
(shipped in the wheel, next to its ``model.json``) or as a ``url`` (downloaded once into the cache
folder, with its ``model.json`` from ``url`` with the suffix ``.json``), plus ``sha256`` of the weights,
``channels``, the training scale ``grain_diameter`` (px), ``description``, ``recipe`` and ``licence``.

:func:`resolve_model` turns a name into a checkpoint folder (``model.safetensors`` + ``model.json``) and
passes paths through. Bundled weights are checked against their sha256 once per file version (the
result is remembered in memory); downloads are checked before they are moved into place (atomic), so
the cache never holds a partial or wrong file. Offline, a download fails with one line that names the
URL and where to put the file by hand.

The cache folder is ``$GRAINLAB_CACHE`` when set, else the platform's user cache folder
(``platformdirs.user_cache_dir("napari-grainlab")``). ``GRAINLAB_REGISTRY`` names another registry file
(tests, site-wide model collections).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import WeightsError

__all__ = ["ModelEntry", "ModelNotInstalledError", "cache_dir", "installed", "is_registry_name", "list_models",
           "registry_file", "resolve_model"]

REGISTRY_FORMAT = "napari-grainlab-registry"
_PACKAGE_DIR = Path(__file__).resolve().parents[2] / "models"
_verified: dict[tuple[str, int, int], str] = {}


class ModelNotInstalledError(WeightsError):
    """A registry model whose weights are not in the package or the cache and cannot be fetched."""


@dataclass(frozen=True)
class ModelEntry:
    """One built-in model."""

    name: str
    file: str | None = None
    url: str | None = None
    sha256: str | None = None
    channels: int = 1
    grain_diameter: float | None = None
    description: str = ""
    recipe: str | None = None
    licence: str | None = None
    size: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def registry_file() -> Path:
    """The registry in use: ``$GRAINLAB_REGISTRY`` or the package's ``models/registry.json``."""
    env = os.environ.get("GRAINLAB_REGISTRY")
    return Path(env).expanduser() if env else _PACKAGE_DIR / "registry.json"


def cache_dir(cache: str | Path | None = None) -> Path:
    """Where downloaded models go: ``cache``, ``$GRAINLAB_CACHE``, or the platform's user cache folder."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get("GRAINLAB_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-grainlab")) / "models"


def _load() -> tuple[Path, dict[str, ModelEntry]]:
    path = registry_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return path, {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: unreadable model registry ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT or not isinstance(data.get("models"),
                                                                                             dict):
        raise WeightsError(f"{path}: not a napari-grainlab model registry")
    known = set(ModelEntry.__dataclass_fields__) - {"name"}
    out = {}
    for name, raw in data["models"].items():
        if not isinstance(raw, dict) or not (raw.get("file") or raw.get("url")):
            raise WeightsError(f"{path}: model {name!r} names neither a file nor a url")
        out[name] = ModelEntry(name=name, **{k: v for k, v in raw.items() if k in known})
    return path, out


def list_models() -> list[ModelEntry]:
    """The registry's models, in file order."""
    return list(_load()[1].values())


def is_registry_name(s) -> bool:
    """Whether ``s`` is the name of a registry model (a plain string; an existing path of that name wins)."""
    if not isinstance(s, str) or not s or os.sep in s or "/" in s:
        return False
    if Path(s).exists():
        return False
    try:
        return s in _load()[1]
    except WeightsError:
        return False


def _entry(name: str) -> tuple[Path, ModelEntry]:
    path, models = _load()
    if name not in models:
        raise WeightsError(f"unknown model {name!r}; built-in models: {', '.join(models) or 'none'}")
    return path, models[name]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_hash(entry: ModelEntry, weights: Path) -> None:
    if not entry.sha256:
        raise ModelNotInstalledError(f"model {entry.name!r}: the registry records no sha256 for {weights.name}; "
                                     "the model is not installed")
    st = weights.stat()
    key = (str(weights), st.st_size, st.st_mtime_ns)
    if _verified.get(key) == entry.sha256:
        return
    digest = _sha256(weights)
    if digest != entry.sha256.lower():
        raise WeightsError(f"model {entry.name!r}: {weights} is corrupt or not the registered file (sha256 "
                           f"{digest[:12]}..., expected {entry.sha256[:12]}...); reinstall napari-grainlab or "
                           "delete the file to download it again")
    _verified[key] = entry.sha256


def _bundled(registry: Path, entry: ModelEntry) -> Path:
    weights = (registry.parent / entry.file).resolve()
    if not weights.is_file() or not weights.with_name("model.json").is_file():
        raise ModelNotInstalledError(f"model {entry.name!r} is not installed: {weights} (and its model.json) "
                                     "missing from the package")
    _check_hash(entry, weights)
    return weights.parent


def _download(url: str, target: Path) -> None:
    """``url`` to ``target`` through a temporary file in the same folder (atomic; nothing left on failure)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
            shutil.copyfileobj(resp, out, 1 << 20)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cached(entry: ModelEntry, cache: str | Path | None) -> Path:
    folder = cache_dir(cache) / entry.name
    weights, meta = folder / "model.safetensors", folder / "model.json"
    url = str(entry.url)
    meta_url = url.rsplit(".", 1)[0] + ".json" if url.endswith(".safetensors") else url + ".json"
    for link, dest in ((url, weights), (meta_url, meta)):
        if dest.is_file():
            continue
        try:
            _download(link, dest)
        except OSError as exc:  # URLError, timeouts, refused connections, a full disk
            reason = getattr(exc, "reason", None) or exc
            raise ModelNotInstalledError(
                f"model {entry.name!r}: cannot download {link} ({reason}); on a connected machine fetch it and "
                f"place it as {dest}") from None
        if dest is weights:
            try:
                _check_hash(entry, weights)
            except WeightsError:
                weights.unlink(missing_ok=True)
                raise
    _check_hash(entry, weights)
    return folder


def resolve_model(name_or_path: str | os.PathLike, cache_dir: str | Path | None = None) -> Path:
    """The checkpoint folder of registry model ``name_or_path``; any other value comes back as a ``Path``.

    Raises :class:`ModelNotInstalledError` (one line) when the weights are neither bundled nor cached and
    cannot be downloaded, and :class:`WeightsError` when a file does not match its sha256.
    """
    if not is_registry_name(name_or_path):
        return Path(name_or_path).expanduser()
    registry, entry = _entry(str(name_or_path))
    if entry.file:
        return _bundled(registry, entry)
    return _cached(entry, cache_dir)


def installed(entry: ModelEntry, cache: str | Path | None = None) -> str:
    """Where ``entry``'s weights are: ``"bundled"``, ``"cached"`` or ``"not installed"`` (no hash check)."""
    if entry.file:
        weights = registry_file().parent / entry.file
        return "bundled" if weights.is_file() and entry.sha256 else "not installed"
    folder = cache_dir(cache) / entry.name
    return "cached" if (folder / "model.safetensors").is_file() and (folder / "model.json").is_file() \
        else "not installed"
