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
    ``batch_size``, ``clip``, ``threads`` and ``overlap_io`` (they change speed, or refuse, never
    the values)."""

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
    #: the local loop reads the next planes and writes finished ones on background threads while
    #: ONNX Runtime runs (:mod:`srscope.runtime.pipeline`); ``False`` (``srrun --no-overlap-io``):
    #: one plane at a time, read → enhance → write, for debugging or comparison. Same values
    #: either way; dask workers always run their planes one at a time.
    overlap_io: bool = True


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
    """What a stored plane reports back to the driver (its pixels are already in the store)."""

    number: int
    clipped: int
    #: the plane's own work, read + compute + write (time spent queued between stages not counted,
    #: so it means the same with and without overlapped I/O)
    seconds: float
    read_seconds: float = 0.0
    compute_seconds: float = 0.0
    write_seconds: float = 0.0


@dataclass
class EnhancedPlane:
    """A plane computed but not yet stored: what the enhance stage hands to the write stage.

    It carries everything the write needs (output values, error map, done-marker facts), so the
    write can run on another thread while the next plane is being enhanced.
    """

    plane: Plane
    values: np.ndarray
    clipped: int
    #: the done-marker's facts (value range, clipped count, intensity mapping, consistency score)
    info: dict
    error_map: np.ndarray | None = None
    read_seconds: float = 0.0
    compute_seconds: float = 0.0


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


def read_plane(task: PlaneTask, plane: Plane) -> np.ndarray:
    """Read one input plane; NaN/Inf pixels are refused here, before any model sees them."""
    raw = _input(task)(plane.index)
    if np.issubdtype(raw.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(raw)))
        if bad:
            raise BatchError(f"input plane {plane.describe()} contains {bad} NaN/Inf pixel(s)")
    return raw


def enhance_plane(task: PlaneTask, plane: Plane, raw: np.ndarray, *, read_seconds: float = 0.0) -> EnhancedPlane:
    """Super-resolve, check, score and convert one plane, touching no output (see :func:`store_plane`).

    ``read_seconds``: how long reading ``raw`` took, carried along into the plane's timings.
    """
    start = time.perf_counter()
    where = f"input plane {plane.describe()}"
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
    emap = None
    if task.options.error_map:
        emap = _error_plane(enhancer, raw, result)
        if np.isfinite(emap).any():
            info["error_range"] = [float(np.nanmin(emap)), float(np.nanmax(emap))]
    # the stored values' range, so the viewer's contrast window covers level 0 without re-reading it
    info.update({"clipped": clipped, "range": [float(values.min()), float(values.max())]})
    if mapping is not None:
        info["intensity"] = [mapping.offset, mapping.scale]
    if score is not None:
        info["consistency"] = score.as_dict()
    return EnhancedPlane(plane, values, clipped, info, emap, read_seconds=read_seconds,
                         compute_seconds=time.perf_counter() - start)


def store_plane(task: PlaneTask, enhanced: EnhancedPlane) -> PlaneResult:
    """Write one enhanced plane (error map, then all pyramid levels), then — only then — mark it done.

    The done-marker is the last step, so a plane killed anywhere before it is simply computed again.
    """
    start = time.perf_counter()
    plane = enhanced.plane
    if enhanced.error_map is not None:  # before the SR plane: a plane whose SR pixels exist has its map
        _error_output(task).write_plane(plane.index, enhanced.error_map)
    writer, levels = _output(task)
    writer.write_plane(plane.index, enhanced.values, levels=levels)  # with its pyramid levels
    ProgressRecord(task.store_path).mark_done(plane.number, enhanced.info)
    write = time.perf_counter() - start
    return PlaneResult(plane.number, enhanced.clipped, enhanced.read_seconds + enhanced.compute_seconds + write,
                       read_seconds=enhanced.read_seconds, compute_seconds=enhanced.compute_seconds,
                       write_seconds=write)


def process_plane(task: PlaneTask, plane: Plane) -> PlaneResult:
    """Read, super-resolve, convert and store one plane (all pyramid levels), then mark it done.

    The three stages one after the other: what a dask worker runs per task, and the local loop
    with ``overlap_io=False``; :mod:`srscope.runtime.pipeline` runs the same stages overlapped.
    """
    start = time.perf_counter()
    raw = read_plane(task, plane)
    return store_plane(task, enhance_plane(task, plane, raw, read_seconds=time.perf_counter() - start))
