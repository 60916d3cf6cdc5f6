"""``srrun``: super-resolve every plane of an OME-TIFF / OME-Zarr dataset with srscope models.

    srrun MODEL INPUT OUTPUT [options]
    srrun INPUT OUTPUT --model 0=dapi.onnx --model 1=fitc.onnx [options]

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
from srscope.runtime.errors import UserError, user_os_error
from srscope.runtime.imagecheck import InvalidImageError
from srscope.runtime.planes import ChannelMappingError
from srscope.runtime.planework import OUTPUT_DTYPES, RunOptions
from srscope.runtime.providers import DeviceUnavailableError
from srscope.runtime.tiling import TilingError

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
        usage="srrun [MODEL] INPUT OUTPUT [--model CHANNEL=MODEL ...] [options]",
        description="Super-resolve the 2D planes of an OME-TIFF or OME-Zarr dataset. Output pixel sizes "
                    "are the input's divided by the model's scale factor; OME-Zarr output gets an NGFF "
                    "0.5 multiscale pyramid. Rerun an interrupted command to resume it.",
        epilog="examples:\n"
               "  srrun models/widefield-10x0.4-to-20x0.75.onnx stack.ome.tif stack_sr.ome.zarr\n"
               "  srrun plate.ome.zarr plate_sr.ome.zarr --model DAPI=dapi.onnx --model 1=fitc.onnx "
               "--passthrough-unmapped\n"
               "  srrun model.onnx big.ome.zarr big_sr.ome.zarr --scheduler tcp://10.0.0.5:8786 --dtype uint16 --clip",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="[MODEL] INPUT OUTPUT",
                   help="model (.onnx; omit when using --model), input and output (.ome.zarr/.zarr or .ome.tif/.tif)")
    p.add_argument("--model", action="append", default=[], metavar="[CHANNEL=]MODEL",
                   help="model for one channel (index or channel name), repeatable; without CHANNEL= for all")
    p.add_argument("--passthrough-unmapped", action="store_true",
                   help="copy channels without a model onto the output grid by pixel replication")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or tensorrt (default: auto)")
    p.add_argument("--tile", type=int, default=512, help="largest input tile edge in pixels; 0 = whole plane")
    p.add_argument("--overlap", type=int, default=None, help="tile overlap in input pixels (default: from the card)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per inference call")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="ONNX Runtime threads per model session, locally and on each dask worker "
                        "(default: the usable cores)")
    p.add_argument("--dtype", choices=OUTPUT_DTYPES, default="float32",
                   help="output pixel type; uint16 refuses out-of-range values unless --clip")
    p.add_argument("--clip", action="store_true", help="with --dtype uint16: clip out-of-range values and report how many")
    p.add_argument("--intensity", default="auto", metavar="POLICY",
                   help="how counts are normalised: auto (the model's own mode), plane (each plane by its own "
                        "percentiles), series (one mapping per channel from its first plane(s): planes stay "
                        "comparable in a time-lapse), fixed (the card's stored mapping), or OFFSET:SCALE")
    p.add_argument("--intensity-planes", type=int, default=1, metavar="N",
                   help="with --intensity series: how many of each channel's first planes set the mapping")
    p.add_argument("--ignore-pixel-size", action="store_true",
                   help="run even if the input pixel size is far from the model's")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUTPUT, only once the new one is finished (and discard a "
                        "different unfinished job's work)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run planes on a dask.distributed scheduler, e.g. tcp://host:8786")
    p.add_argument("--log-json", type=Path, metavar="PATH", help="write a JSON summary of the run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"srrun (srscope-runtime) {_version()}")
    return p


def _split_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[str], str, str]:
    paths = args.paths
    if len(paths) == 3:
        return [paths[0], *args.model], paths[1], paths[2]
    if len(paths) == 2 and args.model:
        return list(args.model), paths[0], paths[1]
    parser.error("expected MODEL INPUT OUTPUT (or INPUT OUTPUT with --model)")
    raise AssertionError  # unreachable


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
    return {"ok": True, "output": str(report.output), "planes_total": report.planes_total,
            "planes_computed": report.planes_computed, "planes_skipped": report.planes_skipped,
            "clipped_pixels": report.clipped_pixels, "seconds": round(report.seconds, 3),
            "warnings": report.warnings, "already_complete": report.already_complete}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    models, input_path, output_path = _split_paths(parser, args)
    problem = _log_problem(args.log_json)
    if problem:
        print(f"srrun: error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    options = RunOptions(device=args.device, tile=args.tile or None, overlap=args.overlap,
                         batch_size=args.batch_size, dtype=args.dtype, clip=args.clip,
                         intensity=args.intensity, intensity_planes=args.intensity_planes,
                         threads=args.threads)

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
        message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        print(f"srrun: error: {message}", file=sys.stderr)
        _write_log(args.log_json, {"ok": False, "error": message})
        return EXIT_USER_ERROR
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
