"""OME-Zarr (NGFF) reading (0.4 and 0.5) and writing (0.5, zarr v3) with a multiscale pyramid.

Writing is split in two so long jobs can stream into the final store: :meth:`OmeZarrWriter.create`
makes every pyramid level (empty) and marks the group ``incomplete``; planes are then written in
any order, by any process, each together with its downsampled levels
(:meth:`OmeZarrWriter.write_plane`); :meth:`OmeZarrWriter.finalize` checks every level-0 chunk
exists and only then writes the NGFF ``multiscales`` metadata. A store without that metadata is not an
image to any NGFF reader, so an interrupted job can never be mistaken for a finished one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from srscope.runtime.io.image import Image, ImageIOError
from srscope.runtime.io.lazy import (
    canonical_axes,
    canonical_shape,
    iter_canonical_planes,
)
from srscope.runtime.io.pyramid import level_shapes, plane_chunks, plane_levels
from srscope.runtime.io.units import (
    NGFF_SPACE_UNIT,
    NGFF_TIME_UNIT,
    length_to_um,
    time_to_s,
)

NGFF_VERSION = "0.5"
#: Group attribute holding srscope's own state: ``status`` and free-form ``metadata``.
SRSCOPE_KEY = "srscope"
COMPLETE = "complete"
INCOMPLETE = "incomplete"

_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def store_status(path: Path) -> str | None:
    """``"complete"``/``"incomplete"`` for a store srscope wrote, ``None`` for anything else."""
    try:
        attrs = dict(zarr.open_group(path, mode="r").attrs)
    except Exception:  # noqa: BLE001 - anything unopenable is simply not ours
        return None
    state = attrs.get(SRSCOPE_KEY)
    return state.get("status") if isinstance(state, dict) else None


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
    if state.get("status") == INCOMPLETE:
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


def _ngff_axes(axes: str, image: Image) -> list[dict[str, str]]:
    out = []
    for a in axes:
        entry = {"name": a, "type": _AXIS_TYPES[a]}
        if a in "yx" or (a == "z" and image.z_step_um is not None):
            entry["unit"] = NGFF_SPACE_UNIT
        if a == "t" and image.time_interval_s is not None:
            entry["unit"] = NGFF_TIME_UNIT
        out.append(entry)
    return out


def _base_scale(axes: str, image: Image) -> list[float]:
    values = {"t": image.time_interval_s or 1.0, "c": 1.0, "z": image.z_step_um or 1.0,
              "y": image.pixel_size_um[0], "x": image.pixel_size_um[1]}
    return [float(values[a]) for a in axes]


class ChannelRanges:
    """Running per-channel range of the finite pixel values: the data range in ``omero`` windows.

    Fed plane by plane (or with ranges recorded per plane by other processes), so a window covering
    every full-resolution pixel never needs the whole level in memory. A smaller pyramid level
    would be cheaper but its 2x2 means hide exactly the brightest features (a bead, a spike).
    """

    def __init__(self, n_channels: int) -> None:
        self.low = [math.inf] * n_channels
        self.high = [-math.inf] * n_channels

    def add(self, channel: int, low: float, high: float) -> None:
        self.low[channel] = min(self.low[channel], float(low))
        self.high[channel] = max(self.high[channel], float(high))

    def add_plane(self, channel: int, plane: np.ndarray) -> None:
        finite = plane[np.isfinite(plane)] if np.issubdtype(plane.dtype, np.floating) else plane
        if finite.size:
            self.add(channel, finite.min(), finite.max())

    def windows(self) -> list[tuple[float, float]]:
        return [(lo, hi) if lo <= hi else (0.0, 1.0) for lo, hi in zip(self.low, self.high)]


def _level_ranges(array: zarr.Array, axes: str) -> list[tuple[float, float]]:
    """Per-channel data range of ``array``, read one plane at a time."""
    c_axis = axes.index("c") if "c" in axes else None
    ranges = ChannelRanges(array.shape[c_axis] if c_axis is not None else 1)
    for index in np.ndindex(*array.shape[:-2]):
        ranges.add_plane(index[c_axis] if c_axis is not None else 0, np.asarray(array[index]))
    return ranges.windows()


def _omero(windows: list[tuple[float, float]], names: tuple[str, ...] | None,
           display: tuple[dict, ...] | None) -> dict:
    """Display hints for viewers: the data range of level 0 as window min/max; colours, labels and
    the contrast (window start/end) of the input where it had them, so the output looks like it."""
    channels = []
    for i, (lo, hi) in enumerate(windows):
        entry: dict[str, Any] = {"label": f"channel {i}", "color": "FFFFFF", "active": True}
        window = {"min": lo, "max": hi, "start": lo, "end": hi}
        if display:
            entry.update({k: v for k, v in display[i].items() if k != "window"})
            shown = display[i].get("window") if isinstance(display[i].get("window"), dict) else {}
            window.update({k: float(shown[k]) for k in ("start", "end")
                           if isinstance(shown.get(k), (int, float)) and not isinstance(shown.get(k), bool)})
        if names:
            entry["label"] = names[i]
        entry["window"] = window
        channels.append(entry)
    return {"channels": channels, "rdefs": {"model": "color" if display else "greyscale"}}


def _check_json(metadata: dict) -> dict:
    try:
        return json.loads(json.dumps(metadata))
    except (TypeError, ValueError) as exc:
        raise ImageIOError(f"image metadata is not JSON-serialisable ({exc})") from None


class OmeZarrWriter:
    """An NGFF 0.5 image store being filled: level 0 exists, metadata comes last (see module doc)."""

    def __init__(self, path: Path, group: zarr.Group) -> None:
        self.path = Path(path)
        self.group = group

    @property
    def level0(self) -> zarr.Array:
        """Full-resolution array; all-zero chunks are still stored so missing ones can be counted."""
        return self.group["0"].with_config({"write_empty_chunks": True})

    @property
    def levels(self) -> list[zarr.Array]:
        """Level 0 first, then each 2x2-downsampled level."""
        arrays = [self.level0]
        while str(len(arrays)) in self.group:
            arrays.append(self.group[str(len(arrays))])
        return arrays

    def write_plane(self, index: tuple[int, ...], plane: np.ndarray, *, levels: list[zarr.Array] | None = None) -> None:
        """Store one (y, x) plane at ``index`` (the leading-axis position) and its pyramid levels.

        Level 0 goes last, so a plane whose level-0 chunk exists has all its levels too.
        """
        levels = levels or self.levels
        values = plane_levels(np.asarray(plane, dtype=self.level0.dtype), len(levels))
        for array, value in reversed(list(zip(levels, values))):
            array[index] = value

    @property
    def job(self) -> dict:
        """Whatever the creator stored to recognise its own unfinished store (see :meth:`create`)."""
        return dict(self.group.attrs.get(SRSCOPE_KEY, {})).get("job", {})

    @classmethod
    def create(cls, path: Path, *, shape: tuple[int, ...], dtype: Any, axes: str,
               job: dict | None = None, overwrite: bool = False) -> OmeZarrWriter:
        """Make the store with an empty level 0 (axes must be canonical ``tczyx`` order)."""
        if tuple(a for a in "tczyx" if a in axes) != tuple(axes):
            raise ImageIOError(f"OME-Zarr axes must be in t, c, z, y, x order, got {axes!r}")
        group = zarr.open_group(path, mode="w" if overwrite else "w-", zarr_format=3)
        group.attrs[SRSCOPE_KEY] = {"status": INCOMPLETE, "job": _check_json(job or {})}
        for level, level_shape in enumerate(level_shapes(tuple(shape))):
            group.create_array(
                str(level), shape=level_shape, dtype=dtype, chunks=plane_chunks(level_shape),
                dimension_names=list(axes), fill_value=0,
            )
        return cls(path, group)

    @classmethod
    def open(cls, path: Path) -> OmeZarrWriter:
        """Reopen an unfinished store to write more planes (``r+``)."""
        if store_status(path) != INCOMPLETE:
            raise ImageIOError(f"{path}: not an unfinished srscope store")
        return cls(path, zarr.open_group(path, mode="r+"))

    @classmethod
    def open_any(cls, path: Path) -> OmeZarrWriter:
        """Open a store srscope wrote, finished or not, read-only (e.g. to compare :attr:`job`)."""
        return cls(path, zarr.open_group(path, mode="r"))

    def missing_chunks(self) -> int:
        """Level-0 chunks never written. Empty chunks are always stored, so 0 means every plane landed."""
        arr = self.level0
        return arr.nchunks - arr.nchunks_initialized

    def finalize(self, template: Image, *, name: str = "image",
                 windows: list[tuple[float, float]] | None = None) -> None:
        """Write the NGFF metadata, last; ``template`` supplies calibration, origin, names, display
        settings and metadata. ``windows``: each channel's data range if the caller tracked it while
        writing (:class:`ChannelRanges`), else level 0 is read once, plane by plane, to find it."""
        missing = self.missing_chunks()
        if missing:
            raise ImageIOError(f"{self.path}: {missing} chunk(s) of level 0 were never written")
        axes = template.axes
        paths = [str(i) for i in range(len(self.levels))]
        base = _base_scale(axes, template)
        origin = [template.translation.get(a, 0.0) for a in axes]
        datasets = []
        for i, p in enumerate(paths):
            factor = [2.0**i if a in "yx" else 1.0 for a in axes]
            transforms: list[dict] = [{"type": "scale", "scale": [b * f for b, f in zip(base, factor)]}]
            # a 2^i-pixel mean is centred (2^i - 1)/2 level-0 pixels in: keeps levels aligned
            shift = [o + b * (f - 1) / 2 for o, b, f in zip(origin, base, factor)]
            if any(shift):
                transforms.append({"type": "translation", "translation": shift})
            datasets.append({"path": p, "coordinateTransformations": transforms})
        ome = {
            "version": NGFF_VERSION,
            "multiscales": [{"name": name, "axes": _ngff_axes(axes, template), "datasets": datasets,
                             "type": "mean (2x2 in y, x)"}],
            "omero": _omero(windows or _level_ranges(self.level0, axes), template.channel_names,
                            template.channel_display),
        }
        state = {"status": COMPLETE, "job": self.job, "metadata": _check_json(template.metadata)}
        # One write of zarr.json (atomic rename in zarr's LocalStore) flips the store to complete.
        self.group.attrs.update({"ome": ome, SRSCOPE_KEY: state})


def write_omezarr(path: Path, image: Image, *, overwrite: bool = False) -> Path:
    """Write ``image`` (any axis order; stored as t, c, z, y, x) as an NGFF 0.5 multiscale image."""
    axes = canonical_axes(image.axes)
    _check_json(image.metadata)
    if not all(math.isfinite(s) for s in image.pixel_size_um):
        raise ImageIOError("pixel size must be finite")
    writer = OmeZarrWriter.create(path, shape=canonical_shape(image), dtype=image.dtype, axes=axes,
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
