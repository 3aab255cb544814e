"""Render the gallery of synthetic micrographs shown in the README and docs.

    python docs/scripts/gallery.py [--out docs/images]

Writes ``gallery.jpg`` (micrographs) and ``gallery_labels.jpg`` (the same with their grain
labels and boundaries overlaid), one column per look.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from skimage.color import label2rgb
from web_image import save_web_image

from napari_grainlab.core.synthetic import SynthParams, generate


def looks(size: int) -> list[tuple[str, SynthParams]]:
    out = []

    def make(title, style="sem", **tess):
        p = SynthParams(height=size, width=size, style=style)
        for k, v in tess.items():
            setattr(p.tessellation, k, v)
        return title, p

    out.append(make("SEM, equiaxed (Laguerre, sigma 0.35)", grains=140))
    t, p = make("SEM, bright edges, annealing twins", grains=90, twin_fraction=0.5, hard_core=0.4)
    p.sem.edge_mode = "bright"
    out.append((t, p))
    t, p = make("SEM, elongated 3:1 at 20 deg", grains=160, aspect_ratio=3.0, orientation=20.0,
                orientation_spread=8.0)
    p.sem.edge_mode = "groove"
    out.append((t, p))
    t, p = make("SEM, second phase + pores, low dose", grains=120, particle_fraction=0.04, porosity=0.02)
    p.sem.dose = 15.0
    out.append((t, p))
    out.append(make("Optical, etched (Voronoi)", style="optical", method="voronoi", grains=110))
    t, p = make("Optical, faint boundaries, twins", style="optical", grains=90, twin_fraction=0.4)
    p.optical.faint_fraction = 0.45
    p.optical.missing_fraction = 0.1
    out.append((t, p))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "images"))
    ap.add_argument("--size", type=int, default=512)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    items = looks(a.size)
    samples = [(t, generate(p, seed=i + 1)) for i, (t, p) in enumerate(items)]
    for name, overlay in (("gallery.jpg", False), ("gallery_labels.jpg", True)):
        fig, axes = plt.subplots(2, 3, figsize=(15, 10.4), dpi=100)
        for ax, (title, s) in zip(axes.ravel(), samples):
            img = s.image_float()
            if overlay:
                rgb = label2rgb(s.labels, image=img, alpha=0.35, bg_label=0, bg_color=(0, 0, 0))
                rgb[s.boundaries] = (1.0, 1.0, 0.2)
                ax.imshow(rgb)
            else:
                ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=11)
            ax.set_axis_off()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        print(f"wrote {save_web_image(io.BytesIO(buf.getvalue()), out / name, max_width=1200)}")


if __name__ == "__main__":
    main()
