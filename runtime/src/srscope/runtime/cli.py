"""``srrun``: super-resolve every plane of an OME-TIFF / OME-Zarr dataset with srscope models.

    srrun MODEL INPUT OUTPUT [options]
    srrun INPUT OUTPUT --model 0=dapi.onnx --model 1=fitc.onnx [options]
    srrun MODEL INPUT... OUTDIR/ [options]                       (a batch: see multibatch)
    srrun MODEL --input-dir DIR [--pattern GLOB] OUTDIR [options]

The last argument is an output *directory* (a batch: each input's result goes to
``OUTDIR/<stem>_sr.ome.zarr``) when it ends with ``/`` or is an existing directory, unless its name
ends in ``.zarr``: that is always one output image. Several INPUTs need such a directory.

Bad input ends with one line on stderr and a non-zero exit (2: the input, models, options or the
output location, including a full disk or a read-only directory; 1: an unexpected failure; 130:
interrupted); ``--debug`` shows the traceback instead. A killed run leaves an output that no reader
takes for finished; rerunning the same command resumes it, and rerunning a finished one does nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from srscope.runtime.batch import JobReport, plan_job, run_job
from srscope.runtime.card import ModelCardError
from srscope.runtime.channelmap import ChannelMappingError
from srscope.runtime.errors import UserError, user_os_error
from srscope.runtime.imagecheck import InvalidImageError
from srscope.runtime.io import ImageIOError, image_format
from srscope.runtime.multibatch import (
    DEFAULT_OUTPUT_FORMAT,
    OUTPUT_FORMATS,
    check_shared,
    find_inputs,
    is_directory_target,
    is_image_path,
    pair_outputs,
    prepare_outdir,
    run_batch,
)
from srscope.runtime.planework import OUTPUT_DTYPES, RunOptions
from srscope.runtime.providers import DeviceUnavailableError
from srscope.runtime.tiling import TilingError, parse_tile_option

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130

#: :class:`UserError` covers srrun's own errors (ImageIOError, BatchError); the others come from
#: modules that predate it.
USER_ERRORS = (UserError, ModelCardError, ChannelMappingError, InvalidImageError, DeviceUnavailableError,
               TilingError)



def _version() -> str:
    try:
        from importlib.metadata import version

        return version("srscope-runtime")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        return "unknown"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of argparse's usage dump
        print(f"srrun: error: {message} (see srrun --help)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="srrun",
        usage="srrun [MODEL] INPUT OUTPUT [--model CHANNEL=MODEL ...] [options]\n"
              "       srrun [MODEL] INPUT... OUTDIR/ [options]\n"
              "       srrun [MODEL] --input-dir DIR [--pattern GLOB] OUTDIR [options]",
        description="Super-resolve the 2D planes of an OME-TIFF or OME-Zarr dataset. Output pixel sizes "
                    "are the input's divided by the model's scale factor; OME-Zarr output gets an NGFF "
                    "0.5 multiscale pyramid. Rerun an interrupted command to resume it.\n\n"
                    "Trust: with a model whose card carries a degradation model, every plane is scored by the\n"
                    "consistency check (its output re-degraded to the input grid and compared); the scores go\n"
                    "into the output's srscope metadata 'consistency' (and --log-json), and one warning line\n"
                    "names the flagged planes. --error-map also stores the local error map, OUTPUT/error_map.\n\n"
                    "Batches: with several INPUTs, --input-dir, or a last argument that ends with / or is\n"
                    "an existing directory, each input is one job into OUTDIR/<stem>_sr.ome.zarr (a name\n"
                    "ending in .zarr is always one output image, never a directory). Files run in order\n"
                    "under one progress bar over the planes of all files, with one line per file; rerunning\n"
                    "the batch skips finished files and resumes unfinished ones. A failing file stops the\n"
                    "batch (files before it are finished) or, with --keep-going, is reported and skipped;\n"
                    "the exit status is 2 if any file failed. Two inputs with one output name are refused.",
        epilog="examples:\n"
               "  srrun models/widefield-10x0.4-to-20x0.75.onnx stack.ome.tif stack_sr.ome.zarr\n"
               "  srrun plate.ome.zarr plate_sr.ome.zarr --model DAPI=dapi.onnx --model 1=fitc.onnx "
               "--passthrough-unmapped\n"
               "  srrun model.onnx big.ome.zarr big_sr.ome.zarr --scheduler tcp://10.0.0.5:8786 --dtype uint16 --clip\n"
               "  srrun model.onnx fov*.ome.tif results/            # results/fov1_sr.ome.zarr, ...\n"
               "  srrun model.onnx --input-dir raw --pattern '*.ome.tif' results --keep-going "
               "--log-json results/batch.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="[MODEL] INPUT... OUTPUT|OUTDIR",
                   help="model (.onnx; omit when using --model), input(s) (.ome.zarr/.zarr or .ome.tif/.tif) "
                        "and the output image, or an output directory for a batch")
    p.add_argument("--model", action="append", default=[], metavar="[CHANNEL=]MODEL",
                   help="model for one channel (index or channel name), repeatable; without CHANNEL= for all")
    p.add_argument("--passthrough-unmapped", action="store_true",
                   help="copy channels without a model onto the output grid by pixel replication")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or tensorrt (default: auto)")
    p.add_argument("--tile", type=parse_tile_option, default="auto",
                   help="largest input tile edge in pixels; 0 = whole plane; auto (default): the whole plane when "
                        "its activations fit the memory budget, else the tile that computes the fewest halo pixels")
    p.add_argument("--overlap", type=int, default=None, help="tile overlap in input pixels (default: from the card)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per inference call")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="ONNX Runtime threads per model session, locally and on each dask worker "
                        "(default: the usable cores)")
    p.add_argument("--no-overlap-io", dest="overlap_io", action="store_false",
                   help="run each plane's read, inference and write one after the other, instead of reading "
                        "ahead and writing behind on background threads (same output; for debugging or timing)")
    p.add_argument("--dtype", choices=OUTPUT_DTYPES, default="float32",
                   help="output pixel type; uint16 refuses out-of-range values unless --clip")
    p.add_argument("--clip", action="store_true", help="with --dtype uint16: clip out-of-range values and report how many")
    p.add_argument("--intensity", default="auto", metavar="POLICY",
                   help="how counts are normalised: auto (the model's own mode), plane (each plane by its own "
                        "percentiles), series (one mapping per channel from its first plane(s): planes stay "
                        "comparable in a time-lapse), fixed (the card's stored mapping), or OFFSET:SCALE")
    p.add_argument("--intensity-planes", type=int, default=1, metavar="N",
                   help="with --intensity series: how many of each channel's first planes set the mapping")
    p.add_argument("--error-map", action="store_true",
                   help="also write each plane's local consistency error (input vs the re-degraded output, "
                        "relative to the input's range) as a second image, OUTPUT.ome.zarr/error_map, on the SR "
                        "image's grid; needs an OME-Zarr OUTPUT and a model card with a degradation model")
    p.add_argument("--ignore-pixel-size", action="store_true",
                   help="run even if the input pixel size is far from the model's")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUTPUT, only once the new one is finished (and discard a "
                        "different unfinished job's work)")
    b = p.add_argument_group("batches (several INPUTs, --input-dir, or an OUTDIR)")
    b.add_argument("--input-dir", type=Path, metavar="DIR",
                   help="process the images in DIR (in name order) instead of INPUT paths")
    b.add_argument("--pattern", metavar="GLOB",
                   help="with --input-dir: the entries to take, a glob relative to DIR ('**/' recurses; "
                        "case-sensitive); default: every *.tif, *.tiff and *.zarr (any case), so also "
                        ".ome.tif and .ome.zarr")
    b.add_argument("--output-format", choices=OUTPUT_FORMATS, default=None,
                   help=f"zarr: OUTDIR/<stem>_sr.ome.zarr (default: {DEFAULT_OUTPUT_FORMAT}, resumable in place "
                        "and pyramidal); tiff: <stem>_sr.ome.tif; same: each input's own format")
    b.add_argument("--keep-going", action="store_true",
                   help="report a file that fails in one line and go on with the others (default: stop at "
                        "it); the exit status is still 2")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run planes on a dask.distributed scheduler, e.g. tcp://host:8786")
    p.add_argument("--log-json", type=Path, metavar="PATH",
                   help="write a JSON summary of the run (a batch: one record per file, and totals)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"srrun (srscope-runtime) {_version()}")
    return p


_USAGE = "expected MODEL INPUT OUTPUT (or INPUT OUTPUT with --model; a batch: MODEL INPUT... OUTDIR/)"


def _split_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[str], list[str], str, bool]:
    """``(models, inputs, output, batch)`` from the positional paths.

    The first path is the model unless it is named like an image (or, as always, when exactly
    INPUT OUTPUT come with --model); the last is the output. A batch has several inputs, or an
    output that :func:`is_directory_target`, or ``--input-dir``.
    """
    paths = list(args.paths)
    output, front = paths[-1], paths[:-1]
    if args.input_dir is not None:
        if front and not is_image_path(front[0]) and len(front) == 1:
            return [front[0], *args.model], [], output, True
        if front:
            parser.error("give INPUT paths or --input-dir, not both (with --input-dir: MODEL --input-dir DIR OUTDIR)")
        if not args.model:
            parser.error("expected MODEL --input-dir DIR OUTDIR (or --input-dir DIR OUTDIR with --model)")
        return list(args.model), [], output, True
    if args.pattern is not None:
        parser.error("--pattern selects files of --input-dir; give --input-dir DIR too")
    models = list(args.model)
    if front and not is_image_path(front[0]) and not (args.model and len(paths) == 2):
        models.insert(0, front.pop(0))
    if not models or not front:
        parser.error(_USAGE)
    if len(front) > 1 and not is_directory_target(output):
        why = ("a name ending in .zarr is one output image" if is_image_path(output)
               else "an existing one, or end it with / to create it")
        parser.error(f"{len(front)} INPUTs need an output directory as the last argument, not {output} ({why})")
    batch = len(front) > 1 or is_directory_target(output)
    if not batch and (args.output_format is not None or args.keep_going):
        parser.error("--output-format and --keep-going are for batches (several INPUTs, --input-dir, or an "
                     "OUTDIR/); a single OUTPUT's suffix chooses its format")
    return models, front, output, batch


def _log_problem(path: Path | None) -> str | None:
    """Why ``--log-json PATH`` could not be written, checked before any work (``None``: fine)."""
    if path is None:
        return None
    if path.is_dir():
        return f"--log-json {path}: is a directory"
    if not path.parent.is_dir():
        return f"--log-json {path}: directory {path.parent} does not exist"
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"--log-json {path}: not writable"
    return None


def _write_log(path: Path | None, payload: dict) -> None:
    """Write the summary; a failure now (the work is done) is a warning, never a crash."""
    if path is None:
        return
    try:
        path.write_text(json.dumps(payload, indent=2, default=str))
    except OSError as exc:
        print(f"srrun: warning: could not write --log-json {path} ({exc.strerror or exc})", file=sys.stderr)


def _summary(report: JobReport) -> dict:
    summary = {"ok": True, "output": str(report.output), "planes_total": report.planes_total,
               "planes_computed": report.planes_computed, "planes_skipped": report.planes_skipped,
               "clipped_pixels": report.clipped_pixels, "seconds": round(report.seconds, 3),
               "warnings": report.warnings, "already_complete": report.already_complete}
    if report.consistency is not None:  # the record stored with the output, flagged planes and all scores
        summary["consistency"] = report.consistency.as_metadata()
    return summary


def _options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(device=args.device, tile=args.tile if args.tile == "auto" else (args.tile or None), overlap=args.overlap,
                      batch_size=args.batch_size, dtype=args.dtype, clip=args.clip,
                      intensity=args.intensity, intensity_planes=args.intensity_planes,
                      threads=args.threads, error_map=args.error_map, overlap_io=args.overlap_io)


def _no_suffix_hint(output_path: str) -> str | None:
    """A single OUTPUT without any suffix that does not exist: perhaps meant as a directory."""
    try:
        image_format(output_path)
    except ImageIOError as exc:
        if not Path(output_path).suffix and not Path(output_path).exists():
            return f"{exc}; or end it with / to write into a directory"
    return None


def _main_batch(args: argparse.Namespace, models: list[str], inputs: list[str], output: str) -> int:
    """A batch: list and pair the files and check what all share, up front; then run them in order."""
    problem = _log_problem(args.log_json)
    if problem:
        print(f"srrun: error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    options = _options(args)
    try:
        outdir = prepare_outdir(output, create=False)
        if args.input_dir is not None:
            found, notes = find_inputs(args.input_dir, args.pattern)
        else:
            found, notes = [Path(p) for p in inputs], []
        jobs, more = pair_outputs(found, outdir, args.output_format or DEFAULT_OUTPUT_FORMAT)
        check_shared(models, options)
        prepare_outdir(output, create=True)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        return _user_error(exc, args.log_json)
    for note in notes + more:
        print(f"srrun: warning: {note}", file=sys.stderr)
    result = run_batch(jobs, models, options=options, user_errors=USER_ERRORS,
                       passthrough_unmapped=args.passthrough_unmapped, ignore_pixel_size=args.ignore_pixel_size,
                       overwrite=args.overwrite, scheduler=args.scheduler, progress=not args.quiet,
                       keep_going=args.keep_going, debug=args.debug)
    _write_log(args.log_json, result.log(outdir))
    return result.exit_code


def _user_error(exc: BaseException, log_json: Path | None) -> int:
    """One line on stderr (and in ``--log-json``) for a user error; the exit status to return."""
    message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    print(f"srrun: error: {message}", file=sys.stderr)
    _write_log(log_json, {"ok": False, "error": message})
    return EXIT_USER_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)  # OUTDIR may follow --input-dir DIR
    models, inputs, output_path, batch = _split_paths(parser, args)
    if batch:
        return _main_batch(args, models, inputs, output_path)
    input_path = inputs[0]
    problem = _log_problem(args.log_json) or _no_suffix_hint(output_path)
    if problem:
        print(f"srrun: error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    options = _options(args)

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        print(f"srrun: warning: {message}", file=sys.stderr)

    previous = warnings.showwarning
    warnings.showwarning = one_line_warning
    try:
        plan = plan_job(input_path, output_path, models, options=options,
                        passthrough_unmapped=args.passthrough_unmapped,
                        ignore_pixel_size=args.ignore_pixel_size, overwrite=args.overwrite)
        for note in plan.warnings:
            print(f"srrun: warning: {note}", file=sys.stderr)
        report = run_job(plan, scheduler=args.scheduler, progress=not args.quiet)
    except KeyboardInterrupt:
        print("srrun: interrupted; rerun the same command to resume", file=sys.stderr)
        _write_log(args.log_json, {"ok": False, "error": "interrupted"})
        return EXIT_INTERRUPTED
    except USER_ERRORS as exc:
        if args.debug:
            raise
        return _user_error(exc, args.log_json)
    except Exception as exc:
        if args.debug:
            raise
        message = user_os_error(exc)  # a full disk, a read-only or forbidden directory
        if message:
            print(f"srrun: error: {message}", file=sys.stderr)
            _write_log(args.log_json, {"ok": False, "error": message})
            return EXIT_USER_ERROR
        message = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        print(f"srrun: internal error: {message} (rerun with --debug for the traceback)", file=sys.stderr)
        _write_log(args.log_json, {"ok": False, "error": message})
        return EXIT_INTERNAL_ERROR
    finally:
        warnings.showwarning = previous
    for note in report.warnings[len(plan.warnings):]:
        print(f"srrun: warning: {note}", file=sys.stderr)
    if report.already_complete:
        print(f"srrun: {report.output} is already complete ({report.planes_total} plane(s)); nothing to do "
              "(pass --overwrite to compute it again)", file=sys.stderr)
        _write_log(args.log_json, _summary(report))
        return 0
    print(f"srrun: wrote {report.output} ({report.planes_total} plane(s): {report.planes_computed} computed, "
          f"{report.planes_skipped} already done) in {report.seconds:.1f} s", file=sys.stderr)
    _write_log(args.log_json, _summary(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
