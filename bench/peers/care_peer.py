"""CARE peer for srscope's benchmark: train and apply a CAREamics 0.3.5 CARE model.

Run it with the peer venv's interpreter (``bash bench/peers/setup_care_env.sh`` builds it), never
with srscope's: it imports only numpy, zarr, torch and careamics, and nothing from srscope, so the
two installs never have to agree on versions::

    bench/peers/.venv-care/bin/python bench/peers/care_peer.py train DATASET.zarr OUT_DIR --minutes 10 --seed 0
    bench/peers/.venv-care/bin/python bench/peers/care_peer.py predict OUT_DIR INPUT.npz OUTPUT.npz

Normalisation contract
----------------------
*Training data.* ``train`` reads an srscope prepared dataset (zarr v3 group written by
``srtrain prepare`` / ``srscope.training.gan.dataset_writer.write_dataset``): float32 arrays
``train/lr``, ``train/hr``, ``val/lr``, ``val/hr`` of shape ``(N, P, P)``, LR already registered
and resampled onto the HR grid, both sides already normalised by srscope. srscope's
normalisation is affine with one offset/scale per side, computed on the training split and stored
in the group attributes ``srscope_dataset.normalization`` (LR counts -> network input:
``(counts - offset) / scale``) and ``srscope_dataset.denormalization`` (network output -> HR
counts: ``output * scale + offset``). CARE is trained on exactly these arrays, unchanged.

*Inside CAREamics.* CAREamics standardises once more with constants (mean/std of the training
LR arrays for the input, of the training HR arrays for the target; ``mean_std``), saves those
constants in the checkpoint, applies the input constants at prediction and undoes the target
ones on the output. This is internal: it needs nothing from the caller.

*Prediction.* The caller gives ``predict`` images that are normalised exactly like the dataset's
``lr`` arrays (the same dataset's ``normalization`` applied to the LR counts, registered and
resampled onto the HR grid, float32, 2D ``(H, W)``), i.e. what srscope's own generator gets.
``predict`` returns arrays of the same shape in the units of the dataset's ``hr`` arrays; the
caller maps them back to counts itself (``hr_counts = out * denormalization.scale +
denormalization.offset``) or scores them in normalised units next to srscope's output. This
module never converts to or from counts. ``care_peer.json`` in OUT_DIR repeats the dataset's
``normalization``/``denormalization`` so the caller can check it used the right pair.

Budget. ``train --minutes M`` bounds the Lightning fit loop (training steps and the per-epoch
validation) with ``Trainer(max_time=M minutes)``; reading the zarr and building the datamodule
come before that and are reported separately. The UNet is CARE's default size (depth 2, 32
first-layer filters), patch 64, batch 16, Adam with CAREamics' defaults, flips/rot90
augmentation, the best checkpoint by validation loss on the dataset's ``val`` split. One CPU
thread unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The thread count has to be fixed before torch starts its pools.
_THREADS = "1"
for _i, _a in enumerate(sys.argv):
    if _a == "--threads" and _i + 1 < len(sys.argv):
        _THREADS = sys.argv[_i + 1]
    elif _a.startswith("--threads="):
        _THREADS = _a.split("=", 1)[1]
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, _THREADS)

import numpy as np

SRSCOPE_ATTRS_KEY = "srscope_dataset"
SRSCOPE_FORMAT_VERSION = 1
MODEL_FILE = "care_model.ckpt"
META_FILE = "care_peer.json"
EXPERIMENT = "care_peer"
TILE = 256
TILE_OVERLAP = 48


def _log(msg: str) -> None:
    print(f"care_peer: {msg}", file=sys.stderr, flush=True)


def _versions() -> dict[str, str]:
    import careamics
    import lightning
    import torch
    import torchvision
    import zarr

    return {"careamics": careamics.__version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "lightning": lightning.__version__,
            "numpy": np.__version__, "zarr": zarr.__version__, "python": platform.python_version()}


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel op
        torch.set_num_interop_threads(threads)


def read_dataset(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The train/val (lr, hr) stacks of an srscope prepared dataset, and its attributes."""
    import zarr

    if not path.exists():
        raise SystemExit(f"care_peer: {path}: no such dataset")
    root = zarr.open_group(str(path), mode="r")
    attrs = root.attrs.asdict().get(SRSCOPE_ATTRS_KEY)
    if attrs is None:
        raise SystemExit(f"care_peer: {path}: not a finished srscope dataset (no {SRSCOPE_ATTRS_KEY!r} attributes)")
    if attrs.get("version") != SRSCOPE_FORMAT_VERSION:
        raise SystemExit(f"care_peer: {path}: dataset version {attrs.get('version')} is not supported "
                         f"(expected {SRSCOPE_FORMAT_VERSION})")
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "val"):
        for side in ("lr", "hr"):
            a = np.asarray(root[f"{split}/{side}"][...], dtype=np.float32)
            if a.ndim != 3 or a.shape[1] != a.shape[2]:
                raise SystemExit(f"care_peer: {path}: {split}/{side} must be (N, P, P), got {a.shape}")
            arrays[f"{split}/{side}"] = a
        if arrays[f"{split}/lr"].shape != arrays[f"{split}/hr"].shape:
            raise SystemExit(f"care_peer: {path}: {split}/lr {arrays[f'{split}/lr'].shape} and "
                             f"{split}/hr {arrays[f'{split}/hr'].shape} differ")
    if len(arrays["train/lr"]) == 0:
        raise SystemExit(f"care_peer: {path}: the train split is empty")
    return arrays, attrs


def _budget_report() -> Any:
    """A Lightning callback that keeps what care_peer.json reports about the fit loop."""
    from lightning.pytorch.callbacks import Callback

    class BudgetReport(Callback):
        def __init__(self) -> None:
            self.epochs_completed = 0
            self.first_epoch_s: float | None = None
            self.val_losses: list[float] = []
            self._epoch_t0 = 0.0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._epoch_t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.epochs_completed += 1
            if self.first_epoch_s is None:
                self.first_epoch_s = round(time.perf_counter() - self._epoch_t0, 3)

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking:
                return
            v = trainer.callback_metrics.get("val_loss")
            if v is not None:
                self.val_losses.append(round(float(v), 6))

    return BudgetReport()


def _careamics_seed(seed: int) -> int:
    """CAREamics rejects seed 0 (its DataConfig wants seed > 0): srscope seed S is CAREamics seed S + 1."""
    if seed < 0:
        raise SystemExit(f"care_peer: --seed must be >= 0, got {seed}")
    return seed + 1


def cmd_train(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    t_start = time.perf_counter()
    arrays, attrs = read_dataset(Path(args.dataset))
    patch = int(args.patch)
    p = arrays["train/lr"].shape[1]
    if p < patch:
        raise SystemExit(f"care_peer: dataset patches are {p}² but CARE patch is {patch}²")

    from careamics import CAREamist
    from careamics.config.factories.care_n2n_factory import create_advanced_care_config

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    budget_s = float(args.minutes) * 60.0
    model_params = {"depth": args.depth, "num_channels_init": args.filters}
    early = {} if args.early_stopping_patience is None else {
        "monitor": "val_loss", "mode": "min", "patience": args.early_stopping_patience}
    # create_care_config is create_advanced_care_config with these left at their defaults
    # (UNet depth 2 / 32 filters already); the advanced form also lets us fix the seed, the
    # workers (the caller's CPUs are shared) and the wall-time budget.
    config = create_advanced_care_config(
        experiment_name=EXPERIMENT, data_type="array", axes="SYX", patch_size=[patch, patch],
        batch_size=args.batch_size, num_epochs=args.max_epochs, num_steps=args.steps_per_epoch,
        model_params=model_params, num_workers=0, seed=_careamics_seed(args.seed), logger="none",
        trainer_params={"max_time": {"seconds": round(budget_s)}},
        early_stopping_params=early,
    )
    has_val = len(arrays["val/lr"]) > 0
    report = _budget_report()
    work = out
    with contextlib.redirect_stdout(sys.stderr):
        careamist = CAREamist(config, work_dir=work, callbacks=[report], enable_progress_bar=False)
        t_fit = time.perf_counter()
        careamist.train(train_data=arrays["train/lr"], train_data_target=arrays["train/hr"],
                        val_data=arrays["val/lr"] if has_val else None,
                        val_data_target=arrays["val/hr"] if has_val else None)
        fit_s = time.perf_counter() - t_fit

    ckpt_cb = careamist.trainer.checkpoint_callback
    best = Path(ckpt_cb.best_model_path) if ckpt_cb is not None and ckpt_cb.best_model_path else None
    last = Path(ckpt_cb.last_model_path) if ckpt_cb is not None and ckpt_cb.last_model_path else None
    chosen = best if best is not None and best.exists() else last
    if chosen is None or not chosen.exists():
        raise SystemExit("care_peer: training produced no checkpoint (budget too short for one epoch?)")
    shutil.copyfile(chosen, out / MODEL_FILE)

    norm = careamist.train_datamodule.config.normalization if careamist.train_datamodule else None
    meta = {
        "peer": "CARE (CAREamics)",
        "model_file": MODEL_FILE,
        "checkpoint_source": os.path.relpath(chosen, out),
        "checkpoint_kind": "best val_loss" if chosen == best else "last",
        "best_val_loss": float(ckpt_cb.best_model_score) if ckpt_cb is not None and ckpt_cb.best_model_score is not None else None,
        "dataset": str(Path(args.dataset).resolve()),
        "n_train_patches": len(arrays["train/lr"]),
        "n_val_patches": len(arrays["val/lr"]),
        "dataset_patch_size": int(p),
        "dataset_normalization": attrs.get("normalization"),
        "dataset_denormalization": attrs.get("denormalization"),
        "careamics_normalization": norm.model_dump(mode="json") if norm is not None else None,
        "settings": {"depth": args.depth, "num_channels_init": args.filters, "patch_size": patch,
                     "batch_size": args.batch_size, "steps_per_epoch": args.steps_per_epoch,
                     "max_epochs": args.max_epochs, "early_stopping_patience": args.early_stopping_patience,
                     "seed": args.seed, "careamics_seed": _careamics_seed(args.seed), "threads": args.threads, "minutes": args.minutes,
                     "predict_tile": TILE, "predict_tile_overlap": TILE_OVERLAP},
        "epochs_completed": report.epochs_completed,
        "global_steps": int(careamist.trainer.global_step),
        "first_epoch_s": report.first_epoch_s,
        "val_losses": report.val_losses,
        "fit_wall_s": round(fit_s, 2),
        "total_wall_s": round(time.perf_counter() - t_start, 2),
        "budget_s": budget_s,
        "stopped_by": "max_time" if fit_s >= budget_s - 1.0 else
                      ("max_epochs" if report.epochs_completed >= args.max_epochs else "early_stopping"),
        "device": str(careamist.trainer.strategy.root_device),
        "versions": _versions(),
        "config": careamist.config.model_dump(mode="json"),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({k: meta[k] for k in ("model_file", "epochs_completed", "global_steps", "best_val_loss",
                                           "fit_wall_s", "total_wall_s", "stopped_by")}))
    return 0


def _tile_for(shape: tuple[int, int], depth: int, tile: int = TILE) -> tuple[int, int]:
    """``tile``² tiles (default 256²) for images at least that large; a smaller side is one tile
    rounded up to a multiple of 2**depth (CAREamics zero-pads an image smaller than its tile)."""
    m = 2 ** depth
    return tuple(tile if s >= tile else max(m, -(-s // m) * m) for s in shape)  # type: ignore[return-value]


def cmd_predict(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    out_dir = Path(args.out_dir)
    model = out_dir / MODEL_FILE
    if not model.exists():
        raise SystemExit(f"care_peer: {model}: no trained model (run `care_peer.py train` first)")
    meta = json.loads((out_dir / META_FILE).read_text()) if (out_dir / META_FILE).exists() else {}
    depth = int(meta.get("settings", {}).get("depth", 2))
    with np.load(args.input, allow_pickle=False) as npz:
        images = {k: np.asarray(npz[k]) for k in npz.files}
    if not images:
        raise SystemExit(f"care_peer: {args.input}: no arrays")
    for name, img in images.items():
        if img.ndim != 2:
            raise SystemExit(f"care_peer: {args.input}: {name!r} must be a 2D (H, W) image, got {img.shape}")
        if not np.all(np.isfinite(img)):
            raise SystemExit(f"care_peer: {args.input}: {name!r} holds NaN or inf")

    from careamics import CAREamist

    results: dict[str, np.ndarray] = {}
    timing: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="care_peer_") as work, contextlib.redirect_stdout(sys.stderr):
        t_load = time.perf_counter()
        careamist = CAREamist(checkpoint_path=model, work_dir=work, enable_progress_bar=False)
        load_s = time.perf_counter() - t_load
        for name, img in images.items():
            img = img.astype(np.float32, copy=False)
            tile = _tile_for(img.shape, depth, args.tile)
            overlap = tuple(min(TILE_OVERLAP, t // 2 - 1) if t < args.tile else TILE_OVERLAP for t in tile)
            t0 = time.perf_counter()
            preds, _ = careamist.predict(img, data_type="array", axes="YX", output_axes="YX",
                                         tile_size=tile, tile_overlap=overlap, batch_size=args.batch_size,
                                         num_workers=0)
            dt = time.perf_counter() - t0
            pred = np.squeeze(np.asarray(preds[0], dtype=np.float32))
            if pred.shape != img.shape:
                raise SystemExit(f"care_peer: {name!r}: CARE returned {pred.shape} for a {img.shape} input")
            results[name] = pred
            timing[name] = {"shape": list(img.shape), "seconds": round(dt, 4), "tile": list(tile),
                            "overlap": list(overlap)}
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_path, **results)
    report = {"output": str(out_path), "model": str(model), "model_load_s": round(load_s, 4),
              "images": timing, "threads": args.threads, "batch_size": args.batch_size, "depth": depth,
              "versions": _versions()}
    print(json.dumps(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="care_peer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train CARE on an srscope prepared dataset")
    t.add_argument("dataset", help="srscope prepared dataset (zarr v3 group)")
    t.add_argument("out_dir", help="where the model, checkpoints and care_peer.json go")
    t.add_argument("--minutes", type=float, required=True, help="wall-time budget of the fit loop")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--patch", type=int, default=64)
    t.add_argument("--depth", type=int, default=2)
    t.add_argument("--filters", type=int, default=32, help="UNet first-layer filters")
    t.add_argument("--steps-per-epoch", type=int, default=None,
                   help="cap on batches per epoch (default: CAREamics' epoch, ~every pixel once)")
    t.add_argument("--max-epochs", type=int, default=100000, help="only a backstop: the budget stops training")
    t.add_argument("--early-stopping-patience", type=int, default=None,
                   help="epochs without val_loss improvement before stopping (default: off)")
    t.add_argument("--threads", type=int, default=1)
    t.set_defaults(func=cmd_train)
    p = sub.add_parser("predict", help="apply a trained CARE model to the images of an npz")
    p.add_argument("out_dir", help="the OUT_DIR of `train`")
    p.add_argument("input", help="npz of named float32 2D images, normalised like the dataset's lr")
    p.add_argument("output", help="npz written with the CARE outputs under the same names")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1, help="tiles per forward pass (speed runs: 32)")
    p.add_argument("--tile", type=int, default=TILE, help=f"tile edge (default {TILE}, a multiple of 2**depth)")
    p.set_defaults(func=cmd_predict)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
