"""Small gallery pictures of the grain-growth tessellation and the colour / SEM looks.

    OMP_NUM_THREADS=1 python docs/scripts/gallery_looks.py   (writes docs/images/look_*.jpg)
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from napari_grainlab.core.synthetic import SynthParams, generate
from napari_grainlab.core.synthetic.tessellation import boundary_mask

OUT = Path(__file__).resolve().parents[1] / "images"
LOOKS = ("tint", "polarized", "ebsd", "bse", "film", "sem-halo")


def main() -> None:
    for name in LOOKS:
        p = SynthParams.preset(name, height=224, width=224)
        p.tessellation.method = "growth"
        p.tessellation.grains = 45
        img = generate(p, 11).image
        iio.imwrite(OUT / f"look_{name}.jpg", img, quality=88)
    # the grain-growth model next to a Voronoi tessellation of the same density (boundaries only)
    tiles = []
    for method in ("voronoi", "growth"):
        p = SynthParams(height=224, width=224)
        p.tessellation.method = method
        p.tessellation.grains = 45
        p.tessellation.curvature = 0.0
        lab = generate(p, 11).labels
        tiles.append(np.where(boundary_mask(lab, 2), 30, 235).astype(np.uint8))
    gap = np.full((224, 8), 255, np.uint8)
    iio.imwrite(OUT / "look_growth.jpg", np.concatenate([tiles[0], gap, tiles[1]], axis=1), quality=88)


if __name__ == "__main__":
    main()
