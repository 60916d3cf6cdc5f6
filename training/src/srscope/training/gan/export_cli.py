"""``srtrain export CKPT OUT.onnx``: eval-mode ONNX export with the model card and a parity check."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="run directory or best.pt from `srtrain train`")
    parser.add_argument("out", help="output .onnx path")
    parser.add_argument("--name", default=None, help="model name in the card (default: file stem)")
    parser.add_argument("--version", default="1.0")
    parser.add_argument("--description", default="")
    parser.add_argument("--fp16", action="store_true", help="float16 weights and I/O (GPU inference)")
    parser.add_argument("--dataset", default=None,
                        help="dataset whose test split gives the parity tiles (default: the training dataset)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="max allowed |ORT − PyTorch| (default 1e-3 fp32, 5e-2 fp16)")
    parser.add_argument("--no-consistency", dest="consistency", action="store_false",
                        help="skip fitting the per-plane consistency check (on by default when the run's "
                             "dataset was built by simdataset; see srtrain calibrate-consistency)")
    parser.add_argument("--int8", action="store_true",
                        help="also write OUT's stem + '-int8.onnx' (static int8 for CPUs), only if it passes the "
                             "quality gate on held-out fields; exit 3 when it does not")


def run(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError
    from .export import ParityError, export_checkpoint

    try:
        report = export_checkpoint(args.checkpoint, args.out, name=args.name, version=args.version,
                                   fp16=args.fp16, dataset=args.dataset, description=args.description,
                                   tolerance=args.tolerance, consistency=args.consistency)
    except (CheckpointError, ParityError, ValueError) as exc:
        print(f"srtrain export: {exc}", file=sys.stderr)
        return 2
    card = report.card
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.1f} MB, {card.precision}, ×{card.integer_scale}, "
          f"halo {card.halo_px} px, size multiple {card.size_multiple})")
    print(f"parity ONNX Runtime vs PyTorch on {len(report.tiles)} held-out tiles: "
          f"max |diff| = {report.max_abs_diff:.2e} (tolerance {report.tolerance:g})")
    if card.degradation is not None:
        print(f"consistency check: kernel {len(card.degradation.kernel)}² HR px, calibrated on "
              f"{card.degradation.provenance.get('calibration_planes')} validation planes")
    elif report.consistency_note:
        print(report.consistency_note)
    return _int8(report.path) if getattr(args, "int8", False) and card.precision == "fp32" else 0


def _int8(fp32: Path) -> int:
    """The ``--int8`` step: quantise the fresh fp32 file; a failed quality gate is exit 3, nothing written."""
    from srscope.runtime.errors import UserError

    from .quantise import QuantisationGateError, export_int8

    out = fp32.with_name(fp32.stem + "-int8.onnx")
    try:
        _, gate = export_int8(fp32, out)
    except QuantisationGateError as exc:
        print(f"srtrain export --int8: {exc}", file=sys.stderr)
        return 3
    except UserError as exc:
        print(f"srtrain export --int8: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} (int8): {gate.psnr_vs_fp32_db} dB vs fp32 on {len(gate.heldout_seeds)} held-out fields, "
          f"held-out PSNR {gate.fp32['psnr']:.2f} -> {gate.int8['psnr']:.2f} dB")
    return 0
