"""An ``srrun`` job: check everything up front, stream planes into the output, finish atomically.

The output is always built as an OME-Zarr *work store* first (a
:class:`~srscope.runtime.io.store.PlaneStore`, the store live acquisition writes too): the final
``.ome.zarr`` itself for a new or resumed job; a hidden ``.<name>.srrun-new.zarr`` beside it with ``--overwrite``, so the old
output survives any failure and is swapped out only once the new one is finished; a hidden
``.<name>.srrun-partial.zarr`` beside a TIFF output. While the job runs the store's status is
``running`` and it records its finished planes; a rerun of the *same* job (same input, models,
tile settings and dtype) skips the planes already recorded, and a rerun of a finished job does
nothing. Each plane is stored with its pyramid levels; only when every plane is stored is the NGFF
metadata written (and, for TIFF, the OME-TIFF streamed out and renamed into place), so nothing that
looks finished is ever half-written.

Everything that creates, deletes or replaces a store happens under that store's job lock (held by
the run writing it, for its whole duration), so two runs on one output can never mix their planes:
the one that finds the other's lock refuses with a one-line error and claims no success.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import glob
import os
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
from srscope.runtime.channelmap import ModelSpec, channel_models
from srscope.runtime.intensity import SeriesIntensity, intensity_policy, parse_intensity
from srscope.runtime.io import Image, image_format, read_image
from srscope.runtime.io.faults import fault_point
from srscope.runtime.io.lazy import canonical_axes
from srscope.runtime.io.record import RecordBusyError
from srscope.runtime.io.store import (
    COMPLETE,
    WORK_IN_PROGRESS,
    ChannelRanges,
    PlaneStore,
    StoreExistsError,
    job_lock,
    looks_like_zarr,
    store_status,
    sweep_creations,
)
from srscope.runtime.io.tiff import refuse_guessed_layout, tiff_job_metadata, write_tiff
from srscope.runtime.pipeline import run_planes
from srscope.runtime.pixelsize import check_pixel_size
from srscope.runtime.planes import Plane, count_planes, iter_planes
from srscope.runtime.planework import (
    ERROR_MAP_PATH,
    OUTPUT_DTYPES,
    BatchError,
    PlaneResult,
    PlaneTask,
    RunOptions,
    forget_cached,
    process_plane,
)
from srscope.runtime.scorereport import METADATA_KEY as CONSISTENCY_KEY
from srscope.runtime.scorereport import ConsistencyReport
from tqdm.auto import tqdm

if TYPE_CHECKING:  # dask.distributed is an optional extra
    from distributed import Client

#: Test seam (used by tests/runtime/test_srrun_safety.py, harmless otherwise): ``"N:GATE"`` makes
#: the driver pause after its N-th computed plane, still holding the job lock, create
#: ``GATE.paused`` and wait (at most 5 minutes) until the file ``GATE`` exists. It lets a test run
#: two real srrun processes against one output in a fixed interleaving.
PAUSE_ENV = "SRRUN_TEST_PAUSE"


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
    overwrite: bool = False
    #: NGFF translation of the output grid (see :func:`_output_translation`)
    output_translation: dict[str, float] = field(default_factory=dict)

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
    #: the output already held this job's finished result: nothing was done
    already_complete: bool = False
    #: the per-plane consistency scores stored with the output (``None``: no channel's model
    #: carries a degradation model, so nothing was checked)
    consistency: ConsistencyReport | None = None
    #: seconds spent reading, enhancing and writing the planes this run computed, summed over
    #: planes (with overlapped I/O, where the wall time went if nothing had overlapped)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def _store_path_for(output: Path, overwrite: bool) -> Path:
    """Where the planes go: OUTPUT itself for a new or resumed OME-Zarr; beside it when replacing
    one (the old output must survive until the new one is finished) or when writing a TIFF."""
    if image_format(output) == "zarr":
        return output.with_name(f".{output.name}.srrun-new.zarr") if overwrite else output
    return output.with_name(f".{output.name}.srrun-partial.zarr")


def _nested(a: Path, b: Path) -> bool:
    """``a`` and ``b`` are the same path or one lies inside the other (after resolving links)."""
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def _remove(path: Path) -> None:
    if path.is_dir():
        if not looks_like_zarr(path):
            raise BatchError(f"{path}: is a directory that is not a zarr store; refusing to delete it")
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _job_of(store: Path) -> dict | None:
    """The job identity an srscope store was created for, or ``None`` if it is not one."""
    try:
        return PlaneStore.open_any(store).job
    except Exception:  # noqa: BLE001 - unreadable: not ours
        return None


def _finished_record(plan: JobPlan) -> dict | None:
    """The ``srrun`` provenance of OUTPUT if it already holds *this* job's finished result, else ``None``."""
    out = plan.output_path
    if image_format(out) == "zarr":
        if store_status(out) != COMPLETE:
            return None
        try:
            state = PlaneStore.open_any(out).state
        except Exception:  # noqa: BLE001 - vanished meanwhile
            return None
        return dict(state.get("metadata", {}).get("srrun", {})) if state.get("job") == plan.identity else None
    if not out.is_file():
        return None
    record = tiff_job_metadata(out).get("srrun", {})
    return dict(record) if isinstance(record, dict) and record.get("job") == plan.identity else None


def _finished_metadata(plan: JobPlan) -> dict:
    """The srscope metadata of OUTPUT (already this job's finished result): what a rerun reports."""
    out = plan.output_path
    if image_format(out) == "tiff":
        return tiff_job_metadata(out)
    try:
        return PlaneStore.open_any(out).metadata
    except Exception:  # noqa: BLE001 - vanished meanwhile: nothing to report
        return {}


def _checks_consistency(plan: JobPlan) -> bool:
    """Whether any channel's model carries a degradation model, so its planes are scored."""
    return any(card.degradation is not None for card in plan.cards.values())


def _check_pixel_size(file_size: tuple[float, float], unknown: bool, card: ModelCard,
                      ignore: bool, notes: list[str]) -> tuple[float, float]:
    """Judge the file's pixel size by the runtime's one policy (:mod:`srscope.runtime.pixelsize`).

    A refusal is a :class:`BatchError`; a warning becomes a run note. A file without a pixel size
    is assumed to match the model, and the note says so.
    """
    expected = card.input_pixel_size_um
    if unknown:
        notes.append(f"input has no pixel size; assuming the model's {expected:g} µm")
        return (expected, expected)
    check = check_pixel_size(file_size, expected, model=card.name, ignore=ignore)  # Image keeps sizes > 0
    if check.refused:
        raise BatchError(check.message)
    if check.message is not None:
        notes.append(check.message)
    return file_size


def check_options(options: RunOptions) -> None:
    """The option checks :func:`plan_job` makes before reading anything (a batch makes them once, up front)."""
    if options.dtype not in OUTPUT_DTYPES:
        raise BatchError(f"--dtype must be one of {', '.join(OUTPUT_DTYPES)}, not {options.dtype!r}")
    if options.batch_size < 1 or (isinstance(options.tile, int) and options.tile < 1):
        raise BatchError("--tile and --batch-size must be positive")
    if options.overlap is not None and options.overlap < 0:
        raise BatchError("--overlap must be >= 0")
    if options.threads is not None and options.threads < 1:
        raise BatchError("--threads must be >= 1")


def plan_job(input_path: str | Path, output_path: str | Path, models: Sequence[str], *,
             options: RunOptions | None = None, passthrough_unmapped: bool = False,
             ignore_pixel_size: bool = False, overwrite: bool = False) -> JobPlan:
    """Validate input, models and output; raise :class:`BatchError`/:class:`ImageIOError` on any problem."""
    options = options or RunOptions()
    input_path, output_path = Path(input_path), Path(output_path)
    image_format(output_path)  # unknown output suffix fails before any work
    if output_path.resolve() == input_path.resolve():
        raise BatchError("OUTPUT is the same path as INPUT")
    if _nested(output_path, input_path):  # --overwrite would delete the input, or write into it
        raise BatchError(f"OUTPUT {output_path} and INPUT {input_path} are nested (one is inside the other); "
                         "write the output elsewhere")
    check_options(options)
    source = read_image(input_path)
    if image_format(input_path) == "tiff":
        refuse_guessed_layout(input_path)  # RGB, or >3-D without axes: the planes would be guessed
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
        if isinstance(options.tile, int) and options.tile < card.size_multiple:
            raise BatchError(f"--tile {options.tile} is smaller than model {Path(path).name}'s size multiple "
                             f"{card.size_multiple}")
    if options.error_map:
        _check_error_map(output_path, cards)
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
    store = _store_path_for(output_path, overwrite)
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
    if options.error_map:  # only when asked, so jobs without it keep the identity they always had
        identity["error_map"] = True
    if options.intensity != "auto" or any(c.intensity.mode != "fixed" for c in cards.values()):
        identity["intensity"] = {"policy": options.intensity, "mappings": [list(m) if m else None for m in mappings]}
    # Keep the calibration, drop the pixels: workers read planes themselves, and a small TIFF read
    # whole here would otherwise stay in memory for the entire run.
    calibration = dataclasses.replace(source, data=np.broadcast_to(np.zeros((), dtype), source.shape))
    plan = JobPlan(input_path=input_path, output_path=output_path, store_path=store, source=calibration,
                   axes=axes, output_shape=out_shape, task=task, cards=cards,
                   output_pixel_size_um=out_size, identity=identity, warnings=notes, overwrite=overwrite,
                   output_translation=_output_translation(source.translation, scale, out_size))
    _check_output(plan)
    return plan


def _check_error_map(output: Path, cards: dict[str, ModelCard]) -> None:
    """``--error-map`` needs an OME-Zarr OUTPUT (the map is a second image inside it) and a model
    whose card carries a degradation model (the map is its re-degradation error)."""
    if image_format(output) != "zarr":
        raise BatchError(f"--error-map writes the map into an OME-Zarr store beside the image; {output.name} is a "
                         "TIFF: write .ome.zarr instead")
    if not any(card.degradation is not None for card in cards.values()):
        names = ", ".join(sorted(card.name for card in cards.values())) or "none"
        raise BatchError(f"--error-map: no model here carries a degradation model (models: {names}); "
                         "fit one with srtrain calibrate-consistency")


def _output_translation(source: dict[str, float], scale: int, out_size: tuple[float, float]) -> dict[str, float]:
    """The input's NGFF translation, moved for the finer grid so both image the same positions.

    NGFF coordinates are pixel *centres*: input pixel i sits at ``T + p·i``. It covers output pixels
    ``s·i … s·i + s - 1``, whose centres average to output index ``s·i + (s - 1)/2``, i.e. to
    ``T' + (p/s)·(s·i + (s - 1)/2)``. Equal for every i when ``T' = T - (s - 1)/2 · p/s``: the
    output's first pixel centre lies (s - 1)/(2s) of an input pixel before the input's.
    """
    shifted = dict(source)
    for axis, size in zip("yx", out_size):
        shifted[axis] = shifted.get(axis, 0.0) - (scale - 1) / 2 * size
    return {a: v for a, v in shifted.items() if v}


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


def _check_output(plan: JobPlan) -> None:
    """Refuse, before any work, outputs that are not ours to resume or (with ``--overwrite``) replace.

    Nothing is deleted here: with ``--overwrite`` the old output is replaced only at the end of a
    successful run (:func:`_publish`), so a failure at any point leaves it as it was.
    """
    out, store = plan.output_path, plan.store_path
    if not out.parent.is_dir():
        raise BatchError(f"{out.parent}: output directory does not exist")
    if not os.access(out.parent, os.W_OK):
        raise BatchError(f"{out.parent}: output directory is not writable")
    if plan.overwrite:
        for path in {out, store}:
            if path.is_dir() and not looks_like_zarr(path):
                raise BatchError(f"{path}: is a directory that is not a zarr store; refusing to replace it")
        return
    if _finished_record(plan) is not None:
        return  # a rerun of a finished job: run_job says so and does nothing
    if store != out and out.exists():
        raise BatchError(f"{out}: already exists; pass --overwrite to replace it")
    if not store.exists():
        return
    status = store_status(store)
    # A TIFF job's work store may be complete too: then only the TIFF conversion is left.
    resumable = status in WORK_IN_PROGRESS or (status == COMPLETE and store != out)
    if not resumable:
        raise BatchError(f"{out}: already exists; pass --overwrite to replace it")
    if _job_of(store) != plan.identity:
        raise BatchError(f"{store}: holds unfinished work of an srrun job with different input/models/options; "
                         "pass --overwrite to discard it")


def _tidy(store: Path) -> None:
    """A finished store keeps no progress record (locking one to inspect or replace it makes one)."""
    if store_status(store) == COMPLETE:
        PlaneStore.open_any(store).record.clear()


def _enter_lock(stack: contextlib.ExitStack, store: Path, what: Path) -> None:
    """Take ``store``'s job lock for the life of ``stack``, or fail if a live run holds it."""
    try:
        stack.enter_context(job_lock(store))
    except RecordBusyError:
        raise BatchError(f"{what}: another srrun is writing it right now") from None
    stack.callback(_tidy, store)  # runs before the lock is released


def _create_store(plan: JobPlan, held: contextlib.ExitStack) -> bool:
    """Create the empty work store, atomically and already locked (see :meth:`PlaneStore.create`).

    A kill half-way used to leave a store every rerun tripped over (or finished with too few
    levels); built beside and renamed in, it is never seen half-made, and no other run can claim
    it first. Returns ``False`` (and keeps nothing) if another run's store appeared meanwhile.
    """
    try:
        PlaneStore.create(plan.store_path, shape=plan.output_shape, dtype=plan.task.options.dtype,
                          axes=plan.axes, job=plan.identity, hold=held)
    except StoreExistsError:
        return False
    return True


def _take_store(plan: JobPlan, held: contextlib.ExitStack) -> bool:
    """Hold the job lock on the work store for the life of ``held``, creating the store if needed.

    An existing store is kept when it belongs to this job (planes to resume, or finished work to
    publish); with ``--overwrite`` a different job's store *beside* the output is discarded, under
    its lock; anything else is refused. Returns whether this run created the store.
    """
    store = plan.store_path
    while True:
        if not store.exists():
            if _create_store(plan, held):
                return True
            continue  # another run created it first: look at theirs, under its lock
        with contextlib.ExitStack() as lock:
            _enter_lock(lock, store, plan.output_path)
            status = store_status(store)  # under the lock: the other run may just have finished
            if status is not None and _job_of(store) == plan.identity:
                held.enter_context(lock.pop_all())
                return False
            if not plan.overwrite or store == plan.output_path:
                if status in WORK_IN_PROGRESS:
                    raise BatchError(f"{store}: holds unfinished work of an srrun job with different "
                                     "input/models/options; pass --overwrite to discard it")
                raise BatchError(f"{plan.output_path}: already exists; pass --overwrite to replace it")
            _remove(store)  # a different job's work beside the output: --overwrite discards it


def _refuse_if_busy(path: Path) -> None:
    """Fail now, not after hours of work, if a live run is writing ``path`` in place."""
    if store_status(path) in WORK_IN_PROGRESS:
        with contextlib.ExitStack() as probe:
            _enter_lock(probe, path, path)


def _find_renameat2():
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except Exception:  # noqa: BLE001 - not Linux/glibc: no atomic exchange
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _find_renameat2()
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> None:
    """Swap what ``a`` and ``b`` name: atomically with Linux's ``renameat2(RENAME_EXCHANGE)``; where
    the system or filesystem cannot, by three renames (``b`` is briefly absent)."""
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(b))
    aside = b.with_name(f".{b.name}.{uuid.uuid4().hex[:8]}.srrun-old.zarr")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def _swap_in(new: Path, out: Path) -> None:
    """Replace OUTPUT by the finished store NEW, under OUTPUT's job lock, then delete the old one.

    The lock means no run is writing OUTPUT in place at that moment: if one is, this run fails
    (its finished store stays beside, and rerunning the command puts it in place). The exchange
    means OUTPUT is always the old or the new image, never missing or a mixture.
    """
    while True:
        if not out.exists():
            try:
                os.rename(new, out)
                return
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                continue  # a run created OUTPUT meanwhile: replace it through its lock
        with contextlib.ExitStack() as lock:
            if out.is_dir():
                try:
                    _enter_lock(lock, out, out)
                except BatchError:
                    raise BatchError(f"{out}: another srrun is writing it right now; this run's finished "
                                     "result is kept beside it: rerun this command once that one has ended"
                                     ) from None
            _exchange(new, out)
        _remove(new)  # the old output, now under the temporary name
        return


def _publish(plan: JobPlan) -> None:
    """Put the finished work store where OUTPUT is (called holding the store's job lock)."""
    out, store = plan.output_path, plan.store_path
    if store == out:
        return
    fault_point("publish")
    if image_format(out) == "tiff":
        for debris in out.parent.glob(f".{glob.escape(out.name)}.*.partial"):
            debris.unlink(missing_ok=True)  # temporary TIFFs of runs killed while converting
        write_tiff(out, read_image(store))  # a temporary file renamed over OUTPUT at the end
        shutil.rmtree(store)
        return
    _swap_in(store, out)


def _sweep_finished(plan: JobPlan) -> None:
    """OUTPUT holds this job's result: remove work stores of this same job that kills left beside it
    (a TIFF's store when killed just after the TIFF's rename; a store an ``--overwrite`` run of
    this job finished but was killed before swapping in). Other jobs' stores are left alone."""
    out = plan.output_path
    sweep_creations(plan.store_path)
    for store in {_store_path_for(out, overwrite=False), _store_path_for(out, overwrite=True)} - {out}:
        if not store.is_dir():
            continue
        with contextlib.ExitStack() as lock:
            try:
                _enter_lock(lock, store, out)
            except BatchError:
                continue  # in use by a live run: not debris
            if _job_of(store) == plan.identity:
                for debris in out.parent.glob(f".{glob.escape(out.name)}.*.partial"):
                    debris.unlink(missing_ok=True)
                shutil.rmtree(store)


def _provenance(plan: JobPlan, clipped: int, consistency: ConsistencyReport | None = None) -> dict:
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
                        "intensity_mappings": [list(m) if m else None for m in plan.task.mappings],
                        "job": plan.identity}}
    if plan.source.metadata:
        record["input_metadata"] = plan.source.metadata
    if consistency is not None:
        record[CONSISTENCY_KEY] = consistency.as_metadata()
    return record


def _run_local(task: PlaneTask, pending: list[Plane], on_done: Callable[[PlaneResult], None]) -> None:
    """This process runs the planes: reading ahead and writing behind on threads unless
    ``--no-overlap-io`` (see :mod:`srscope.runtime.pipeline`). The :data:`PAUSE_ENV` seam pauses
    right after the N-th done-marker, where no other plane can be stored meanwhile."""
    run_planes(task, pending, on_done, overlap=task.options.overlap_io, after_store=_pause_for_tests)


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


def run_job(plan: JobPlan, *, scheduler: str | None = None, progress: bool = True,
            client: Client | None = None, on_plane: Callable[[], None] | None = None) -> JobReport:
    """Run (or resume) the planned job; on failure the partial store stays marked incomplete.

    ``client``: an already connected dask client to use instead of connecting to ``scheduler``
    (a batch of jobs shares one). ``on_plane``: called after each plane computed by this run (a
    batch's own progress bar; pass ``progress=False`` then).
    """
    start = time.perf_counter()
    if not plan.overwrite:
        record = _finished_record(plan)
        if record is not None:
            _sweep_finished(plan)
            total = plan.n_planes
            consistency = ConsistencyReport.from_metadata(_finished_metadata(plan).get(CONSISTENCY_KEY))
            notes = list(plan.warnings) + _consistency_notes(consistency)
            return JobReport(output=plan.output_path, planes_total=total, planes_computed=0, planes_skipped=total,
                             clipped_pixels=int(record.get("clipped_pixels", 0)),
                             seconds=time.perf_counter() - start, warnings=notes,
                             already_complete=True, consistency=consistency)
    with contextlib.ExitStack() as stack:
        if client is None and scheduler:
            client = stack.enter_context(_connect(scheduler))  # before touching OUTPUT
        return _run(plan, client, progress=progress, start=start, on_plane=on_plane)


def _compute(plan: JobPlan, task: PlaneTask, client: Client | None, pending: list[Plane], total: int, *,
             created: bool, progress: bool, on_plane: Callable[[], None] | None = None) -> list[PlaneResult]:
    """Run the pending planes locally or on the cluster, with a progress bar over all planes."""
    computed: list[PlaneResult] = []
    with tqdm(total=total, initial=total - len(pending), unit="plane", desc="srrun",
              disable=not progress, dynamic_ncols=True) as bar:

        def on_done(result: PlaneResult) -> None:
            computed.append(result)
            bar.update(1)
            if on_plane is not None:
                on_plane()
            if client is not None:  # the local loop pauses where it stores (see _run_local)
                _pause_for_tests(len(computed))

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


def _pause_for_tests(count: int) -> None:
    """The :data:`PAUSE_ENV` test seam; does nothing unless that variable is set."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    after, _, gate = spec.partition(":")
    if count != int(after):
        return
    gate_path = Path(gate)
    gate_path.with_name(gate_path.name + ".paused").touch()
    deadline = time.monotonic() + 300
    while not gate_path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def _windows(plan: JobPlan, planes: list[Plane], facts: dict[int, dict]) -> list[tuple[float, float]] | None:
    """Each channel's data range from the ranges recorded per plane; ``None`` if a plane has none
    (recorded by an older srrun): the store then reads level 0 to find it."""
    ranges = ChannelRanges(plan.source.n_channels)
    for plane in planes:
        low_high = facts.get(plane.number, {}).get("range")
        if low_high is None:
            return None
        ranges.add(plane.channel, *low_high)
    return ranges.windows()


def _error_store(plan: JobPlan, held_store: Path) -> PlaneStore:
    """The unfinished error-map image inside the work store, created empty on first use (under the
    work store's job lock, which the caller holds): a run killed before creating it, or before
    finishing it, just carries on with it."""
    path = held_store / ERROR_MAP_PATH
    if not path.exists():
        try:
            PlaneStore.create(path, shape=plan.output_shape, dtype="float32", axes=plan.axes, job=plan.identity,
                              fill_value=float("nan"))
        except StoreExistsError:
            pass  # cannot happen under the work store's lock; reopened below either way
    return PlaneStore.open(path)


def _finalize_error_map(plan: JobPlan, error: PlaneStore, planes: list[Plane], facts: dict[int, dict]) -> dict:
    """Write the error map's NGFF metadata (the SR image's axes, scale and translation) and its
    status; returns the record that registers it in the SR image's metadata."""
    names = plan.source.channel_names
    record = {"path": ERROR_MAP_PATH,
              "description": "local consistency error on the SR grid: RMS of (input - re-degraded output) in "
                             "the card's Gaussian window, relative to the input's P1-P99.8 range; NaN where "
                             "not checked",
              "error_threshold": _thresholds(plan)}
    template = Image(data=error.level0, axes=plan.axes, pixel_size_um=plan.output_pixel_size_um,
                     channel_names=tuple(f"{n} error" for n in names) if names else None,
                     z_step_um=plan.source.z_step_um, time_interval_s=plan.source.time_interval_s,
                     metadata={"error_map_of": plan.output_path.name, **record},
                     translation=plan.output_translation,
                     channel_display=tuple({"color": "FF00FF"} for _ in range(plan.source.n_channels)))
    ranges = ChannelRanges(plan.source.n_channels)
    for plane in planes:
        low_high = facts.get(plane.number, {}).get("error_range")
        if low_high is not None:
            ranges.add(plane.channel, *low_high)
    error.finalize(template, name=f"{plan.output_path.name.split('.')[0] or 'image'} consistency error",
                   windows=ranges.windows())
    error.record.clear()
    return record


def _thresholds(plan: JobPlan) -> dict[str, float | None]:
    """Per channel, the local error only 1 % of in-domain pixels exceed (``None``: not checked)."""
    out: dict[str, float | None] = {}
    for channel, path in enumerate(plan.task.models):
        card = next((c for p, c in plan.cards.items() if str(Path(p).resolve()) == path), None) if path else None
        out[str(channel)] = card.degradation.error_threshold if card and card.degradation else None
    return out


def _consistency_notes(report: ConsistencyReport | None) -> list[str]:
    line = report.warning() if report is not None else None
    return [line] if line else []


def _run(plan: JobPlan, client: Client | None, *, progress: bool, start: float,
         on_plane: Callable[[], None] | None = None) -> JobReport:
    store = plan.store_path
    task = dataclasses.replace(plan.task, run_token=uuid.uuid4().hex)
    planes = plan.planes()
    with contextlib.ExitStack() as held:
        if store != plan.output_path and image_format(plan.output_path) == "zarr":
            _refuse_if_busy(plan.output_path)  # the swap at the end would be refused anyway
        created = _take_store(plan, held)  # the job lock, held until the output is in place
        status = store_status(store)
        unfinished = status in WORK_IN_PROGRESS
        work = PlaneStore.open(store) if unfinished else PlaneStore.open_any(store)
        done = work.done() if unfinished else {}
        error = _error_store(plan, store) if unfinished and plan.task.options.error_map else None
        pending = [p for p in planes if p.number not in done] if unfinished else []
        computed = _compute(plan, task, client, pending, len(planes), created=created, progress=progress,
                            on_plane=on_plane)
        if unfinished:
            facts = work.done()
            clipped = sum(int(f.get("clipped", 0)) for f in facts.values())
            # every plane's score, from the done-markers: this run's, an earlier run's, a worker's
            consistency = ConsistencyReport.from_facts(planes, facts) if _checks_consistency(plan) else None
            provenance = _provenance(plan, clipped, consistency)
            if error is not None:  # finished first: a complete SR image always has its complete map
                provenance["error_map"] = _finalize_error_map(plan, error, planes, facts)
            template = Image(data=work.level0, axes=plan.axes, pixel_size_um=plan.output_pixel_size_um,
                             channel_names=plan.source.channel_names, z_step_um=plan.source.z_step_um,
                             time_interval_s=plan.source.time_interval_s, metadata=provenance,
                             translation=plan.output_translation, channel_display=plan.source.channel_display)
            work.finalize(template, name=plan.output_path.name.split(".")[0] or "image",
                          windows=_windows(plan, planes, facts))
        else:  # finished earlier (a kill before the TIFF conversion or the swap): publish only
            finished = read_image(store).metadata
            clipped = int(finished.get("srrun", {}).get("clipped_pixels", 0))
            consistency = ConsistencyReport.from_metadata(finished.get(CONSISTENCY_KEY))
        work.record.clear()
        _publish(plan)
    notes = list(plan.warnings)
    if clipped:
        notes.append(f"{clipped} output pixel(s) were clipped to the {plan.task.options.dtype} range")
    notes += _consistency_notes(consistency)
    stages = {"read": sum(r.read_seconds for r in computed), "compute": sum(r.compute_seconds for r in computed),
              "write": sum(r.write_seconds for r in computed)}
    return JobReport(output=plan.output_path, planes_total=len(planes), planes_computed=len(computed),
                     planes_skipped=len(planes) - len(pending), clipped_pixels=clipped,
                     seconds=time.perf_counter() - start, warnings=notes, consistency=consistency,
                     stage_seconds=stages)


__all__ = ["BatchError", "JobPlan", "JobReport", "RunOptions", "check_options", "plan_job", "run_job"]
