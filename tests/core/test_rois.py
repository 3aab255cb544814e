"""Grains as an ImageJ / Fiji ROI zip (core/rois.py), read back with roifile."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

roifile = pytest.importorskip("roifile")

from napari_grainlab.core.errors import DataError  # noqa: E402
from napari_grainlab.core.rois import grain_outlines, labels_to_roi_zip  # noqa: E402
from napari_grainlab.core.synthetic import SynthParams, generate  # noqa: E402


def polygon_area(xy):
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def test_one_polygon_per_grain_with_the_grains_area(tmp_path):
    labels = generate(SynthParams(height=384, width=448), seed=3).labels
    n = labels_to_roi_zip(labels, tmp_path / "RoiSet.zip", pixel_size=0.1)
    ids = np.unique(labels[labels > 0])
    assert n == len(ids)
    rois = roifile.roiread(tmp_path / "RoiSet.zip")
    assert len(rois) == n and sorted(int(r.name) for r in rois) == sorted(ids.tolist())
    counts = np.bincount(labels.ravel())
    for roi in rois:
        assert roi.roitype == roifile.ROI_TYPE.POLYGON
        area = polygon_area(roi.coordinates())
        assert area == pytest.approx(counts[int(roi.name)], rel=0.03, abs=1.0), roi.name
        if hasattr(roi, "properties"):
            props = roi.properties
            assert props["area_px"] == counts[int(roi.name)]
            assert float(props["area_um2"]) == pytest.approx(counts[int(roi.name)] * 0.01, rel=1e-4)
    with zipfile.ZipFile(tmp_path / "RoiSet.zip") as zf:
        assert all(name.endswith(".roi") for name in zf.namelist())
    assert not list(tmp_path.glob(".*.part"))


def test_outline_coordinates_are_imagej_pixel_edges():
    labels = np.zeros((10, 12), np.uint16)
    labels[2:5, 3:7] = 9  # rows 2-4, columns 3-6: ImageJ's rectangle (3, 2) - (7, 5)
    (xy,) = grain_outlines(labels).values()
    assert polygon_area(xy) == pytest.approx(12 - 0.5)
    assert xy[:, 0].min() == pytest.approx(3.0) and xy[:, 0].max() == pytest.approx(7.0)
    assert xy[:, 1].min() == pytest.approx(2.0) and xy[:, 1].max() == pytest.approx(5.0)
    assert len(xy) == 8  # straight runs are simplified: the 4 sides, the 4 cut corners


def test_sparse_ids_pieces_and_edges(tmp_path):
    labels = np.zeros((40, 40), np.uint32)
    labels[:10, :10] = 4_000_000_000  # at the image corner, a huge id
    labels[20:25, 20:25] = 7
    labels[30:32, 30:32] = 7  # a second, smaller piece of grain 7
    outlines = grain_outlines(labels)
    assert sorted(outlines) == [7, 4_000_000_000]
    assert polygon_area(outlines[4_000_000_000]) == pytest.approx(99.5)
    assert polygon_area(outlines[7]) == pytest.approx(24.5)  # the larger piece
    assert labels_to_roi_zip(labels, tmp_path / "r.zip") == 2
    assert {r.name for r in roifile.roiread(tmp_path / "r.zip")} == {"7", "4000000000"}


def test_empty_and_bad_labels(tmp_path):
    assert labels_to_roi_zip(np.zeros((8, 8), np.uint8), tmp_path / "e.zip") == 0
    with zipfile.ZipFile(tmp_path / "e.zip") as zf:
        assert zf.namelist() == []
    with pytest.raises(DataError):
        grain_outlines(np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError):
        grain_outlines(-np.ones((4, 4), np.int32))
    with pytest.raises(DataError):
        grain_outlines(np.zeros((4, 4), np.float32))
