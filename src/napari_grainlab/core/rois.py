"""Grains as ImageJ / Fiji ROIs: one polygon per grain in a ``RoiSet.zip`` that the ROI Manager opens.

:func:`labels_to_roi_zip` traces the outer outline of every grain (marching squares on the grain's mask at
level 0.5, through the midpoints of its boundary pixel edges: the polygon's area is the grain's pixel count
within half a pixel for a compact grain) and writes one polygon ROI per grain, named after its label id, in
ImageJ's pixel coordinates (the top-left corner of the image is (0, 0), pixel centres at +0.5).  A grain in
several pieces gets the outline of its largest piece; holes (grains inside a grain) are not cut out,
since an ImageJ polygon has none.  The ROI properties (``Roi.getProperty`` in ImageJ) hold the label, the
pixel count and, with a pixel size, the area in µm².
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["grain_outlines", "labels_to_roi_zip"]


def _simplify(points: np.ndarray) -> np.ndarray:
    """Drop the vertices of a closed polygon that lie on the straight line through their neighbours."""
    if len(points) < 4:
        return points
    prev = np.roll(points, 1, axis=0)
    nxt = np.roll(points, -1, axis=0)
    cross = (points[:, 0] - prev[:, 0]) * (nxt[:, 1] - prev[:, 1]) - (points[:, 1] - prev[:, 1]) * (nxt[:, 0] - prev[:, 0])
    keep = np.abs(cross) > 1e-9
    return points[keep] if keep.sum() >= 3 else points


def _polygon_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _grains(labels: np.ndarray):
    """``(label, outline, pixel count)`` of every grain (see :func:`grain_outlines`)."""
    from scipy import ndimage as ndi
    from skimage.measure import find_contours

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError(f"grain labels must be one 2-D image, got shape {labels.shape}")
    if labels.dtype == np.bool_:
        labels = labels.view(np.uint8)
    if labels.dtype.kind not in "iu":
        raise DataError(f"grain labels must be integers, got {labels.dtype}")
    if not labels.size:
        return
    if labels.min() < 0:
        raise DataError("grain labels must be >= 0")
    top = int(labels.max())
    if top == 0:
        return
    ids = None
    if top > 4 * labels.size or labels.dtype.itemsize > 4 or labels.dtype.kind == "i" and labels.dtype.itemsize > 4:
        ids = np.unique(labels)  # sparse or 64-bit ids: renumber 1..n for find_objects
        ids = ids[ids > 0]
        work = (np.searchsorted(ids, labels) + 1).astype(np.int32)
        work[labels == 0] = 0
    else:
        work = labels
    for i, box in enumerate(ndi.find_objects(work)):
        if box is None:
            continue
        grain = work[box] == i + 1
        contours = find_contours(np.pad(grain, 1).astype(np.float32), 0.5, fully_connected="high")
        if not contours:
            continue
        best = max(contours, key=_polygon_area_rc)
        if len(best) > 1 and np.allclose(best[0], best[-1]):
            best = best[:-1]
        rows = best[:, 0] + box[0].start - 1
        cols = best[:, 1] + box[1].start - 1
        label = int(ids[i]) if ids is not None else i + 1
        yield label, _simplify(np.column_stack([cols + 0.5, rows + 0.5])), int(grain.sum())


def _polygon_area_rc(rc: np.ndarray) -> float:
    return _polygon_area(rc[:, ::-1])


def grain_outlines(labels: np.ndarray) -> dict[int, np.ndarray]:
    """The outer outline of every grain: ``{label: (n, 2) float array of x, y}`` in ImageJ pixel
    coordinates (see the module doc), as a closed polygon (the first vertex is not repeated)."""
    return {label: xy for label, xy, _ in _grains(labels)}


def labels_to_roi_zip(labels: np.ndarray, path: str | Path, pixel_size: float | None = None) -> int:
    """Write one ImageJ polygon ROI per grain of ``labels`` (0 = no grain) to the zip file ``path``;
    returns the number of ROIs.  ``pixel_size`` (µm) adds each grain's area in µm² to its ROI properties
    (ROI coordinates are always pixels).  The zip is written to a temporary file and renamed into place.
    """
    import io
    import zipfile

    from roifile import ROI_TYPE, ImagejRoi

    from ._io import atomic_write_bytes

    grains = list(_grains(labels))
    width = max(4, len(str(max((g[0] for g in grains), default=0))))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for label, xy, area in grains:
            roi = ImagejRoi.frompoints(xy.astype(np.float32), name=str(label))
            roi.roitype = ROI_TYPE.POLYGON
            props: dict[str, object] = {"label": label, "area_px": area}
            if pixel_size:
                props["area_um2"] = f"{area * float(pixel_size) ** 2:.6g}"
                props["pixel_size_um"] = f"{float(pixel_size):.6g}"
            if hasattr(roi, "props"):
                roi.props = "".join(f"{k}: {v}\n" for k, v in props.items())
            zf.writestr(f"{label:0{width}d}.roi", roi.tobytes())
    atomic_write_bytes(Path(path), buffer.getvalue())
    return len(grains)
