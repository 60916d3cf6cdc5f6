"""Downsampled levels of an NGFF multiscale pyramid, built chunk by chunk from the level above.

Levels are 2x2 means in y and x (other axes untouched), so intensities stay in the same physical
units at every level; integer data is rounded back to its dtype (a mean never leaves its range).
Each level is computed from the previous *stored* level with dask, so memory stays bounded.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import zarr

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


def halve(level: da.Array) -> da.Array:
    """2x2 mean of the last two axes (an odd last row/column is dropped)."""
    h, w = level.shape[-2] // 2 * 2, level.shape[-1] // 2 * 2
    even = level[..., :h, :w]
    even = even.rechunk((1,) * (level.ndim - 2) + (min(h, MAX_CHUNK_EDGE), min(w, MAX_CHUNK_EDGE)))
    factors = {level.ndim - 2: 2, level.ndim - 1: 2}
    dtype = level.dtype
    if np.issubdtype(dtype, np.floating):
        return da.coarsen(np.mean, even, factors).astype(dtype)
    mean = da.coarsen(np.mean, even.astype(np.float64), factors)
    return da.rint(mean).astype(dtype)


def write_levels(group: zarr.Group, level0: zarr.Array, dimension_names: list[str]) -> list[str]:
    """Create arrays ``"1"``, ``"2"``, ... beside ``level0`` (path ``"0"``); returns all paths."""
    paths = ["0"]
    previous = level0
    for i, shape in enumerate(level_shapes(level0.shape)[1:], start=1):
        target = group.create_array(
            str(i), shape=shape, dtype=level0.dtype, chunks=plane_chunks(shape),
            dimension_names=dimension_names, overwrite=True, fill_value=0,
        )
        da.store(halve(da.from_zarr(previous)).rechunk(target.chunks), target, lock=False)
        paths.append(str(i))
        previous = target
    return paths
