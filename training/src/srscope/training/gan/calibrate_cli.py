"""``srtrain calibrate-consistency MODEL.onnx (DATASET | --sim ARGS)``: (re)fit the card's degradation model.

Fits the HR → LR kernel on the validation pairs and calibrates the consistency score's in-domain
ranges on the model's own outputs for them (:mod:`srscope.training.gan.degradation_fit`), then
writes the result into the model's card. The weights are not touched (checked byte for byte), so
a shipped model can gain the check after its training dataset is gone: ``--sim`` takes the
``simdataset`` arguments printed in the model's ``.md`` card and re-simulates the validation split.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="card-carrying .onnx file to update")
    parser.add_argument("dataset", nargs="?", default=None, help="a simdataset dataset (its recorded recipe)")
    parser.add_argument("--sim", default=None, metavar="ARGS",
                        help="simdataset arguments instead of a dataset, e.g. \"widefield filaments out.zarr --val 18 "
                             "--randomise\" (only the validation split is re-simulated)")
    parser.add_argument("--out", default=None, help="write here instead of updating MODEL in place")
    parser.add_argument("--crop", type=int, default=None, help="calibration crop edge in input pixels (default 128)")
    parser.add_argument("--margin", type=float, default=None,
                        help="widening of each feature's calibrated range, in units of its spread (default 0.5)")
    parser.add_argument("--calibration-fields", type=int, default=None,
                        help="extra held-out fields drawn like the training set, on top of the validation split "
                             "(default 48; 0: the validation split only)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--remove", action="store_true", help="remove the degradation model (check off)")


def run(args: argparse.Namespace) -> int:
    from srscope.runtime.card import ModelCardError

    from .degradation_fit import (
        DEFAULT_CALIBRATION_FIELDS,
        DEFAULT_CROP,
        DEFAULT_MARGIN,
        SimRecipe,
        embed_degradation,
        fit_degradation,
    )

    try:
        if args.remove:
            embed_degradation(args.model, None, args.out)
            print(f"removed the degradation model from {args.out or args.model}")
            return 0
        if (args.dataset is None) == (args.sim is None):
            raise ValueError("give a DATASET or --sim ARGS (one of them)")
        recipe = SimRecipe.parse(args.sim) if args.sim else SimRecipe.from_dataset(args.dataset)
        model = fit_degradation(args.model, recipe, crop=args.crop or DEFAULT_CROP,
                                margin=DEFAULT_MARGIN if args.margin is None else args.margin, threads=args.threads,
                                calibration_fields=(DEFAULT_CALIBRATION_FIELDS if args.calibration_fields is None
                                                    else args.calibration_fields))
        path = embed_degradation(args.model, model, args.out)
    except (ValueError, ModelCardError, FileNotFoundError) as exc:
        print(f"srtrain calibrate-consistency: {exc}", file=sys.stderr)
        return 2
    k = model.kernel_array
    print(f"wrote {path}: kernel {k.shape[0]}×{k.shape[1]} HR px (×{model.scale}), local-error threshold "
          f"{model.error_threshold:.4g}, {len(model.ranges)} feature ranges from "
          f"{model.provenance.get('calibration_planes')} planes"
          + (f", domain model of {len(model.domain.reference)} planes (k = {model.domain.k})" if model.domain else ""))
    return 0
