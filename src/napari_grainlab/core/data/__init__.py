"""Data for the learning engine: readers, annotated samples, targets, splits, augmentation, patches.

>>> from napari_grainlab.core.data import read_image, load_segmentation_folder, group_split
>>> img = read_image("micrograph.tif")            # doctest: +SKIP
>>> img.data.dtype, img.pixel_size                 # doctest: +SKIP
(dtype('float32'), 0.0125)
>>> img.data.shape                                 # (H, W) grey or (H, W, 3) colour  # doctest: +SKIP
(1024, 1280, 3)

The torch / albumentations parts (:mod:`.augment`, :mod:`.patches`) load on first use.
"""

from __future__ import annotations

import importlib

from .datasets import (
    ClsSample,
    DataWarning,
    SegSample,
    detect_task,
    group_of,
    load_classification_folder,
    load_dataset_folders,
    load_segmentation_folder,
    rescale_sample,
    samples_from_arrays,
)
from .io import (
    DataError,
    Image,
    boundary_mask_to_instances,
    is_boundary_mask,
    labels_from_array,
    normalize_intensity,
    read_image,
    read_labels,
    read_pixel_size,
    to_grayscale,
)
from .splits import group_split, kfold_splits, spatial_split
from .targets import mean_grain_diameter, segmentation_targets

_LAZY = {
    "build_augmentation": "augment",
    "ColourJitter": "augment",
    "mixup_cutmix": "augment",
    "SEMArtifacts": "augment",
    "PoissonNoise": "augment",
    "SegPatchDataset": "patches",
    "SegTileDataset": "patches",
    "ClsPatchDataset": "patches",
    "ClsTileDataset": "patches",
}

__all__ = [
    "ClsSample",
    "DataError",
    "DataWarning",
    "Image",
    "SegSample",
    "boundary_mask_to_instances",
    "detect_task",
    "group_of",
    "group_split",
    "is_boundary_mask",
    "kfold_splits",
    "labels_from_array",
    "load_dataset_folders",
    "load_classification_folder",
    "load_segmentation_folder",
    "mean_grain_diameter",
    "normalize_intensity",
    "read_image",
    "read_labels",
    "read_pixel_size",
    "rescale_sample",
    "samples_from_arrays",
    "segmentation_targets",
    "spatial_split",
    "to_grayscale",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
