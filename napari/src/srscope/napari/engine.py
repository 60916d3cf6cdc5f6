"""Super-resolve every 2D plane of an nD array, tile by tile, as a generator: progress and cancel.

Why not just call :meth:`Enhancer.enhance` per plane: a single 2048² frame is 16 tiles and, with
the shipped U-Net on a laptop CPU, many seconds; the user should see tiles move and be able to
cancel *inside* the frame. So this module runs the Enhancer's own public pieces — its tile
:meth:`~srscope.runtime.Enhancer.plan`, its intensity policy, :meth:`run_normalised` on batches of
``batch_size`` tiles and the plan's :class:`~srscope.runtime.tiling.Blender` — in the same order
and with the same batches as :meth:`Enhancer.enhance_many` does for one frame, so the result is
identical to ``enhancer.enhance(plane)`` (the widget tests assert it), and yields a
:class:`Progress` after every session call. Whoever iterates decides when to stop: napari's
generator ``thread_worker`` checks its quit flag between two yields, i.e. between two batches.

When the card carries a degradation model, each finished plane is also scored by the runtime's
consistency check (:meth:`Enhancer.score`) and its local error map computed
(:meth:`Enhancer.error_map`, on the output grid), in the same worker, so the widget can show which
planes not to trust and where.

No Qt and no napari here: the same generator serves a script or a test.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from srscope.runtime.card import AffineIntensity
from srscope.runtime.consistency import PlaneScore
from srscope.runtime.enhancer import Enhancer
from srscope.runtime.imagecheck import checked_image


@dataclass(frozen=True)
class Progress:
    """Where a run stands: tiles (the progress bar's unit) and whole planes done, of totals."""

    tiles_done: int
    tiles_total: int
    planes_done: int
    planes_total: int


@dataclass
class EnhanceResult:
    """A finished run: the ``(..., H·s, W·s)`` float32 output and each plane's input affine, in
    plane order (the record a quantitative user needs to undo or compare normalisations)."""

    data: np.ndarray
    mappings: list[AffineIntensity] = field(default_factory=list)
    #: per plane, the consistency score (empty when the card has no degradation model)
    scores: list[PlaneScore] = field(default_factory=list)
    #: the local consistency error of every plane, ``data``'s shape (``None`` without a degradation model)
    error_map: np.ndarray | None = None

    @property
    def flagged(self) -> list[int]:
        """Numbers (C order) of the planes the consistency check flagged."""
        return [k for k, score in enumerate(self.scores) if score.flagged]


def plane_count(shape: tuple[int, ...]) -> int:
    """How many 2D planes an array of ``shape`` (``..., y, x``) holds."""
    if len(shape) < 2:
        raise ValueError(f"an image layer needs at least 2 dimensions (y, x), got shape {shape}")
    return math.prod(shape[:-2])


def tiles_total(enhancer: Enhancer, shape: tuple[int, ...]) -> int:
    """Tiles a run over an array of ``shape`` will push through the network (the bar's maximum)."""
    return plane_count(shape) * enhancer.plan((shape[-2], shape[-1])).count


def enhance_planes(enhancer: Enhancer, data: Any) -> Generator[Progress, None, EnhanceResult]:
    """Super-resolve every ``(y, x)`` plane of ``data`` (leading axes t/z/c… kept), yielding progress.

    ``data`` is anything indexable plane by plane (numpy, dask, zarr): one plane is read at a time,
    so a lazy stack is never loaded whole; the output is one in-memory float32 array. The
    enhancer's intensity policy is used as it is, so a ``series`` policy latches on the first
    plane of this run — give each run a fresh one (:meth:`Enhancer.with_intensity`). The
    generator's return value (``StopIteration.value``) is the :class:`EnhanceResult`; a consumer
    that stops iterating early simply never gets one.
    """
    shape = tuple(int(n) for n in data.shape)
    n_planes = plane_count(shape)
    lead, (h, w) = shape[:-2], shape[-2:]
    plan = enhancer.plan((h, w))
    s = enhancer.scale
    total = n_planes * plan.count
    out = np.empty(lead + (h * s, w * s), dtype=np.float32)
    errors = np.empty_like(out) if enhancer.checks_consistency else None
    scores: list[PlaneScore] = []
    mappings: list[AffineIntensity] = []
    done = 0
    yield Progress(0, total, 0, n_planes)
    for k, index in enumerate(np.ndindex(*lead)):
        image = checked_image(np.asarray(data[index]), what=f"plane {index}" if lead else "image")
        mapping = enhancer.intensity.input_mapping(image)
        blender = plan.blender()
        tiles = list(plan.tiles(plan.pad(mapping.normalise(image))))
        for start in range(0, len(tiles), enhancer.batch_size):
            chunk = tiles[start:start + enhancer.batch_size]
            result = enhancer.run_normalised(np.stack([view for *_, view in chunk])[:, None])
            for (iy, ix, _), tile_out in zip(chunk, result):
                blender.add(iy, ix, tile_out[0])
            done += len(chunk)
            if done < (k + 1) * plan.count:  # the plane's last batch is reported once it is stored
                yield Progress(done, total, k, n_planes)
        back = enhancer.intensity.output_mapping(mapping)
        plane = out[index]
        np.multiply(blender.result(), np.float32(back.scale), out=plane)  # AffineIntensity.denormalise,
        plane += np.float32(back.offset)                                   # without a frame temporary
        mappings.append(mapping)
        if errors is not None:
            scores.append(enhancer.score(image, plane))
            errors[index] = enhancer.error_map(image, plane)
        yield Progress(done, total, k + 1, n_planes)
    return EnhanceResult(out, mappings, scores, errors)


def run_to_end(enhancer: Enhancer, data: Any) -> EnhanceResult:
    """:func:`enhance_planes` without progress: for scripts and tests that just want the output."""
    gen = enhance_planes(enhancer, data)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
