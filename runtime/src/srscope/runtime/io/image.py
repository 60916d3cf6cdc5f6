"""The in-memory description of a microscopy image that every srscope reader and writer shares.

Pixel sizes travel with the pixels on purpose: a super-resolved image is only quantitative if the
reader knows the output grid is finer than the input grid, so every writer records them and every
reader restores them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from srscope.runtime.errors import UserError

#: The canonical OME axis order. Files are written in this order (NGFF requires t, c, z, y, x).
CANONICAL_AXES = "tczyx"


class ImageIOError(UserError):
    """A file cannot be read or written; the message is one line meant for the person at the terminal."""


@dataclass
class Image:
    """Pixels plus the physical calibration needed to interpret them.

    ``data`` stays lazy (dask or zarr) when the file allows it, so a dataset larger than memory can
    be opened and processed plane by plane. ``axes`` names each dimension of ``data`` with a letter
    from ``tczyx`` in stored order and always ends in ``yx``.
    """

    data: Any
    axes: str
    pixel_size_um: tuple[float, float]
    channel_names: tuple[str, ...] | None = None
    z_step_um: float | None = None
    time_interval_s: float | None = None
    metadata: dict = field(default_factory=dict)
    #: Where the first pixel's *centre* lies, per axis letter (µm for z/y/x, s for t); missing axes
    #: are at 0. This is NGFF's ``translation``: stage positions survive processing, so overlays
    #: and stitching still line up.
    translation: dict[str, float] = field(default_factory=dict)
    #: Per channel, the viewer display settings (NGFF ``omero`` channel entries: label, colour,
    #: contrast window) found in the file, so an output can look like its input; ``None`` if none.
    channel_display: tuple[dict, ...] | None = None

    def __post_init__(self) -> None:
        axes = self.axes
        if not isinstance(axes, str) or not axes.endswith("yx"):
            raise ImageIOError(f"image axes must end in 'yx', got {axes!r}")
        if len(set(axes)) != len(axes) or any(a not in CANONICAL_AXES for a in axes):
            raise ImageIOError(f"image axes must be distinct letters from {CANONICAL_AXES!r}, got {axes!r}")
        ndim = len(getattr(self.data, "shape", ()))
        if ndim != len(axes):
            raise ImageIOError(f"image has {ndim} dimensions but axes {axes!r} name {len(axes)}")
        size = tuple(float(s) for s in self.pixel_size_um)
        if len(size) != 2 or not all(math.isfinite(s) and s > 0 for s in size):
            raise ImageIOError(f"pixel size must be two positive numbers (y, x) in µm, got {self.pixel_size_um!r}")
        self.pixel_size_um = size
        if self.channel_names is not None:
            self.channel_names = tuple(str(n) for n in self.channel_names)
            n_channels = self.sizes.get("c", 1)
            if len(self.channel_names) != n_channels:
                raise ImageIOError(
                    f"{len(self.channel_names)} channel names given for {n_channels} channel(s)"
                )
        for name in ("z_step_um", "time_interval_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ImageIOError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(self.metadata, dict):
            raise ImageIOError("image metadata must be a dict")
        self.translation = {str(a): float(v) for a, v in dict(self.translation).items()}
        if any(a not in axes for a in self.translation) or not all(map(math.isfinite, self.translation.values())):
            raise ImageIOError(f"translation must give finite numbers for axes of {axes!r}, got {self.translation!r}")
        if self.channel_display is not None:
            self.channel_display = tuple(dict(c) for c in self.channel_display)
            if len(self.channel_display) != self.sizes.get("c", 1):
                raise ImageIOError(f"{len(self.channel_display)} channel display entries for "
                                   f"{self.sizes.get('c', 1)} channel(s)")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def sizes(self) -> dict[str, int]:
        """Axis letter → length, e.g. ``{"c": 2, "y": 512, "x": 512}``."""
        return dict(zip(self.axes, self.shape))

    @property
    def n_channels(self) -> int:
        return self.sizes.get("c", 1)
