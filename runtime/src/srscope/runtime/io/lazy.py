"""Turn whatever array an :class:`Image` holds into a lazy dask array in canonical axis order.

Writers work from dask so that numpy, zarr and dask inputs all stream plane by plane: memory stays
bounded by one plane (or chunk) however large the dataset is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dask.array as da
import numpy as np
import zarr
from srscope.runtime.io.image import CANONICAL_AXES, Image


def as_dask(data: Any) -> da.Array:
    """Wrap ``data`` without reading it; zarr arrays keep their chunking."""
    if isinstance(data, da.Array):
        return data
    if isinstance(data, zarr.Array):
        return da.from_zarr(data)
    if isinstance(data, np.ndarray):
        return da.from_array(data, chunks=(1,) * (data.ndim - 2) + data.shape[-2:])
    return da.asarray(data)


def canonical_axes(axes: str) -> str:
    """``axes`` sorted into ``tczyx`` order, e.g. ``"zcyx"`` → ``"czyx"``."""
    return "".join(a for a in CANONICAL_AXES if a in axes)


def canonical_data(image: Image) -> tuple[da.Array, str]:
    """The image's pixels transposed (lazily) into canonical order, with the new axes string."""
    target = canonical_axes(image.axes)
    data = as_dask(image.data)
    if target != image.axes:
        data = data.transpose([image.axes.index(a) for a in target])
    return data, target


def iter_plane_arrays(data: da.Array) -> Iterator[np.ndarray]:
    """Yield every 2D (y, x) plane as numpy, in C order of the leading dimensions."""
    for index in np.ndindex(*data.shape[:-2]):
        yield np.asarray(data[index].compute(scheduler="synchronous"))
