"""Simulated-annotator benchmark: how many interactions until an annotation is good (issue 15, item 4).

    python benchmarks/bench_interactive.py [--synthetic N] [--data ~/grainlab-realdata] [--workflows a,b,c]
        [--model generalist] [--max-images N] [--max-interactions 200] [--retrain-every 10] [--retrain-steps 20]
        [--paint-cost outline|fill] [--box auto|whole|none] [--one-click] [--latency-clicks 200] [--out results.json]

In the spirit of micro-sam's iterative-prompt evaluation: an **oracle annotator**, who knows the true grains,
corrects a working annotation of an image until it is good, and the benchmark counts its interactions.  The
annotation is *good* when its boundary F1 at 2 px (:func:`napari_grainlab.core.metrics.boundary_f1`, scored as
``benchmarks/bench_real.py`` does: unlabelled pixels and a band around them are not scored) is at least
:data:`TARGET_F1` and its grain-count error (ASTM E112 counted grains, ``|pred / true - 1|``) at most
:data:`TARGET_COUNT_ERROR`; a run that has not got there after ``--max-interactions`` is *not reached* (its final
F1 and count error are reported).

Workflows
---------
a  **classical + manual edits** (today's workflow): the classical proposal
   (:func:`~napari_grainlab.core.inference.classical_grains`) of the whole image (1 interaction: the Propose
   button), then manual corrections.
b  **model clicks**: an empty annotation and a :class:`~napari_grainlab.core.interactive.ClickSegmenter`
   (``--model``, the built-in ``generalist`` by default; its maps are predicted once).  The first action may be
   one box over the whole image (``grains_in_box`` + ``add_grains``, 1 interaction: the model's grains
   everywhere); ``--box auto`` (default) takes it when the model gets at least two true grains right (IoU >=
   :data:`IOU_OK`; each of them would otherwise cost a click of its own), ``whole`` always, ``none`` never.
   Then, for each grain to correct, a click at its centre (``grain_at`` + ``add_grain(..., at=)``, 1
   interaction); when the grain is still wrong after it, the manual correction of (a).
c  **model clicks + retraining**: as (b), and after every ``--retrain-every K`` interactions the model is
   fine-tuned on the current annotation (``--retrain-on all``, default, as the Retrain panel does; ``confirmed``:
   only the regions that are the right match of a true grain, as a person who retrains on the grains they have
   checked) (:func:`napari_grainlab.core.retrain.retrain`, the engine of the
   Annotate dock's Retrain panel, continuing from the previous round: ``--retrain-steps`` steps of
   ``--retrain-batch`` patches of ``--retrain-patch`` px, one epoch) and the segmenter is rebuilt on the new
   model (at the annotation's grain diameter, the scale the round was trained at).  Training ignores unannotated pixels (label 0: the
   loss is masked to ``labels > 0``), so a partial annotation is fine; like the Retrain panel it trains on the
   whole annotation as it stands, grains not yet corrected included.  Retraining time is reported, not counted
   as interactions.

The oracle
----------
It repeatedly takes the **largest wrong true grain**: one whose best-matching annotated region has an IoU below
:data:`IOU_OK` (IoU over the labelled field), or which is missing; an annotated region that is the best match of
no true grain (a fragment, a crumb an edit left), when it is larger, is cleaned up first: merged into the region
of a true grain it lies on, or removed (1 interaction, whichever scores better).  Once no grain is wrong but the
target is still not met, it compares the corrections (below, aiming at IoU 1) of the
:data:`POLISH_CANDIDATES` grains with the most wrongly annotated pixels and makes the one that gains most
boundary F1 per interaction (the next five grains when none gains; crumbs it leaves are cleaned up as above).  It fixes a grain with the cheapest manual action that makes it
right (it sees the result of an action before counting it, as a person sees the grains it would touch):

- **merge** (1 interaction): the grain is split into several annotated pieces (regions lying mostly inside it):
  :func:`~napari_grainlab.core.annotate.merge_grains` of the pieces (what a stroke across them does);
- **split** (1 interaction per stroke): one annotated region covers the grain and its neighbours: a
  :func:`~napari_grainlab.core.interactive.scribble` polyline along the true boundary between the grain and the
  rest of that region (the contour of the grain inside the region where it borders the rest, simplified to
  1 px), one stroke per separate stretch of that boundary;
- **paint**: the true grain set into the annotation (a new id; its pixels taken from whatever held them).
  ``--paint-cost outline`` (default) counts what drawing it costs, ``ceil(perimeter / 50 px)`` strokes (a
  grain's outline drawn 50 px per stroke); ``fill`` counts 1, a fill of a closed region (optimistic: a real
  annotation seldom has the closed outline to fill).

When neither merge nor split makes the grain right, the one that improves its IoU most (by at least 0.1) is
done and the grain comes up again; otherwise (or after three such steps on one grain) it is painted.  In (b)
and (c) a grain is clicked once per model before that; a click that would change nothing (the annotated grain
there is the model's own) is not made, and one that leaves the grain wrong and the annotation worse (boundary
F1 - count error) is undone (1 more interaction).

``--one-click`` adds, per image, **one click per grain**: a click at the most interior pixel of every labelled
grain of at least :data:`ONE_CLICK_MIN_AREA` px and the IoU of the model's grain there (the share with IoU >=
:data:`IOU_OK`, the median), and the **uncertainty split**: the mean of the uncertainty layer on the true
boundary pixels the model found and on those it missed (``--workflows none`` runs only these).

Also reported: the **click latency**, the median and 95th percentile time of ``grain_at`` and of ``add_grain``
for ``--latency-clicks`` random clicks on a ``--latency-size`` px synthetic image once the model's maps exist,
as a ratio to the :data:`LATENCY_TARGET_MS` target (benchmarks print ratios; they do not fail).

Inputs: ``--synthetic N`` images of the package's generator with looks and settings outside the generalist's
training recipe (:data:`SYNTH_LOOKS`, printed with the results), and/or ``--data FOLDER`` in bench_real's layout
(``FOLDER/SOURCE/images`` + ``labels``).  Nothing is fetched.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_real

#: the annotation is good at this boundary F1 (2 px) ...
TARGET_F1 = 0.95
#: ... and at most this grain-count error |pred / true - 1|
TARGET_COUNT_ERROR = 0.05
#: a true grain is right when its best-matching annotated region has at least this IoU
IOU_OK = 0.8
#: ``--paint-cost outline``: px of outline drawn per stroke
OUTLINE_PX_PER_STROKE = 50.0
#: a structural step (merge / split) that does not make a grain right is done when it improves its IoU this much
MIN_GAIN = 0.1
#: at most this many such steps per grain before it is painted
MAX_STEPS_PER_GRAIN = 3
#: once every grain is right: the corrections of this many grains (the most wrong pixels) are compared
POLISH_CANDIDATES = 5
#: a click should be answered within this time (ms)
LATENCY_TARGET_MS = 50.0

WORKFLOWS = {"a": "classical + edits", "b": "model clicks", "c": "clicks + retrain"}

#: the synthetic looks, outside the generalist's recipe (models/generalist/recipe.json: domain randomisation,
#: trained at 32 px grains +-15 %, growth temperature 0.5-1.4, coarsening 1.8-3.5, anisotropy <= 0.6; optical
#: line width <= 3 px and faint fraction <= 0.6; SEM edge width <= 3.5 px; EBSD band width <= 3 px and
#: orientation noise <= 0.12): grain growth, hotter, coarser and more anisotropic than it ever saw
SYNTH_LOOKS: tuple[tuple[str, dict], ...] = (
    ("optical", {"optical": {"line_width": 4.0, "faint_fraction": 0.7}}),
    ("sem", {"sem": {"edge_width": 4.5}}),
    ("ebsd", {"ebsd": {"band_width": 4.0, "orientation_noise": 0.2}}),
)
SYNTH_GROWTH = {"method": "growth", "growth_temperature": 2.0, "growth_coarsening": 4.5, "growth_anisotropy": 0.8}


# ============================================================================================ data

@dataclass
class Sample:
    name: str
    image: np.ndarray
    labels: np.ndarray
    pixel_size: float | None = None


def synthetic_settings(size: int, diameter: float) -> list[str]:
    """One line per synthetic look, saying how it leaves the generalist's recipe."""
    growth = ", ".join(f"{k.removeprefix('growth_')} {v}" for k, v in SYNTH_GROWTH.items() if k != "method")
    out = []
    for style, changes in SYNTH_LOOKS:
        look = ", ".join(f"{k} {v}" for sect in changes.values() for k, v in sect.items())
        out.append(f"{style}: {size} x {size} px, growth tessellation ({growth}), {diameter:g} px grains; {look}")
    return out


def synthetic_samples(n: int, size: int = 512, diameter: float = 48.0, seed: int = 0) -> list[Sample]:
    """``n`` synthetic micrographs cycling through :data:`SYNTH_LOOKS` (grey or RGB float images in [0, 1])."""
    from napari_grainlab.core.synthetic import SynthParams, generate

    out = []
    for i in range(n):
        style, changes = SYNTH_LOOKS[i % len(SYNTH_LOOKS)]
        p = SynthParams(height=int(size), width=int(size), style=style)
        t = p.tessellation
        t.grains, t.mean_diameter = None, float(diameter)
        for k, v in SYNTH_GROWTH.items():
            setattr(t, k, v)
        for sect, values in changes.items():
            for k, v in values.items():
                setattr(getattr(p, sect), k, v)
        s = generate(p, seed=seed + i)
        image = np.asarray(s.image_float() if hasattr(s, "image_float") else s.image, dtype=np.float32)
        lo, hi = float(image.min()), float(image.max())
        image = (image - lo) / max(hi - lo, 1e-6)
        out.append(Sample(f"synth-{style}-{i + 1}", image, np.asarray(s.labels, dtype=np.uint32)))
    return out


# ========================================================================================= scoring

def score(annotation: np.ndarray, truth: np.ndarray, pixel_size: float | None = None) -> dict:
    """bench_real's boundary F1 (2 px) and count ratio, and the count error and whether the target is met."""
    s = bench_real.score_image(annotation, truth, pixel_size)
    ratio = s["count_ratio"]
    err = abs(ratio - 1.0) if math.isfinite(ratio) else math.inf
    return {"boundary_f1": s["boundary_f1"], "count_error": err, "grains_pred": s["grains_pred"],
            "grains_true": s["grains_true"], "reached": s["boundary_f1"] >= TARGET_F1 and err <= TARGET_COUNT_ERROR}


class Truth:
    """The true grains of one image, with what the oracle needs of each (mask box, area, centre, outline)."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = np.ascontiguousarray(np.asarray(labels).astype(np.uint32, copy=False))
        self.valid = self.labels > 0
        self.area = np.bincount(self.labels.ravel())
        self.area[0] = 0
        self.boxes = ndi.find_objects(self.labels)
        self.ids = np.nonzero(self.area)[0]

    def mask(self, t: int) -> np.ndarray:
        m = np.zeros(self.labels.shape, dtype=bool)
        box = self.boxes[t - 1]
        m[box] = self.labels[box] == t
        return m

    def centre(self, t: int) -> tuple[int, int]:
        """The grain's deepest pixel (maximum of its distance transform)."""
        box = self.boxes[t - 1]
        sub = np.pad(self.labels[box] == t, 1)
        d = ndi.distance_transform_edt(sub)[1:-1, 1:-1]
        r, c = np.unravel_index(int(np.argmax(d)), d.shape)
        return int(r + box[0].start), int(c + box[1].start)

    def perimeter(self, t: int) -> float:
        from skimage.measure import perimeter

        box = self.boxes[t - 1]
        return float(perimeter(np.pad(self.labels[box] == t, 1)))


@dataclass
class Match:
    """Each true grain's best-matching annotated region (IoU over the labelled field) and the overlap table."""

    iou: np.ndarray  # per true id
    region: np.ndarray  # per true id (0: none)
    pairs_t: np.ndarray
    pairs_a: np.ndarray
    pairs_n: np.ndarray
    area_a: np.ndarray  # annotated regions' areas inside the labelled field


def match(annotation: np.ndarray, truth: Truth) -> Match:
    t = truth.labels[truth.valid].astype(np.int64)
    a = np.asarray(annotation)[truth.valid].astype(np.int64)
    na = int(a.max(initial=0)) + 1
    keys, counts = np.unique(t * na + a, return_counts=True)
    pt, pa = keys // na, keys % na
    area_a = np.bincount(a, minlength=na)
    nt = truth.area.size
    iou = np.zeros(nt)
    region = np.zeros(nt, dtype=np.int64)
    sel = pa > 0
    if sel.any():
        st, sa, sn = pt[sel], pa[sel], counts[sel]
        v = sn / (truth.area[st] + area_a[sa] - sn)
        order = np.lexsort((v, st))
        st, sa, v = st[order], sa[order], v[order]
        last = np.r_[st[1:] != st[:-1], True]
        iou[st[last]] = v[last]
        region[st[last]] = sa[last]
    return Match(iou, region, pt, pa, counts, area_a)


def confirmed(annotation: np.ndarray, truth: Truth) -> np.ndarray:
    """The annotation with only the regions the annotator sees as right (the best match of a true grain, IoU >=
    :data:`IOU_OK`); the others become 0 (not annotated), so that a retraining round does not learn the model's
    own uncorrected mistakes. (A person retrains on the grains they have checked.)"""
    m = match(annotation, truth)
    good = np.unique(m.region[(m.iou >= IOU_OK) & (m.region > 0)])
    return np.where(np.isin(annotation, good), annotation, 0).astype(np.asarray(annotation).dtype)


def grain_iou(annotation: np.ndarray, truth: Truth, t: int) -> float:
    """IoU of true grain ``t`` with its best-matching annotated region."""
    m = truth.mask(t)
    ids, inter = np.unique(annotation[m], return_counts=True)
    best = 0.0
    for a, n in zip(ids, inter):
        if a == 0:
            continue
        area = int(np.count_nonzero((annotation == a) & truth.valid))
        best = max(best, n / (truth.area[t] + area - n))
    return float(best)


# ========================================================================================= actions

@dataclass
class Action:
    kind: str  # propose, box, click, undo, merge, split, paint, remove
    cost: int
    result: np.ndarray
    grain: int = 0


def _paint(annotation: np.ndarray, truth: Truth, t: int, paint_cost: str) -> Action:
    out = annotation.copy()
    out[truth.mask(t)] = int(annotation.max(initial=0)) + 1
    cost = 1 if paint_cost == "fill" else max(1, math.ceil(truth.perimeter(t) / OUTLINE_PX_PER_STROKE))
    return Action("paint", cost, out, t)


def _merge(annotation: np.ndarray, m: Match, truth: Truth, t: int) -> Action | None:
    from napari_grainlab.core.annotate import merge_grains

    sel = (m.pairs_t == t) & (m.pairs_a > 0)
    ids, inter = m.pairs_a[sel], m.pairs_n[sel]
    piece = (inter >= 0.5 * m.area_a[ids]) & (inter >= max(4, 0.02 * truth.area[t]))
    ids, inter = ids[piece], inter[piece]
    if ids.size < 2:
        return None
    order = [int(g) for g in ids[np.argsort(-inter, kind="stable")]]
    edit = merge_grains(annotation, order, bridge=2)
    return Action("merge", 1, edit.apply(annotation), t) if edit else None


def split_strokes(annotation: np.ndarray, region: int, grain: np.ndarray, *, min_part: float = 0.05,
                  margin: int = 2) -> list[np.ndarray]:
    """Polylines (row, column) along the boundary, inside annotated ``region``, between the true ``grain`` (bool
    mask) and the rest of the region: the rest's pixels along the grain's contour where it borders a part of the rest
    worth cutting off (a connected part of at least ``min_part`` of the grain's area, 16 px at least; a sliver
    along a boundary drawn a pixel or two off is not), one polyline per stretch, simplified to 1 px.  The
    strokes stop ``margin`` px short of the region's edge, where :func:`scribble` prolongs them to it (a stroke
    hugging the edge would cut crumbs off it), and are at least 4 px long (``margin=0``: 1 px, a stroke across a
    neck where two grains touch)."""
    from skimage.measure import approximate_polygon, find_contours

    h, w = annotation.shape
    rows, cols = np.nonzero(annotation == region)
    if rows.size == 0:
        return []
    r0, r1 = max(0, rows.min() - 1), min(h, rows.max() + 2)
    c0, c1 = max(0, cols.min() - 1), min(w, cols.max() + 2)
    sub = annotation[r0:r1, c0:c1] == region
    inside = sub & grain[r0:r1, c0:c1]
    rest = sub & ~grain[r0:r1, c0:c1]
    if not inside.any() or not rest.any():
        return []
    parts, n = ndi.label(rest, structure=np.ones((3, 3), bool))
    sizes = np.bincount(parts.ravel(), minlength=n + 1)
    sizes[0] = 0
    rest = (sizes >= max(16.0, min_part * float(np.count_nonzero(grain))))[parts] & rest
    if not rest.any():
        return []
    if margin > 0:  # the rest, less a band along the region's edge
        rest &= ndi.binary_erosion(np.pad(sub, margin, constant_values=False), iterations=int(margin))[
            margin:-margin, margin:-margin]
    sh, sw = inside.shape
    strokes = []
    for contour in find_contours(np.pad(inside, 1).astype(np.float32), 0.5):
        pts = contour[:-1] - 1.0 if np.allclose(contour[0], contour[-1]) else contour - 1.0
        if len(pts) < 2:
            continue
        lo = np.floor(pts).astype(int)
        flag = np.zeros(len(pts), dtype=bool)
        snapped = pts.copy()
        for dr in (0, 1):
            for dc in (0, 1):
                rr, cc = np.clip(lo[:, 0] + dr, 0, sh - 1), np.clip(lo[:, 1] + dc, 0, sw - 1)
                hit = rest[rr, cc] & ~flag  # the stroke runs on the rest's pixels along the grain
                snapped[hit] = np.stack([rr[hit], cc[hit]], axis=1)
                flag |= hit
        if not flag.any():
            continue
        pts = snapped
        if flag.all():  # the grain is an island in the region: one closed stroke around it
            runs = [np.r_[np.arange(len(pts)), 0]]
        else:  # runs of flagged points along the closed contour; gaps of <= 2 points are bridged
            idx = np.roll(np.arange(len(pts)), -int(np.argmin(flag)))
            runs, cur, gap = [], [], 0
            for i in idx:
                if flag[i]:
                    cur, gap = [*cur, i], 0
                elif cur:
                    gap += 1
                    if gap > 2:
                        runs.append(np.array(cur[: len(cur) - gap + 1]))
                        cur, gap = [], 0
                    else:
                        cur.append(i)
            if cur:
                runs.append(np.array(cur[: len(cur) - gap]))
        for run in runs:
            line = approximate_polygon(pts[run], tolerance=1.0)
            if len(line) < 2 or float(np.hypot(*np.diff(line, axis=0).T).sum()) < (4.0 if margin else 1.0):
                continue
            strokes.append(line + np.array([r0, c0], dtype=float))
    return strokes


def _split(annotation: np.ndarray, m: Match, truth: Truth, t: int) -> Action | None:
    """Split strokes along the true boundary; a stroke that would not split the region (the tool would merge,
    or do nothing) is not drawn, the others cost 1 each."""
    from napari_grainlab.core.interactive import scribble

    sel = (m.pairs_t == t) & (m.pairs_a > 0)
    if not sel.any():
        return None
    ids, inter = m.pairs_a[sel], m.pairs_n[sel]
    k = int(np.argmax(inter))
    region, n = int(ids[k]), int(inter[k])
    if m.area_a[region] - n < max(16, 0.05 * truth.area[t]):  # the region does not reach beyond the grain
        return None
    mask = truth.mask(t)
    for margin in (2, 0):  # strokes short of the region's edge; else right up to it (a narrow contact)
        out, drawn = annotation, 0
        for pts in split_strokes(annotation, region, mask, margin=margin):
            edit = scribble(out, pts)
            if edit and edit.new_ids and not edit.removed_ids:
                out, drawn = edit.apply(out), drawn + 1
        if drawn:
            return Action("split", drawn, out, t)
    return None


def _click(annotation: np.ndarray, segmenter: Any, truth: Truth, t: int) -> Action | None:
    from napari_grainlab.core.interactive import add_grain

    y, x = truth.centre(t)
    edit = add_grain(annotation, segmenter.grain_at(y, x), at=(y, x))
    return Action("click", 1, edit.apply(annotation), t) if edit else None


def _box(annotation: np.ndarray, segmenter: Any) -> Action | None:
    from napari_grainlab.core.interactive import add_grains

    h, w = annotation.shape
    edit = add_grains(annotation, segmenter.grains_in_box(0, 0, h - 1, w - 1))
    return Action("box", 1, edit.apply(annotation)) if edit else None


def fix_region(annotation: np.ndarray, m: Match, truth: Truth, region: int, pixel_size: float | None = None) -> Action:
    """Clean up a spurious annotated ``region`` (the best match of no true grain: a sliver left by an edit, a
    fragment): merge it into the region of a true grain it overlaps, or remove it (1 interaction each), whichever
    scores best."""
    from napari_grainlab.core.annotate import delete_grains, merge_grains

    sel = m.pairs_a == region
    ts, inter = m.pairs_t[sel], m.pairs_n[sel]
    options = [Action("remove", 1, delete_grains(annotation, [region]).apply(annotation))]
    for t in ts[np.argsort(-inter)][:3]:
        g = int(m.region[t])
        if g > 0 and g != region:
            options.append(Action("merge", 1, merge_grains(annotation, [g, region], bridge=2).apply(annotation), int(t)))

    def key(a: Action) -> tuple:
        sc = score(a.result, truth.labels, pixel_size)
        return (sc["boundary_f1"] - sc["count_error"], a.kind == "merge")

    return max(options, key=key)


def manual_fix(annotation: np.ndarray, m: Match, truth: Truth, t: int, goal: float, *, paint_cost: str = "outline",
               steps_done: int = 0) -> Action:
    """The cheapest manual action that makes true grain ``t`` right (IoU >= ``goal``): see the module docstring."""
    before = float(m.iou[t])
    structural = [a for a in (_merge(annotation, m, truth, t), _split(annotation, m, truth, t)) if a is not None]
    scored = [(a, grain_iou(a.result, truth, t)) for a in structural]
    good = [(a.cost, -v, i) for i, (a, v) in enumerate(scored) if v >= goal]
    paint = _paint(annotation, truth, t, paint_cost)
    if good:
        cost, _, i = min(good)
        if cost <= paint.cost:
            return scored[i][0]
    if steps_done < MAX_STEPS_PER_GRAIN and scored:
        a, v = max(scored, key=lambda av: (av[1], -av[0].cost))
        if v - before >= MIN_GAIN and a.cost < paint.cost:
            return a
    return paint


# ======================================================================================== the oracle

@dataclass
class RunResult:
    workflow: str
    reached: bool
    interactions: int
    boundary_f1: float
    count_error: float
    start_f1: float
    start_count_error: float
    actions: dict = field(default_factory=dict)
    interactions_by_action: dict = field(default_factory=dict)
    retrains: int = 0
    retrain_seconds: float = 0.0
    seconds: float = 0.0
    curve: list = field(default_factory=list)  # (interactions, boundary F1, count error) after each action
    note: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def run_workflow(workflow: str, image: np.ndarray, truth_labels: np.ndarray, *, proposal: np.ndarray | None = None,
                 segmenter: Any = None, retrainer: Callable[[np.ndarray, np.ndarray], Any] | None = None,
                 retrain_every: int = 10, retrain_on: str = "all", max_interactions: int = 200,
                 paint_cost: str = "outline",
                 box: str = "auto", pixel_size: float | None = None, trace: list | None = None) -> RunResult:
    """One simulated annotation of ``image`` against ``truth_labels`` with workflow ``a``, ``b`` or ``c``.

    ``proposal``: the start of (a) (default: the classical baseline); ``segmenter``: the
    :class:`~napari_grainlab.core.interactive.ClickSegmenter` of (b) and (c); ``retrainer(image, annotation)``:
    the new segmenter after retraining on the annotation (c).  ``trace``: a list that gets one dict per action.
    """
    if workflow not in WORKFLOWS:
        raise ValueError(f"workflow: one of {', '.join(WORKFLOWS)}, got {workflow!r}")
    t0 = time.perf_counter()
    truth = Truth(truth_labels)
    ann = np.zeros(truth.labels.shape, dtype=np.uint32)
    n = 0
    kinds: Counter = Counter()
    spent: Counter = Counter()
    curve: list = []
    res = RunResult(workflow, False, 0, 0.0, math.inf, 0.0, math.inf)

    def do(action: Action) -> None:
        nonlocal ann, n
        ann = np.asarray(action.result, dtype=np.uint32)
        n += action.cost
        kinds[action.kind] += 1
        spent[action.kind] += action.cost
        if trace is not None:
            sc = score(ann, truth.labels, pixel_size)
            trace.append({"n": n, "kind": action.kind, "cost": action.cost, "grain": action.grain,
                          "area": int(truth.area[action.grain]) if action.grain else 0,
                          "iou": grain_iou(ann, truth, action.grain) if action.grain else None,
                          "boundary_f1": sc["boundary_f1"], "grains_pred": sc["grains_pred"]})

    if workflow == "a":
        if proposal is None:
            proposal = bench_real.classical(image)[0]
        do(Action("propose", 1, np.asarray(proposal).astype(np.uint32)))
    else:
        if segmenter is None:
            raise ValueError(f"workflow {workflow}: needs a segmenter")
        if box != "none":
            b = _box(ann, segmenter)
            if b is not None and (box == "whole" or int((match(b.result, truth).iou >= IOU_OK).sum()) >= 2):
                do(b)
    s = score(ann, truth.labels, pixel_size)
    res.start_f1, res.start_count_error = s["boundary_f1"], s["count_error"]
    curve.append((n, round(s["boundary_f1"], 4), round(s["count_error"], 4)))
    clicked: set = set()  # (grain, model version)
    steps: Counter = Counter()  # structural steps per grain
    version, since_retrain = 0, n
    while not s["reached"] and n < max_interactions:
        m = match(ann, truth)
        ious = m.iou[truth.ids]
        wrong = truth.ids[ious < IOU_OK]
        spurious = np.setdiff1d(np.nonzero(m.area_a)[0], m.region)
        spurious = spurious[spurious > 0]
        action = None
        if spurious.size and (not wrong.size or m.area_a[spurious].max() > truth.area[wrong].max()):
            action = fix_region(ann, m, truth, int(spurious[np.argmax(m.area_a[spurious])]), pixel_size)
        elif wrong.size:
            t = int(wrong[np.argmax(truth.area[wrong])])
            if workflow != "a" and (t, version) not in clicked:
                clicked.add((t, version))
                action = _click(ann, segmenter, truth, t)
            if action is None:
                action = manual_fix(ann, m, truth, t, IOU_OK, paint_cost=paint_cost, steps_done=steps[t])
        else:  # every grain is right, the target not met yet: of the grains with the most wrongly annotated
            # pixels, the correction that gains most (boundary F1 - count error) per interaction
            rest = truth.ids[ious < 1.0]
            reg = m.region[rest]
            inter = m.iou[rest] * (truth.area[rest] + m.area_a[reg]) / (1 + m.iou[rest])
            wrong_px = truth.area[rest] + m.area_a[reg] * (reg > 0) - 2 * inter
            ranked = rest[np.argsort(-wrong_px, kind="stable")]
            best_gain = 0.0
            for first in range(0, min(ranked.size, 4 * POLISH_CANDIDATES), POLISH_CANDIDATES):
                for t in ranked[first:first + POLISH_CANDIDATES]:  # the next ones only when none of these gains
                    a = manual_fix(ann, m, truth, int(t), 1.0, paint_cost=paint_cost, steps_done=steps[int(t)])
                    gain = (score(a.result, truth.labels, pixel_size)["boundary_f1"] - s["boundary_f1"]) / a.cost
                    if gain > best_gain:
                        action, best_gain = a, gain
                if action is not None:
                    break
            if action is None:
                res.note = "no correction improves the annotation any further"
                break
        if action.kind in ("merge", "split") and action.grain:
            steps[action.grain] += 1
        if n + action.cost > max_interactions:  # an outline longer than what is left
            break
        before, s_before = ann, s
        do(action)
        s = score(ann, truth.labels, pixel_size)
        if action.kind == "click" and n < max_interactions and grain_iou(ann, truth, action.grain) < IOU_OK and \
                s["boundary_f1"] - s["count_error"] < s_before["boundary_f1"] - s_before["count_error"]:
            do(Action("undo", 1, before, action.grain))  # the click made things worse: Ctrl+Z
            s = s_before
        curve.append((n, round(s["boundary_f1"], 4), round(s["count_error"], 4)))
        if workflow == "c" and retrainer is not None and not s["reached"] and n - since_retrain >= retrain_every:
            tr = time.perf_counter()
            new = retrainer(image, confirmed(ann, truth) if retrain_on == "confirmed" else ann)
            res.retrain_seconds += time.perf_counter() - tr
            res.retrains += 1
            since_retrain = n
            if new is not None:
                segmenter, version = new, version + 1
    res.reached, res.interactions = bool(s["reached"]), n
    res.boundary_f1, res.count_error = s["boundary_f1"], s["count_error"]
    res.actions, res.interactions_by_action = dict(kinds), dict(spent)
    res.curve = curve
    res.seconds = time.perf_counter() - t0 - res.retrain_seconds
    return res


# ================================================================================ model and retraining

def make_segmenter(image: np.ndarray, model: Any, diameter: float | None = None):
    from napari_grainlab.core.interactive import ClickSegmenter

    return ClickSegmenter(image, model, diameter=diameter)


class Retrainer:
    """Workflow (c)'s retraining: a short fine-tuning round on the current annotation, from the previous round
    (the first from ``model``), then a new segmenter on it at ``diameter`` px (``"annotation"``: the annotation's
    grain diameter, the scale the round was trained at: training resizes each image by the model's grain
    diameter over its labels' one; None: estimated)."""

    def __init__(self, model: str | Path, folder: str | Path, *, name: str, diameter: float | str | None = "annotation",
                 steps: int = 20,
                 batch_size: int = 4, patch_size: int = 128, device: str = "auto") -> None:
        self.current, self.folder, self.name, self.diameter = str(model), Path(folder), name, diameter
        self.steps, self.batch_size, self.patch_size, self.device = steps, batch_size, patch_size, device
        self.rounds: list[dict] = []

    def __call__(self, image: np.ndarray, annotation: np.ndarray):
        from napari_grainlab.core.retrain import RetrainOptions, retrain, retrain_samples

        samples = retrain_samples([(self.name, image, annotation)])
        if not samples:
            return None
        opts = RetrainOptions(epochs=1, steps_per_epoch=self.steps, batch_size=self.batch_size,
                              patch_size=self.patch_size, val_fraction=0.0, device=self.device)
        gen = retrain(samples, self.current, self.folder, opts)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                r = stop.value
                break
        if r is None:
            return None
        self.current = r.path
        diameter = _labels_diameter(annotation) if self.diameter == "annotation" else self.diameter
        self.rounds.append({"round": r.number, "validation_f1": r.score, "seconds": r.seconds, "diameter": diameter})
        return make_segmenter(image, r.path, diameter)


# =========================================================================================== latency

def click_latency(segmenter: Any, clicks: int = 200, seed: int = 0) -> dict:
    """Median and 95th percentile ms of ``grain_at`` and of ``add_grain`` over ``clicks`` random clicks, the
    annotation filling up as they are applied."""
    from napari_grainlab.core.interactive import add_grain

    rng = np.random.default_rng(seed)
    h, w = segmenter.shape
    ann = np.zeros((h, w), dtype=np.uint32)
    t_grain, t_add = [], []
    for _ in range(int(clicks)):
        y, x = float(rng.uniform(0, h - 1)), float(rng.uniform(0, w - 1))
        t0 = time.perf_counter()
        mask = segmenter.grain_at(y, x)
        t1 = time.perf_counter()
        edit = add_grain(ann, mask, at=(y, x))
        t2 = time.perf_counter()
        ann = edit.apply(ann, copy=False)
        t_grain.append(1000 * (t1 - t0))
        t_add.append(1000 * (t2 - t1))

    def stats(v: list[float]) -> dict:
        med, p95 = statistics.median(v), float(np.percentile(v, 95))
        return {"median_ms": med, "p95_ms": p95, "median_ratio": med / LATENCY_TARGET_MS,
                "p95_ratio": p95 / LATENCY_TARGET_MS}

    return {"shape": [h, w], "clicks": int(clicks), "target_ms": LATENCY_TARGET_MS,
            "grain_at": stats(t_grain), "add_grain": stats(t_add)}


# ========================================================================================= one click

#: labelled grains smaller than this (px of area) are not clicked in the one-click measurement
ONE_CLICK_MIN_AREA = 20
#: a boundary pixel the model found is one with a predicted boundary within this many px
FOUND_REACH = 2


def one_click(segmenter: Any, labels: np.ndarray) -> dict:
    """One click at the most interior pixel (the maximum of the distance to its border) of every labelled grain
    of at least :data:`ONE_CLICK_MIN_AREA` px: the IoU (over the labelled field) of ``grain_at`` there with the
    grain; the share with IoU >= :data:`IOU_OK` and the median."""
    labels = np.asarray(labels)
    field = labels > 0
    ious = []
    for t, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        grain = labels[sl] == t
        area = int(grain.sum())
        if area < ONE_CLICK_MIN_AREA:
            continue
        dist = ndi.distance_transform_edt(np.pad(grain, 1))[1:-1, 1:-1]
        r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
        mask = segmenter.grain_at(sl[0].start + r, sl[1].start + c)
        inter = int(np.count_nonzero(mask[sl] & grain))
        union = int(np.count_nonzero(mask & field)) + area - inter
        ious.append(inter / union if union else 0.0)
    if not ious:
        return {"grains": 0}
    v = np.asarray(ious)
    return {"grains": int(v.size), "share_ok": float(np.mean(v >= IOU_OK)), "median_iou": float(np.median(v))}


def uncertainty_split(segmenter: Any, labels: np.ndarray) -> dict:
    """Mean of the segmenter's uncertainty map on the true boundary pixels (both sides of each boundary, the
    labelled field only) that the model found (a predicted boundary within :data:`FOUND_REACH` px) and on those
    it missed; the same for the raw binary entropy of the boundary map, for comparison."""
    from skimage.segmentation import find_boundaries

    labels = np.asarray(labels)
    true_b = find_boundaries(labels, mode="inner") & (labels > 0)
    if not (labels > 0).all():  # not next to unlabelled pixels, whose boundaries are unknown
        true_b &= ~ndi.binary_dilation(labels == 0, iterations=FOUND_REACH + 1)
    pred_b = find_boundaries(segmenter.labels, mode="inner")
    near = ndi.binary_dilation(pred_b, iterations=FOUND_REACH)
    found, missed = true_b & near, true_b & ~near
    p = np.clip(segmenter.boundary, 1e-6, 1 - 1e-6)
    raw = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    u = segmenter.uncertainty

    def mean(a: np.ndarray, m: np.ndarray) -> float | None:
        return float(a[m].mean()) if m.any() else None

    return {"found_px": int(found.sum()), "missed_px": int(missed.sum()),
            "uncertainty_found": mean(u, found), "uncertainty_missed": mean(u, missed),
            "entropy_found": mean(raw, found), "entropy_missed": mean(raw, missed)}


# ============================================================================================ report

def evaluate(sources: dict[str, list[Sample]], workflows: Sequence[str], *, model: Any = "generalist",
             segmenter_factory: Callable[[Sample], Any] | None = None,
             proposal_factory: Callable[[Sample], np.ndarray] | None = None,
             retrainer_factory: Callable[[Sample, Any, str], Any] | None = None,
             max_interactions: int = 200, retrain_every: int = 10, retrain_steps: int = 20, retrain_batch: int = 4,
             retrain_patch: int = 128, paint_cost: str = "outline", box: str = "auto", retrain_on: str = "all",
             clicks: bool = False, log: Callable[[str], None] = print) -> dict:
    """Run ``workflows`` on every sample of every source; returns the JSON-able result.

    ``segmenter_factory(sample)``, ``proposal_factory(sample)`` and ``retrainer_factory(sample, segmenter,
    workdir)`` replace the model, the classical proposal and the retraining (tests inject oracles there).
    ``clicks``: also the one-click IoU (:func:`one_click`) and the uncertainty split (:func:`uncertainty_split`)
    of each image.
    """
    out: dict = {"sources": {}}
    with tempfile.TemporaryDirectory(prefix="bench_interactive_") as tmp:
        for sname, samples in sources.items():
            rows = []
            for i, smp in enumerate(samples):
                row: dict = {"name": smp.name, "shape": list(smp.labels.shape),
                             "grains_true": int(len(np.unique(smp.labels[smp.labels > 0]))), "workflows": {}}
                seg = None
                if clicks or any(w in ("b", "c") for w in workflows):
                    t0 = time.perf_counter()
                    seg = segmenter_factory(smp) if segmenter_factory else make_segmenter(smp.image, model)
                    row["maps_seconds"] = time.perf_counter() - t0
                    row["diameter_used"] = getattr(seg, "diameter", None)
                    row["diameter_labels"] = _labels_diameter(smp.labels)
                if clicks:
                    row["one_click"] = one_click(seg, smp.labels)
                    row["uncertainty"] = uncertainty_split(seg, smp.labels)
                    oc, un = row["one_click"], row["uncertainty"]
                    log(f"{sname:<18} {smp.name:<22} one click: " + (
                        f"{oc['share_ok']:.2f} of {oc['grains']} grains with IoU >= {IOU_OK}, median IoU "
                        f"{oc['median_iou']:.2f}" if oc["grains"] else "no grain to click") +
                        f"; uncertainty on found / missed boundaries {_num(un['uncertainty_found'])} / "
                        f"{_num(un['uncertainty_missed'])}")
                for w in workflows:
                    kw: dict = {}
                    if w == "a":
                        kw["proposal"] = proposal_factory(smp) if proposal_factory else None
                    else:
                        kw["segmenter"] = seg
                    if w == "c":
                        work = Path(tmp) / f"{sname}-{i}"
                        kw["retrainer"] = retrainer_factory(smp, seg, str(work)) if retrainer_factory else \
                            Retrainer(model, work, name=smp.name, steps=retrain_steps, batch_size=retrain_batch, patch_size=retrain_patch)
                    r = run_workflow(w, smp.image, smp.labels, max_interactions=max_interactions,
                                     retrain_every=retrain_every, retrain_on=retrain_on, paint_cost=paint_cost,
                                     box=box,
                                     pixel_size=smp.pixel_size, **kw)
                    d = r.to_dict()
                    rounds = getattr(kw.get("retrainer"), "rounds", None)
                    if rounds is not None:
                        d["rounds"] = rounds
                    row["workflows"][w] = d
                    log(f"{sname:<18} {smp.name:<22} {w} {WORKFLOWS[w]:<18} {_outcome(d):>22}  "
                        f"start F1 {d['start_f1']:.3f}  {_actions(d)}  ({d['seconds']:.0f} s"
                        + (f", retraining {d['retrain_seconds']:.0f} s" if d["retrains"] else "") + ")")
                rows.append(row)
            out["sources"][sname] = {"n_images": len(rows), "images": rows,
                                     "mean": {w: _mean_row([r["workflows"][w] for r in rows], max_interactions)
                                              for w in workflows}}
            if clicks:
                out["sources"][sname]["one_click"] = _pool_clicks(rows)
    return out


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _pool_clicks(rows: list[dict]) -> dict:
    """The one-click and uncertainty results of a source's images pooled (weighted by grains / pixels)."""
    oc = [r["one_click"] for r in rows if r["one_click"]["grains"]]
    n = sum(o["grains"] for o in oc)
    out: dict = {"grains": n}
    diameters = [r["diameter_labels"] for r in rows if r.get("diameter_labels")]
    out["diameter_labels"] = float(np.median(diameters)) if diameters else None
    if n:
        out["share_ok"] = sum(o["share_ok"] * o["grains"] for o in oc) / n
        out["median_iou_mean"] = float(np.mean([o["median_iou"] for o in oc]))
    for kind, px in (("found", "found_px"), ("missed", "missed_px")):
        for what in ("uncertainty", "entropy"):
            parts = [(r["uncertainty"][f"{what}_{kind}"], r["uncertainty"][px]) for r in rows
                     if r["uncertainty"][f"{what}_{kind}"] is not None]
            w = sum(p for _, p in parts)
            out[f"{what}_{kind}"] = sum(v * p for v, p in parts) / w if w else None
    return out


def _labels_diameter(labels: np.ndarray) -> float | None:
    try:
        from napari_grainlab.core.data.targets import mean_grain_diameter

        return mean_grain_diameter(labels)
    except ImportError:
        return None


def _mean_row(runs: list[dict], cap: int) -> dict:
    """Mean interactions over the images, a run not reached counted at the cap (then a lower bound)."""
    if not runs:
        return {"n": 0}
    reached = [r for r in runs if r["reached"]]
    return {"n": len(runs), "reached": len(reached),
            "interactions": float(np.mean([r["interactions"] if r["reached"] else cap for r in runs])),
            "lower_bound": len(reached) < len(runs),
            "interactions_reached": float(np.mean([r["interactions"] for r in reached])) if reached else None,
            "boundary_f1": float(np.mean([r["boundary_f1"] for r in runs])),
            "count_error": float(np.mean([r["count_error"] for r in runs]))}


def _outcome(d: dict) -> str:
    if d["reached"]:
        return f"{d['interactions']} interactions"
    return f"not reached ({d['interactions']})"


def _actions(d: dict) -> str:
    order = ("propose", "box", "click", "undo", "merge", "split", "paint", "remove")
    parts = []
    for k in order:
        if d["actions"].get(k):
            n, c = d["actions"][k], d["interactions_by_action"][k]
            parts.append(f"{k} {n}" + (f" ({c} strokes)" if c != n else ""))
    return ", ".join(parts) or "-"


def table(result: dict) -> str:
    """Per image and workflow, then the mean per source."""
    wf = result["workflows"]
    lines: list[str] = []
    if wf:
        lines += _workflow_table(result, wf)
    return "\n".join(lines + _clicks_table(result) + _latency_table(result)).strip("\n")


def _workflow_table(result: dict, wf: Sequence[str]) -> list[str]:
    lines = [f"{'source':<18} {'image':<22} {'grains':>6} {'workflow':<20} {'start F1':>8} {'interactions':>13} "
             f"{'F1':>6} {'count err':>9}  actions", "-" * 130]
    for sname, src in result["sources"].items():
        for row in src["images"]:
            for w in wf:
                d = row["workflows"][w]
                n = str(d["interactions"]) if d["reached"] else f"not reached ({d['interactions']})"
                extra = f"; {d['retrains']} retrains, {d['retrain_seconds']:.0f} s" if d.get("retrains") else ""
                extra += f"; {d['note']}" if d.get("note") else ""
                lines.append(f"{sname:<18} {row['name']:<22} {row['grains_true']:>6} {w + ' ' + WORKFLOWS[w]:<20} "
                             f"{d['start_f1']:>8.3f} {n:>13} {d['boundary_f1']:>6.3f} {100 * d['count_error']:>8.1f}%"
                             f"  {_actions(d)}{extra}")
    lines += ["", f"mean interactions per source (a run not reached counts as {result['max_interactions']}, "
                  "the mean then a lower bound: >=)",
              f"{'source':<18} {'n':>3} " + " ".join(f"{w + ' ' + WORKFLOWS[w]:>24}" for w in wf), "-" * (23 + 25 * len(wf))]
    for sname, src in result["sources"].items():
        cells = []
        for w in wf:
            m = src["mean"][w]
            cells.append(f"{('>=' if m['lower_bound'] else '') + format(m['interactions'], '.1f')} "
                         f"({m['reached']}/{m['n']} reached)")
        lines.append(f"{sname:<18} {src['n_images']:>3} " + " ".join(f"{c:>24}" for c in cells))
    return lines


def _clicks_table(result: dict) -> list[str]:
    lines: list[str] = []
    if any("one_click" in src for src in result["sources"].values()):
        lines += ["", f"one click at the most interior pixel of each labelled grain (>= {ONE_CLICK_MIN_AREA} px; "
                      "diameter: the labels' median equivalent-circle diameter, px, median over the images), "
                      f"at the estimated scale; uncertainty: mean of the uncertainty layer (and of the raw boundary "
                      f"entropy) on the true boundary pixels the model found (a predicted boundary within "
                      f"{FOUND_REACH} px) and missed",
                  f"{'source':<18} {'grains':>6} {'diameter':>8} {'IoU>=' + str(IOU_OK):>9} {'median IoU':>10} "
                  f"{'unc. found':>10} {'unc. missed':>11} {'ent. found':>10} {'ent. missed':>11}", "-" * 101]
        for sname, src in result["sources"].items():
            oc = src.get("one_click")
            if not oc:
                continue
            d = oc.get("diameter_labels")
            lines.append(f"{sname:<18} {oc['grains']:>6} {'-' if d is None else format(d, '.1f'):>8} "
                         f"{_num(oc.get('share_ok')):>9} "
                         f"{_num(oc.get('median_iou_mean')):>10} {_num(oc['uncertainty_found']):>10} "
                         f"{_num(oc['uncertainty_missed']):>11} {_num(oc['entropy_found']):>10} "
                         f"{_num(oc['entropy_missed']):>11}")
    return lines


def _latency_table(result: dict) -> list[str]:
    lines: list[str] = []
    lat = result.get("latency")
    if lat:
        lines += ["", f"click latency on a {lat['shape'][0]} x {lat['shape'][1]} px synthetic image "
                      f"({lat['maps']}, {lat['grains']} grains; maps predicted once in {lat['maps_seconds']:.1f} s), "
                      f"{lat['clicks']} random clicks, target {lat['target_ms']:.0f} ms:"]
        for k in ("grain_at", "add_grain"):
            v = lat[k]
            lines.append(f"  {k:<10} median {v['median_ms']:7.2f} ms ({v['median_ratio']:.3f} x target)   "
                         f"p95 {v['p95_ms']:7.2f} ms ({v['p95_ratio']:.3f} x target)")
    return lines


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        obj = float(obj)
        return obj if math.isfinite(obj) else None
    return obj


def _workflows(text: str) -> list[str]:
    if text.strip().lower() == "none":
        return []
    ws = [w.strip() for w in text.split(",") if w.strip()]
    bad = [w for w in ws if w not in WORKFLOWS]
    if bad or not ws:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(WORKFLOWS)}, got {text!r}")
    return list(dict.fromkeys(ws))


def main(argv: Sequence[str] | None = None, *, segmenter_factory=None, proposal_factory=None,
         retrainer_factory=None, latency_segmenter=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="folder of source folders (bench_real's layout)")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N", help="N synthetic images (looks outside the "
                    "generalist's recipe)")
    ap.add_argument("--synthetic-size", type=int, default=512, metavar="PX")
    ap.add_argument("--synthetic-diameter", type=float, default=48.0, metavar="PX", help="mean grain diameter")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workflows", type=_workflows, default=list(WORKFLOWS), metavar="a,b,c|none")
    ap.add_argument("--one-click", action="store_true", help="also click once in every labelled grain (IoU of the "
                    "model's grain) and compare the uncertainty on found and missed boundaries")
    ap.add_argument("--max-images", type=int, default=None, metavar="N", help="at most N images per source")
    ap.add_argument("--model", default="generalist", help="registry name or model folder (b, c)")
    ap.add_argument("--max-interactions", type=int, default=200, metavar="N")
    ap.add_argument("--paint-cost", choices=("outline", "fill"), default="outline")
    ap.add_argument("--box", choices=("auto", "whole", "none"), default="auto", help="(b, c) one box over the "
                    "whole image first: when the model gets >= 2 grains right / always / never")
    ap.add_argument("--retrain-every", type=int, default=10, metavar="K", help="(c) retrain after every K "
                    "interactions")
    ap.add_argument("--retrain-on", choices=("all", "confirmed"), default="all",
                    help="(c) train on the whole annotation as it stands (default, as the Retrain panel does) or "
                         "only on the grains the annotator sees as right")
    ap.add_argument("--retrain-steps", type=int, default=20, metavar="S", help="(c) training steps per round")
    ap.add_argument("--retrain-batch", type=int, default=4, metavar="B")
    ap.add_argument("--retrain-patch", type=int, default=128, metavar="PX")
    ap.add_argument("--latency-clicks", type=int, default=200, metavar="N", help="0: no latency measurement")
    ap.add_argument("--latency-size", type=int, default=1024, metavar="PX")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args(argv)
    if not a.data and a.synthetic <= 0:
        ap.error("nothing to annotate: give --synthetic N and / or --data FOLDER")
    if a.max_interactions < 1 or a.retrain_every < 1 or a.retrain_steps < 1:
        ap.error("--max-interactions, --retrain-every and --retrain-steps must be >= 1")
    t_start = time.perf_counter()
    model: Any = a.model
    needs_model = ((a.one_click or any(w in ("b", "c") for w in a.workflows)) and segmenter_factory is None) or \
        ("c" in a.workflows and retrainer_factory is None) or (a.latency_clicks > 0 and latency_segmenter is None)
    if needs_model:
        model = str(bench_real.resolve_model(a.model))
    sources: dict[str, list[Sample]] = {}
    if a.synthetic > 0:
        sources["synthetic"] = synthetic_samples(a.synthetic, a.synthetic_size, a.synthetic_diameter, a.seed)
        for line in synthetic_settings(a.synthetic_size, a.synthetic_diameter):
            print(f"synthetic look  {line}")
    if a.data:
        for folder in bench_real.find_sources(a.data):
            sources[folder.name] = [Sample(s.name, s.image, np.asarray(s.labels), s.pixel_size)
                                    for s in bench_real.load_source(folder, a.max_images)]
    if a.max_images:
        sources = {k: v[: a.max_images] for k, v in sources.items()}
    result = {"benchmark": "interactive", "model": a.model, "workflows": a.workflows,
              "workflow_names": {w: WORKFLOWS[w] for w in a.workflows},
              "target": {"boundary_f1": TARGET_F1, "count_error": TARGET_COUNT_ERROR, "iou_ok": IOU_OK,
                         "tolerance_px": bench_real.TOLERANCE},
              "max_interactions": a.max_interactions, "paint_cost": a.paint_cost,
              "outline_px_per_stroke": OUTLINE_PX_PER_STROKE, "box": a.box, "retrain_every": a.retrain_every, "retrain_on": a.retrain_on,
              "retrain_steps": a.retrain_steps, "retrain_batch": a.retrain_batch, "retrain_patch": a.retrain_patch,
              "synthetic": synthetic_settings(a.synthetic_size, a.synthetic_diameter) if a.synthetic > 0 else None}
    result.update(evaluate(sources, a.workflows, model=model, segmenter_factory=segmenter_factory,
                           proposal_factory=proposal_factory, retrainer_factory=retrainer_factory,
                           max_interactions=a.max_interactions, retrain_every=a.retrain_every, retrain_on=a.retrain_on,
                           retrain_steps=a.retrain_steps, retrain_batch=a.retrain_batch,
                           retrain_patch=a.retrain_patch, paint_cost=a.paint_cost, box=a.box, clicks=a.one_click))
    if a.latency_clicks > 0:
        if latency_segmenter is not None:
            t0 = time.perf_counter()
            seg, maps = latency_segmenter(a.latency_size), "given maps"
        else:
            img = synthetic_samples(1, a.latency_size, a.synthetic_diameter, a.seed + 1000)[0].image
            t0 = time.perf_counter()
            seg, maps = make_segmenter(img, model), f"{a.model} maps"
        maps_seconds = time.perf_counter() - t0
        result["latency"] = {**click_latency(seg, a.latency_clicks, a.seed), "maps": maps,
                             "maps_seconds": maps_seconds, "grains": int(seg.labels.max()),
                             "diameter_used": getattr(seg, "diameter", None)}
    result["seconds"] = time.perf_counter() - t_start
    print()
    print(table(result))
    if a.out:
        Path(a.out).write_text(json.dumps(_jsonable(result), indent=1), encoding="utf-8")
        print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
