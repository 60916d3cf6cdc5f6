"""Downsampled levels of an NGFF multiscale pyramid, computed plane by plane.

Levels are 2x2 means in y and x (other axes untouched), so intensities stay in the same physical
units at every level; integer data is rounded back to its dtype (a mean never leaves its range).
Because every level of a plane depends only on that plane, a plane's levels are written together
with the plane itself: a finished job never has to re-read its whole output to build the pyramid,
and planes written by different processes stay independent.
"""

from __future__ import annotations

import numpy as np

#: Stop adding levels once the smaller of y/x would fall below this many pixels.
MIN_LEVEL_SIZE = 32
MAX_LEVELS = 8
#: Largest y/x chunk edge; chunks never span two planes, so planes can be written independently.
MAX_CHUNK_EDGE = 1024


def plane_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """One chunk per plane (or a tile of it): leading axes 1, y/x at most :data:`MAX_CHUNK_EDGE`."""
    return (1,) * (len(shape) - 2) + (min(shape[-2], MAX_CHUNK_EDGE), min(shape[-1], MAX_CHUNK_EDGE))


def level_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes of level 0, 1, ... for a level-0 ``shape``."""
    shapes = [tuple(shape)]
    while len(shapes) < MAX_LEVELS and min(shapes[-1][-2:]) // 2 >= MIN_LEVEL_SIZE:
        last = shapes[-1]
        shapes.append(last[:-2] + (last[-2] // 2, last[-1] // 2))
    return shapes


def halve(plane: np.ndarray) -> np.ndarray:
    """2x2 mean of a 2D plane in its own dtype (an odd last row/column is dropped).

    Float planes are averaged in their own precision (four strided adds: ~4x faster than a
    float64 mean, and a live run writes every level of every frame); integers in float64, so the
    rounding back to the dtype is exact.
    """
    h, w = plane.shape[0] // 2, plane.shape[1] // 2
    if np.issubdtype(plane.dtype, np.floating):
        a = np.asarray(plane[: 2 * h, : 2 * w])
        total = a[0::2, 0::2] + a[1::2, 0::2]
        total += a[0::2, 1::2]
        total += a[1::2, 1::2]
        total *= plane.dtype.type(0.25)
        return total
    blocks = np.asarray(plane[: 2 * h, : 2 * w], dtype=np.float64).reshape(h, 2, w, 2)
    mean = blocks.mean(axis=(1, 3))
    if np.issubdtype(plane.dtype, np.integer):
        mean = np.rint(mean)
    return mean.astype(plane.dtype)


def plane_levels(plane: np.ndarray, n_levels: int) -> list[np.ndarray]:
    """``[plane, halve(plane), halve(halve(plane)), ...]``, ``n_levels`` entries."""
    levels = [plane]
    for _ in range(n_levels - 1):
        levels.append(halve(levels[-1]))
    return levels
