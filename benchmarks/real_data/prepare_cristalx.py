"""Convert the CristalX sample micrograph (CsatiZoltan/CristalX, MIT licence) into a dataset folder.

    python benchmarks/real_data/prepare_cristalx.py --repo PATH/TO/CristalX --out ~/grainlab-realdata

``--repo`` is a clone or a bare mirror of https://github.com/CsatiZoltan/CristalX; nothing is fetched.
Writes ``OUT/cristalx_optical/images/cristalx_1.png`` (the cropped optical micrograph, RGB as stored),
``labels/cristalx_1.tif`` (uint16 grain instances, from ``scripts/data/1_labelimage.npy``, which
matches the crop ``1_cropped.png`` pixel for pixel) and ``SOURCE.md``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _source import Source

NAME = "cristalx_optical"

SOURCE_MD = """# cristalx_optical

- Repository: https://github.com/CsatiZoltan/CristalX (commit {commit})
- Files: `scripts/data/1_cropped.png` (image), `scripts/data/1_labelimage.npy` (labels)
- Licence: MIT (the repository's LICENSE, Copyright (c) 2020 Zoltán Csáti); evaluation and training allowed,
  keep the copyright notice.
- Citation: Csati, Z.; Witz, J.-F.; Magnier, V.; Bartali, A. E.; Limodin, N.; Najjar, D. CristalX: Facilitating
  simulations for experimentally obtained grain-based microstructures. SoftwareX 14 (2021) 100669.
- What it is: an optical (reflected light) micrograph of an etched coarse-grained cast alloy from the
  authors' experiments; grains differ by grey/blue-grey reflectance, with no dark boundary lines, plus
  polishing scratches. RGB as stored (nearly grey: mean |R-G| = 15 / 255). {shape}
- Labels: the label image the CristalX example workflow ships for this crop (its semi-automatic
  segmentation, covering the whole field, including the unetched margin as regions); it is the
  authors' reference, NOT an independent expert tracing. Written as uint16 instances, 0 = none.
- Conversion: none besides file format (PNG image copied, npy labels -> uint16 TIFF, relabelled 1..n).
- Pixel size: unknown (ASTM dG is independent of it, see docs/real_data.md).
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="clone or bare mirror of CsatiZoltan/CristalX")
    ap.add_argument("--out", required=True, help="the real-data root folder (e.g. ~/grainlab-realdata)")
    a = ap.parse_args(argv)
    src = Source(a.repo)
    image = iio.imread(io.BytesIO(src.read("scripts/data/1_cropped.png")))
    labels = np.load(io.BytesIO(src.read("scripts/data/1_labelimage.npy")))
    if image.shape[:2] != labels.shape:
        raise SystemExit(f"image {image.shape} and labels {labels.shape} differ")
    _, inverse = np.unique(labels, return_inverse=True)
    labels = (inverse.reshape(labels.shape) + 1).astype(np.uint16)
    root = Path(a.out) / NAME
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    iio.imwrite(root / "images" / "cristalx_1.png", image[..., :3])
    tifffile.imwrite(root / "labels" / "cristalx_1.tif", labels, compression="zlib")
    shape = f"Size {image.shape[1]} x {image.shape[0]} px, {int(labels.max())} grains."
    (root / "SOURCE.md").write_text(SOURCE_MD.format(commit=src.commit(), shape=shape), encoding="utf-8")
    print(f"{root}: 1 image, {int(labels.max())} grains")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
