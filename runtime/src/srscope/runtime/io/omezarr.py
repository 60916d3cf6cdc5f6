"""OME-Zarr (NGFF) reading (0.4 and 0.5), and writing a whole in-memory image through the store.

Writing goes through :class:`srscope.runtime.io.store.PlaneStore`, the one NGFF writer srrun and
live acquisition share (created atomically, planes with their pyramid levels, metadata last);
``OmeZarrWriter`` is its older name. A store that srrun is still filling has no ``multiscales``
and a ``running`` status: :func:`read_omezarr` refuses it rather than read an interrupted job.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import zarr
from srscope.runtime.io.image import Image, ImageIOError
from srscope.runtime.io.lazy import (
    canonical_axes,
    canonical_shape,
    iter_canonical_planes,
)
from srscope.runtime.io.store import (
    COMPLETE,
    INCOMPLETE,
    NGFF_VERSION,
    RUNNING,
    SRSCOPE_KEY,
    WORK_IN_PROGRESS,
    ChannelRanges,
    PlaneStore,
    check_json,
    store_status,
)
from srscope.runtime.io.units import length_to_um, time_to_s

#: The store's older name (``srrun``'s workers and existing callers use it).
OmeZarrWriter = PlaneStore

_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def _axis_names(axes: list[Any]) -> str:
    names = [a["name"] if isinstance(a, dict) else a for a in axes]
    if any(not isinstance(n, str) or n.lower() not in _AXIS_TYPES for n in names):
        raise ImageIOError(f"NGFF axes {names} are not all among t, c, z, y, x")
    return "".join(n.lower() for n in names)


def _affine_of(transforms: list[dict] | None, ndim: int) -> tuple[list[float], list[float]]:
    """``(scale, translation)`` of NGFF transforms applied in order: index i → scale·i + translation."""
    scale, shift = [1.0] * ndim, [0.0] * ndim
    for t in transforms or []:
        if t.get("type") == "scale" and "scale" in t:
            factors = [float(v) for v in t["scale"]]
            scale = [a * b for a, b in zip(scale, factors)]
            shift = [a * b for a, b in zip(shift, factors)]
        elif t.get("type") == "translation" and "translation" in t:
            shift = [a + float(b) for a, b in zip(shift, t["translation"])]
    return scale, shift


def _physical_translation(axes: str, shift: list[float], units: dict[str, str | None]) -> dict[str, float]:
    """Non-zero translations in µm (z, y, x) and s (t); dropped where the unit is pixels."""
    found: dict[str, float] = {}
    for axis, value in zip(axes, shift):
        if not value or axis == "c":
            continue
        if axis == "t":
            found[axis] = time_to_s(value, units["t"]) if units.get("t") else value
        else:
            converted = length_to_um(value, units.get(axis), default_unit="micrometer")
            if converted is not None:
                found[axis] = converted
    return found


def read_omezarr(path: Path) -> Image:
    """Open level 0 of an NGFF 0.4 or 0.5 image lazily, with pixel sizes in micrometres."""
    try:
        group = zarr.open_group(path, mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:  # noqa: BLE001 - zarr raises many types for foreign/corrupt stores
        raise ImageIOError(f"{path}: not a readable zarr store ({exc.__class__.__name__})") from None
    state = attrs.get(SRSCOPE_KEY) if isinstance(attrs.get(SRSCOPE_KEY), dict) else {}
    if state.get("status") in WORK_IN_PROGRESS:
        raise ImageIOError(f"{path}: incomplete srrun output (interrupted job); rerun srrun to finish it")
    ome = attrs.get("ome", attrs)
    if "bioformats2raw.layout" in ome and "0" in group:  # bioformats2raw: the image is series "0"
        return read_omezarr(Path(path) / "0")
    multiscales = ome.get("multiscales")
    if not multiscales:
        raise ImageIOError(f"{path}: zarr store has no NGFF multiscales metadata")
    try:
        ms = multiscales[0]
        axes = _axis_names(ms["axes"])
        dataset = ms["datasets"][0]
        array = group[dataset["path"]]
    except ImageIOError:
        raise
    except Exception as exc:  # noqa: BLE001 - metadata of any shape may be malformed
        raise ImageIOError(f"{path}: malformed NGFF multiscales metadata ({exc.__class__.__name__}: {exc})") from None
    if array.ndim != len(axes):
        raise ImageIOError(f"{path}: level 0 has {array.ndim} dimensions but {len(axes)} axes")
    if not axes.endswith("yx"):
        raise ImageIOError(f"{path}: NGFF axes {axes!r} do not end in y, x")
    # The dataset's transforms apply first, then the multiscale's: i → S_ms (S_ds i + T_ds) + T_ms.
    ds_scale, ds_shift = _affine_of(dataset.get("coordinateTransformations"), len(axes))
    ms_scale, ms_shift = _affine_of(ms.get("coordinateTransformations"), len(axes))
    scale = [m * d for m, d in zip(ms_scale, ds_scale)]
    shift = [m * d + t for m, d, t in zip(ms_scale, ds_shift, ms_shift)]
    units = {(a["name"].lower() if isinstance(a, dict) else a): (a.get("unit") if isinstance(a, dict) else None)
             for a in ms["axes"]}

    def space(axis: str) -> float | None:
        return length_to_um(scale[axes.index(axis)], units.get(axis), default_unit="micrometer")

    pixel_y, pixel_x = space("y"), space("x")
    metadata = dict(state.get("metadata", {}))
    if pixel_y is None or pixel_x is None:
        metadata["pixel_size_unknown"] = True
        pixel_y = pixel_x = 1.0
    z_step = space("z") if "z" in axes else None
    interval = None
    if "t" in axes and units.get("t"):
        interval = time_to_s(scale[axes.index("t")], units["t"])
    names = None
    channels = ome.get("omero", {}).get("channels") if isinstance(ome.get("omero"), dict) else None
    n_channels = array.shape[axes.index("c")] if "c" in axes else 1
    display = None
    if channels and len(channels) == n_channels and all(isinstance(c, dict) for c in channels):
        display = tuple(dict(c) for c in channels)
        if all("label" in c for c in channels):
            names = tuple(str(c["label"]) for c in channels)
    translation = {} if metadata.get("pixel_size_unknown") else _physical_translation(axes, shift, units)
    return Image(data=array, axes=axes, pixel_size_um=(pixel_y, pixel_x),
                 channel_names=names, z_step_um=z_step, time_interval_s=interval, metadata=metadata,
                 translation=translation, channel_display=display)


def write_omezarr(path: Path, image: Image, *, overwrite: bool = False) -> Path:
    """Write ``image`` (any axis order; stored as t, c, z, y, x) as an NGFF 0.5 multiscale image."""
    axes = canonical_axes(image.axes)
    check_json(image.metadata)
    if not all(math.isfinite(s) for s in image.pixel_size_um):
        raise ImageIOError("pixel size must be finite")
    writer = PlaneStore.create(path, shape=canonical_shape(image), dtype=image.dtype, axes=axes,
                               overwrite=overwrite)
    levels = writer.levels
    ranges = ChannelRanges(image.n_channels)
    for index, plane in iter_canonical_planes(image):
        writer.write_plane(index, plane, levels=levels)
        ranges.add_plane(index[axes.index("c")] if "c" in axes else 0, plane)
    template = Image(data=writer.level0, axes=axes, pixel_size_um=image.pixel_size_um,
                     channel_names=image.channel_names, z_step_um=image.z_step_um,
                     time_interval_s=image.time_interval_s, metadata=image.metadata,
                     translation=image.translation, channel_display=image.channel_display)
    writer.finalize(template, name=path.name.split(".")[0] or "image", windows=ranges.windows())
    return path


__all__ = ["COMPLETE", "INCOMPLETE", "NGFF_VERSION", "RUNNING", "SRSCOPE_KEY", "ChannelRanges", "OmeZarrWriter",
           "read_omezarr", "store_status", "write_omezarr"]
