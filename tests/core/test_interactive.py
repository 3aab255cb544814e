"""core.interactive: grains from a click or a box on cached model maps, and the edits a prompt makes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from napari_grainlab.core import interactive as ia
from napari_grainlab.core.errors import DataError, GrainLabError
from napari_grainlab.core.synthetic import SynthParams, generate


def _truth(seed=3, side=192, diameter=32):
    p = SynthParams()
    p.width = p.height = side
    p.tessellation.grains = None
    p.tessellation.mean_diameter = diameter
    return generate(p, seed=seed)


def _maps(labels):
    """Ideal network maps of ``labels``: boundary 1 on a 2 px band, distance 1 deep inside."""
    edge = find_boundaries(labels, mode="thick")
    dist = np.zeros(labels.shape, np.float32)
    for g, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        d = ndi.distance_transform_edt(np.pad(labels[box] == g, 1))[1:-1, 1:-1]
        dist[box] = np.where(labels[box] == g, d / max(d.max(), 1), dist[box])
    return edge.astype(np.float32), dist


def _centre(mask):
    d = ndi.distance_transform_edt(mask)
    return np.unravel_index(int(np.argmax(d)), mask.shape)


@pytest.fixture(scope="module")
def ideal():
    s = _truth()
    boundary, distance = _maps(s.labels)
    return s, ia.ClickSegmenter.from_maps(s.image, boundary, distance, labels=s.labels)


def test_grain_at_returns_the_clicked_grain(ideal):
    s, seg = ideal
    for g in (1, 5, 9):
        y, x = _centre(s.labels == g)
        mask = seg.grain_at(y, x)
        assert mask.dtype == bool and mask.shape == s.labels.shape
        assert np.array_equal(mask, s.labels == g)


def test_a_click_on_a_boundary_line_takes_an_adjacent_grain(ideal):
    s, seg = ideal
    edge = find_boundaries(s.labels, mode="inner")
    ys, xs = np.nonzero(edge[20:-20, 20:-20])
    y, x = ys[0] + 20, xs[0] + 20
    g = seg.grain_id_at(y, x)
    near = set(np.unique(s.labels[y - 3:y + 4, x - 3:x + 4]))
    assert g in near and seg.boundary[np.nonzero(seg.grain_at(y, x))].mean() < 1.0


def test_bad_clicks_and_boxes_are_refused(ideal):
    s, seg = ideal
    h, w = s.labels.shape
    for y, x in ((-5, 3), (3, w + 2), (float("nan"), 1)):
        with pytest.raises(DataError):
            seg.grain_at(y, x)
    with pytest.raises(DataError):
        seg.grains_in_box(0, 0, float("inf"), 5)
    assert not seg.grains_in_box(h + 10, w + 10, h + 20, w + 20).any()  # a box outside: nothing
    assert issubclass(DataError, GrainLabError)


def test_grains_in_box_keeps_grains_mostly_inside_whole(ideal):
    s, seg = ideal
    y0, x0, y1, x1 = 40, 30, 150, 120
    got = seg.grains_in_box(y1, x1, y0, x0)  # corners in any order
    assert got.dtype == np.uint32
    inside = np.zeros(s.labels.shape, bool)
    inside[y0:y1 + 1, x0:x1 + 1] = True
    expect = set()
    for g in range(1, s.labels.max() + 1):
        m = s.labels == g
        if m.any() and (m & inside).sum() >= 0.5 * m.sum():
            expect.add(g)
    assert len(expect) >= 3 and got.max() == len(expect)
    for n in range(1, got.max() + 1):  # each returned grain is one whole true grain
        ids = np.unique(s.labels[got == n])
        assert len(ids) == 1 and ids[0] in expect and np.array_equal(got == n, s.labels == ids[0])


def test_uncertainty_and_next_uncertain_region():
    s = _truth(seed=4)
    boundary, distance = _maps(s.labels)
    boundary = boundary * 0.95 + 0.02
    unsure = np.zeros_like(boundary, dtype=bool)
    unsure[120:160, 20:60] = True
    boundary[unsure] = 0.5  # the network cannot decide here
    seg = ia.ClickSegmenter.from_maps(s.image, boundary, distance, labels=s.labels)
    u = seg.uncertainty
    assert u.shape == boundary.shape and 0 <= u.min() and u.max() <= 1
    assert u[unsure].mean() > 0.9 > 0.3 > u[~unsure].mean()
    # a sure boundary is not uncertain, on its flanks either (the raw map's entropy would light them up)
    edges = ndi.binary_dilation(find_boundaries(s.labels), iterations=2) & ~ndi.binary_dilation(unsure, iterations=8)
    assert u[edges].mean() < 0.3
    y, x = seg.next_uncertain(window=32)
    assert unsure[y, x]
    annotated = np.zeros(boundary.shape, bool)
    annotated[100:180, 0:80] = True  # that area is annotated now: the next one is elsewhere
    y2, x2 = seg.next_uncertain(annotated, window=32)
    assert not annotated[y2, x2]
    assert seg.next_uncertain(np.ones(boundary.shape, bool)) is None


def test_add_grain_fills_only_unannotated_pixels_and_replaces_the_clicked_one(ideal):
    s, seg = ideal
    labels = np.zeros(s.labels.shape, np.uint16)
    y, x = _centre(s.labels == 5)
    mask = seg.grain_at(y, x)
    edit = ia.add_grain(labels, mask)
    assert edit.new_ids == (1,)
    labels = edit.apply(labels)
    assert np.array_equal(labels == 1, mask)
    # a painted blob over the next grain: clicking it replaces the blob by the model's grain, same id
    y2, x2 = _centre(s.labels == 9)
    labels[y2 - 4:y2 + 5, x2 - 30:x2 + 30] = np.where(labels[y2 - 4:y2 + 5, x2 - 30:x2 + 30] == 0, 7, 1)
    grain9 = seg.grain_at(y2, x2)
    edit = ia.add_grain(labels, grain9, at=(y2, x2))
    after = edit.apply(labels)
    assert edit.new_ids == ()
    assert np.array_equal(after == 7, grain9 & (labels != 1)) and (after == 1).sum() >= (labels == 1).sum() - 1
    assert not ia.add_grain(after, grain9, at=(y2, x2))  # the same click again changes nothing
    with pytest.raises(DataError):
        ia.add_grain(labels, mask[:10])


def test_add_grains_and_remove(ideal):
    s, seg = ideal
    labels = np.zeros(s.labels.shape, np.uint32)
    y, x = _centre(s.labels == 5)
    labels[s.labels == 5] = 3
    box = seg.grains_in_box(0, 0, s.labels.shape[0] - 1, s.labels.shape[1] - 1)
    edit = ia.add_grains(labels, box)
    out = edit.apply(labels)
    assert (out > 0).all()  # every pixel is in a grain now
    assert np.array_equal(out == 3, s.labels == 5)  # the existing grain kept its id and pixels
    assert len(edit.new_ids) == len(np.unique(s.labels)) - 1
    removed = ia.remove_grain_at(out, y, x)
    assert removed.removed_ids == (3,) and not (removed.apply(out) == 3).any()
    assert not ia.remove_grain_at(np.zeros_like(out), y, x)


def test_scribble_splits_along_a_short_stroke_and_merges_across_grains(ideal):
    s, seg = ideal
    labels = s.labels.astype(np.uint32).copy()
    a, b = 5, None
    # two neighbours: merge them with a stroke from the centre of one to the other
    for g in range(1, labels.max() + 1):
        if g != a and (ndi.binary_dilation(labels == a) & (labels == g)).any():
            b = g
            break
    ca, cb = _centre(labels == a), _centre(labels == b)
    merged = ia.scribble(labels, [ca, cb]).apply(labels)
    assert not (merged == b).any() and np.array_equal(merged == a, (labels == a) | (labels == b))
    # split the merged grain back with a stroke along part of the old boundary, inside the merged grain
    edge = find_boundaries(labels == a, mode="outer") & (labels == b)
    ys, xs = np.nonzero(edge)
    order = np.argsort(ys * 1000 + xs)
    mid = len(order) // 2
    pts = np.array([[ys[order[mid - 3]], xs[order[mid - 3]]], [ys[order[mid + 3]], xs[order[mid + 3]]]], float)
    edit = ia.scribble(merged, pts)
    assert edit and len(edit.new_ids) == 1
    after = edit.apply(merged)
    assert len(np.unique(after[(labels == a) | (labels == b)])) == 2
    assert not ia.scribble(labels, [[0, 0]])  # one point: nothing


def test_click_segmenter_with_the_generalist_model_finds_known_grains():
    s = _truth(seed=12, side=320, diameter=56)
    seg = ia.ClickSegmenter(s.image, model="generalist")  # the grain diameter estimated
    assert seg.diameter is not None and 16 < seg.diameter < 80
    assert seg.labels.shape == s.labels.shape and seg.boundary.shape == s.labels.shape
    ious = []
    for g in range(1, s.labels.max() + 1):
        m = s.labels == g
        if m.sum() < 400 or m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any():
            continue
        pred = seg.grain_at(*_centre(m))
        ious.append((pred & m).sum() / (pred | m).sum())
    assert len(ious) >= 8
    assert np.median(ious) >= 0.9 and np.mean(np.array(ious) >= 0.8) >= 0.9
    with pytest.raises(GrainLabError):
        ia.ClickSegmenter(s.image, model=42)


def test_out_of_memory_is_a_clear_memory_error(monkeypatch):
    import napari_grainlab.core.inference as inference

    s = _truth(seed=2, side=96)

    def oom(*_a, **_k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(inference, "predict_array", oom)
    with pytest.raises(MemoryError, match="out of memory predicting the maps of a 96 x 96 px image"):
        ia.ClickSegmenter(s.image, model="generalist", device="cpu")

    def bug(*_a, **_k):
        raise RuntimeError("some other failure")

    monkeypatch.setattr(inference, "predict_array", bug)
    with pytest.raises(RuntimeError, match="some other failure"):
        ia.ClickSegmenter(s.image, model="generalist", device="cpu")
