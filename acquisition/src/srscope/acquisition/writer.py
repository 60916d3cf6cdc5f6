"""The live super-resolution store: one runtime :class:`~srscope.runtime.io.store.PlaneStore` per
stage position, under a :class:`~srscope.runtime.io.collection.ImageCollection` root.

Layout (NGFF 0.5 ``bioformats2raw.layout``, as the raw store pymmcore-plus/ome-writers writes, so
image ``k`` of the SR store is position ``k`` of the raw store)::

    run.ome.zarr/                 root: ome.bioformats2raw.layout = 3, srscope = provenance + run status
      OME/                        ome.series = ["0", "1", ...] and METADATA.ome.xml (what napari reads)
      0/                          NGFF multiscale image of position 0: axes t, c, z, y, x, 2x2-mean pyramid
        0/ 1/ ...                 float32 levels (T, C, Z, H*s, W*s) ..., one chunk per plane, fill NaN
      1/ ...

This module only decides *what* goes where (positions, channels, the stage geometry); the store
itself (atomic creation, pyramid, NGFF axes/scale/translation/omero, status) is the runtime's, the
same one ``srrun`` writes. Each position's image carries NGFF metadata from its creation and is
valid and readable at every moment (unwritten planes read NaN), including after a crash; its
``srscope.status`` and the root's say whether the run finished.

Why planes by index rather than a sequential writer: frames skipped by the ``drop-oldest`` policy,
frames whose model failed and channels without a model simply leave NaN (never written) planes
instead of shifting every later frame. SR planes are float32 counts (the runtime's quantitative
output, which may dip slightly below the camera offset); NaN marks "no SR plane here".

The root's ``srscope.consistency`` lists the frames the consistency check flagged (position, t,
c, z and why), kept current while the run goes on (:meth:`SRStoreWriter.record_score`), so a
crashed run's store still says which of its planes not to trust.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from srscope.runtime.io import Image
from srscope.runtime.io.collection import ImageCollection, SeriesInfo
from srscope.runtime.io.store import (
    ACQUIRING,
    ChannelRanges,
    PlaneStore,
    StoreExistsError,
)

AXES = "tczyx"
#: Display colours of common filter names (NGFF ``omero`` colour and OME-XML channel colour).
_COLORS = {"DAPI": "0000FF", "FITC": "00FF00", "GFP": "00FF00", "TxRed": "FF0000",
           "Cy5": "FF00FF", "mCherry": "FF0000"}
#: Contrast window shown for a channel before any of its planes has been written.
_EMPTY_WINDOW = (0.0, 4000.0)
#: The flagged-frame list in the root's metadata is rewritten at most this often (and at close):
#: a run where every frame is flagged must not rewrite a growing ``zarr.json`` at every frame.
CONSISTENCY_FLUSH_S = 1.0


class SRStoreError(RuntimeError):
    """A plane cannot be written (wrong shape or dtype, store closed, bad index)."""


@dataclass(frozen=True)
class PositionGeometry:
    """Physical placement of one position's SR image.

    ``stage_um`` is the stage (x, y, z) at the position's first frame; Micro-Manager reports
    the stage at the image centre, so the NGFF translation places pixel centres accordingly.
    """

    input_shape: tuple[int, int]
    input_pixel_size_um: float
    scale: int
    stage_um: tuple[float, float, float] = (0.0, 0.0, 0.0)
    z_step_um: float | None = None
    t_interval_s: float | None = None

    @property
    def output_shape(self) -> tuple[int, int]:
        return (self.input_shape[0] * self.scale, self.input_shape[1] * self.scale)

    @property
    def output_pixel_size_um(self) -> float:
        return self.input_pixel_size_um / self.scale

    def translation_um(self) -> dict[str, float]:
        """Where the SR image's first pixel *centre* lies: the stage is at the image centre, which
        is pixel (n·s - 1)/2 of the finer grid (the ×s grid's half-pixel shift included)."""
        p = self.output_pixel_size_um
        h, w = self.output_shape
        x, y, z = self.stage_um
        return {"z": float(z), "y": float(y) - (h - 1) / 2 * p, "x": float(x) - (w - 1) / 2 * p}


class _Position:
    def __init__(self, store: PlaneStore, geometry: PositionGeometry, name: str) -> None:
        self.store = store
        self.geometry = geometry
        self.name = name
        self.ranges = ChannelRanges(store.level0.shape[1])
        self.planes_written = 0
        self.extent = [0, 0]  #: t, z sizes holding written planes (the arrays may be longer)


class SRStoreWriter:
    """Writes SR planes into the live store as they arrive; thread-safe.

    ``channels`` fixes the channel axis up front (the SR channels of the sequence); a channel
    name not seen before is appended (pycromanager acquisitions do not announce channels).
    ``size_hints`` (``{"t": n, "z": n}``) pre-size arrays so readers see the final shape at once;
    arrays still grow if more frames arrive.
    """

    def __init__(self, path: str | Path, *, provenance: Mapping[str, Any], channels: Sequence[str] = (),
                 size_hints: Mapping[str, int] | None = None, overwrite: bool = False,
                 raw_store: str | None = None) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise SRStoreError(f"{self.path} already exists (pass overwrite=True to replace it)")
        self._lock = threading.RLock()
        self._channels: list[str] = list(dict.fromkeys(channels))
        self._hints = {"t": 1, "z": 1, **{k: max(1, int(v)) for k, v in (size_hints or {}).items()}}
        self._positions: dict[int, _Position] = {}
        self._closed = False
        self._checked = 0
        self._flagged: list[dict[str, Any]] = []
        self._consistency_dirty = False
        self._consistency_flushed = -math.inf
        self._srscope: dict[str, Any] = {
            "status": ACQUIRING,
            "started": _now(),
            "writer": "srscope.runtime.io.store.PlaneStore per position (zarr-python, NGFF 0.5)",
            "raw_store": raw_store,
            "missing_planes": "NaN (skipped, failed, not yet processed or never acquired)",
            "provenance": dict(provenance),
        }
        try:
            self._root = ImageCollection.create(self.path, state=_json_safe(self._srscope), overwrite=overwrite)
        except StoreExistsError as exc:
            raise SRStoreError(str(exc)) from None

    # ------------------------------------------------------------------ writing
    @property
    def channels(self) -> list[str]:
        return list(self._channels)

    @property
    def positions(self) -> list[int]:
        return sorted(self._positions)

    def channel_index(self, name: str) -> int:
        """Index of ``name`` on the channel axis, appending it (and growing arrays) if new."""
        with self._lock:
            if name not in self._channels:
                self._channels.append(name)
                for pos in self._positions.values():
                    self._grow(pos, c=len(self._channels) - 1)
                    pos.store.write_metadata(self._template(pos), name=pos.name, windows=self._windows(pos))
                self._describe()
            return self._channels.index(name)

    def open_position(self, index: int, geometry: PositionGeometry, *, name: str | None = None) -> None:
        """Create the NGFF image for position ``index`` (idempotent; the first geometry wins)."""
        with self._lock:
            self._check_open()
            if index in self._positions:
                return
            h, w = geometry.output_shape
            shape = (self._hints["t"], max(1, len(self._channels)), self._hints["z"], h, w)
            title = f"super-resolved position {index}"
            template = self._template_for(shape, geometry)
            store = PlaneStore.create(
                self._root.image_path(index), shape=shape, dtype="float32", axes=AXES, status=ACQUIRING,
                fill_value=float("nan"), template=template, name=title,
                windows=[_EMPTY_WINDOW] * shape[1],
                state={"position_index": index, "position_name": name,
                       "stage_um_at_first_frame": list(geometry.stage_um),
                       "input_pixel_size_um": geometry.input_pixel_size_um,
                       "input_shape": list(geometry.input_shape)})
            self._positions[index] = _Position(store, geometry, title)
            self._describe()

    def write(self, position: int, t: int, channel: str, z: int, plane: np.ndarray) -> None:
        """Write one SR plane. Checks shape and dtype first: zarr would silently wrap or cast."""
        with self._lock:
            self._check_open()
            pos = self._positions.get(position)
            if pos is None:
                raise SRStoreError(f"position {position} was not opened")
            expected = pos.geometry.output_shape
            if plane.ndim != 2 or tuple(plane.shape) != expected:
                raise SRStoreError(f"SR plane has shape {plane.shape}, position {position} expects {expected}")
            if plane.dtype != np.float32:
                raise SRStoreError(f"SR plane has dtype {plane.dtype}, the store holds float32")
            if min(t, z) < 0:
                raise SRStoreError(f"negative index t={t} z={z}")
            c = self.channel_index(channel)
            if self._grow(pos, t=t, c=c, z=z):
                self._describe()
            pos.store.write_plane((t, c, z), plane)
            pos.ranges.add_plane(c, plane)
            pos.planes_written += 1
            pos.extent = [max(pos.extent[0], t + 1), max(pos.extent[1], z + 1)]

    def record_score(self, position: int, t: int, channel: str, z: int, *, flagged: bool,
                     reasons: Sequence[str] = ()) -> None:
        """Count one scored SR frame; a flagged one joins the root's ``srscope.consistency`` list.

        The root is rewritten at once for the first flagged frame, then at most every
        :data:`CONSISTENCY_FLUSH_S` seconds while frames keep coming, and at :meth:`close`.
        """
        with self._lock:
            if self._closed:
                return
            self._checked += 1
            if flagged:
                self._flagged.append({"position": int(position), "t": int(t), "c": self.channel_index(channel),
                                      "channel": channel, "z": int(z), "reasons": list(reasons)})
                self._consistency_dirty = True
            first = flagged and len(self._flagged) == 1
            if self._consistency_dirty and (first or time.monotonic() - self._consistency_flushed >= CONSISTENCY_FLUSH_S):
                self._flush_consistency()

    def _flush_consistency(self) -> None:
        self._srscope["consistency"] = {"frames_checked": self._checked, "frames_flagged": len(self._flagged),
                                        "flagged": list(self._flagged)}
        self._root.update_state(self._srscope)
        self._consistency_dirty = False
        self._consistency_flushed = time.monotonic()

    def update_run(self, **fields: Any) -> None:
        """Merge ``fields`` into the root ``srscope`` attributes (run summary, status ...)."""
        with self._lock:
            if self._closed:
                return
            self._srscope.update(_json_safe(fields))
            self._root.update_state(self._srscope)

    def close(self, status: str, **fields: Any) -> None:
        """Record the final status ("complete", "aborted", "failed") and summary; idempotent.

        Each position's image gets its final contrast windows (the data range of its planes) and
        status first; the root's status, the one a person or the fill-in command reads, goes last.
        """
        with self._lock:
            if self._closed:
                return
            for pos in self._positions.values():
                shape = pos.store.level0.shape  # trim the growth headroom: t, z end where data or hints end
                pos.store.resize((max(pos.extent[0], self._hints["t"]), shape[1],
                                  max(pos.extent[1], self._hints["z"])), exact=True)
                pos.store.finalize(self._template(pos), name=pos.name, windows=self._windows(pos),
                                   status=status, require_all=False)
            self._describe()
            self._srscope.update(_json_safe(fields))
            if self._checked:
                self._srscope["consistency"] = {"frames_checked": self._checked,
                                                "frames_flagged": len(self._flagged), "flagged": list(self._flagged)}
            self._srscope.update(status=status, finished=_now(),
                                 planes_written={str(k): p.planes_written for k, p in self._positions.items()})
            self._root.update_state(self._srscope)
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._closed:
            raise SRStoreError(f"SR store {self.path} is closed")

    def _grow(self, pos: _Position, *, t: int = 0, c: int = 0, z: int = 0) -> bool:
        """Make room for plane (t, c, z). Time grows with headroom (half the current length): a
        run without size hints would otherwise resize every level and rewrite the OME-XML at every
        frame; :meth:`close` trims it. Readers see the headroom as NaN ("not yet acquired")."""
        shape = pos.store.level0.shape
        grown_t = shape[0] if t < shape[0] else max(t + 1, shape[0] + max(1, shape[0] // 2))
        new = (grown_t, max(shape[1], c + 1, len(self._channels)), max(shape[2], z + 1))
        if new == tuple(shape[:3]):
            return False
        pos.store.resize(new)
        pos.ranges.grow(new[1])
        return True

    def _names(self, n_channels: int) -> tuple[str, ...]:
        names = list(self._channels or ["sr"])
        return tuple(names + [f"channel {i}" for i in range(len(names), n_channels)])[:n_channels]

    def _template_for(self, shape: tuple[int, ...], geometry: PositionGeometry) -> Image:
        """The calibration of a position's image (what the runtime's NGFF writer spells out)."""
        p = geometry.output_pixel_size_um
        names = self._names(shape[1])
        return Image(np.broadcast_to(np.zeros((), np.float32), shape), AXES, (p, p), channel_names=names,
                     z_step_um=_positive_or_none(geometry.z_step_um),
                     time_interval_s=_positive_or_none(geometry.t_interval_s),
                     translation=geometry.translation_um(),
                     channel_display=tuple({"color": _COLORS.get(n, "FFFFFF")} for n in names))

    def _template(self, pos: _Position) -> Image:
        return self._template_for(tuple(pos.store.level0.shape), pos.geometry)

    def _windows(self, pos: _Position) -> list[tuple[float, float]]:
        return pos.ranges.windows(empty=_EMPTY_WINDOW)

    def _describe(self) -> None:
        """Rewrite the root's list of images (OME-XML and ``OME/series``) for their current shapes."""
        series = []
        for index, pos in sorted(self._positions.items()):
            shape = tuple(int(n) for n in pos.store.level0.shape)
            names = self._names(shape[1])
            series.append(SeriesInfo(
                index=index, name=pos.name, shape=shape, dtype="float32",
                pixel_size_um=(pos.geometry.output_pixel_size_um,) * 2, channel_names=names,
                channel_colors=[_COLORS.get(n) for n in names], z_step_um=_positive_or_none(pos.geometry.z_step_um),
                time_interval_s=_positive_or_none(pos.geometry.t_interval_s), stage_um=pos.geometry.stage_um))
        self._root.describe(series)


def _positive_or_none(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) and value > 0 else None


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
