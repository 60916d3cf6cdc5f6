"""The 2D (y, x) planes of an N-D OME image, in the order srrun processes them.

srscope models are 2D: a T/C/Z stack is super-resolved plane by plane. Which model each plane's
channel goes through is decided in :mod:`srscope.runtime.channelmap`; its names are re-exported
here for code written before that module existed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from srscope.runtime.channelmap import ChannelMappingError, ModelSpec, channel_models

__all__ = ["ChannelMappingError", "ModelSpec", "Plane", "channel_models", "count_planes", "iter_planes"]


@dataclass(frozen=True)
class Plane:
    """One 2D plane: ``number`` counts planes in C order; ``index`` selects it from the array."""

    number: int
    index: tuple[int, ...]
    channel: int
    axes: str

    def describe(self) -> str:
        """Human position, e.g. ``"t=3 c=1 z=0"`` (``"the image"`` for a single 2D plane)."""
        parts = [f"{a}={i}" for a, i in zip(self.axes[:-2], self.index)]
        return " ".join(parts) if parts else "the image"


def count_planes(shape: Sequence[int]) -> int:
    n = 1
    for size in shape[:-2]:
        n *= int(size)
    return n


def iter_planes(shape: Sequence[int], axes: str) -> Iterator[Plane]:
    """Every (y, x) plane of an array with ``axes`` (ending in ``yx``), in C order."""
    if not axes.endswith("yx") or len(axes) != len(shape):
        raise ValueError(f"axes {axes!r} do not fit shape {tuple(shape)}")
    leading = [int(s) for s in shape[:-2]]
    c_pos = axes.index("c") if "c" in axes else None
    for number, index in enumerate(itertools.product(*(range(n) for n in leading))):
        yield Plane(number=number, index=index, channel=index[c_pos] if c_pos is not None else 0, axes=axes)
