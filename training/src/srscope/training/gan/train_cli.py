"""``srtrain train DATASET OUT``: train the GAN (or, with ``--cnn-only``, the ablation without D).

Multi-GPU: ``torchrun --nproc_per_node 2 -m srscope.training.cli train ...`` runs DDP (each rank
draws its own batches of ``--batch-size``; the paper used 12 per GPU on two GPUs).
Re-running the same command after a kill resumes from ``OUT/last.pt``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from .checkpoint import CheckpointError
from .patches import DatasetFormatError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="prepared dataset (zarr group from `srtrain prepare`)")
    parser.add_argument("out", help="run directory (checkpoints, log.csv, curves.png)")
    parser.add_argument("--iterations", type=int, default=2000, help="total iterations (default 2000)")
    parser.add_argument("--batch-size", type=int, default=12, help="patches per iteration per device (paper: 12)")
    parser.add_argument("--patch-size", type=int, default=64, help="training patch side in HR pixels (paper: 64)")
    parser.add_argument("--width", type=int, default=16,
                        help="generator base channels (paper: 32; 8–16 trains on a CPU)")
    parser.add_argument("--d-width", type=int, default=None, help="discriminator base channels (default: --width)")
    parser.add_argument("--lr-g", type=float, default=1e-4, help="Adam learning rate of G (paper: 1e-4)")
    parser.add_argument("--lr-d", type=float, default=1e-5, help="Adam learning rate of D (paper: 1e-5)")
    parser.add_argument("--lr-decay", choices=("none", "cosine"), default="none",
                        help="learning-rate schedule: the paper gives only the starting rates (none: keep "
                             "them); cosine decays both to 1%% of them by the last iteration")
    parser.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                        help="keep an exponential moving average of G's weights (e.g. 0.999) and validate, "
                             "select and export it instead of the raw weights (default 0: off)")
    parser.add_argument("--cnn-only", action="store_true",
                        help="ablation: no discriminator, G trained on the MSE+SSIM terms only")
    parser.add_argument("--no-ssim", action="store_true", help="ν = 0 (the paper's confocal→STED setting)")
    parser.add_argument("--reg-share", type=float, default=0.05,
                        help="share of L(G;D) given to each regulariser when λ, ν are set automatically, "
                             "measured on the input (with --init-from: on the starting generator's output) "
                             "(paper: ~0.01–0.1; default 0.05)")
    parser.add_argument("--lam", type=float, default=None, help="fix λ instead of setting it automatically")
    parser.add_argument("--nu", type=float, default=None, help="fix ν instead of setting it automatically")
    parser.add_argument("--val-every", type=int, default=100, help="validate and checkpoint every N iterations")
    parser.add_argument("--val-patches", type=int, default=48, help="validation patches used (default 48)")
    parser.add_argument("--select-on", choices=("total", "content"), default="total",
                        help="model selection: lowest validation L(G;D) ('total', paper) or its D-free "
                             "MSE+SSIM part ('content')")
    parser.add_argument("--init-from", default=None,
                        help="transfer learning: start from this checkpoint (run dir or best.pt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: forward passes under bfloat16 autocast (weights, losses and Adam stay float32); "
                             "bench/bench_training_speed.py measures whether it pays on this machine")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory layout for the networks")
    parser.add_argument("--fresh", action="store_true", help="ignore OUT/last.pt instead of resuming")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _command_line(args: argparse.Namespace) -> str:
    """The full equivalent command (every option spelled out), for provenance in the model card."""
    parts = ["srtrain", "train", args.dataset, args.out]
    for key, value in sorted(vars(args).items()):
        if key in ("dataset", "out", "command") or key.startswith("_") or value in (None, False):
            continue
        flag = "--" + key.replace("_", "-")
        parts += [flag] if value is True else [flag, str(value)]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    import torch

    from .trainer import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = TrainConfig(
            dataset=args.dataset, out=args.out, iterations=args.iterations, batch_size=args.batch_size,
            patch_size=args.patch_size, width=args.width, d_width=args.d_width, lr_g=args.lr_g, lr_d=args.lr_d,
            lr_decay=args.lr_decay, ema_decay=args.ema,
            adversarial=not args.cnn_only, use_ssim=not args.no_ssim, reg_share=args.reg_share, lam=args.lam,
            nu=args.nu, val_every=args.val_every, val_patches=args.val_patches, select_on=args.select_on,
            init_from=args.init_from, seed=args.seed, device=args.device, resume=not args.fresh,
            command=_command_line(args),
            progress=not args.no_progress, precision=args.precision, channels_last=args.channels_last,
        )
        result = train(config)
    except (DatasetFormatError, CheckpointError, ValueError) as exc:
        print(f"srtrain train: {exc}", file=sys.stderr)
        return 2
    print(f"selected iteration {result.best_iteration} (validation loss {result.best_val:.4f}); "
          f"{result.iterations} iterations in {result.wall_s / 60:.1f} min → {result.out}/best.pt")
    return 0
