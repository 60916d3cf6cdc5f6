"""Rejecting input the network cannot meaningfully super-resolve, with one-line reasons.

A NaN in a camera frame (a dead-pixel map applied as NaN, a failed flat-field division) would
spread through every convolution of every tile that touches it; refusing early is kinder than a
black output image.
"""

from __future__ import annotations

import numpy as np


class InvalidImageError(ValueError):
    """The array given to the runtime is not a finite, non-empty, real 2D image."""


def checked_image(image: object, *, what: str = "image") -> np.ndarray:
    """Return ``image`` as a 2D numpy array after checking shape, dtype and finiteness."""
    array = np.asarray(image)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InvalidImageError(f"{what} must hold real numbers, not dtype {array.dtype}")
    if array.ndim != 2:
        raise InvalidImageError(f"{what} must be 2D (Y, X), got shape {array.shape}; pass planes one at a time")
    if array.size == 0:
        raise InvalidImageError(f"{what} is empty (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InvalidImageError(f"{what} contains {bad} NaN/Inf pixel(s)")
    return array
