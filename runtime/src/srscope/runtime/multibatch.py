"""``srrun`` over many files: ``srrun MODEL INPUT... OUTDIR/`` and ``srrun MODEL --input-dir DIR OUTDIR``.

Each input is one ordinary :mod:`srscope.runtime.batch` job into ``OUTDIR/<stem>_sr.ome.zarr`` (or
``.ome.tif``, see :data:`OUTPUT_FORMATS`), so every file is resumable and safe exactly as a
single-file run: rerunning the same batch finds finished files "already complete", resumes
unfinished ones, and redoes nothing.

What is decided before any pixel is computed: the input list, every output name (two inputs that
would write the same output are refused, and an input that is another input's output, i.e. the
previous run's results in the same folder, is not taken as an input), and a plan per file (header,
models, pixel size, output state). A file whose plan failed is reported *at its turn*, in input
order, like a file that fails while it runs (a NaN plane): by default the batch stops there (files
before it are finished), with ``keep_going`` it is skipped and the rest run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from srscope.runtime.batch import (
    JobPlan,
    JobReport,
    _connect,
    _finished_record,
    check_options,
    plan_job,
    run_job,
)
from srscope.runtime.card import read_card
from srscope.runtime.channelmap import ModelSpec
from srscope.runtime.errors import user_os_error
from srscope.runtime.intensity import parse_intensity
from srscope.runtime.planework import BatchError, RunOptions
from srscope.runtime.scorereport import ConsistencyReport
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from distributed import Client

#: ``--output-format``: ``zarr`` (the default: OME-Zarr is written in place plane by plane, so a
#: killed run resumes with no final conversion, and gets a multiscale pyramid), ``tiff`` (OME-TIFF,
#: built as a hidden OME-Zarr first and converted at the end), ``same`` (each input's own format).
OUTPUT_FORMATS = ("zarr", "tiff", "same")
DEFAULT_OUTPUT_FORMAT = "zarr"
#: Added to each input's stem: ``cells.ome.tif`` -> ``cells_sr.ome.zarr``.
OUTPUT_TAG = "_sr"
#: Image names, longest first so ``.ome.tif`` is removed whole from a stem.
IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr")
_SEPARATORS = tuple(s for s in (os.sep, os.altsep, "/") if s)

#: Statuses of a file in a batch (the ``status`` of its ``--log-json`` record).
COMPUTED, ALREADY_COMPLETE, FAILED, NOT_STARTED, INTERRUPTED = (
    "computed", "already_complete", "failed", "not_started", "interrupted")


def is_image_path(arg: str | Path) -> bool:
    """Named like an image srrun reads or writes (``.tif``/``.tiff``/``.zarr``, any case)."""
    return Path(str(arg).rstrip("".join(_SEPARATORS)) or ".").suffix.lower() in (".tif", ".tiff", ".zarr")


def is_zarr_name(arg: str | Path) -> bool:
    return Path(str(arg).rstrip("".join(_SEPARATORS)) or ".").suffix.lower() == ".zarr"


def is_directory_target(arg: str) -> bool:
    """Whether the last argument names an output *directory* rather than one output image.

    A name ending in ``.zarr`` is always an output store (also with the trailing ``/`` that shell
    completion adds to an existing one); otherwise a path ending in a separator, or an existing
    directory, is a directory.
    """
    if is_zarr_name(arg):
        return False
    return arg.endswith(_SEPARATORS) or Path(arg).is_dir()


def image_stem(path: Path) -> str:
    """``cells.ome.tif`` -> ``cells``; ``plate.zarr`` -> ``plate``."""
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return path.stem


def output_name(path: Path, output_format: str) -> str:
    if output_format not in OUTPUT_FORMATS:
        raise BatchError(f"--output-format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
    kind = output_format
    if kind == "same":
        kind = "zarr" if path.name.lower().endswith(".zarr") else "tiff"
    return f"{image_stem(path)}{OUTPUT_TAG}{'.ome.zarr' if kind == 'zarr' else '.ome.tif'}"


def find_inputs(directory: Path, pattern: str | None) -> tuple[list[Path], list[str]]:
    """The images in ``directory`` matching ``pattern`` (a glob relative to it; ``**`` recurses),
    in name order, and notes on what was passed over.

    Without a pattern: the entries of ``directory`` named ``*.tif``/``*.tiff``/``*.zarr`` (any case,
    so also ``.ome.tif``/``.ome.zarr``). Hidden entries (srrun's own work stores among them) and
    anything inside a ``.zarr`` store are never inputs; other matches that are not images are
    skipped with a note.
    """
    if not directory.is_dir():
        raise BatchError(f"--input-dir {directory}: no such directory")
    try:
        found = sorted(directory.glob(pattern)) if pattern else sorted(directory.iterdir())
    except (ValueError, NotImplementedError) as exc:  # absolute or empty patterns
        raise BatchError(f"--pattern {pattern!r}: {exc}") from None
    except OSError as exc:
        raise BatchError(f"--input-dir {directory}: {exc.strerror or exc}") from None
    inputs: list[Path] = []
    not_images = 0
    for path in found:
        parts = path.relative_to(directory).parts
        if any(part.startswith(".") for part in parts) or any(is_zarr_name(p) for p in parts[:-1]):
            continue
        if not is_image_path(path.name):
            not_images += bool(pattern)  # without a pattern, other files are simply not asked for
            continue
        inputs.append(path)
    if not inputs:
        what = f"matches {pattern!r}" if pattern else "is a .tif/.tiff/.ome.tif/.zarr/.ome.zarr image"
        raise BatchError(f"--input-dir {directory}: no entry {what}")
    notes = [f"skipped {not_images} match(es) of {pattern!r} that are not .tif/.tiff/.zarr images"] if not_images else []
    return inputs, notes


def check_shared(models: Sequence[str], options: RunOptions) -> None:
    """What would fail for every file alike (options, unreadable models): refused once, up front."""
    check_options(options)
    try:
        parse_intensity(options.intensity)
    except ValueError as exc:
        raise BatchError(str(exc)) from None
    if options.intensity_planes < 1:
        raise BatchError("--intensity-planes must be >= 1")
    for path in dict.fromkeys(ModelSpec.parse(m).path for m in models):
        read_card(path)


@dataclass
class FileJob:
    """One input of a batch, its output, and (once run) what happened."""

    input: Path
    output: Path
    status: str = NOT_STARTED
    error: str | None = None
    planes_total: int | None = None
    planes_computed: int = 0
    planes_skipped: int = 0
    clipped_pixels: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    internal: bool = False  #: failed on an unexpected error (a bug), not the input's fault
    #: the output's per-plane consistency scores (``None``: not finished, or no model checks them)
    consistency: ConsistencyReport | None = None

    def record(self) -> dict:
        record = {"input": str(self.input), "output": str(self.output), "status": self.status,
                  "error": self.error, "planes_total": self.planes_total,
                  "planes_computed": self.planes_computed, "planes_skipped": self.planes_skipped,
                  "clipped_pixels": self.clipped_pixels, "seconds": round(self.seconds, 3),
                  "warnings": self.warnings, "already_complete": self.status == ALREADY_COMPLETE}
        if self.consistency is not None:
            record["consistency"] = self.consistency.as_metadata()
        return record


def pair_outputs(inputs: Sequence[Path], outdir: Path, output_format: str) -> tuple[list[FileJob], list[str]]:
    """Name each input's output in ``outdir``; refuse clashes up front.

    An input that is itself the output of another input (a folder holding last run's results,
    ``cells.tif`` beside ``cells_sr.ome.zarr``) is dropped with a note, so rerunning a batch into
    its input folder neither processes its own results nor clashes with them.
    """
    named = [(path, outdir / output_name(path, output_format)) for path in inputs]
    produced = {out.resolve(): path for path, out in named}
    jobs: list[FileJob] = []
    dropped: list[Path] = []
    seen_inputs: dict[Path, Path] = {}
    writers: dict[Path, Path] = {}
    for path, out in named:
        key = path.resolve()
        if key in produced and produced[key].resolve() != key:
            dropped.append(path)
            continue
        if key in seen_inputs:
            raise BatchError(f"{path}: given twice as an input")
        seen_inputs[key] = path
        target = out.resolve()
        if target in writers:
            raise BatchError(f"{writers[target]} and {path} would both write {out}; rename one, or run "
                             "them into different output directories")
        writers[target] = path
        resolved_dir = outdir.resolve()
        if key == resolved_dir or key in resolved_dir.parents:
            raise BatchError(f"OUTDIR {outdir} is inside INPUT {path}; write the outputs elsewhere")
        jobs.append(FileJob(path, out))
    notes = []
    if dropped:
        notes.append(f"not taking {len(dropped)} input(s) that are this batch's own outputs "
                     f"(e.g. {dropped[0]})")
    if not jobs:
        raise BatchError("no inputs left: every one is another input's output")
    return jobs, notes


def prepare_outdir(arg: str, *, create: bool) -> Path:
    """Check (and with ``create``, make) the output directory; only its last component is created."""
    path = Path(arg)
    if is_zarr_name(arg):
        raise BatchError(f"OUTDIR {arg}: a .zarr name is an output image, not a directory; give a "
                         "directory for several inputs")
    if path.exists() and not path.is_dir():
        raise BatchError(f"OUTDIR {arg}: exists and is not a directory")
    if path.is_dir():
        if any((path / name).exists() for name in ("zarr.json", ".zgroup", ".zarray", ".zattrs")):
            raise BatchError(f"OUTDIR {arg}: is a zarr store, not a directory")
        if not os.access(path, os.W_OK):
            raise BatchError(f"OUTDIR {arg}: directory is not writable")
        return path
    if not path.parent.is_dir():
        raise BatchError(f"OUTDIR {arg}: its parent directory {path.parent} does not exist")
    if is_image_path(arg):
        raise BatchError(f"OUTDIR {arg}: named like an image; end it with / or pick a directory name")
    if create:
        try:
            path.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            raise BatchError(f"OUTDIR {arg}: cannot create it ({exc.strerror or exc})") from None
    return path


@dataclass
class BatchResult:
    jobs: list[FileJob]
    seconds: float
    stopped: bool = False  #: stopped at a failure without --keep-going
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if any(job.internal for job in self.jobs):
            return 1
        return 2 if any(job.status == FAILED for job in self.jobs) else 0

    def totals(self) -> dict:
        count = {s: sum(job.status == s for job in self.jobs)
                 for s in (COMPUTED, ALREADY_COMPLETE, FAILED, NOT_STARTED, INTERRUPTED)}
        return {"files": len(self.jobs), **count,
                "planes_total": sum(job.planes_total or 0 for job in self.jobs),
                "planes_computed": sum(job.planes_computed for job in self.jobs),
                "planes_skipped": sum(job.planes_skipped for job in self.jobs),
                "clipped_pixels": sum(job.clipped_pixels for job in self.jobs),
                "planes_flagged": sum(len(job.consistency.flagged) for job in self.jobs if job.consistency),
                "seconds": round(self.seconds, 3)}

    def log(self, outdir: Path) -> dict:
        return {"ok": self.exit_code == 0, "output_dir": str(outdir), "files": [j.record() for j in self.jobs],
                "totals": self.totals()}


def _say(line: str) -> None:
    tqdm.write(line, file=sys.stderr)  # above the progress bar, never through it


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


def _about(job: FileJob, message: str) -> str:
    """``INPUT: message``, without repeating the input's path when the message starts with it."""
    for prefix in (f"{job.input}: ", f"{job.input.resolve()}: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
            break
    return f"{job.input}: {message}"


def run_batch(jobs: list[FileJob], models: Sequence[str], *, options: RunOptions, user_errors: tuple,
              passthrough_unmapped: bool = False, ignore_pixel_size: bool = False, overwrite: bool = False,
              scheduler: str | None = None, progress: bool = True, keep_going: bool = False,
              debug: bool = False) -> BatchResult:
    """Plan every file, then run them in order, one progress bar over the planes of all files.

    Prints per file one line on stderr (``srrun: [k/N] INPUT -> OUTPUT: ...`` or, for a failure,
    ``srrun: error: [k/N] INPUT: reason``), then the totals.
    """
    start = time.perf_counter()
    n = len(jobs)
    current = [""]

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        _say(f"srrun: warning: {current[0]}{message}")

    previous = warnings.showwarning
    warnings.showwarning = one_line_warning
    result = BatchResult(jobs, 0.0)
    try:
        plans = _plan_all(jobs, models, current, options=options, user_errors=user_errors,
                          passthrough_unmapped=passthrough_unmapped, ignore_pixel_size=ignore_pixel_size,
                          overwrite=overwrite, progress=progress, debug=debug)
        if plans is None:
            result.interrupted = True
        else:
            _run_all(result, plans, current, scheduler=scheduler, progress=progress, keep_going=keep_going,
                     user_errors=user_errors, overwrite=overwrite, debug=debug)
    finally:
        warnings.showwarning = previous
    result.seconds = time.perf_counter() - start
    t = result.totals()
    line = (f"srrun: {n} file(s): {t[COMPUTED]} computed, {t[ALREADY_COMPLETE]} already complete, "
            f"{t[FAILED]} failed")
    if t[INTERRUPTED]:
        line += f", {t[INTERRUPTED]} interrupted"
    if t[NOT_STARTED]:
        line += f", {t[NOT_STARTED]} not started"
    line += f"; {t['planes_computed']} plane(s) computed in {result.seconds:.1f} s"
    _say(line)
    if result.interrupted:
        _say("srrun: interrupted; rerun the same command to resume")
    elif result.stopped:
        _say("srrun: stopped at the first failed file (pass --keep-going to skip failed files and go on)")
    return result


def _failure(job: FileJob, exc: BaseException, user_errors: tuple, debug: bool) -> None:
    """Record ``exc`` on ``job`` and report it in one line; re-raise what is not a file's failure."""
    if isinstance(exc, KeyboardInterrupt):
        job.status = INTERRUPTED
        job.error = "interrupted"
        return
    if debug or not isinstance(exc, Exception):
        raise exc
    job.status = FAILED
    if isinstance(exc, user_errors):
        job.error = _first_line(exc)
    else:
        job.error = user_os_error(exc)  # a full disk, a read-only or forbidden directory
        if job.error is None:
            job.internal = True
            job.error = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _report_failure(job: FileJob, k: int, n: int) -> None:
    if job.internal:
        _say(f"srrun: internal error: [{k}/{n}] {_about(job, job.error or '')} (rerun with --debug for the "
             "traceback)")
    else:
        _say(f"srrun: error: [{k}/{n}] {_about(job, job.error or '')}; failed after {job.seconds:.1f} s")


def _plan_all(jobs: list[FileJob], models: Sequence[str], current: list[str], *, options: RunOptions,
              user_errors: tuple, passthrough_unmapped: bool, ignore_pixel_size: bool, overwrite: bool,
              progress: bool, debug: bool) -> list[JobPlan | FileJob] | None:
    """A plan per file, or where planning failed a copy of the job holding the failure (the job
    itself stays "not started" until its turn comes); ``None`` if interrupted."""
    plans: list[JobPlan | FileJob] = []
    with tqdm(total=len(jobs), unit="file", desc="srrun: checking", leave=False,
              disable=not progress or len(jobs) < 2, dynamic_ncols=True) as bar:
        for job in jobs:
            current[0] = f"{job.input}: "
            began = time.perf_counter()
            try:
                plan = plan_job(job.input, job.output, models, options=options,
                                passthrough_unmapped=passthrough_unmapped,
                                ignore_pixel_size=ignore_pixel_size, overwrite=overwrite)
                job.planes_total = plan.n_planes
                plans.append(plan)
            except BaseException as exc:  # noqa: BLE001 - sorted by _failure
                failed = dataclasses.replace(job)
                _failure(failed, exc, user_errors, debug)
                if failed.status == INTERRUPTED:
                    return None
                plans.append(failed)
            job.seconds += time.perf_counter() - began
            bar.update(1)
    return plans


def _run_all(result: BatchResult, plans: list[JobPlan | FileJob], current: list[str], *, scheduler: str | None,
             progress: bool, keep_going: bool, user_errors: tuple, overwrite: bool, debug: bool) -> None:
    jobs, n = result.jobs, len(result.jobs)
    total = sum(plan.n_planes for plan in plans if isinstance(plan, JobPlan))
    with contextlib.ExitStack() as stack, tqdm(total=total, unit="plane", desc="srrun", disable=not progress,
                                               dynamic_ncols=True) as bar:
        client: list[Client | None] = [None]

        computed = [0]  # planes computed by this run for the current file

        def on_plane() -> None:
            computed[0] += 1
            bar.update(1)

        def connected() -> Client | None:
            if scheduler and client[0] is None:
                client[0] = stack.enter_context(_connect(scheduler))
            return client[0]

        for k, (job, plan) in enumerate(zip(jobs, plans), start=1):
            current[0] = f"[{k}/{n}] {job.input}: "
            bar.set_postfix_str(f"file {k}/{n}", refresh=False)
            if isinstance(plan, FileJob):  # planning failed: report it now, at its turn
                job.status, job.error, job.internal = plan.status, plan.error, plan.internal
                _report_failure(job, k, n)
                if not keep_going:
                    result.stopped = True
                    return
                continue
            for note in plan.warnings:
                _say(f"srrun: warning: {current[0]}{note}")
            began = time.perf_counter()
            computed[0] = 0
            try:  # connected once, when the first file needs the cluster; failing is the batch's failure
                cluster = connected() if overwrite or _finished_record(plan) is None else None
            except BaseException as exc:  # noqa: BLE001 - sorted by _failure
                _failure(job, exc, user_errors, debug)
                if job.status == INTERRUPTED:
                    result.interrupted = True
                else:
                    _say(f"srrun: error: {job.error}")  # not this file's fault: no --keep-going hint
                return
            try:
                report = run_job(plan, progress=False, on_plane=on_plane, client=cluster)
            except BaseException as exc:  # noqa: BLE001 - sorted by _failure
                job.seconds += time.perf_counter() - began
                job.planes_computed = computed[0]
                bar.total -= plan.n_planes - computed[0]
                bar.refresh()
                _failure(job, exc, user_errors, debug)
                if job.status == INTERRUPTED:
                    result.interrupted = True
                    return
                _report_failure(job, k, n)
                if not keep_going:
                    result.stopped = True
                    return
                continue
            job.seconds += time.perf_counter() - began
            bar.update(report.planes_total - computed[0])  # planes done by an earlier run
            _finish(job, report, plan)
            _say(_done_line(job, k, n))


def _finish(job: FileJob, report: JobReport, plan: JobPlan) -> None:
    job.status = ALREADY_COMPLETE if report.already_complete else COMPUTED
    job.planes_total = report.planes_total
    job.planes_computed = report.planes_computed
    job.planes_skipped = report.planes_skipped
    job.clipped_pixels = report.clipped_pixels
    job.warnings = list(report.warnings)
    job.consistency = report.consistency
    for note in report.warnings[len(plan.warnings):]:  # e.g. clipping, known only at the end
        _say(f"srrun: warning: {job.input}: {note}")


def _flag_count(job: FileJob) -> str:
    """``", 2 of 40 flagged by the consistency check"`` when the file's models check planes."""
    report = job.consistency
    return f", {len(report.flagged)} of {report.checked} flagged by the consistency check" if report else ""


def _done_line(job: FileJob, k: int, n: int) -> str:
    head = f"srrun: [{k}/{n}] {job.input} -> {job.output}: "
    if job.status == ALREADY_COMPLETE:
        return head + f"already complete ({job.planes_total} plane(s){_flag_count(job)}); nothing to do"
    return head + (f"{job.planes_total} plane(s): {job.planes_computed} computed, {job.planes_skipped} already "
                   f"done{_flag_count(job)}, in {job.seconds:.1f} s")


__all__ = ["DEFAULT_OUTPUT_FORMAT", "OUTPUT_FORMATS", "BatchResult", "FileJob", "check_shared", "find_inputs",
           "image_stem", "is_directory_target", "is_image_path", "output_name", "pair_outputs",
           "prepare_outdir", "run_batch"]
