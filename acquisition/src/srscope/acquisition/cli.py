"""``sracquire``: run a useq MDA sequence on a Micro-Manager configuration with live SR.

    sracquire CONFIG SEQUENCE.json --model M.onnx --out run.ome.zarr
    sracquire simulated seq.yaml --model M.onnx --channel-model DAPI=dapi.onnx --out run.ome.zarr
    sracquire fill run.ome.zarr        # after a killed run: SR the missing planes, complete the status

CONFIG is a Micro-Manager ``.cfg`` (C++ adapters, or Python devices on ``#py`` lines), or
``simulated`` for srscope's pure-Python demo microscope. Raw frames go to ``run.raw.ome.zarr``
(or ``--raw``), SR frames to ``--out``; the run summary is printed and stored in the SR store.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from srscope.acquisition.channels import (
    ChannelMappingError,
    ChannelModels,
    parse_channel_spec,
)
from srscope.acquisition.pipeline import Backpressure
from srscope.acquisition.session import SessionError, load_sequence, run_session
from srscope.runtime.errors import UserError
from srscope.runtime.tiling import parse_tile_option


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("srscope-acquisition")
    except PackageNotFoundError:  # a source tree without installed metadata
        return "unknown"


def _roi(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"ROI must be X,Y,W,H in pixels, not {text!r}") from None
    return x, y, w, h


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sracquire", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="Micro-Manager .cfg file, or 'simulated'")
    p.add_argument("sequence", type=Path, help="useq MDASequence as .json or .yaml")
    p.add_argument("--model", type=Path, help="default model (.onnx) for channels without their own")
    p.add_argument("--channel-model", action="append", default=[], metavar="NAME=MODEL",
                   help="model for one channel preset (repeatable); unmapped channels use --model "
                        "or, without it, are not super-resolved")
    p.add_argument("--out", type=Path, required=True, help="SR OME-Zarr store to write")
    p.add_argument("--raw", type=Path, help="raw OME-Zarr store (default: OUT with .raw.ome.zarr)")
    p.add_argument("--policy", choices=[b.value for b in Backpressure], default="block",
                   help="when SR is slower than the camera: block (never drop) or drop-oldest (preview)")
    p.add_argument("--queue", type=int, default=64, help="SR queue capacity in frames (default 64)")
    p.add_argument("--frame-batch", type=int, default=None, metavar="N",
                   help="frames the SR worker takes from the queue per inference call (default 4)")
    p.add_argument("--tile-batch", type=int, default=None, metavar="N",
                   help="tiles per ONNX Runtime call, as srrun --batch-size (default 4)")
    p.add_argument("--batch-size", type=int, default=None, help=argparse.SUPPRESS)  # deprecated: both of the above
    p.add_argument("--tile", type=parse_tile_option, default="auto",
                   help="inference tile edge in input pixels, 0 = whole frame; auto (default): the whole frame "
                        "when its activations fit the memory budget, else the tile that computes the fewest halo pixels")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, tensorrt, ... (default auto)")
    p.add_argument("--intensity", default="auto", metavar="POLICY",
                   help="how counts are normalised: auto (the model's mode), plane (each frame by its own "
                        "percentiles), series (one mapping per channel, latched on its first frame: frames "
                        "stay comparable), fixed (the card's stored mapping), or OFFSET:SCALE")
    p.add_argument("--threads", type=int, help="CPU inference threads (default: all cores but one)")
    p.add_argument("--roi", type=_roi, metavar="X,Y,W,H", help="camera ROI in pixels")
    p.add_argument("--exposure-ms", type=float, help="camera exposure in ms")
    p.add_argument("--pixel-size-um", type=float, help="camera pixel size if the config has no calibration")
    p.add_argument("--ignore-pixel-size", action="store_true",
                   help="run models on frames whose pixel size is >20%% off the model's (warn instead of refuse)")
    p.add_argument("--summary-json", type=Path, help="also write the run summary here")
    p.add_argument("--overwrite", action="store_true", help="replace existing output stores")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--version", action="version", version=f"sracquire (srscope-acquisition) {_version()}")
    return p


def build_fill_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sracquire fill",
                                description="after a killed live run: super-resolve the SR planes it never wrote "
                                            "from the raw store, with the run's own models, and complete its status")
    p.add_argument("store", type=Path, help="the run's SR store (run.ome.zarr), or a directory holding one")
    p.add_argument("--model", type=Path, help="default model file, if the recorded path moved (same weights)")
    p.add_argument("--channel-model", action="append", default=[], metavar="NAME=MODEL",
                   help="a channel's model file, if the recorded path moved (same weights)")
    p.add_argument("--device", help="auto, cpu, cuda, ... (default: as recorded)")
    p.add_argument("--threads", type=int, help="CPU inference threads (default: all cores)")
    p.add_argument("--frame-batch", type=int, default=4, metavar="N", help="frames per inference call (default 4)")
    p.add_argument("--ignore-pixel-size", action="store_true",
                   help="fill even where the raw pixel size is >20%% off the model's")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--version", action="version", version=f"sracquire (srscope-acquisition) {_version()}")
    return p


def fill_main(argv: Sequence[str]) -> int:
    from srscope.acquisition.fill import fill_run
    from srscope.runtime.providers import usable_cores

    args = build_fill_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options: dict = {"intra_op_threads": args.threads or usable_cores()}
    if args.device:
        options["device"] = args.device
    try:
        report = fill_run(args.store, default_model=args.model, channel_models=parse_channel_spec(args.channel_model),
                          frame_batch=args.frame_batch, progress=not args.quiet,
                          ignore_pixel_size=args.ignore_pixel_size, **options)
    except (UserError, ValueError) as exc:
        print(f"sracquire: error: {exc}", file=sys.stderr)
        return 2
    print(report.format())
    return 0 if report.planes_failed == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fill"]:
        return fill_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymmcore-plus").setLevel(logging.ERROR)
    try:
        if args.model is None and not args.channel_model:
            raise ChannelMappingError("give --model and/or --channel-model NAME=MODEL")
        sequence = load_sequence(args.sequence)
        from srscope.runtime import DeviceUnavailableError, ModelCardError
        from srscope.runtime.intensity import parse_intensity

        if args.batch_size is not None:
            print("sracquire: warning: --batch-size is deprecated: it set both --frame-batch (frames per "
                  "inference call) and --tile-batch (tiles per ONNX Runtime call); use those", file=sys.stderr)
        frame_batch = args.frame_batch or args.batch_size or 4
        tile_batch = args.tile_batch or args.batch_size or 4
        if min(frame_batch, tile_batch) < 1:
            raise SessionError("--frame-batch and --tile-batch must be >= 1")
        options = {"device": args.device, "tile": args.tile if args.tile == "auto" else (args.tile or None),
                   "batch_size": tile_batch,
                   "intensity": parse_intensity(args.intensity)}
        if args.threads is not None:
            options["intra_op_threads"] = args.threads
        try:
            models = ChannelModels.from_files(args.model, parse_channel_spec(args.channel_model), **options)
        except (ModelCardError, DeviceUnavailableError, OSError) as exc:
            raise SessionError(str(exc)) from None
        result = run_session(args.config, sequence, models, args.out, raw_out=args.raw, policy=args.policy,
                             max_queued=args.queue, batch_size=frame_batch,
                             pixel_size_um=args.pixel_size_um, overwrite=args.overwrite,
                             progress=not args.quiet, camera_roi=args.roi, exposure_ms=args.exposure_ms,
                             ignore_pixel_size=args.ignore_pixel_size)
    except (SessionError, ChannelMappingError, UserError, ValueError) as exc:
        print(f"sracquire: error: {exc}", file=sys.stderr)
        return 2
    print(result.summary.format())
    print(f"SR store:  {result.sr_store}\nraw store: {result.raw_store}")
    if args.summary_json:
        args.summary_json.write_text(json.dumps(result.summary.to_dict(), indent=2))
    return 0 if result.summary.frames_failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
