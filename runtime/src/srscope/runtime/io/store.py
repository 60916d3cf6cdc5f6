"""The one plane-indexed NGFF 0.5 image store that ``srrun`` and live acquisition both write.

A store's life, whoever drives it:

1. **create** (:meth:`PlaneStore.create`): every pyramid level (empty), the status and, for a
   live store, the NGFF metadata are built under a hidden name beside the final path, optionally
   locked, and only then renamed into place, so no reader or rerun ever meets a half-made store;
2. **write** planes by index (:meth:`PlaneStore.write_plane`), each with its downsampled levels
   and level 0 last, so a plane whose level-0 chunk exists has all its levels; record which planes
   are done (:meth:`PlaneStore.mark_done`, marker files that many processes can add at once);
3. **grow** along the leading axes while a live run is still acquiring (:meth:`PlaneStore.resize`);
4. **finalise** (:meth:`PlaneStore.finalize`): check that every plane landed, then write the NGFF
   metadata and the final status in one atomic write of ``zarr.json``.

Two ways to be readable, chosen by the caller:

* *metadata last* (``srrun``): until finalised the group has no ``multiscales``, so no NGFF reader
  can take an interrupted job for an image; its status is ``running``;
* *metadata first* (live acquisition, ``template=`` at creation): a valid NGFF image from the first
  moment, unwritten planes read as the fill value (NaN), its status ``acquiring`` until closed.

:func:`ngff_image_attributes` is the only place srscope spells NGFF image metadata (axes, scale,
translation including the pyramid's half-pixel shifts, ``omero`` channels, colours and windows).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from srscope.runtime.io.faults import fault_point
from srscope.runtime.io.image import CANONICAL_AXES, Image, ImageIOError
from srscope.runtime.io.pyramid import level_shapes, plane_chunks, plane_levels
from srscope.runtime.io.record import RECORD_DIR, ProgressRecord, RecordBusyError
from srscope.runtime.io.units import NGFF_SPACE_UNIT, NGFF_TIME_UNIT

NGFF_VERSION = "0.5"
#: Group attribute holding srscope's own state: ``status``, ``job`` and free-form ``metadata``.
SRSCOPE_KEY = "srscope"

#: Statuses. ``running``: an srrun job is filling it (metadata last); ``acquiring``: a live run is
#: filling it (metadata first); the rest are final.
RUNNING, ACQUIRING, COMPLETE, FAILED, ABORTED = "running", "acquiring", "complete", "failed", "aborted"
#: What srscope before the one-store redesign wrote for ``running``; still recognised and resumed.
INCOMPLETE = "incomplete"
#: Statuses of a store that is not an image yet (metadata last): readers refuse it.
WORK_IN_PROGRESS = frozenset({RUNNING, INCOMPLETE})

#: A store being created lives under a temporary name for milliseconds; one older than this was
#: left by a killed process and is removed by the next creation at the same path.
CREATION_GRACE_S = 60.0
#: Suffixes of those temporary names (the second one written by srrun before the redesign).
CREATION_SUFFIXES = (".srscope-create.zarr", ".srrun-create.zarr")

_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


class StoreExistsError(ImageIOError):
    """Something is already at the path a new store was to be renamed to."""


def store_status(path: str | Path) -> str | None:
    """The ``srscope`` status of a store srscope wrote (see the constants above), ``None`` otherwise."""
    try:
        attrs = dict(zarr.open_group(path, mode="r").attrs)
    except Exception:  # noqa: BLE001 - anything unopenable is simply not ours
        return None
    state = attrs.get(SRSCOPE_KEY)
    status = state.get("status") if isinstance(state, dict) else None
    return status if isinstance(status, str) else None


def looks_like_zarr(path: Path) -> bool:
    """A directory zarr (v2 or v3) made: the only kind of directory srscope ever deletes."""
    return any((path / name).exists() for name in ("zarr.json", ".zgroup", ".zarray", ".zattrs"))


def check_json(metadata: Any) -> Any:
    """``metadata`` as plain JSON (so it round-trips through ``zarr.json``), or a one-line error."""
    try:
        return json.loads(json.dumps(metadata))
    except (TypeError, ValueError) as exc:
        raise ImageIOError(f"image metadata is not JSON-serialisable ({exc})") from None


# ---------------------------------------------------------------------------------- NGFF metadata

def _positive(value: float | None) -> float:
    """NGFF scales must be positive; an unknown or zero step is written as 1."""
    return float(value) if value is not None and math.isfinite(value) and value > 0 else 1.0


def _ngff_axes(template: Image) -> list[dict[str, str]]:
    out = []
    for a in template.axes:
        entry = {"name": a, "type": _AXIS_TYPES[a]}
        if a in "yx" or (a == "z" and template.z_step_um is not None):
            entry["unit"] = NGFF_SPACE_UNIT
        if a == "t" and template.time_interval_s is not None:
            entry["unit"] = NGFF_TIME_UNIT
        out.append(entry)
    return out


def _base_scale(template: Image) -> list[float]:
    values = {"t": _positive(template.time_interval_s), "c": 1.0, "z": _positive(template.z_step_um),
              "y": template.pixel_size_um[0], "x": template.pixel_size_um[1]}
    return [float(values[a]) for a in template.axes]


def _omero(windows: Sequence[tuple[float, float]], names: Sequence[str] | None,
           display: Sequence[dict] | None) -> dict:
    """Display hints for viewers: the data range of level 0 as window min/max; colours, labels,
    visibility and the contrast (window start/end) of ``display`` where given, so an output looks
    like its input (and a live channel keeps its filter colour)."""
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


def ngff_image_attributes(template: Image, n_levels: int, *, name: str,
                          windows: Sequence[tuple[float, float]]) -> dict:
    """The ``ome`` attributes of an NGFF 0.5 multiscale image (the only place srscope writes them).

    ``template`` gives axes (canonical order), calibration, origin (``translation``: where level 0's
    first pixel *centre* lies), channel names and display; ``windows`` each channel's data range.
    Level ``i`` is a 2^i x 2^i mean, so its first pixel's centre lies (2^i - 1)/2 level-0 pixels
    in: the translation moves with the level and every level lands on the same physical positions.
    """
    axes = template.axes
    base = _base_scale(template)
    origin = [template.translation.get(a, 0.0) for a in axes]
    datasets = []
    for level in range(n_levels):
        factor = [2.0**level if a in "yx" else 1.0 for a in axes]
        transforms: list[dict] = [{"type": "scale", "scale": [b * f for b, f in zip(base, factor)]}]
        shift = [o + b * (f - 1) / 2 for o, b, f in zip(origin, base, factor)]
        if any(shift):
            transforms.append({"type": "translation", "translation": shift})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    return {
        "version": NGFF_VERSION,
        "multiscales": [{"name": name, "axes": _ngff_axes(template), "datasets": datasets,
                         "type": "mean (2x2 in y, x)"}],
        "omero": _omero(windows, template.channel_names, template.channel_display),
    }


class ChannelRanges:
    """Running per-channel range of the finite pixel values: the data range in ``omero`` windows.

    Fed plane by plane (or with ranges recorded per plane by other processes), so a window covering
    every full-resolution pixel never needs the whole level in memory. A smaller pyramid level
    would be cheaper but its 2x2 means hide exactly the brightest features (a bead, a spike).
    """

    def __init__(self, n_channels: int) -> None:
        self.low = [math.inf] * n_channels
        self.high = [-math.inf] * n_channels

    def grow(self, n_channels: int) -> None:
        """Make room for channels added while a live run goes on."""
        extra = n_channels - len(self.low)
        self.low += [math.inf] * extra
        self.high += [-math.inf] * extra

    def add(self, channel: int, low: float, high: float) -> None:
        self.low[channel] = min(self.low[channel], float(low))
        self.high[channel] = max(self.high[channel], float(high))

    def add_plane(self, channel: int, plane: np.ndarray) -> None:
        finite = plane[np.isfinite(plane)] if np.issubdtype(plane.dtype, np.floating) else plane
        if finite.size:
            self.add(channel, finite.min(), finite.max())

    def windows(self, empty: tuple[float, float] = (0.0, 1.0)) -> list[tuple[float, float]]:
        """Per channel ``(low, high)``; ``empty`` for a channel that has no finite pixel yet."""
        return [(lo, hi) if lo <= hi else empty for lo, hi in zip(self.low, self.high)]


def level_ranges(array: zarr.Array, axes: str) -> list[tuple[float, float]]:
    """Per-channel data range of ``array``, read one plane at a time."""
    c_axis = axes.index("c") if "c" in axes else None
    ranges = ChannelRanges(array.shape[c_axis] if c_axis is not None else 1)
    for index in np.ndindex(*array.shape[:-2]):
        ranges.add_plane(index[c_axis] if c_axis is not None else 0, np.asarray(array[index]))
    return ranges.windows()


def job_lock(path: str | Path) -> contextlib.AbstractContextManager[None]:
    """The job lock of the store at ``path``: exclusive, dropped by the OS when its holder dies.

    Whoever creates, fills, deletes or replaces a store holds it, so two runs never mix planes.
    Raises :class:`~srscope.runtime.io.record.RecordBusyError` if another live process holds it.
    """
    return ProgressRecord(path).lock()


# ---------------------------------------------------------------------------------- atomic creation

def _creator_is_gone(build: Path) -> bool:
    """Whether the process that was building ``build`` has ended (it holds the build's lock while
    alive); a build from before builds were locked counts as gone once it is old."""
    if (build / RECORD_DIR / "lock").exists():
        try:
            with job_lock(build):
                return True
        except RecordBusyError:
            return False
    try:
        return time.time() - build.stat().st_mtime > CREATION_GRACE_S
    except OSError:
        return False


def sweep_creations(path: Path) -> None:
    """Remove half-built stores that killed processes left beside ``path`` (never a live one's)."""
    for suffix in CREATION_SUFFIXES:
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*{suffix}"):
            if _creator_is_gone(stale):
                shutil.rmtree(stale, ignore_errors=True)


def create_atomically(path: Path, build, *, hold: contextlib.ExitStack | None = None,
                      overwrite: bool = False) -> None:
    """Run ``build(tmp)`` on a hidden sibling of ``path``, then rename it to ``path``.

    The builder holds the new store's job lock from the first moment (the lock file's inode moves
    with the rename), so a half-built sibling left by a kill is recognised and swept by the next
    creation, while a live builder's is left alone. With ``hold`` the lock is kept there after the
    rename: no other process can claim the store between its appearance and its creator's first
    write; without, it is dropped and the store keeps no lock file. Raises
    :class:`StoreExistsError` when something appeared at ``path`` meanwhile (``overwrite``: a zarr
    store there is replaced).
    """
    path = Path(path)
    sweep_creations(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{CREATION_SUFFIXES[0]}")
    lock = contextlib.ExitStack()
    try:
        tmp.mkdir()
        lock.enter_context(job_lock(tmp))
        build(tmp)
        fault_point("create.rename")
        if overwrite and path.is_dir() and looks_like_zarr(path):
            shutil.rmtree(path)
        os.rename(tmp, path)  # refuses to replace a non-empty directory
    except BaseException as exc:
        lock.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR) \
                and path.exists():
            raise StoreExistsError(f"{path}: already exists") from None
        raise
    if hold is not None:
        hold.enter_context(lock)
    else:
        with lock:
            ProgressRecord(path).clear()


# ---------------------------------------------------------------------------------- the store

class PlaneStore:
    """An NGFF 0.5 multiscale image filled plane by plane (see the module docstring)."""

    def __init__(self, path: str | Path, group: zarr.Group) -> None:
        self.path = Path(path)
        self.group = group
        self._levels: list[zarr.Array] | None = None

    # -- opening
    @classmethod
    def create(cls, path: str | Path, *, shape: tuple[int, ...], dtype: Any, axes: str,
               job: Mapping | None = None, status: str = RUNNING, fill_value: Any = 0,
               metadata: Mapping | None = None, template: Image | None = None, name: str = "image",
               windows: Sequence[tuple[float, float]] | None = None, state: Mapping | None = None,
               hold: contextlib.ExitStack | None = None, overwrite: bool = False) -> PlaneStore:
        """Make the store, atomically, with every pyramid level empty (axes in ``tczyx`` order).

        ``template`` (with ``windows``): write the NGFF metadata now, for a store readable while
        it fills; otherwise it is written by :meth:`finalize`. ``state``: more top-level keys of
        the ``srscope`` attribute (a live position's stage and input geometry). ``hold``: keep the
        job lock there.
        """
        if tuple(a for a in CANONICAL_AXES if a in axes) != tuple(axes):
            raise ImageIOError(f"OME-Zarr axes must be in t, c, z, y, x order, got {axes!r}")
        state = {**check_json(dict(state or {})), "status": status, "job": check_json(dict(job or {})),
                 "metadata": check_json(dict(metadata or {}))}
        shapes = level_shapes(tuple(int(s) for s in shape))

        def build(tmp: Path) -> None:
            group = zarr.open_group(tmp, mode="a", zarr_format=3)  # tmp is new, holding only its lock
            for level, level_shape in enumerate(shapes):
                fault_point("create.level")
                group.create_array(str(level), shape=level_shape, dtype=dtype, chunks=plane_chunks(level_shape),
                                   dimension_names=list(axes), fill_value=fill_value)
            attrs: dict[str, Any] = {SRSCOPE_KEY: state}
            if template is not None:
                attrs["ome"] = ngff_image_attributes(template, len(shapes), name=name,
                                                     windows=windows or [(0.0, 1.0)] * template.n_channels)
            group.attrs.update(attrs)

        create_atomically(Path(path), build, hold=hold, overwrite=overwrite)
        return cls(path, zarr.open_group(path, mode="r+"))

    @classmethod
    def open(cls, path: str | Path) -> PlaneStore:
        """Reopen an unfinished store (``running`` or ``acquiring``) to write more planes."""
        if store_status(path) not in WORK_IN_PROGRESS | {ACQUIRING}:
            raise ImageIOError(f"{path}: not an unfinished srscope store")
        return cls(path, zarr.open_group(path, mode="r+"))

    @classmethod
    def open_any(cls, path: str | Path) -> PlaneStore:
        """Open a store srscope wrote, finished or not, read-only (e.g. to compare :attr:`job`)."""
        return cls(path, zarr.open_group(path, mode="r"))

    # -- state
    @property
    def state(self) -> dict:
        value = self.group.attrs.get(SRSCOPE_KEY, {})
        return dict(value) if isinstance(value, dict) else {}

    @property
    def status(self) -> str | None:
        return self.state.get("status")

    @property
    def job(self) -> dict:
        """Whatever the creator stored to recognise its own unfinished store (see :meth:`create`)."""
        return dict(self.state.get("job", {}))

    @property
    def metadata(self) -> dict:
        return dict(self.state.get("metadata", {}))

    def update_state(self, *, status: str | None = None, **metadata: Any) -> None:
        """Set the status and/or merge ``metadata`` into the store's ``srscope`` metadata."""
        state = self.state
        if status is not None:
            state["status"] = status
        if metadata:
            state["metadata"] = {**dict(state.get("metadata", {})), **check_json(metadata)}
        self.group.attrs[SRSCOPE_KEY] = state

    # -- pixels
    @property
    def level0(self) -> zarr.Array:
        """Full-resolution array; all-zero chunks are still stored so missing ones can be counted."""
        return self.levels[0]

    @property
    def levels(self) -> list[zarr.Array]:
        """Level 0 first, then each 2x2-downsampled level."""
        if self._levels is None:
            arrays = []
            while str(len(arrays)) in self.group:
                arrays.append(self.group[str(len(arrays))].with_config({"write_empty_chunks": True}))
            if not arrays:
                raise ImageIOError(f"{self.path}: store has no level 0")
            self._levels = arrays
        return self._levels

    def write_plane(self, index: tuple[int, ...], plane: np.ndarray, *,
                    levels: list[zarr.Array] | None = None) -> None:
        """Store one (y, x) plane at ``index`` (the leading-axis position) and its pyramid levels.

        Level 0 goes last, so a plane whose level-0 chunk exists has all its levels too.
        """
        levels = levels or self.levels
        values = plane_levels(np.asarray(plane, dtype=levels[0].dtype), len(levels))
        for array, value in reversed(list(zip(levels, values))):
            fault_point("write.level")
            array[index] = value

    def resize(self, leading: Sequence[int], *, exact: bool = False) -> None:
        """Grow the leading (non-y/x) axes of every level to at least ``leading`` (a live run);
        ``exact``: set them to ``leading``, also shrinking (a live run trimming unused headroom)."""
        for array in reversed(self.levels):  # level 0 last: its shape is what readers show
            shape = array.shape
            sizes = [int(n) if exact else max(int(n), s) for n, s in zip(leading, shape[:-2])]
            new = tuple(sizes) + shape[-2:]
            if new != shape:
                array.resize(new)

    def missing_chunks(self) -> int:
        """Level-0 chunks never written. Empty chunks are always stored, so 0 means every plane landed."""
        arr = self.level0
        return arr.nchunks - arr.nchunks_initialized

    # -- which planes are done, and who is writing
    @property
    def record(self) -> ProgressRecord:
        return ProgressRecord(self.path)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """This store's :func:`job_lock`."""
        return job_lock(self.path)

    def mark_done(self, number: int, facts: Mapping) -> None:
        """Record plane ``number`` as finished, with facts about it; call only after its pixels are written."""
        self.record.mark_done(number, dict(facts))

    def done(self) -> dict[int, dict]:
        return self.record.done()

    # -- metadata
    def _template(self, template: Image) -> Image:
        names = self.level0.metadata.dimension_names
        if names and template.axes != "".join(str(n) for n in names):
            raise ImageIOError(f"{self.path}: template axes {template.axes!r} do not match the store's")
        return template

    def write_metadata(self, template: Image, *, name: str = "image",
                       windows: Sequence[tuple[float, float]] | None = None) -> None:
        """(Re)write the NGFF metadata now, keeping the status: a live store after a channel appears."""
        ome = ngff_image_attributes(self._template(template), len(self.levels), name=name,
                                    windows=windows or [(0.0, 1.0)] * template.n_channels)
        self.group.attrs["ome"] = ome

    def finalize(self, template: Image, *, name: str = "image",
                 windows: Sequence[tuple[float, float]] | None = None, status: str = COMPLETE,
                 require_all: bool = True) -> None:
        """Write the NGFF metadata and the final status, last, in one write of ``zarr.json``.

        ``template`` supplies calibration, origin, names, display settings and ``metadata`` (stored
        as the store's ``srscope`` metadata). ``windows``: each channel's data range if the caller
        tracked it while writing (:class:`ChannelRanges`), else level 0 is read once, plane by
        plane, to find it. ``require_all``: refuse if any level-0 chunk was never written.
        """
        if require_all:
            missing = self.missing_chunks()
            if missing:
                raise ImageIOError(f"{self.path}: {missing} chunk(s) of level 0 were never written")
        ome = ngff_image_attributes(self._template(template), len(self.levels), name=name,
                                    windows=windows or level_ranges(self.level0, template.axes))
        state = {**self.state, "status": status, "job": self.job,
                 "metadata": {**self.metadata, **check_json(template.metadata)}}
        fault_point("finalize.metadata")
        # One write of zarr.json (atomic rename in zarr's LocalStore) flips the store to its status.
        self.group.attrs.update({"ome": ome, SRSCOPE_KEY: state})
