"""Torch datasets of training patches and validation tiles.

Training patches are random (seeded per ``(seed, epoch, index)``, so every item is reproducible
whatever the number of DataLoader workers); validation tiles are a fixed grid.  All datasets are
plain picklable objects (no lambdas, no open files) for DataLoader worker processes.

Samples hold grey ``(H, W)`` or colour ``(H, W, 3)`` images (a dataset may mix them); patches are
cut and augmented as they are and converted at the end to the ``in_chans`` channels the model takes
(:func:`.channels.to_chw`: grey replicated for 3 channels, colour to luminance for 1).

Segmentation items are dicts of float32 tensors: ``image`` (C, P, P) in [0, 1] (C = ``in_chans``),
``boundary`` and ``distance`` (:func:`.targets.segmentation_targets`) and ``valid`` (1 where the
loss counts: annotated pixels inside the image), each (1, P, P); with ``twin_class`` also
``twin_boundary`` (the twin-boundary mask) and ``twin_valid`` (``valid`` where the image has a twin
mask, 0 everywhere on an image without one).  The twin mask is cut, padded (0) and augmented with
the labels (nearest neighbour, the same geometric transform).  Classification items: ``image``
(C, P, P) and ``target`` (int64).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import DataError
from .augment import context_size
from .channels import to_chw
from .datasets import ClsSample, SegSample
from .targets import segmentation_targets

__all__ = ["ClsPatchDataset", "ClsTileDataset", "SegPatchDataset", "SegTileDataset", "crop_window", "grid_starts"]

_BLOCK = 32  # resolution of the annotated-area map used to place patches


def crop_window(image: np.ndarray, labels: np.ndarray | None, y0: int, x0: int, h: int,
                w: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The window ``[y0, y0 + h) x [x0, x0 + w)`` of an image, reaching outside it where needed.

    Outside the image the image is mirrored (reflect padding) and the labels are 0.  ``image`` is
    ``(H, W)`` or ``(H, W, C)`` (the window keeps the channels).

    Returns
    -------
    image window, labels window (None without labels), outside mask (None when the window lies
    inside the image)
    """
    H, W = image.shape[:2]
    ys, ye, xs, xe = max(y0, 0), min(y0 + h, H), max(x0, 0), min(x0 + w, W)
    if ys >= ye or xs >= xe:
        raise DataError(f"window ({y0}, {x0}, {h}, {w}) does not overlap the image of shape {image.shape}")
    img = image[ys:ye, xs:xe]
    lab = labels[ys:ye, xs:xe] if labels is not None else None
    pads = ((ys - y0, y0 + h - ye), (xs - x0, x0 + w - xe))
    if not any(p for pair in pads for p in pair):
        return np.ascontiguousarray(img), (np.ascontiguousarray(lab) if lab is not None else None), None
    img = np.pad(img, pads + ((0, 0),) * (img.ndim - 2), mode="reflect" if min(img.shape[:2]) > 1 else "edge")
    if lab is not None:
        lab = np.pad(lab, pads, mode="constant")
    outside = np.ones((h, w), dtype=bool)
    outside[pads[0][0]:h - pads[0][1], pads[1][0]:w - pads[1][1]] = False
    return img, lab, outside


def grid_starts(n: int, tile: int) -> list[int]:
    """Start offsets of tiles covering ``[0, n)``: a regular grid, the last tile flush with the end
    (a single tile at 0 when ``n <= tile``)."""
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, tile))
    return starts + [n - tile]


def _centre_crop(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if h == size and w == size:
        return arr
    if h < size or w < size:
        raise DataError(f"the augmentation returned a {h} x {w} patch, smaller than the patch size {size}")
    y, x = (h - size) // 2, (w - size) // 2
    return arr[y:y + size, x:x + size]


def _check_positive(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_chans(value) -> int:
    if isinstance(value, bool) or value not in (1, 3):
        raise DataError(f"in_chans must be 1 or 3, got {value!r}")
    return int(value)


def _crop_mask(mask: np.ndarray | None, y0: int, x0: int, h: int, w: int) -> np.ndarray | None:
    """The window of a mask as :func:`crop_window` cuts it (0 outside the image)."""
    if mask is None:
        return None
    H, W = mask.shape
    ys, ye, xs, xe = max(y0, 0), min(y0 + h, H), max(x0, 0), min(x0 + w, W)
    win = mask[ys:ye, xs:xe]
    pads = ((ys - y0, y0 + h - ye), (xs - x0, x0 + w - xe))
    if any(p for pair in pads for p in pair):
        win = np.pad(win, pads, mode="constant")
    return np.ascontiguousarray(win)


def _seg_item(image: np.ndarray, labels: np.ndarray, outside: np.ndarray | None,
              boundary_width: int, in_chans: int = 1, twin_class: bool = False,
              twins: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    boundary, distance, valid = segmentation_targets(labels, boundary_width, outside)
    item = {
        "image": torch.from_numpy(to_chw(image, in_chans)),
        "boundary": torch.from_numpy(boundary[None]),
        "distance": torch.from_numpy(distance[None]),
        "valid": torch.from_numpy(valid.astype(np.float32)[None]),
    }
    if twin_class:
        if twins is None:
            zero = np.zeros((1, *labels.shape), dtype=np.float32)
            item["twin_boundary"], item["twin_valid"] = torch.from_numpy(zero), torch.from_numpy(zero.copy())
        else:
            item["twin_boundary"] = torch.from_numpy(((np.asarray(twins) != 0) & valid).astype(np.float32)[None])
            item["twin_valid"] = item["valid"].clone()
    return item


class _Augmenting:
    """Shared by the patch datasets: crop a context window, augment it, centre-crop the patch."""

    augment = None
    patch_size: int
    context: int

    def _augment(self, rng: np.random.Generator, image: np.ndarray, labels: np.ndarray | None,
                 outside: np.ndarray | None, twins: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """``(image, labels, outside, twins)`` of the patch; the twin mask (optional) moves with the labels."""
        P = self.patch_size
        if self.augment is not None:
            self.augment.set_random_seed(int(rng.integers(0, 2**31 - 1)))
            if labels is not None:
                mask = labels.astype(np.int32) + 1  # 0 = outside the image
                if outside is not None:
                    mask[outside] = 0
                extra = {} if twins is None else {"masks": [np.asarray(twins).astype(np.uint8)]}
                out = self.augment(image=image, mask=mask, **extra)
                mask = _centre_crop(out["mask"], P)
                image = _centre_crop(out["image"], P)
                outside = mask == 0
                labels = np.where(outside, 0, mask - 1).astype(np.uint32)
                if twins is not None:
                    twins = (_centre_crop(out["masks"][0], P) > 0) & ~outside
                if not outside.any():
                    outside = None
            else:
                image = _centre_crop(self.augment(image=image)["image"], P)
        else:
            image = _centre_crop(image, P)
            if labels is not None:
                labels = _centre_crop(labels, P)
                outside = _centre_crop(outside, P) if outside is not None else None
                twins = _centre_crop(twins, P) if twins is not None else None
        image = np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)
        return image, labels, outside, twins

    def _start(self, rng: np.random.Generator, n: int, lo: int | None = None, hi: int | None = None) -> int:
        """Random start of a patch window along an axis of length ``n``: inside the image when the
        patch fits (otherwise covering all of it), and within ``[lo, hi]`` when given (a range that
        always meets the first one when it keeps a block of the image inside the patch)."""
        P = self.patch_size
        a, b = (0, n - P) if n >= P else (n - P, 0)
        if lo is not None:
            a, b = max(a, lo), min(b, hi)
        return int(rng.integers(a, b + 1))


class SegPatchDataset(_Augmenting, torch.utils.data.Dataset):
    """Random augmented training patches for segmentation.

    Item ``i`` is reproducible from ``(seed, epoch, i)`` (see :meth:`set_epoch`).  With
    probability ``synthetic_ratio`` it comes from ``synthetic`` (an object with
    ``sample(rng, size) -> (image float32 [0, 1], labels uint32)``); otherwise a patch of one of
    ``samples``, picked with probability proportional to its annotated area and placed so that
    it contains a 32 x 32 block with annotated pixels (a sparse annotation is found every time).
    Patches are cropped with enough margin for the rotations of ``augment``
    (:func:`.augment.context_size`), augmented, then centre-cropped to ``patch_size``; images
    smaller than a patch are mirror-padded, the padding has label 0 and is not valid.  A patch
    left with no annotated pixel after augmentation is drawn again (up to ``tries`` times).

    Parameters
    ----------
    samples : annotated images, grey or colour (may be empty with ``synthetic_ratio=1``: synthetic-only
        training)
    patch_size : patch side in px
    augment : an albumentations pipeline (:func:`.augment.build_augmentation`) or None
    length : number of items (patches per epoch)
    seed : random seed
    synthetic, synthetic_ratio : synthetic source and the fraction of items drawn from it
    boundary_width : see :func:`.targets.segmentation_targets`
    in_chans : channels of the ``image`` tensors (1 or 3, the model's ``in_chans``)
    twin_class : items also hold ``twin_boundary`` and ``twin_valid``: the samples' twin masks
        (``SegSample.twins``; none: ``twin_valid`` 0), and for synthetic items the source's
        ``sample_twins(rng, size) -> (image, labels, twin mask)`` when it has one
    """

    def __init__(self, samples: Sequence[SegSample], patch_size: int, augment=None, length: int = 1000,
                 seed: int = 0, synthetic=None, synthetic_ratio: float = 0.0, boundary_width: int = 2,
                 tries: int = 5, in_chans: int = 1, twin_class: bool = False):
        self.samples = list(samples)
        self.twin_class = bool(twin_class)
        self.in_chans = _check_chans(in_chans)
        self.patch_size = _check_positive("patch_size", patch_size)
        self.length = _check_positive("length", length)
        self.seed = _check_positive("seed", seed, 0)
        self.boundary_width = _check_positive("boundary_width", boundary_width)
        self.tries = _check_positive("tries", tries)
        if not 0 <= synthetic_ratio <= 1:
            raise DataError(f"synthetic_ratio must be in [0, 1], got {synthetic_ratio}")
        if synthetic_ratio > 0 and synthetic is None:
            raise DataError("synthetic_ratio > 0 needs a synthetic source")
        if not self.samples and synthetic_ratio < 1:
            raise DataError("no annotated samples: give samples or use synthetic_ratio=1 with a synthetic source")
        if synthetic is not None and not callable(getattr(synthetic, "sample", None)):
            raise DataError("synthetic must have a method sample(rng, size) -> (image, labels)")
        self.augment = augment
        self.synthetic = synthetic
        self.synthetic_ratio = float(synthetic_ratio)
        self.context = context_size(augment, self.patch_size)
        self.epoch = 0
        self._index_blocks()

    def _index_blocks(self) -> None:
        """Annotated pixel counts per block of every sample, as one cumulative table."""
        owner, where, weight = [], [], []
        b = min(_BLOCK, self.patch_size)
        for k, s in enumerate(self.samples):
            lab = np.asarray(s.labels)
            if lab.ndim != 2:
                raise DataError(f"{s.name}: labels must be 2-D, got shape {lab.shape}")
            if lab.size and int(lab.max()) >= 2**31 - 1:
                raise DataError(f"{s.name}: label values must be below 2**31 - 1 (relabel them 1..n)")
            H, W = lab.shape
            nby, nbx = -(-H // b), -(-W // b)
            annotated = np.zeros((nby * b, nbx * b), dtype=np.int32)
            annotated[:H, :W] = lab > 0
            counts = annotated.reshape(nby, b, nbx, b).sum(axis=(1, 3)).ravel()
            nz = np.flatnonzero(counts)
            owner.append(np.full(len(nz), k, dtype=np.int32))
            where.append(nz.astype(np.int64))
            weight.append(counts[nz].astype(np.float64))
        self._block = b
        self._owner = np.concatenate(owner) if owner else np.zeros(0, np.int32)
        self._where = np.concatenate(where) if where else np.zeros(0, np.int64)
        cum = np.cumsum(np.concatenate(weight)) if weight else np.zeros(0)
        if self.samples and (not len(cum) or cum[-1] == 0):
            raise DataError("no annotated pixels in any sample (labels are all 0)")
        self._cum = cum

    def set_epoch(self, epoch: int) -> None:
        """Draw different patches in the next epoch (items depend on ``(seed, epoch, index)``)."""
        self.epoch = _check_positive("epoch", epoch, 0)

    def __len__(self) -> int:
        return self.length

    def _real(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                       np.ndarray | None]:
        j = int(np.searchsorted(self._cum, rng.uniform(0, self._cum[-1]), side="right"))
        j = min(j, len(self._cum) - 1)
        s = self.samples[int(self._owner[j])]
        H, W = s.labels.shape
        b = self._block
        nbx = -(-W // b)
        by, bx = divmod(int(self._where[j]), nbx)
        by, bx = by * b, bx * b
        P, C = self.patch_size, self.context
        py = self._start(rng, H, min(by + b, H) - P, by)
        px = self._start(rng, W, min(bx + b, W) - P, bx)
        m = (C - P) // 2
        twins = _crop_mask(s.twins, py - m, px - m, C, C) if self.twin_class else None
        return (*crop_window(s.image, s.labels, py - m, px - m, C, C), twins)

    def _synthetic(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, None, np.ndarray | None]:
        P = self.patch_size
        twins = None
        if self.twin_class and callable(getattr(self.synthetic, "sample_twins", None)):
            image, labels, twins = self.synthetic.sample_twins(rng, P)
            twins = np.asarray(twins) != 0
        else:
            image, labels = self.synthetic.sample(rng, P)
        image, labels = np.asarray(image, dtype=np.float32), np.asarray(labels)
        if image.shape not in ((P, P), (P, P, 3)) or labels.shape != (P, P) or \
                (twins is not None and twins.shape != (P, P)):
            raise DataError(f"synthetic source returned shapes {image.shape} / {labels.shape}, expected {(P, P)} "
                            f"(or {(P, P, 3)} for a colour image)")
        return image, labels.astype(np.uint32, copy=False), None, twins

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} patches")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        synthetic = rng.random() < self.synthetic_ratio or not self.samples
        for _ in range(self.tries):
            image, labels, outside, twins = self._synthetic(rng) if synthetic else self._real(rng)
            image, labels, outside, twins = self._augment(rng, image, labels, outside, twins)
            if labels.any():
                break
        return _seg_item(image, labels, outside, self.boundary_width, self.in_chans, self.twin_class, twins)


class SegTileDataset(torch.utils.data.Dataset):
    """Validation tiles covering every image (no augmentation), same items as :class:`SegPatchDataset`.

    Each image is covered by a grid of ``tile`` x ``tile`` tiles, the last row and column flush
    with the image edge (so they overlap their neighbours); an image smaller than a tile is
    mirror-padded, the padding not valid.
    """

    def __init__(self, samples: Sequence[SegSample], tile: int, boundary_width: int = 2, in_chans: int = 1,
                 twin_class: bool = False):
        self.samples = list(samples)
        self.twin_class = bool(twin_class)
        self.in_chans = _check_chans(in_chans)
        self.tile = _check_positive("tile", tile)
        self.boundary_width = _check_positive("boundary_width", boundary_width)
        self.items = [(k, y, x) for k, s in enumerate(self.samples)
                      for y in grid_starts(s.labels.shape[0], self.tile)
                      for x in grid_starts(s.labels.shape[1], self.tile)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        k, y, x = self.items[index]
        s = self.samples[k]
        image, labels, outside = crop_window(s.image, s.labels, y, x, self.tile, self.tile)
        twins = _crop_mask(s.twins, y, x, self.tile, self.tile) if self.twin_class else None
        return _seg_item(image, labels, outside, self.boundary_width, self.in_chans, self.twin_class, twins)


class ClsPatchDataset(_Augmenting, torch.utils.data.Dataset):
    """Random augmented crops for classification: ``image`` (C, P, P) and ``target`` (int64).

    Item ``i`` picks a sample uniformly and a random ``patch_size`` crop of it (reproducible from
    ``(seed, epoch, i)``).  Images smaller than the patch are mirror-padded rather than resized,
    which keeps the physical scale of the microstructure.
    """

    def __init__(self, samples: Sequence[ClsSample], patch_size: int, augment=None, length: int = 1000,
                 seed: int = 0, in_chans: int = 1):
        self.samples = list(samples)
        self.in_chans = _check_chans(in_chans)
        if not self.samples:
            raise DataError("no samples for classification")
        self.patch_size = _check_positive("patch_size", patch_size)
        self.length = _check_positive("length", length)
        self.seed = _check_positive("seed", seed, 0)
        self.augment = augment
        self.context = context_size(augment, self.patch_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw different crops in the next epoch."""
        self.epoch = _check_positive("epoch", epoch, 0)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} patches")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        s = self.samples[int(rng.integers(len(self.samples)))]
        H, W = np.shape(s.image)[:2]
        P, C = self.patch_size, self.context
        m = (C - P) // 2
        image, _, _ = crop_window(s.image, None, self._start(rng, H) - m, self._start(rng, W) - m, C, C)
        image, _, _, _ = self._augment(rng, image, None, None)
        return {"image": torch.from_numpy(to_chw(image, self.in_chans)),
                "target": torch.tensor(int(s.label), dtype=torch.int64)}


class ClsTileDataset(torch.utils.data.Dataset):
    """Validation crops for classification (no augmentation).

    ``mode="grid"``: a grid of ``patch_size`` tiles over each image (as :class:`SegTileDataset`),
    at most ``max_tiles`` per image spread evenly over the grid; ``mode="center"``: one centre
    crop per image.
    """

    def __init__(self, samples: Sequence[ClsSample], patch_size: int, mode: str = "grid", max_tiles: int = 16,
                 in_chans: int = 1):
        if mode not in ("grid", "center"):
            raise DataError(f"ClsTileDataset: mode must be 'grid' or 'center', got {mode!r}")
        self.samples = list(samples)
        self.in_chans = _check_chans(in_chans)
        self.patch_size = P = _check_positive("patch_size", patch_size)
        self.max_tiles = _check_positive("max_tiles", max_tiles)
        self.mode = mode
        self.items: list[tuple[int, int, int]] = []
        for k, s in enumerate(self.samples):
            H, W = np.shape(s.image)[:2]
            if mode == "center":
                self.items.append((k, (H - P) // 2, (W - P) // 2))
                continue
            tiles = [(y, x) for y in grid_starts(H, P) for x in grid_starts(W, P)]
            if len(tiles) > self.max_tiles:
                pick = np.unique(np.round(np.linspace(0, len(tiles) - 1, self.max_tiles)).astype(int))
                tiles = [tiles[i] for i in pick]
            self.items += [(k, y, x) for y, x in tiles]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        k, y, x = self.items[index]
        s = self.samples[k]
        image, _, _ = crop_window(s.image, None, y, x, self.patch_size, self.patch_size)
        return {"image": torch.from_numpy(to_chw(image, self.in_chans)),
                "target": torch.tensor(int(s.label), dtype=torch.int64)}
