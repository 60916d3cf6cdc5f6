"""``srtrain prepare LR_DIR HR_DIR OUT.zarr``: register pairs (matched by file name) and write the
training dataset, printing a per-FOV summary table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .register import QualityGate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lr_dir", type=Path, help="folder of LR images (OME-TIFF / OME-Zarr)")
    parser.add_argument("hr_dir", type=Path, help="folder of HR images with the same file names")
    parser.add_argument("out", type=Path, help="output dataset, e.g. data.zarr")
    parser.add_argument("--patch-size", type=int, default=64, help="training patch size (64, or 256 for transfer learning)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--drift-only", action="store_true", help="global NCC drift correction only (confocal → STED)")
    mode.add_argument("--elastic", action="store_true", help="always run the pyramidal elastic registration")
    parser.add_argument("--min-correlation", type=float, default=QualityGate.min_correlation,
                        help="quality gate: minimum LR/HR correlation after registration")
    parser.add_argument("--max-residual", type=float, default=QualityGate.max_residual_shift_px,
                        help="quality gate: maximum RMS of the last elastic correction (px)")
    parser.add_argument("--keep-rejected", action="store_true", help="report failing pairs but keep them")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--min-signal", type=float, default=0.1,
                        help="skip patches whose normalised HR never reaches this level (empty background)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the FOV split")
    parser.add_argument("--plots", nargs="?", const=True, default=None, metavar="DIR",
                        help="write registration diagnostics PNGs (default DIR: OUT.plots/)")
    parser.add_argument("--max-plots", type=int, default=8)
    parser.add_argument("--overwrite", action="store_true")


def run(args: argparse.Namespace) -> int:
    from .prepare import prepare_dataset

    fractions = (1.0 - args.val_fraction - args.test_fraction, args.val_fraction, args.test_fraction)
    if min(fractions) < 0:
        print("srtrain prepare: validation + test fractions exceed 1", file=sys.stderr)
        return 2
    plots = None
    if args.plots is not None:
        plots = args.out.with_name(args.out.name + ".plots") if args.plots is True else Path(args.plots)
    elastic = False if args.drift_only else (True if args.elastic else None)
    try:
        summary = prepare_dataset((args.lr_dir, args.hr_dir), args.out, patch_size=args.patch_size,
                                  split_fractions=fractions, seed=args.seed, elastic=elastic,
                                  gate=QualityGate(args.min_correlation, args.max_residual),
                                  reject=not args.keep_rejected, min_signal=args.min_signal,
                                  plots_dir=plots, max_plots=args.max_plots, overwrite=args.overwrite)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"srtrain prepare: {err}", file=sys.stderr)
        return 2
    print(summary.table())
    print("normalization (LR counts → input):", json.dumps(summary.attrs["normalization"]))
    print("denormalization (output → HR counts):", json.dumps(summary.attrs["denormalization"]))
    if plots is not None:
        print(f"registration plots: {plots}")
    print(f"dataset: {summary.path}")
    return 0
