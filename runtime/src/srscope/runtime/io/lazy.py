"""Plane-by-plane access to an :class:`Image` in canonical (``tczyx``) order, whatever it holds.

Readers and writers stream one (y, x) plane at a time so memory stays bounded by a plane however
large the dataset. Planes are read straight from the stored array (numpy, zarr, or dask as a
fallback) instead of slicing a dask graph per plane: building and optimising that graph cost
~40 ms a plane, more than the read itself (zarr: ~2 ms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import dask.array as da
import numpy as np
from srscope.runtime.io.image import CANONICAL_AXES, Image


def canonical_axes(axes: str) -> str:
    """``axes`` sorted into ``tczyx`` order, e.g. ``"zcyx"`` → ``"czyx"``."""
    return "".join(a for a in CANONICAL_AXES if a in axes)


def canonical_shape(image: Image) -> tuple[int, ...]:
    """The image's shape with its axes in canonical order."""
    return tuple(image.sizes[a] for a in canonical_axes(image.axes))


def plane_reader(image: Image) -> Callable[[tuple[int, ...]], np.ndarray]:
    """A function reading the (y, x) plane at a *canonical* leading index as numpy."""
    order = canonical_axes(image.axes)[:-2]
    stored = image.axes[:-2]
    data = image.data

    def read(index: tuple[int, ...]) -> np.ndarray:
        position = dict(zip(order, index))
        plane = data[tuple(position[a] for a in stored)]
        if isinstance(plane, da.Array):
            plane = plane.compute(scheduler="synchronous")
        return np.asarray(plane)

    return read


def iter_canonical_planes(image: Image) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """Every plane as ``(canonical leading index, numpy plane)``, in canonical C order."""
    read = plane_reader(image)
    for index in np.ndindex(*canonical_shape(image)[:-2]):
        yield index, read(index)
