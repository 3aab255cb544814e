"""Histogram matching of micrograph intensities (NumPy only).

:func:`intensity_quantiles` summarises the intensities a model was trained on, and
:func:`match_histogram` maps a new image's intensities onto them. Used by
:mod:`~napari_grainlab.core.inference.adapt` and by the torch-free ONNX prediction.

Colour images ``(H, W, 3)`` are summarised and matched by their luminance: the quantiles are those of
the luminance, and the one monotone curve that maps the image's luminance onto the reference is applied
to each of the three channels, so a grey pixel stays grey (and a grey image replicated to RGB is
matched exactly as the grey image is) while hues keep their order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["intensity_quantiles", "match_histogram"]

#: pixels sampled per image for quantiles (enough for 1/256 steps to ~0.1 % accuracy)
SAMPLE_PIXELS = 1 << 20


def _is_image(im: np.ndarray) -> bool:
    """(H, W) grey or (H, W, 3) colour, not empty."""
    return im.size > 0 and (im.ndim == 2 or (im.ndim == 3 and im.shape[-1] == 3))


def _check_images(images, name: str = "images") -> list[np.ndarray]:
    if isinstance(images, np.ndarray) and (images.ndim == 2 or (images.ndim == 3 and images.shape[-1] == 3)):
        images = [images]
    images = list(images)
    if not images:
        raise DataError(f"{name}: need at least one image")
    out = []
    for k, im in enumerate(images):
        im = np.asarray(im)
        if not _is_image(im):
            raise DataError(f"{name}[{k}]: expected a non-empty 2-D grey or (H, W, 3) colour array, got shape "
                            f"{im.shape}")
        if im.dtype.kind not in "fiub":
            raise DataError(f"{name}[{k}]: must be numeric, got dtype {im.dtype}")
        out.append(im)
    return out


# ----------------------------------------------------------------------------- histogram matching
def _sample(image: np.ndarray, limit: int = SAMPLE_PIXELS) -> np.ndarray:
    """All pixels, or an evenly strided subset of about ``limit`` of them, as float64 (colour: their
    luminance)."""
    if image.ndim == 3:
        from ..data.channels import luminance

        flat = image.reshape(-1, image.shape[-1])
        step = max(1, flat.shape[0] // limit)
        return luminance(flat[::step].astype(np.float64)[None])[0]
    flat = image.reshape(-1)
    step = max(1, flat.size // limit)
    return flat[::step].astype(np.float64)


def _probabilities(n: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, int(n))


def intensity_quantiles(images: Sequence[np.ndarray] | np.ndarray, n: int = 256) -> np.ndarray:
    """``n`` evenly spaced quantiles (0 to 1) of the pooled intensities of ``images``, float32.

    Colour images contribute their luminance. Large images contribute an evenly strided sample of about a million pixels each.
    """
    if int(n) < 2:
        raise ConfigError(f"n must be at least 2, got {n}")
    images = _check_images(images)
    pooled = np.concatenate([_sample(im) for im in images])
    if not np.isfinite(pooled).all():
        raise DataError("images contain NaN or infinite values")
    return np.quantile(pooled, _probabilities(n)).astype(np.float32)


def _check_reference(reference_quantiles) -> np.ndarray:
    ref = np.asarray(reference_quantiles, dtype=np.float64)
    if ref.ndim != 1 or ref.size < 2:
        raise DataError(f"reference_quantiles must be a 1-D array of at least 2 values, got shape {ref.shape}")
    if not np.isfinite(ref).all():
        raise DataError("reference_quantiles contain NaN or infinite values")
    if np.any(np.diff(ref) < 0):
        raise DataError("reference_quantiles must be non-decreasing")
    return ref


def match_histogram(image: np.ndarray, reference_quantiles: np.ndarray, *, chunk: int = 1 << 22) -> np.ndarray:
    """Map the intensities of ``image`` monotonically onto a reference distribution.

    The image's own quantiles (at the probabilities of ``reference_quantiles``, from a
    sample of about a million pixels) are paired with the reference quantiles and the image
    is interpolated through that curve, in chunks of ``chunk`` pixels (float32 output, no
    float64 copy of a large image). Tied image quantiles (a saturated or constant region)
    map to the mean of their reference quantiles, so a constant image becomes the middle of
    the reference. The result is clipped to [0, 1]. A colour ``(H, W, 3)`` image is matched by its
    luminance: the curve from its luminance quantiles is applied to every channel.
    """
    image = np.asarray(image)
    if not _is_image(image):
        raise DataError(f"image must be a non-empty 2-D grey or (H, W, 3) colour array, got shape {image.shape}")
    if image.dtype.kind not in "fiub":
        raise DataError(f"image must be numeric, got dtype {image.dtype}")
    ref = _check_reference(reference_quantiles)
    sample = _sample(image)
    if not np.isfinite(sample).all() or (image.dtype.kind == "f" and not np.isfinite(image).all()):
        raise DataError("image contains NaN or infinite values")
    src = np.quantile(sample, _probabilities(ref.size))
    xp, inverse = np.unique(src, return_inverse=True)
    fp = np.bincount(inverse, weights=ref) / np.bincount(inverse)
    out = np.empty(image.shape, dtype=np.float32)
    flat_in, flat_out = image.reshape(-1), out.reshape(-1)
    for start in range(0, flat_in.size, int(chunk)):
        stop = start + int(chunk)
        flat_out[start:stop] = np.interp(flat_in[start:stop], xp, fp)
    np.clip(out, 0.0, 1.0, out=out)
    return out
