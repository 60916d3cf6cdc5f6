"""Incremental OME-Zarr (NGFF 0.5, zarr v3) store for super-resolved frames.

Layout, mirroring the raw store that pymmcore-plus/ome-writers writes, so image ``k`` of the
SR store is position ``k`` of the raw store::

    run.ome.zarr/                 group: ome.bioformats2raw.layout = 3, srscope = provenance + run summary
      OME/                        group: ome.series = ["0", "1", ...]
      0/                          NGFF image for position 0: axes t, c, z, y, x
        0/                        float32 array (T, C, Z, H*s, W*s), one chunk per plane, fill NaN
      1/ ...

Why zarr directly rather than a sequential writer: the SR worker writes planes by index, so
frames skipped by the ``drop-oldest`` policy, frames whose model failed and channels without a
model simply leave NaN (never written) planes instead of shifting every later frame. Metadata is
complete before the first plane is written and every plane is one chunk file, so the store is
valid and readable at every moment of the run, including after a crash or abort; the final
``srscope.status`` says whether the run completed.

SR planes are float32 counts (the runtime's quantitative output, which may dip slightly below
the camera offset); NaN marks "no SR plane here", distinct from a real zero.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

AXES = ("t", "c", "z", "y", "x")
_AXIS_META = [
    {"name": "t", "type": "time", "unit": "second"},
    {"name": "c", "type": "channel"},
    {"name": "z", "type": "space", "unit": "micrometer"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]
_COLORS = {"DAPI": "0000FF", "FITC": "00FF00", "GFP": "00FF00", "TxRed": "FF0000",
           "Cy5": "FF00FF", "mCherry": "FF0000"}


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

    def transformations(self) -> list[dict[str, Any]]:
        p = self.output_pixel_size_um
        h, w = self.output_shape
        x, y, z = self.stage_um
        scale = [_positive(self.t_interval_s), 1.0, _positive(self.z_step_um), p, p]
        translation = [0.0, 0.0, float(z), y - (h - 1) / 2 * p, x - (w - 1) / 2 * p]
        return [{"type": "scale", "scale": scale}, {"type": "translation", "translation": translation}]


def _positive(value: float | None) -> float:
    """NGFF scales must be positive; an unknown or zero step is written as 1."""
    return float(value) if value is not None and value > 0 and math.isfinite(value) else 1.0


class _Position:
    def __init__(self, array: zarr.Array, group: zarr.Group, geometry: PositionGeometry) -> None:
        self.array = array
        self.group = group
        self.geometry = geometry
        self.planes_written = 0


class SRStoreWriter:
    """Writes SR planes into one OME-Zarr store as they arrive; thread-safe.

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
        self._root = zarr.open_group(str(self.path), mode="w", zarr_format=3)
        self._channels: list[str] = list(dict.fromkeys(channels))
        self._hints = {"t": 1, "z": 1, **{k: max(1, int(v)) for k, v in (size_hints or {}).items()}}
        self._positions: dict[int, _Position] = {}
        self._closed = False
        self._srscope: dict[str, Any] = {
            "status": "acquiring",
            "started": _now(),
            "writer": "srscope.acquisition.writer (zarr-python direct, NGFF 0.5)",
            "raw_store": raw_store,
            "missing_planes": "NaN (skipped, failed, not yet processed or never acquired)",
            "provenance": dict(provenance),
        }
        self._root.attrs.update({"ome": {"version": "0.5", "bioformats2raw.layout": 3},
                                 "srscope": self._srscope})
        self._ome_group = self._root.create_group("OME")
        self._ome_group.attrs.update({"ome": {"version": "0.5", "series": []}})

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
                    self._write_image_meta(pos)
            return self._channels.index(name)

    def open_position(self, index: int, geometry: PositionGeometry, *, name: str | None = None) -> None:
        """Create the NGFF image for position ``index`` (idempotent; the first geometry wins)."""
        with self._lock:
            self._check_open()
            if index in self._positions:
                return
            key = str(index)
            group = self._root.create_group(key)
            h, w = geometry.output_shape
            shape = (self._hints["t"], max(1, len(self._channels)), self._hints["z"], h, w)
            array = group.create_array(
                "0", shape=shape, chunks=(1, 1, 1, h, w), dtype="float32", fill_value=float("nan"),
                dimension_names=list(AXES),
            )
            pos = _Position(array, group, geometry)
            self._positions[index] = pos
            group.attrs["srscope"] = {"position_index": index, "position_name": name,
                                      "stage_um_at_first_frame": list(geometry.stage_um),
                                      "input_pixel_size_um": geometry.input_pixel_size_um,
                                      "input_shape": list(geometry.input_shape)}
            self._write_image_meta(pos)
            series = [str(i) for i in sorted(self._positions)]
            self._ome_group.attrs["ome"] = {"version": "0.5", "series": series}

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
            self._grow(pos, t=t, c=c, z=z)
            pos.array[t, c, z] = plane
            pos.planes_written += 1

    def update_run(self, **fields: Any) -> None:
        """Merge ``fields`` into the root ``srscope`` attributes (run summary, status ...)."""
        with self._lock:
            if self._closed:
                return
            self._srscope.update(_json_safe(fields))
            self._root.attrs["srscope"] = self._srscope

    def close(self, status: str, **fields: Any) -> None:
        """Record the final status ("complete", "aborted", "failed") and summary; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._srscope.update(_json_safe(fields))
            self._srscope.update(status=status, finished=_now(),
                                 planes_written={str(k): p.planes_written for k, p in self._positions.items()})
            self._root.attrs["srscope"] = self._srscope
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._closed:
            raise SRStoreError(f"SR store {self.path} is closed")

    def _grow(self, pos: _Position, *, t: int = 0, c: int = 0, z: int = 0) -> None:
        shape = pos.array.shape
        new = (max(shape[0], t + 1), max(shape[1], c + 1, len(self._channels)), max(shape[2], z + 1),
               shape[3], shape[4])
        if new != shape:
            pos.array.resize(new)

    def _write_image_meta(self, pos: _Position) -> None:
        channels = self._channels or ["sr"]
        pos.group.attrs["ome"] = {
            "version": "0.5",
            "multiscales": [{
                "name": f"super-resolved position {pos.group.basename}",
                "axes": _AXIS_META,
                "datasets": [{"path": "0", "coordinateTransformations": pos.geometry.transformations()}],
            }],
            "omero": {"channels": [
                {"label": name, "color": _COLORS.get(name, "FFFFFF"), "active": True,
                 "window": {"min": 0.0, "max": 65535.0, "start": 0.0, "end": 4000.0}}
                for name in channels]},
        }


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
