"""(OME-)TIFF reading and writing through tifffile.

Reading understands OME-XML and ImageJ calibration (and the plain TIFF resolution tags), so pixel
sizes from Micro-Manager, Fiji and bio-formats exports all arrive in micrometres. Writing always
produces OME-TIFF with ``PhysicalSizeX/Y`` and streams planes, then renames a temporary file into
place so a crash never leaves a truncated file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import tifffile
import zarr
from srscope.runtime.io.image import Image, ImageIOError
from srscope.runtime.io.lazy import (
    canonical_axes,
    canonical_shape,
    iter_canonical_planes,
)
from srscope.runtime.io.units import length_to_um, time_to_s

#: tifffile axis letters that mean something other than t/c/z/y/x; they become t, z or c, in that
#: order of preference (an unlabelled page stack is therefore read as a time series).
_DIRECT = {"T": "t", "C": "c", "Z": "z", "Y": "y", "X": "x", "S": "c"}

#: TIFFs up to this size are read into memory at once (and the file closed); larger ones lazily.
EAGER_LIMIT_BYTES = 32 * 2**20

#: Key in the OME ``Image/Description`` holding :attr:`Image.metadata` as JSON.
DESCRIPTION_KEY = "srscope"


class _TifffileLog(logging.Filter):
    """Holds back tifffile's log records while this thread reads a file (see :func:`_quiet_tifffile`).

    tifffile *logs* (not raises) on a truncated or corrupt file and then returns what it could read,
    e.g. the first page of a cut-off stack; the record would go to stderr as a stray second line
    while the read looked successful. Installed once as a filter on tifffile's logger; other
    threads and other uses of tifffile are untouched.
    """

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        sink = getattr(self.local, "sink", None)
        if sink is None:
            return True
        sink.append(record.getMessage())
        return False


_LOG = _TifffileLog()
logging.getLogger("tifffile").addFilter(_LOG)


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[list[str]]:
    """Collect (and silence) what tifffile logs in this thread meanwhile."""
    outer = getattr(_LOG.local, "sink", None)
    _LOG.local.sink = []
    try:
        yield _LOG.local.sink
    finally:
        _LOG.local.sink = outer


def _map_axes(tiff_axes: str) -> str:
    mapped: list[str | None] = [_DIRECT.get(a) for a in tiff_axes]
    if len({m for m in mapped if m}) != len([m for m in mapped if m]):
        raise ImageIOError(f"TIFF axes {tiff_axes!r} repeat an OME axis")
    for i, m in enumerate(mapped):
        if m is None:
            free = [a for a in "tzc" if a not in mapped]
            if not free:
                raise ImageIOError(f"cannot map TIFF axes {tiff_axes!r} onto t, c, z, y, x")
            mapped[i] = free[0]
    return "".join(m for m in mapped if m)


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def _ome_calibration(tif: tifffile.TiffFile) -> dict[str, Any]:
    try:
        ome = tifffile.xml2dict(tif.ome_metadata)["OME"]
        image = _first(ome["Image"])
        pixels = image["Pixels"]
    except Exception:  # noqa: BLE001 - malformed OME-XML of any kind: fall back to the TIFF tags
        return {}
    found: dict[str, Any] = {}
    if "PhysicalSizeX" in pixels and "PhysicalSizeY" in pixels:
        y = length_to_um(pixels["PhysicalSizeY"], pixels.get("PhysicalSizeYUnit"))
        x = length_to_um(pixels["PhysicalSizeX"], pixels.get("PhysicalSizeXUnit"))
        if y and x:
            found["pixel_size_um"] = (y, x)
    if "PhysicalSizeZ" in pixels:
        found["z_step_um"] = length_to_um(pixels["PhysicalSizeZ"], pixels.get("PhysicalSizeZUnit"))
    if "TimeIncrement" in pixels and float(pixels["TimeIncrement"]) > 0:
        found["time_interval_s"] = time_to_s(pixels["TimeIncrement"], pixels.get("TimeIncrementUnit"))
    channels = pixels.get("Channel")
    if channels is not None:
        channels = channels if isinstance(channels, list) else [channels]
        names = [c.get("Name") for c in channels if isinstance(c, dict)]
        if names and all(n is not None for n in names):
            found["channel_names"] = tuple(str(n) for n in names)
    description = image.get("Description")
    if isinstance(description, str):
        try:
            parsed = json.loads(description)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get(DESCRIPTION_KEY), dict):
            found["metadata"] = parsed[DESCRIPTION_KEY]
        elif description:
            found["metadata"] = {"description": description}
    return found


def _resolution_um(page: tifffile.TiffPage, unit_hint: str | None) -> tuple[float, float] | None:
    """Pixel size from XResolution/YResolution (pixels per unit)."""
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
    if not (xn and xd and yn and yd):
        return None
    res_unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    per_unit_um = {2: 25400.0, 3: 10000.0}.get(res_unit)
    if per_unit_um is None:  # unit NONE: only meaningful with an ImageJ unit string
        if unit_hint is None:
            return None
        per_unit_um = length_to_um(1.0, unit_hint)
        if per_unit_um is None:
            return None
    if (xn, xd) == (1, 1) and (yn, yd) == (1, 1) and unit_hint is None:
        return None  # the tifffile/libtiff default, not a calibration
    return (per_unit_um * yd / yn, per_unit_um * xd / xn)


def _imagej_calibration(tif: tifffile.TiffFile) -> dict[str, Any]:
    meta = tif.imagej_metadata or {}
    unit = meta.get("unit")
    found: dict[str, Any] = {}
    size = _resolution_um(tif.pages.first, unit)
    if size:
        found["pixel_size_um"] = size
    if meta.get("spacing"):
        z = length_to_um(float(meta["spacing"]), unit) if unit else None
        if z:
            found["z_step_um"] = z
    if meta.get("finterval"):
        found["time_interval_s"] = time_to_s(float(meta["finterval"]), meta.get("tunit", "s"))
    return found


def _calibration(tif: tifffile.TiffFile) -> dict[str, Any]:
    found = _ome_calibration(tif) if tif.is_ome else _imagej_calibration(tif) if tif.is_imagej else {}
    if "pixel_size_um" not in found:
        size = _resolution_um(tif.pages.first, None)
        if size:
            found["pixel_size_um"] = size
    return found


def read_tiff(path: Path) -> Image:
    """Open a TIFF with its calibration: small files in memory, large ones lazily.

    Files above :data:`EAGER_LIMIT_BYTES` are read through tifffile's zarr store, page by page on
    demand, which keeps the file open while the array lives; smaller ones are read at once and
    closed, so a script looping over thousands of images never runs out of file handles.
    """
    with _quiet_tifffile() as log:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:  # noqa: BLE001 - tifffile raises many types for corrupt files
            raise ImageIOError(f"{path}: not a readable TIFF ({exc.__class__.__name__}: {exc})") from None
        lazy = False
        try:
            series = tif.series[0]
            _refuse_truncated(path, tif, series, log)
            tiff_axes = series.axes
            axes = _map_axes(tiff_axes)
            if "y" not in axes or "x" not in axes:
                raise ImageIOError(f"{path}: TIFF has no y/x plane (axes {tiff_axes!r})")
            if series.nbytes > EAGER_LIMIT_BYTES:
                data = zarr.open_array(series.aszarr(level=0), mode="r")
                lazy = True
            else:
                data = series.asarray()
            found = _calibration(tif)
            _refuse_truncated(path, tif, series, log)
        except ImageIOError:
            raise
        except Exception as exc:  # noqa: BLE001 - tifffile/zarr raise many types for corrupt files
            reason = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
            raise ImageIOError(f"{path}: not a readable TIFF, truncated or corrupt? ({reason})") from None
        finally:
            if not lazy:
                tif.close()
    if not axes.endswith("yx"):  # e.g. RGB "yxc": move the samples in front (lazily, via dask)
        order = [i for i, a in enumerate(axes) if a not in "yx"] + [axes.index("y"), axes.index("x")]
        data = da.from_zarr(data).transpose(order) if lazy else np.transpose(data, order)
        axes = "".join(axes[i] for i in order)
    metadata = dict(found.pop("metadata", {}))
    if "pixel_size_um" not in found:
        metadata["pixel_size_unknown"] = True
        found["pixel_size_um"] = (1.0, 1.0)
    names = found.get("channel_names")
    if names is not None and len(names) != dict(zip(axes, data.shape)).get("c", 1):
        found.pop("channel_names")
    return Image(data=data, axes=axes, metadata=metadata, **found)


#: Phrases in tifffile's log records that mean the file ends early or its structure is broken.
_CORRUPTION_SIGNS = ("invalid page offset", "invalid value offset", "corrupted", "truncated", "failed to read")


def _refuse_truncated(path: Path, tif: tifffile.TiffFile, series: tifffile.TiffPageSeries,
                      log: list[str]) -> None:
    """One-line error for a file cut short (a copy interrupted, a disk filled while saving).

    tifffile reads such files "successfully" as fewer planes; two signs catch it: a log record
    about broken offsets, or a contiguous series whose data would end past the end of the file.
    """
    broken = [m for m in log if any(sign in m.lower() for sign in _CORRUPTION_SIGNS)]
    end = series.dataoffset + series.nbytes if series.dataoffset is not None else 0
    if broken or end > tif.filehandle.size:
        detail = broken[0].splitlines()[0] if broken else f"data ends at byte {end}, file has {tif.filehandle.size}"
        raise ImageIOError(f"{path}: TIFF is truncated or corrupt ({detail})")


def refuse_guessed_layout(path: str | Path) -> None:
    """Refuse TIFF layouts whose meaning :func:`read_tiff` could only guess, for jobs that rely on it.

    * A samples axis ``S`` (RGB/RGBA, also what tifffile makes of a naive 3- or 4-plane stack):
      colour components are not fluorescence channels of one specimen plane, and ``S`` is stored
      interleaved, not as planes, so each would be super-resolved as an unrelated "channel".
    * More than three dimensions without axes metadata (no OME-XML, no ImageJ hyperstack, no
      tifffile ``axes``): which leading axis is time, z or channel is then a guess.
    """
    path = Path(path)
    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = series.axes, series.shape
            labelled = tif.is_ome or tif.is_imagej
    except Exception:  # noqa: BLE001 - unreadable files are read_tiff's to report
        return
    if "S" in axes:
        raise ImageIOError(
            f"{path}: TIFF has a samples axis S ({shape[axes.index('S')]} colour samples per pixel, "
            f"axes {axes!r}); microscopy channels are not RGB: split the channels into separate "
            "planes (e.g. an OME-TIFF or ImageJ hyperstack with a C axis)")
    unknown = [a for a in axes if a not in _DIRECT]
    if len(shape) > 3 and unknown and not labelled:
        raise ImageIOError(
            f"{path}: {len(shape)}-D TIFF without axes metadata (tifffile sees {axes!r}); cannot tell "
            "time, z and channels apart: save it as OME-TIFF or an ImageJ hyperstack, or with "
            "tifffile.imwrite(..., metadata={'axes': 'TZCYX'})")


def tiff_job_metadata(path: str | Path) -> dict[str, Any]:
    """The :attr:`Image.metadata` an srscope OME-TIFF carries, without reading its pixels."""
    with _quiet_tifffile(), contextlib.suppress(Exception), tifffile.TiffFile(path) as tif:
        return dict(_ome_calibration(tif).get("metadata", {})) if tif.is_ome else {}
    return {}


def _ome_metadata(image: Image, axes: str) -> dict[str, Any]:
    y_um, x_um = image.pixel_size_um
    meta: dict[str, Any] = {
        "axes": axes.upper(),
        "PhysicalSizeY": y_um, "PhysicalSizeYUnit": "µm",
        "PhysicalSizeX": x_um, "PhysicalSizeXUnit": "µm",
    }
    if image.z_step_um is not None:
        meta.update(PhysicalSizeZ=image.z_step_um, PhysicalSizeZUnit="µm")
    if image.time_interval_s is not None:
        meta.update(TimeIncrement=image.time_interval_s, TimeIncrementUnit="s")
    if image.channel_names is not None:
        meta["Channel"] = {"Name": list(image.channel_names)}
    if image.metadata:
        meta["Description"] = json.dumps({DESCRIPTION_KEY: image.metadata}, default=str)
    return meta


def write_tiff(path: Path, image: Image) -> Path:
    """Stream ``image`` into an OME-TIFF at ``path`` via a temporary file renamed at the end."""
    axes, shape, dtype = canonical_axes(image.axes), canonical_shape(image), np.dtype(image.dtype)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    y_um, x_um = image.pixel_size_um
    try:
        tifffile.imwrite(
            tmp,
            (plane for _, plane in iter_canonical_planes(image)),
            shape=shape,
            dtype=dtype,
            ome=True,
            photometric="minisblack",
            metadata=_ome_metadata(image, axes),
            resolution=(1e4 / x_um, 1e4 / y_um),
            resolutionunit="CENTIMETER",
            bigtiff=int(np.prod(shape)) * dtype.itemsize > 2**31,
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
