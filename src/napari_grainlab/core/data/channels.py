"""Grey and colour micrographs: one convention for every part of the engine.

An image array is float32 ``(H, W)`` for grey or ``(H, W, 3)`` (channel last, RGB) for colour, with
values in [0, 1] once normalised.  Colour stays colour so that colour (tint) etched, polarised-light
and EBSD-like micrographs keep the contrast that separates their grains; an RGB file whose three
channels are equal is grey and becomes ``(H, W)``.  A model declares how many channels it takes
(``ModelSpec.in_chans``, 1 or 3); :func:`to_channels` converts an image to that: grey is replicated
for a 3-channel model, colour becomes luminance for a 1-channel one.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError

__all__ = ["image_channels", "is_colour", "luminance", "normalize_image", "to_channels", "to_chw", "to_planes"]

_LUMINANCE = np.array([0.2125, 0.7154, 0.0721])  # ITU-R BT.709, as skimage.color.rgb2gray


def _squeeze_to(arr: np.ndarray, ndim: int) -> np.ndarray:
    """Drop singleton axes, leading ones first, while ``arr`` has more than ``ndim`` axes; with
    ``ndim == 3`` the last (colour) axis is kept."""
    last = arr.ndim if ndim == 2 else arr.ndim - 1
    singleton = [i for i in range(last) if arr.shape[i] == 1]
    drop = tuple(singleton[:max(0, arr.ndim - ndim)])
    return arr.squeeze(axis=drop) if drop else arr


def _equal_channels(rgb: np.ndarray) -> bool:
    """True when the three channels hold the same values (a grey image stored as RGB); a sample first."""
    step = max(1, rgb.shape[0] // 64)
    sample = rgb[::step]
    if not (np.array_equal(sample[..., 0], sample[..., 1]) and np.array_equal(sample[..., 0], sample[..., 2])):
        return False
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def to_planes(arr: np.ndarray, source: str = "image", channel_axis: int | None = None,
              colour: bool = True) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3)`` from an image array, keeping the stored dtype and range.

    Singleton axes are squeezed and alpha is dropped.  ``channel_axis`` names the colour axis when known
    (e.g. from TIFF metadata); otherwise the last axis of a 3-D array (after squeezing) is colour when its
    length is 2 (grey + alpha), 3 or 4.  RGB whose channels are equal becomes grey; with
    ``colour=False`` every RGB image becomes its luminance (float).  Stacks (more than two spatial axes),
    empty arrays and other channel counts raise :class:`DataError` with the shape.
    """
    arr = np.asarray(arr)
    shape = arr.shape
    if arr.size == 0:
        raise DataError(f"{source}: the image is empty (shape {shape})")
    if arr.dtype.kind not in "buif":
        raise DataError(f"{source}: unsupported pixel type {arr.dtype}")
    if channel_axis is None:
        arr = _squeeze_to(arr, 2)
        if arr.ndim == 3 and arr.shape[-1] in (2, 3, 4):
            channel_axis = 2
    else:
        arr = np.moveaxis(arr, channel_axis, -1)
        if arr.shape[-1] == 1:  # one sample per pixel: grey
            arr, channel_axis = _squeeze_to(arr[..., 0], 2), None
        else:
            arr = _squeeze_to(arr, 3)
    if arr.ndim != (2 if channel_axis is None else 3):
        raise DataError(f"{source}: a stack of shape {shape}; expected one 2-D image (grey or RGB)")
    if channel_axis is not None:
        channels = arr.shape[-1]
        if channels in (3, 4):
            if arr.dtype == np.bool_:
                arr = arr.view(np.uint8)
            arr = arr[..., :3]
            if _equal_channels(arr):
                arr = arr[..., 0]
            elif not colour:
                arr = luminance(arr)
        elif channels == 2:
            arr = arr[..., 0]  # grey + alpha
        else:
            raise DataError(f"{source}: {channels} channels (shape {shape}); expected grey or RGB(A)")
    return np.ascontiguousarray(arr)


def is_colour(img: np.ndarray) -> bool:
    """True for an ``(H, W, 3)`` image."""
    return img.ndim == 3 and img.shape[-1] == 3


def image_channels(img: np.ndarray) -> int:
    """1 for ``(H, W)``, 3 for ``(H, W, 3)``; :class:`DataError` otherwise."""
    if img.ndim == 2:
        return 1
    if is_colour(img):
        return 3
    raise DataError(f"expected an (H, W) or (H, W, 3) image, got shape {img.shape}")


def luminance(img: np.ndarray) -> np.ndarray:
    """Luminance (BT.709) of ``(H, W, 3)``; ``(H, W)`` is returned as it is.  Integers become float."""
    if img.ndim == 2:
        return img
    work = np.float32 if img.dtype.itemsize <= 2 or img.dtype == np.float32 else np.float64
    return img[..., :3].astype(work, copy=False) @ _LUMINANCE.astype(work)


def normalize_image(arr: np.ndarray, low: float = 0.1, high: float = 99.9) -> np.ndarray:
    """Stretch an ``(H, W)`` or ``(H, W, 3)`` image to float32 [0, 1] between two percentiles.

    Colour uses one range for all three channels (taken over every channel's values), so hues stay as
    they are; grey is :func:`~napari_grainlab.core.data.io.normalize_intensity`.
    """
    from .io import normalize_intensity

    return normalize_intensity(arr, low, high)


def to_channels(img: np.ndarray, n: int) -> np.ndarray:
    """The image with ``n`` channels (1 → ``(H, W)``, 3 → ``(H, W, 3)``): grey is replicated for 3,
    colour becomes luminance for 1."""
    have = image_channels(img)
    if n == have:
        return img
    if n == 1:
        return luminance(img).astype(img.dtype if img.dtype.kind == "f" else np.float32, copy=False)
    if n == 3:
        return np.repeat(img[..., None], 3, axis=-1)
    raise DataError(f"a model takes 1 or 3 channels, not {n}")


def to_chw(img: np.ndarray, n: int) -> np.ndarray:
    """float32 ``(n, H, W)`` for a model that takes ``n`` channels (see :func:`to_channels`)."""
    out = to_channels(np.asarray(img, dtype=np.float32), n)
    return np.ascontiguousarray(out[None] if out.ndim == 2 else np.moveaxis(out, -1, 0))
