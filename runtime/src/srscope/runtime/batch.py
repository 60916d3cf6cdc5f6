"""An ``srrun`` job: check everything up front, stream planes into the output, finish atomically.

The output is always built as an OME-Zarr store first (the final ``.ome.zarr``, or a hidden
``.<name>.srrun-partial.zarr`` next to a TIFF output). While the job runs the store is marked
incomplete and carries a :class:`ProgressRecord`; a rerun of the *same* job (same input, models,
tile settings and dtype) skips the planes already recorded. Each plane is stored with its pyramid
levels; only when every plane is stored is the NGFF metadata written (and, for TIFF, the OME-TIFF
streamed out and renamed into place), so nothing that looks finished is ever half-written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
from srscope.runtime.card import AffineIntensity, ModelCard, read_card
from srscope.runtime.intensity import SeriesIntensity, intensity_policy, parse_intensity
from srscope.runtime.io import (
    Image,
    OmeZarrWriter,
    image_format,
    read_image,
    store_status,
)
from srscope.runtime.io.lazy import canonical_axes
from srscope.runtime.io.omezarr import COMPLETE, INCOMPLETE
from srscope.runtime.io.tiff import write_tiff
from srscope.runtime.planes import (
    ModelSpec,
    Plane,
    channel_models,
    count_planes,
    iter_planes,
)
from srscope.runtime.planework import (
    OUTPUT_DTYPES,
    BatchError,
    PlaneResult,
    PlaneTask,
    RunOptions,
    forget_cached,
    process_plane,
)
from srscope.runtime.progressrecord import ProgressRecord, RecordBusyError
from tqdm.auto import tqdm

if TYPE_CHECKING:  # dask.distributed is an optional extra
    from distributed import Client

#: File pixel size vs the model card's input pixel size: warn above, refuse above (relative).
PIXEL_SIZE_WARN = 0.05
PIXEL_SIZE_REFUSE = 0.20


@dataclass
class JobPlan:
    """Everything decided before the first plane runs."""

    input_path: Path
    output_path: Path
    store_path: Path
    source: Image  #: calibration and names of the input; its pixels are a zero-size stand-in
    axes: str
    output_shape: tuple[int, ...]
    task: PlaneTask
    cards: dict[str, ModelCard]
    output_pixel_size_um: tuple[float, float]
    identity: dict
    warnings: list[str] = field(default_factory=list)

    @property
    def n_planes(self) -> int:
        return count_planes(self.output_shape)

    def planes(self) -> list[Plane]:
        return list(iter_planes(self.output_shape, self.axes))


@dataclass
class JobReport:
    output: Path
    planes_total: int
    planes_computed: int
    planes_skipped: int
    clipped_pixels: int
    seconds: float
    warnings: list[str]


def _store_path_for(output: Path) -> Path:
    if image_format(output) == "zarr":
        return output
    return output.with_name(f".{output.name}.srrun-partial.zarr")


def _looks_like_zarr(path: Path) -> bool:
    return any((path / name).exists() for name in ("zarr.json", ".zgroup", ".zarray", ".zattrs"))


def _remove(path: Path) -> None:
    if path.is_dir():
        if not _looks_like_zarr(path):
            raise BatchError(f"{path}: is a directory that is not a zarr store; refusing to delete it")
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _check_pixel_size(file_size: tuple[float, float], unknown: bool, card: ModelCard,
                      ignore: bool, notes: list[str]) -> tuple[float, float]:
    expected = card.input_pixel_size_um
    if unknown:
        notes.append(f"input has no pixel size; assuming the model's {expected:g} µm")
        return (expected, expected)
    worst = max(abs(s / expected - 1.0) for s in file_size)
    if worst > PIXEL_SIZE_REFUSE and not ignore:
        raise BatchError(
            f"input pixel size {file_size[0]:g}x{file_size[1]:g} µm differs from model {card.name!r}'s "
            f"{expected:g} µm by {worst:.0%}; use a model trained for this magnification "
            f"(or --ignore-pixel-size)")
    if worst > PIXEL_SIZE_WARN:
        notes.append(f"input pixel size {file_size[1]:g} µm differs from model {card.name!r}'s "
                     f"{expected:g} µm by {worst:.0%}")
    return file_size


def plan_job(input_path: str | Path, output_path: str | Path, models: Sequence[str], *,
             options: RunOptions | None = None, passthrough_unmapped: bool = False,
             ignore_pixel_size: bool = False, overwrite: bool = False) -> JobPlan:
    """Validate input, models and output; raise :class:`BatchError`/:class:`ImageIOError` on any problem."""
    options = options or RunOptions()
    input_path, output_path = Path(input_path), Path(output_path)
    image_format(output_path)  # unknown output suffix fails before any work
    if output_path.resolve() == input_path.resolve():
        raise BatchError("OUTPUT is the same path as INPUT")
    if options.dtype not in OUTPUT_DTYPES:
        raise BatchError(f"--dtype must be one of {', '.join(OUTPUT_DTYPES)}, not {options.dtype!r}")
    if options.batch_size < 1 or (options.tile is not None and options.tile < 1):
        raise BatchError("--tile and --batch-size must be positive")
    if options.overlap is not None and options.overlap < 0:
        raise BatchError("--overlap must be >= 0")
    source = read_image(input_path)
    dtype = np.dtype(source.dtype)
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)) or dtype == np.bool_:
        raise BatchError(f"{input_path}: pixel type {dtype} is not a real number type")
    if min(source.shape[-2:]) < 1 or 0 in source.shape:
        raise BatchError(f"{input_path}: empty image (shape {source.shape})")

    specs = [ModelSpec.parse(m) for m in models]
    per_channel = channel_models(specs, source.n_channels, source.channel_names,
                                 passthrough_unmapped=passthrough_unmapped)
    cards: dict[str, ModelCard] = {}
    for path in {p for p in per_channel if p is not None}:
        cards[str(path)] = read_card(path)
    for path, card in cards.items():
        if options.tile is not None and options.tile < card.size_multiple:
            raise BatchError(f"--tile {options.tile} is smaller than model {Path(path).name}'s size multiple "
                             f"{card.size_multiple}")
    scales = {card.integer_scale for card in cards.values()}
    if len(scales) != 1:
        raise BatchError(f"the channel models have different scale factors {sorted(scales)}; "
                         "run them as separate jobs")
    scale = scales.pop()

    notes: list[str] = []
    unknown = bool(source.metadata.get("pixel_size_unknown"))
    checked = {_check_pixel_size(source.pixel_size_um, unknown, card, ignore_pixel_size, notes)
               for card in cards.values()}
    in_size = min(checked)
    out_size = (in_size[0] / scale, in_size[1] / scale)

    axes = canonical_axes(source.axes)
    in_shape = tuple(source.shape[source.axes.index(a)] for a in axes)
    out_shape = in_shape[:-2] + (in_shape[-2] * scale, in_shape[-1] * scale)
    store = _store_path_for(output_path)
    model_strs = tuple(str(p) if p is not None else None for p in per_channel)
    mappings = _series_mappings(source, axes, model_strs, cards, options)
    task = PlaneTask(input_path=str(input_path.resolve()), store_path=str(store.resolve()),
                     models=tuple(str(Path(m).resolve()) if m else None for m in model_strs),
                     scale=scale, options=options, mappings=mappings)
    identity = {
        "input": task.input_path, "input_shape": list(source.shape), "input_dtype": str(dtype),
        "models": [cards[m].weights_sha256 if m else None for m in model_strs],
        "dtype": options.dtype, "tile": options.tile, "overlap": options.overlap,
    }
    if options.intensity != "auto" or any(c.intensity.mode != "fixed" for c in cards.values()):
        identity["intensity"] = {"policy": options.intensity, "mappings": [list(m) if m else None for m in mappings]}
    # Keep the calibration, drop the pixels: workers read planes themselves, and a small TIFF read
    # whole here would otherwise stay in memory for the entire run.
    calibration = dataclasses.replace(source, data=np.broadcast_to(np.zeros((), dtype), source.shape))
    plan = JobPlan(input_path=input_path, output_path=output_path, store_path=store, source=calibration,
                   axes=axes, output_shape=out_shape, task=task, cards=cards,
                   output_pixel_size_um=out_size, identity=identity, warnings=notes)
    _check_output(plan, overwrite)
    return plan


def _series_mappings(source: Image, axes: str, models: Sequence[str | None], cards: dict[str, ModelCard],
                     options: RunOptions) -> tuple[tuple[float, float] | None, ...]:
    """Resolve ``--intensity`` per channel; a ``series`` channel's mapping is latched here, from its
    first ``intensity_planes`` planes (time, then z, order), so all planes and workers share it."""
    try:
        choice = parse_intensity(options.intensity)
    except ValueError as exc:
        raise BatchError(str(exc)) from None
    if options.intensity_planes < 1:
        raise BatchError("--intensity-planes must be >= 1")
    from srscope.runtime.io.lazy import plane_reader

    reader = None
    out: list[tuple[float, float] | None] = []
    for channel, model in enumerate(models):
        if model is None:
            out.append(None)
            continue
        policy = intensity_policy(cards[model], choice)   # a fixed card refuses plane/series here
        if not isinstance(policy, SeriesIntensity):
            out.append(None)
            continue
        if policy.mapping is None:
            reader = reader or plane_reader(source)
            shape = tuple(source.shape[source.axes.index(a)] for a in axes)
            first = [p for p in iter_planes(shape, axes) if p.channel == channel][: options.intensity_planes]
            policy.calibrate([np.asarray(reader(p.index), dtype=np.float32) for p in first])
        mapping: AffineIntensity = policy.mapping
        out.append((mapping.offset, mapping.scale))
    return tuple(out)


def _check_output(plan: JobPlan, overwrite: bool) -> None:
    """Refuse to touch outputs that are not ours to resume; clear them with ``overwrite``."""
    out, store = plan.output_path, plan.store_path
    if not out.parent.is_dir():
        raise BatchError(f"{out.parent}: output directory does not exist")
    if overwrite:
        _remove(out)
        if store != out:
            _remove(store)
        return
    if store != out and out.exists():
        raise BatchError(f"{out}: already exists; pass --overwrite to replace it")
    if not store.exists():
        return
    status = store_status(store)
    # A TIFF job's work store may be complete too: then only the TIFF conversion is left.
    resumable = status == INCOMPLETE or (status == COMPLETE and store != out)
    if not resumable:
        raise BatchError(f"{out}: already exists; pass --overwrite to replace it")
    if OmeZarrWriter.open_any(store).job != plan.identity:
        raise BatchError(f"{store}: holds unfinished work of an srrun job with different input/models/options; "
                         "pass --overwrite to discard it")


def _provenance(plan: JobPlan, clipped: int) -> dict:
    models = {}
    for channel, path in enumerate(plan.task.models):
        if path is None:
            models[str(channel)] = {"passthrough": f"pixel replication x{plan.task.scale}"}
            continue
        card = next(c for p, c in plan.cards.items() if str(Path(p).resolve()) == path)
        models[str(channel)] = {"file": Path(path).name, "name": card.name, "version": card.version,
                                "weights_sha256": card.weights_sha256,
                                "input_modality": card.input_modality, "output_modality": card.output_modality}
    record = {"srrun": {"input": plan.task.input_path, "models": models, "scale_factor": plan.task.scale,
                        "dtype": plan.task.options.dtype, "clipped_pixels": clipped,
                        "tile": plan.task.options.tile, "overlap": plan.task.options.overlap,
                        "intensity": plan.task.options.intensity,
                        "intensity_mappings": [list(m) if m else None for m in plan.task.mappings]}}
    if plan.source.metadata:
        record["input_metadata"] = plan.source.metadata
    return record


def _run_local(task: PlaneTask, pending: list[Plane], on_done: Callable[[PlaneResult], None]) -> None:
    for plane in pending:
        on_done(process_plane(task, plane))


def _check_reachable(address: str) -> None:
    """Fail in milliseconds, not after the client's connect timeout, when nothing listens at a tcp address."""
    parsed = urlsplit(address if "://" in address else f"tcp://{address}")
    if parsed.scheme != "tcp" or parsed.hostname is None or parsed.port is None:
        return  # other protocols (tls, ucx, inproc): let the client judge
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=5).close()
    except OSError as exc:
        raise BatchError(f"cannot reach the dask scheduler at {address} ({exc.strerror or exc})") from None


def _connect(address: str) -> Client:
    """A dask.distributed client for ``address``, or a one-line :class:`BatchError`."""
    try:
        from distributed import Client
    except ImportError:
        raise BatchError("--scheduler needs dask.distributed: pip install 'srscope-runtime[distributed]'") from None
    _check_reachable(address)
    try:
        return Client(address, set_as_default=False, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise BatchError(f"cannot reach the dask scheduler at {address} ({exc.__class__.__name__})") from None


def _run_distributed(client: Client, task: PlaneTask, pending: list[Plane],
                     on_done: Callable[[PlaneResult], None]) -> None:
    from distributed import as_completed

    futures = [client.submit(process_plane, task, p, pure=False) for p in pending]
    try:
        for future in as_completed(futures, loop=client.loop):
            on_done(future.result())
    finally:
        client.cancel(futures)


def run_job(plan: JobPlan, *, scheduler: str | None = None, progress: bool = True) -> JobReport:
    """Run (or resume) the planned job; on failure the partial store stays marked incomplete."""
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(_connect(scheduler)) if scheduler else None  # before touching OUTPUT
        return _run(plan, client, progress=progress, start=start)


def _compute(plan: JobPlan, task: PlaneTask, client: Client | None, pending: list[Plane], total: int, *,
             created: bool, progress: bool) -> list[PlaneResult]:
    """Run the pending planes locally or on the cluster, with a progress bar over all planes."""
    computed: list[PlaneResult] = []
    with tqdm(total=total, initial=total - len(pending), unit="plane", desc="srrun",
              disable=not progress, dynamic_ncols=True) as bar:

        def on_done(result: PlaneResult) -> None:
            computed.append(result)
            bar.update(1)

        try:
            if client is not None:
                _run_distributed(client, task, pending, on_done)
            else:
                _run_local(task, pending, on_done)
        except BaseException:
            forget_cached()
            # Nothing worth resuming: leave no debris. (Not with a cluster: a cancelled task may
            # still be writing, and an incomplete store is harmless anyway.)
            if created and not computed and client is None:
                shutil.rmtree(plan.store_path, ignore_errors=True)
            raise
    forget_cached()
    return computed


def _run(plan: JobPlan, client: Client | None, *, progress: bool, start: float) -> JobReport:
    store = plan.store_path
    created = False
    if not store.exists():
        OmeZarrWriter.create(store, shape=plan.output_shape, dtype=plan.task.options.dtype,
                             axes=plan.axes, job=plan.identity)
        created = True
    task = dataclasses.replace(plan.task, run_token=uuid.uuid4().hex)
    record = ProgressRecord(store)
    planes = plan.planes()
    with contextlib.ExitStack() as held:
        if store_status(store) == INCOMPLETE:
            try:
                held.enter_context(record.lock())
            except RecordBusyError:
                raise BatchError(f"{plan.output_path}: another srrun is writing it right now") from None
        status = store_status(store)  # again, under the lock: the other run may just have finished
        done = record.done() if status == INCOMPLETE else {}
        pending = [p for p in planes if p.number not in done] if status == INCOMPLETE else []
        computed = _compute(plan, task, client, pending, len(planes), created=created, progress=progress)
        clipped = sum(int(f.get("clipped", 0)) for f in record.done().values()) if status == INCOMPLETE else 0
        if status == INCOMPLETE:
            writer = OmeZarrWriter.open(store)
            template = Image(data=writer.level0, axes=plan.axes, pixel_size_um=plan.output_pixel_size_um,
                             channel_names=plan.source.channel_names, z_step_um=plan.source.z_step_um,
                             time_interval_s=plan.source.time_interval_s, metadata=_provenance(plan, clipped))
            writer.finalize(template, name=plan.output_path.name.split(".")[0] or "image")
            record.clear()
    if store != plan.output_path:
        for debris in plan.output_path.parent.glob(f".{plan.output_path.name}.*.partial"):
            debris.unlink(missing_ok=True)  # temporary TIFFs of runs killed while converting
        write_tiff(plan.output_path, read_image(store))
        shutil.rmtree(store)
    notes = list(plan.warnings)
    if clipped:
        notes.append(f"{clipped} output pixel(s) were clipped to the {plan.task.options.dtype} range")
    return JobReport(output=plan.output_path, planes_total=len(planes), planes_computed=len(computed),
                     planes_skipped=len(planes) - len(pending), clipped_pixels=clipped,
                     seconds=time.perf_counter() - start, warnings=notes)


__all__ = ["BatchError", "JobPlan", "JobReport", "RunOptions", "plan_job", "run_job"]
