"""What happens to one plane of an ``srrun`` job, in whichever process runs it.

Everything a worker needs travels in a small picklable :class:`PlaneTask` (paths and options, never
an open session or array): each process opens the input, the models and the output store itself,
once, and keeps them in a per-process cache. The same function runs the local loop and the tasks
of a dask.distributed cluster, which is why the two give identical results.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from srscope.runtime.card import AffineIntensity
from srscope.runtime.enhancer import Enhancer
from srscope.runtime.errors import UserError
from srscope.runtime.io import OmeZarrWriter, read_image
from srscope.runtime.io.lazy import plane_reader
from srscope.runtime.planes import Plane
from srscope.runtime.progressrecord import ProgressRecord

OUTPUT_DTYPES = ("float32", "uint16")
#: Where ``srrun --error-map`` puts the local error map: a second NGFF image inside the output
#: store, on the SR image's grid (an NGFF ``labels`` image must hold integers; this is a float map).
ERROR_MAP_PATH = "error_map"


class BatchError(UserError):
    """A user-facing problem with an ``srrun`` job; the message is one line."""


@dataclass(frozen=True)
class RunOptions:
    """Enhancer settings and the output dtype; part of the job identity except ``device``,
    ``batch_size``, ``clip`` and ``threads`` (they change speed, or refuse, never the values)."""

    device: str = "auto"
    tile: int | str | None = "auto"
    overlap: int | None = None
    batch_size: int = 4
    dtype: str = "float32"
    clip: bool = False
    #: ``auto`` | ``plane`` | ``series`` | ``fixed`` | ``"OFFSET:SCALE"`` (see :mod:`srscope.runtime.intensity`)
    intensity: str = "auto"
    #: with ``series``: how many of each channel's first planes set its mapping
    intensity_planes: int = 1
    #: ONNX Runtime intra-op threads per session, in every process that runs planes (``None``:
    #: the usable cores locally; on a dask worker, the worker's ``nthreads``, see
    #: :func:`dask_worker_threads`).
    threads: int | None = None
    #: also store each plane's local consistency error map (:data:`ERROR_MAP_PATH`)
    error_map: bool = False


@dataclass(frozen=True)
class PlaneTask:
    """The job as seen by a worker: where to read, which model per channel, where to write."""

    input_path: str
    store_path: str
    models: tuple[str | None, ...]
    scale: int
    options: RunOptions
    #: Per channel, the explicit ``(offset, scale)`` input mapping a ``series`` job latched up front
    #: (so every worker and every resumed plane uses the same one), or ``None``.
    mappings: tuple[tuple[float, float] | None, ...] = ()
    #: New for every run: a long-lived worker must not reuse handles from an earlier job whose
    #: files were since replaced at the same paths (another shape, other weights).
    run_token: str = ""


@dataclass(frozen=True)
class PlaneResult:
    number: int
    clipped: int
    seconds: float


# Per-process handles (input array, sessions, output array) for the current run only.
_cache: dict[tuple, object] = {}
_cache_run = [""]
_cache_lock = threading.Lock()


def _cached(run_token: str, key: tuple, make):
    with _cache_lock:
        if _cache_run[0] != run_token:
            _cache.clear()
            _cache_run[0] = run_token
        if key not in _cache:
            _cache[key] = make()
        return _cache[key]


def _input(task: PlaneTask):
    return _cached(task.run_token, ("input", task.input_path),
                   lambda: plane_reader(read_image(task.input_path)))


def dask_worker_threads() -> int | None:
    """The thread count of the dask.distributed worker running this task, or ``None`` elsewhere.

    A worker's ``nthreads`` is its share of the host's cores. ONNX Runtime would otherwise size its
    pool to every core of the host, so two workers on one host each ran on all cores and a second
    worker bought nothing (issue 12: 2 workers ÷ 1 = 1.07). Only looked up when ``distributed`` is
    already imported (a worker process always has it): the local loop never pays for the import.
    """
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # ValueError: not running on a worker
        return None
    n = getattr(getattr(worker, "state", None), "nthreads", None) or getattr(worker, "nthreads", None)
    return int(n) if n else None


def _enhancer(task: PlaneTask, path: str, channel: int):
    o = task.options
    mapping = task.mappings[channel] if channel < len(task.mappings) else None
    intensity = AffineIntensity(*mapping) if mapping is not None else o.intensity
    threads = o.threads or dask_worker_threads()  # explicit --threads wins; a worker keeps to its share
    return _cached(task.run_token, ("model", path, mapping), lambda: Enhancer.from_file(
        path, device=o.device, tile=o.tile, overlap=o.overlap, batch_size=o.batch_size, intensity=intensity,
        intra_op_threads=threads))


def _output(task: PlaneTask) -> tuple[OmeZarrWriter, list]:
    def open_store():
        writer = OmeZarrWriter.open(Path(task.store_path))
        return writer, writer.levels

    return _cached(task.run_token, ("store", task.store_path), open_store)


def _error_output(task: PlaneTask) -> OmeZarrWriter:
    path = Path(task.store_path) / ERROR_MAP_PATH
    return _cached(task.run_token, ("store", str(path)), lambda: OmeZarrWriter.open(path))


def _error_plane(enhancer: Enhancer | None, raw: np.ndarray, result: np.ndarray) -> np.ndarray:
    """The plane's local error map on the output grid; NaN where it is not checked (a pass-through
    channel, or a model without a degradation model), as an unwritten live plane reads."""
    emap = enhancer.error_map(raw, result) if enhancer is not None else None
    return emap if emap is not None else np.full(result.shape, np.nan, dtype=np.float32)


def forget_cached() -> None:
    """Drop this process's handles (the run is over; its store is about to be finalised or deleted)."""
    with _cache_lock:
        _cache.clear()
        _cache_run[0] = ""


def passthrough(plane: np.ndarray, scale: int) -> np.ndarray:
    """Pixel replication onto the output grid: invents no values, so intensities stay as measured."""
    return np.repeat(np.repeat(np.asarray(plane, dtype=np.float32), scale, axis=0), scale, axis=1)


def to_output_dtype(values: np.ndarray, dtype: str, *, clip: bool, where: str) -> tuple[np.ndarray, int]:
    """Cast to the output dtype; out-of-range integers are an error, or clipped and counted with ``clip``.

    zarr and numpy would silently wrap 70000 to 4464 in uint16; that must never happen to
    quantitative data, so the range is checked before the cast.
    """
    if dtype == "float32":
        return np.asarray(values, dtype=np.float32), 0
    info = np.iinfo(dtype)
    rounded = np.rint(values)
    low, high = rounded < info.min, rounded > info.max
    n_out = int(np.count_nonzero(low) + np.count_nonzero(high))
    if n_out and not clip:
        raise BatchError(
            f"{where}: {n_out} output pixel(s) outside the {dtype} range [{info.min}, {info.max}] "
            f"(min {float(values.min()):.4g}, max {float(values.max()):.4g}); pass --clip to clip them "
            f"or use --dtype float32")
    return np.clip(rounded, info.min, info.max).astype(dtype), n_out


def process_plane(task: PlaneTask, plane: Plane) -> PlaneResult:
    """Read, super-resolve, convert and store one plane (all pyramid levels), then mark it done."""
    start = time.perf_counter()
    where = f"input plane {plane.describe()}"
    raw = _input(task)(plane.index)
    if np.issubdtype(raw.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(raw)))
        if bad:
            raise BatchError(f"{where} contains {bad} NaN/Inf pixel(s)")
    model = task.models[plane.channel]
    mapping = None
    enhancer = None
    if model is None:
        result = passthrough(raw, task.scale)
    else:
        enhancer = _enhancer(task, model, plane.channel)
        outputs, mappings = enhancer.enhance_many_with_mappings([raw])
        result, mapping = outputs[0], mappings[0]
    expected = (raw.shape[0] * task.scale, raw.shape[1] * task.scale)
    if result.shape != expected:
        raise BatchError(f"{where}: model returned shape {result.shape}, expected {expected}")
    bad = int(np.count_nonzero(~np.isfinite(result)))
    if bad:  # e.g. float16 overflow inside an fp16 model: never store it as if it were data
        raise BatchError(f"{where}: the model produced {bad} NaN/Inf pixel(s)")
    # scored on the float output, before any dtype conversion; None when the card has no degradation model
    score = enhancer.score(raw, result) if enhancer is not None else None
    values, clipped = to_output_dtype(result, task.options.dtype, clip=task.options.clip, where=where)
    info: dict = {}
    if task.options.error_map:  # before the SR plane: a plane whose SR pixels exist has its map
        emap = _error_plane(enhancer, raw, result)
        _error_output(task).write_plane(plane.index, emap)
        if np.isfinite(emap).any():
            info["error_range"] = [float(np.nanmin(emap)), float(np.nanmax(emap))]
    writer, levels = _output(task)
    writer.write_plane(plane.index, values, levels=levels)  # with its pyramid levels
    # the stored values' range, so the viewer's contrast window covers level 0 without re-reading it
    info.update({"clipped": clipped, "range": [float(values.min()), float(values.max())]})
    if mapping is not None:
        info["intensity"] = [mapping.offset, mapping.scale]
    if score is not None:
        info["consistency"] = score.as_dict()
    ProgressRecord(task.store_path).mark_done(plane.number, info)
    return PlaneResult(plane.number, clipped, time.perf_counter() - start)
