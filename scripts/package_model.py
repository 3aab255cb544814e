"""Put a trained checkpoint into the package as a built-in model and record it in the registry.

    python scripts/package_model.py RUN_OR_CHECKPOINT NAME [--description TEXT]

Copies ``model.safetensors`` and ``model.json`` (a run folder's ``best/``) to
``src/napari_grainlab/models/NAME/``, replaces the machine-specific output folder in the recorded
training configuration by ``models/NAME``, and writes the entry's ``sha256``, ``channels``,
``grain_diameter`` and ``size`` into ``src/napari_grainlab/models/registry.json``. The weights are
loaded once to check that they fit the network that ``model.json`` describes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "src" / "napari_grainlab" / "models"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a run folder (its best/ is used) or a checkpoint folder")
    parser.add_argument("name", help="registry name, e.g. generalist")
    parser.add_argument("--description", help="the entry's description (default: keep the current one)")
    args = parser.parse_args(argv)

    from napari_grainlab.core.models.checkpoint import checkpoint_files, load_checkpoint

    weights, meta_file = checkpoint_files(Path(args.checkpoint))
    load_checkpoint(weights.parent)  # fails with a one-line error when the weights do not fit
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if isinstance(meta.get("training"), dict):
        meta["training"]["out"] = f"models/{args.name}"
    target = MODELS / args.name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, target / "model.safetensors")
    (target / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    digest = hashlib.sha256((target / "model.safetensors").read_bytes()).hexdigest()
    registry_path = MODELS / "registry.json"
    registry = json.loads(registry_path.read_text(encoding="utf-8"))
    entry = registry["models"].setdefault(args.name, {})
    entry.update({"file": f"{args.name}/model.safetensors", "sha256": digest,
                  "channels": int(meta["spec"].get("in_chans", 1)), "grain_diameter": meta.get("grain_diameter"),
                  "size": (target / "model.safetensors").stat().st_size})
    if args.description:
        entry["description"] = args.description
    registry_path.write_text(json.dumps(registry, indent=2) + "\n", encoding="utf-8")
    print(f"{args.name}: {entry['size'] / 1e6:.1f} MB, sha256 {digest}, {entry['channels']} channels, "
          f"trained at {entry['grain_diameter']} px grains")
    return 0


if __name__ == "__main__":
    sys.exit(main())
