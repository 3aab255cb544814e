"""Grain geometry: Voronoi and Laguerre (power-diagram) tessellations, and grain growth (see
:mod:`.growth`).

Seeds are placed in a domain larger than the image (so grains are cut by the image edge the
way a micrograph crops a specimen) or on a torus (``periodic``).  Laguerre cells get a
lognormal distribution of equivalent diameters: disks with lognormal radii are packed by
random sequential addition, the squared radii become the power weights, and the weights are
then fitted on a coarse grid until each cell has its target area.  Elongation uses an
area-preserving anisotropic metric per grain (mean direction + spread).  Second-phase
particles and pores are stamped on top, twin bands are drawn inside grains, and a final
pass guarantees every grain is one 4-connected piece.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..errors import ParameterError
from ._kernels import count_labels, fill_from_neighbours, pixels_where, remap, shift_rows, stray_pixels
from .params import SynthParams
from .power import metric_matrices, power_labels

__all__ = ["Microstructure", "tessellate", "boundary_mask", "interfaces"]

PHASE_MATRIX = 1
PHASE_PARTICLE = 2


@dataclass
class Microstructure:
    """Instance labels plus the per-grain attributes the renderer needs.

    ``labels``: uint32, 1..n grains, 0 = pore.  Per-label arrays are indexed by label
    (index 0 belongs to pores / background).
    """

    labels: np.ndarray
    phase: np.ndarray  # uint8 per label: 0 pore, 1 matrix, 2 second-phase particle
    crystal: np.ndarray  # float per label in [0, 1): crystallographic orientation for channelling
    elongation: np.ndarray  # float per label: elongation direction of the cell (degrees)
    center: np.ndarray  # (n+1, 2) float: seed position (y, x) in pixels, for intragrain ramps
    twins: np.ndarray | None  # uint8 H x W: 0 none, k = k-th twin band of its grain
    twinned: np.ndarray  # bool per label
    periodic: bool = False
    mean_diameter: float = 0.0
    extras: dict = field(default_factory=dict)

    @property
    def n_grains(self) -> int:
        return int(len(self.phase) - 1)

    def boundaries(self, width: int = 2) -> np.ndarray:
        return boundary_mask(self.labels, width, periodic=self.periodic)

    def scanned(self, shifts: np.ndarray) -> Microstructure:
        """The structure as seen through a scan whose row ``y`` is shifted by ``shifts[y]``
        px (what the SEM renderer's jitter and drift do to the image), so that the labels
        stay on top of the grains they label.  Pieces cut off by the shift are merged into
        their neighbours and labels left without pixels are dropped."""
        shifts = np.asarray(shifts, dtype=np.float64)
        labels = shift_rows(self.labels, shifts, self.periodic)
        twins = None if self.twins is None else shift_rows(self.twins, shifts, self.periodic)
        labels, phase, (crystal, elong, center, twinned), twins = _make_connected(
            labels, self.phase, [self.crystal, self.elongation, self.center, self.twinned], self.periodic,
            _sliver_area(self.mean_diameter), twins)
        return dataclasses.replace(self, labels=labels, phase=phase, crystal=crystal, elongation=elong, center=center,
                                   twinned=twinned, twins=twins)


# --------------------------------------------------------------------------- helpers
def interfaces(labels: np.ndarray, periodic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Masks of label changes between vertical (``dy``, shape H-1 x W or H x W when
    periodic) and horizontal (``dx``) neighbours."""
    if periodic:
        dy = labels != np.roll(labels, -1, axis=0)
        dx = labels != np.roll(labels, -1, axis=1)
    else:
        dy = labels[1:, :] != labels[:-1, :]
        dx = labels[:, 1:] != labels[:, :-1]
    return dy, dx


def boundary_mask(labels: np.ndarray, width: int = 2, periodic: bool = False) -> np.ndarray:
    """Pixels within ``width / 2`` of a label change (grain-grain, grain-pore).

    Width 1 marks one side of each interface, width 2 both sides, larger widths grow the
    band symmetrically.
    """
    width = int(width)
    if width < 1:
        raise ParameterError(f"boundary width must be >= 1, got {width}")
    h, w = labels.shape
    dy, dx = interfaces(labels, periodic)
    one = np.zeros((h, w), dtype=bool)
    if periodic:
        one |= dy
        one |= dx
    else:
        one[:-1, :] |= dy
        one[:, :-1] |= dx
    if width % 2 == 1:
        band = one
        grow = (width - 1) // 2
    else:
        band = one.copy()
        if periodic:
            band |= np.roll(dy, 1, axis=0)
            band |= np.roll(dx, 1, axis=1)
        else:
            band[1:, :] |= dy
            band[:, 1:] |= dx
        grow = (width - 2) // 2
    if grow > 0:
        mode = "wrap" if periodic else "constant"
        # a disk-like structuring element keeps the band width isotropic
        r = grow
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        se = (yy * yy + xx * xx) <= r * r + r
        band = ndi.binary_dilation(band, structure=se) if not periodic else _wrap_dilate(band, se)
        del mode
    return band


def _sliver_area(d_mean: float) -> float:
    """Matrix cells smaller than this (px) are rasterisation slivers, not grains."""
    return max(4.0, 0.01 * math.pi / 4.0 * d_mean**2)


def _wrap_dilate(mask: np.ndarray, se: np.ndarray) -> np.ndarray:
    r = se.shape[0] // 2
    padded = np.pad(mask, r, mode="wrap")
    return ndi.binary_dilation(padded, structure=se)[r:-r, r:-r]


def _wrap_delta(d: np.ndarray, period: float) -> np.ndarray:
    return d - period * np.round(d / period)


# --------------------------------------------------------------------- seed placement
def _rsa(rng: np.random.Generator, radii: np.ndarray, box: tuple[float, float, float, float],
         metric: np.ndarray, periodic_shape: tuple[float, float] | None, tries: int = 60) -> np.ndarray:
    """Random sequential addition of disks (radii in metric space, in the given order) in
    ``box`` = (y0, x0, y1, x1); see :func:`._kernels.rsa`."""
    from ._kernels import rsa

    y0, x0, y1, x1 = box
    return rsa(np.asarray(radii, dtype=np.float64), float(y0), float(x0), float(y1), float(x1),
               np.ascontiguousarray(metric, dtype=np.float64), periodic_shape is not None, int(tries),
               int(rng.integers(0, 2**31 - 1)))


def _ghosts(seeds: np.ndarray, shape: tuple[float, float], reach: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Periodic images of the seeds ((2 reach + 1)^2 copies) and the index of their original."""
    h, w = shape
    r = range(-reach, reach + 1)
    shifts = np.array([(dy * h, dx * w) for dy in r for dx in r], dtype=np.float64)
    allp = (seeds[None, :, :] + shifts[:, None, :]).reshape(-1, 2)
    orig = np.tile(np.arange(len(seeds)), len(shifts))
    return allp, orig


def _ghost_reach(d_mean: float, aspect: float, sigma: float, shape: tuple[int, int]) -> int:
    """How many periods of seed copies a periodic tessellation needs around the image: long
    (elongated, large) grains can reach past the neighbouring copies."""
    longest = 3.0 * d_mean * math.sqrt(aspect) * math.exp(2.0 * sigma)
    return max(1, int(math.ceil(longest / min(shape))))


def _cells(shape, seeds, weights, metrics, origin, step, periodic_shape, warp=None, reach=1):
    if periodic_shape is not None:
        gp, orig = _ghosts(seeds, periodic_shape, reach)
        k = (2 * reach + 1) ** 2
        idx = power_labels(shape, gp, np.tile(weights, k), np.tile(metrics, (k, 1, 1)), origin, step, warp=warp)
        return orig[idx].astype(np.int32)
    return power_labels(shape, seeds, weights, metrics, origin, step, warp=warp)


def _boundary_warp(rng: np.random.Generator, shape: tuple[int, int], d_mean: float, curvature: float,
                   periodic: bool):
    """Smooth random displacement field (correlation length ~ half a grain) that bends the
    straight edges of the cells into curved boundaries; periodic when the image is."""
    h, w = shape
    target = max(4.0, d_mean / 2.5)
    ny, nx = max(2, int(round(h / target))), max(2, int(round(w / target)))
    gy, gx = h / ny, w / nx
    amp = curvature * 0.12 * d_mean
    fields = []
    for _ in range(2):
        f = ndi.gaussian_filter(rng.standard_normal((ny, nx)), 1.0, mode="wrap")
        f /= max(f.std(), 1e-12)
        f = amp * 1.5 * np.tanh(f / 1.5)  # soft-clipped: no rare huge displacements
        # one extra row / column so the last pixels interpolate towards the wrapped first ones
        fields.append(np.pad(f, ((0, 2), (0, 2)), mode="wrap"))
    return fields[0], fields[1], gy, gx


# ---------------------------------------------------------------------- main entry
def tessellate(params: SynthParams, rng: np.random.Generator) -> Microstructure:
    """Generate the grain structure described by ``params.tessellation``."""
    t = params.tessellation
    if t.method == "growth":
        return _tessellate_growth(params, rng)
    h, w = params.shape
    periodic = bool(t.periodic)
    n_req = params.n_grains()
    d_mean = params.mean_diameter()
    aspect = float(t.aspect_ratio)
    theta0 = math.radians(t.orientation)
    # mean caliper diameter of an elongated grain (for edge effects and margins)
    caliper = d_mean * (math.sqrt(aspect) + 1.0 / math.sqrt(aspect)) / 2.0

    reach = 1
    if periodic:
        box = (0.0, 0.0, float(h), float(w))
        n_seeds = n_req
        pshape = (float(h), float(w))
        reach = _ghost_reach(d_mean, aspect, t.size_sigma, (h, w))
    else:
        m = 1.5 * caliper + 2.0
        box = (-m, -m, h + m, w + m)
        mean_area = h * w * (1.0 - t.porosity) / max(n_req, 1)
        # expected number of cells that reach into the image: rho * (A + per * b / 2 + a)
        rho = n_req / (h * w + (h + w) * caliper + mean_area)
        n_seeds = max(n_req, int(round(rho * (h + 2 * m) * (w + 2 * m))))
        pshape = None
    area_dom = (box[2] - box[0]) * (box[3] - box[1])

    # per-grain elongation directions and metrics
    angles = theta0 + np.radians(t.orientation_spread) * rng.standard_normal(n_seeds)
    metrics = metric_matrices(angles, aspect)
    gmetric = metric_matrices(np.array([theta0]), aspect)[0]

    # target sizes and exclusion radii
    laguerre = t.method == "laguerre"
    if laguerre:
        diam = np.exp(t.size_sigma * rng.standard_normal(n_seeds))
        target = math.pi / 4.0 * diam**2
        target *= area_dom * (1.0 - t.porosity) / target.sum()
        diam = np.sqrt(4.0 * target / math.pi)
        kappa = 0.55 + 0.3 * t.hard_core
        radii = kappa * diam / 2.0
        order = np.argsort(-radii)  # large disks first pack best
    else:
        target = None
        spacing = math.sqrt(area_dom / n_seeds)
        radii = np.full(n_seeds, 0.5 * t.hard_core * spacing)
        order = np.arange(n_seeds)

    if np.any(radii > 0):
        pts_sorted = _rsa(rng, radii[order], box, gmetric, pshape)
        seeds = np.empty_like(pts_sorted)
        seeds[order] = pts_sorted
    else:
        seeds = np.column_stack([rng.uniform(box[0], box[2], n_seeds), rng.uniform(box[1], box[3], n_seeds)])
    weights = (radii**2) if laguerre else np.zeros(n_seeds)

    # fit weights (laguerre) and / or relax seeds (lloyd) on a coarse grid of the domain
    n_fit = (8 if laguerre else 0)
    n_iter = max(n_fit, int(t.lloyd_steps))
    if n_iter:
        step = max(1.0, d_mean / 14.0)
        gh = int(math.ceil((box[2] - box[0]) / step))
        gw = int(math.ceil((box[3] - box[1]) / step))
        origin = (box[0] + step / 2.0, box[1] + step / 2.0)
        yy = origin[0] + step * np.arange(gh)
        xx = origin[1] + step * np.arange(gw)
        for it in range(n_iter):
            idx = _cells((gh, gw), seeds, weights, metrics, origin, step, pshape, reach=reach)
            flat = idx.ravel()
            counts = np.bincount(flat, minlength=n_seeds).astype(np.float64)
            areas = counts * step * step
            # cells cut by the fitting-domain border have truncated areas: leave them be
            if pshape is None:
                edge = np.zeros(n_seeds, dtype=bool)
                edge[np.unique(np.concatenate([idx[0], idx[-1], idx[:, 0], idx[:, -1]]))] = True
            else:
                edge = np.zeros(n_seeds, dtype=bool)
            if laguerre and it < n_fit:
                err = target - areas
                upd = ~edge
                weights[upd] += 0.9 * err[upd] / math.pi
            if it < t.lloyd_steps:
                ys = np.broadcast_to(yy[:, None], idx.shape).ravel()
                xs = np.broadcast_to(xx[None, :], idx.shape).ravel()
                if pshape is not None:
                    dyv = _wrap_delta(ys - seeds[flat, 0], pshape[0])
                    dxv = _wrap_delta(xs - seeds[flat, 1], pshape[1])
                else:
                    dyv = ys - seeds[flat, 0]
                    dxv = xs - seeds[flat, 1]
                safe = np.maximum(counts, 1.0)
                my = np.bincount(flat, dyv, minlength=n_seeds) / safe
                mx = np.bincount(flat, dxv, minlength=n_seeds) / safe
                move = (counts > 0) & ~edge
                seeds[move, 0] += my[move]
                seeds[move, 1] += mx[move]
                if pshape is not None:
                    seeds[:, 0] %= pshape[0]
                    seeds[:, 1] %= pshape[1]

    # full-resolution cells, with curved boundaries
    warp = _boundary_warp(rng, (h, w), d_mean, t.curvature, periodic) if t.curvature > 0 else None
    idx = _cells((h, w), seeds, weights, metrics, (0.0, 0.0), 1.0, pshape, warp, reach)
    present = count_labels(idx, n_seeds - 1) > 0
    # random label order (seed order correlates with size after RSA)
    perm = rng.permutation(n_seeds)
    rank = np.zeros(n_seeds, dtype=np.uint32)
    keep = perm[present[perm]]
    rank[keep] = np.arange(1, len(keep) + 1)
    labels = remap(idx, rank)
    n = len(keep)
    seed_of = np.concatenate([[-1], keep])

    phase = np.full(n + 1, PHASE_MATRIX, dtype=np.uint8)
    phase[0] = 0
    center = np.zeros((n + 1, 2))
    center[1:] = seeds[keep]
    elong = np.zeros(n + 1)
    elong[1:] = np.degrees(angles[keep])

    # second-phase particles and pores
    if t.particle_fraction > 0:
        labels, phase, center, elong = _stamp_particles(rng, labels, phase, center, elong, t.particle_fraction,
                                                        t.particle_size * d_mean, periodic)
    if t.porosity > 0:
        _stamp_pores(rng, labels, t.porosity, t.pore_size * d_mean, periodic)

    min_area = _sliver_area(d_mean)
    labels, phase, (center, elong), _ = _make_connected(labels, phase, [center, elong], periodic, min_area)
    n = len(phase) - 1
    crystal = rng.random(n + 1)
    twins, twinned = (None, np.zeros(n + 1, dtype=bool))
    if t.twin_fraction > 0:
        twins, twinned = _draw_twins(rng, labels, phase, t.twin_fraction, t.twin_width)
    return Microstructure(labels=labels, phase=phase, crystal=crystal, elongation=elong, center=center,
                          twins=twins, twinned=twinned, periodic=periodic, mean_diameter=d_mean,
                          extras={"n_seeds": int(n_seeds), "seed_of_label": seed_of})


def _tessellate_growth(params: SynthParams, rng: np.random.Generator) -> Microstructure:
    """Grain growth (Monte-Carlo Potts coarsening of a fine Voronoi); elongation, curvature,
    hard-core, Lloyd and the lognormal size options do not apply; particles, pores and twins do."""
    from .growth import grow_labels

    t = params.tessellation
    h, w = params.shape
    periodic = bool(t.periodic)
    d_mean = params.mean_diameter()
    idx, orient, info = grow_labels(rng, (h, w), params.n_grains(), d_mean, coarsening=t.growth_coarsening,
                                    temperature=t.growth_temperature, anisotropy=t.growth_anisotropy,
                                    resolution=t.growth_resolution, periodic=periodic)
    n = len(orient)
    labels = (idx + 1).astype(np.uint32)
    phase = np.full(n + 1, PHASE_MATRIX, dtype=np.uint8)
    phase[0] = 0
    crystal = np.concatenate([[0.0], orient])
    center = _centroids(labels, n, periodic)
    elong = np.zeros(n + 1)
    if t.particle_fraction > 0:
        labels, phase, center, elong = _stamp_particles(rng, labels, phase, center, elong, t.particle_fraction,
                                                        t.particle_size * d_mean, periodic)
        crystal = np.concatenate([crystal, rng.random(len(phase) - len(crystal))])
    if t.porosity > 0:
        _stamp_pores(rng, labels, t.porosity, t.pore_size * d_mean, periodic)
    labels, phase, (center, elong, crystal), _ = _make_connected(labels, phase, [center, elong, crystal], periodic,
                                                                 _sliver_area(d_mean))
    n = len(phase) - 1
    twins, twinned = (None, np.zeros(n + 1, dtype=bool))
    if t.twin_fraction > 0:
        twins, twinned = _draw_twins(rng, labels, phase, t.twin_fraction, t.twin_width)
    info["method"] = "growth"
    return Microstructure(labels=labels, phase=phase, crystal=crystal, elongation=elong, center=center,
                          twins=twins, twinned=twinned, periodic=periodic, mean_diameter=d_mean, extras=info)


def _centroids(labels: np.ndarray, n: int, periodic: bool) -> np.ndarray:
    """(n + 1, 2) centroid (y, x) of every label (circular means on a torus)."""
    h, w = labels.shape
    flat = labels.ravel()
    yy, xx = np.divmod(np.arange(flat.size), w)
    counts = np.maximum(np.bincount(flat, minlength=n + 1), 1).astype(np.float64)
    out = np.zeros((n + 1, 2))
    for k, (coord, period) in enumerate(((yy, h), (xx, w))):
        if periodic:
            ang = 2 * math.pi * coord / period
            c = np.bincount(flat, np.cos(ang), minlength=n + 1)
            s = np.bincount(flat, np.sin(ang), minlength=n + 1)
            out[:, k] = (np.arctan2(s, c) % (2 * math.pi)) * period / (2 * math.pi)
        else:
            out[:, k] = np.bincount(flat, coord.astype(np.float64), minlength=n + 1) / counts
    return out


# ------------------------------------------------------------------- decorations
def _ellipse_stamp(rng, labels, cy, cx, diameter, value, aspect_sigma=0.25, only=None, periodic=False):
    """Paint a randomly oriented ellipse of equivalent ``diameter``; returns painted pixel count."""
    from skimage.draw import ellipse

    h, w = labels.shape
    ar = math.exp(abs(aspect_sigma * rng.standard_normal()))
    ry = max(0.75, diameter / 2.0 * math.sqrt(ar))
    rx = max(0.75, diameter / 2.0 / math.sqrt(ar))
    rr, cc = ellipse(cy, cx, ry, rx, shape=None if periodic else (h, w), rotation=rng.uniform(0, math.pi))
    if periodic:
        rr %= h
        cc %= w
    if only is not None:
        sel = only[rr, cc]
        rr, cc = rr[sel], cc[sel]
    labels[rr, cc] = value
    return len(rr)


def _stamp_particles(rng, labels, phase, center, elong, fraction, size, periodic):
    h, w = labels.shape
    goal = fraction * h * w
    bmask = boundary_mask(labels, 1, periodic)
    by, bx = np.nonzero(bmask)
    first_id = len(phase)
    painted = 0.0
    new_ids = []
    next_id = first_id
    guard = 0
    while guard < 100000:
        if painted >= goal:
            # overlapping stamps paint some pixels twice: check the real particle area
            painted = float(np.count_nonzero(labels >= first_id))
            if painted >= goal:
                break
        guard += 1
        if len(by) and rng.random() < 0.7:  # particles decorate grain boundaries
            k = rng.integers(len(by))
            cy, cx = float(by[k]), float(bx[k])
        else:
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        d = size * math.exp(0.3 * rng.standard_normal())
        painted += _ellipse_stamp(rng, labels, cy, cx, d, next_id, periodic=periodic)
        new_ids.append((cy, cx))
        next_id += 1
    k = len(new_ids)
    phase = np.concatenate([phase, np.full(k, PHASE_PARTICLE, dtype=np.uint8)])
    center = np.concatenate([center, np.array(new_ids).reshape(-1, 2)])
    elong = np.concatenate([elong, rng.uniform(-90, 90, k)])
    return labels, phase, center, elong


def _stamp_pores(rng, labels, fraction, size, periodic):
    h, w = labels.shape
    goal = fraction * h * w
    estimate = float(np.count_nonzero(labels == 0))
    for _ in range(1, 100001):
        if estimate >= goal:
            estimate = float(np.count_nonzero(labels == 0))  # overlaps: check the real area
            if estimate >= goal:
                break
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        d = size * math.exp(0.4 * rng.standard_normal())
        estimate += _ellipse_stamp(rng, labels, cy, cx, d, 0, aspect_sigma=0.4, periodic=periodic)
        # irregular outline: up to two satellite lobes
        for _ in range(int(rng.integers(0, 3))):
            ang = rng.uniform(0, 2 * math.pi)
            estimate += _ellipse_stamp(rng, labels, cy + 0.4 * d * math.sin(ang), cx + 0.4 * d * math.cos(ang),
                                       0.6 * d, 0, aspect_sigma=0.4, periodic=periodic)


def _make_connected(labels, phase, per_label, periodic, min_area=0.0, twins=None):
    """Keep the largest 4-connected piece of every label; give the other pieces, and matrix
    grains smaller than ``min_area`` px (rasterisation slivers), to the neighbouring grains
    around them; drop labels left without pixels and relabel 1..n.

    ``per_label`` arrays (indexed by label, like ``phase``) are compacted alongside; twin
    bands on reassigned pixels are cleared.  Returns ``labels, phase, per_label, twins``.
    """
    n = len(phase) - 1
    labels = np.ascontiguousarray(labels, dtype=np.uint32)
    moved = []
    hy, hx = stray_pixels(labels, n, periodic)
    if len(hy):
        labels = _fill_from_neighbours(labels, hy, hx, periodic)
        moved.append((hy, hx))
    area = count_labels(labels, n)
    # rasterisation slivers are tiny matrix cells; small particles are meant to be small
    tiny = (area > 0) & (area < min_area) & (phase == PHASE_MATRIX)
    if tiny.any() and tiny.sum() < (area[1:] > 0).sum():
        hy, hx = pixels_where(labels, tiny)
        labels = _fill_from_neighbours(labels, hy, hx, periodic)
        moved.append((hy, hx))
        area = count_labels(labels, n)
    if twins is not None:
        for hy, hx in moved:
            twins[hy, hx] = 0
    # drop empty labels and relabel contiguously
    present = area > 0
    present[0] = True
    if not present.all():
        new = (np.cumsum(present) - 1).astype(np.uint32)
        labels = remap(labels, new)
        phase = phase[present]
        per_label = [a[present] for a in per_label]
    return labels, phase, per_label, twins


def _fill_from_neighbours(labels: np.ndarray, hy: np.ndarray, hx: np.ndarray, periodic: bool) -> np.ndarray:
    """Give every listed pixel the label of a settled 4-neighbour (see
    :func:`._kernels.fill_from_neighbours`); returns a new array."""
    return fill_from_neighbours(labels.copy(), np.asarray(hy, dtype=np.int64), np.asarray(hx, dtype=np.int64),
                                bool(periodic))


def _draw_twins(rng, labels, phase, fraction, width_frac):
    """Straight annealing-twin bands across a fraction of the matrix grains."""
    n = len(phase) - 1
    twins = np.zeros(labels.shape, dtype=np.uint8)
    twinned = np.zeros(n + 1, dtype=bool)
    cand = np.nonzero(phase == PHASE_MATRIX)[0]
    if len(cand) == 0:
        return twins, twinned
    chosen = cand[rng.random(len(cand)) < fraction]
    slices = ndi.find_objects(labels)
    for g in chosen:
        sl = slices[g - 1]
        if sl is None:
            continue
        mask = labels[sl] == g
        area = int(mask.sum())
        if area < 40:
            continue
        d = math.sqrt(4 * area / math.pi)
        yy, xx = np.nonzero(mask)
        phi = rng.uniform(0, math.pi)
        proj = yy * math.cos(phi) + xx * math.sin(phi)
        lo, hi = proj.min(), proj.max()
        nb = int(rng.integers(1, 4))
        band_mask = np.zeros(len(yy), dtype=np.uint8)
        for b in range(nb):
            bw = max(1.5, width_frac * d * math.exp(0.35 * rng.standard_normal()))
            c = rng.uniform(lo + 0.15 * (hi - lo), hi - 0.15 * (hi - lo))
            inside = np.abs(proj - c) < bw / 2
            band_mask[inside] = b + 1
        if band_mask.any():
            twinned[g] = True
            sub = twins[sl]
            sub[yy, xx] = np.maximum(sub[yy, xx], band_mask)
    return twins, twinned
