"""Background level as the paper estimates it: the mean of a region without objects.

Rather than asking a person to draw that region, the image is cut into tiles and the dimmest
tiles stand in for it (their median mean, robust to one tile that happens to be darker from
noise). On a frame with no empty region at all this overestimates the background, which is the
safe direction: it removes less signal than it could, never adds any.
"""

from __future__ import annotations

import numpy as np


def estimate_background(image: np.ndarray, *, tile: int = 32, dimmest_fraction: float = 0.05) -> float:
    """Mean intensity of the emptiest region, in the image's own units (counts)."""
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"background estimation needs a 2D image, got shape {data.shape}")
    tile = max(4, min(tile, min(data.shape) // 4))
    h, w = (data.shape[0] // tile) * tile, (data.shape[1] // tile) * tile
    means = data[:h, :w].reshape(h // tile, tile, w // tile, tile).mean(axis=(1, 3)).ravel()
    k = max(1, int(np.ceil(dimmest_fraction * means.size)))
    return float(np.median(np.partition(means, k - 1)[:k]))


def subtract_background(image: np.ndarray, level: float) -> np.ndarray:
    """float32 copy with ``level`` removed and negatives clipped (the paper's thresholding)."""
    return np.clip(np.asarray(image, dtype=np.float32) - np.float32(level), 0.0, None)
