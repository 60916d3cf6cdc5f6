"""The training loop: one G update and one D update per iteration, validation-loss model selection,
resumable checkpoints, transfer learning, the CNN-only ablation and DDP.

Schedule from the Methods: Adam, learning rates 1e-4 (G) and 1e-5 (D), 64×64 patches, batch 12 per
device, "within each iteration, the generative model and the discriminative model are each updated
once while the other is kept unchanged", final model "selected with the smallest validation loss".

A run directory holds ``last.pt`` (everything needed to continue after a kill), ``best.pt`` (the
selected generator, what ``srtrain export`` reads), ``log.csv`` (train and validation losses),
``curves.png`` and ``summary.json``.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .checkpoint import generator_state_from_onnx, load_checkpoint, save_checkpoint
from .losses import LossWeights, auto_weights, discriminator_loss, generator_loss
from .networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from .patches import PatchSampler, central_crop, load_split, read_attrs

LOG_FIELDS = [
    "iteration", "split", "g_total", "g_adversarial", "g_mse", "g_ssim_term", "d_loss",
    "content", "psnr_db", "ssim", "wall_s",
]


LR_SCHEDULES = ("none", "cosine")
PRECISIONS = ("fp32", "bf16")
#: the cosine schedule ends at this fraction of the starting learning rates
LR_FLOOR = 0.01


def learning_rate_factor(iteration: int, total: int, schedule: str) -> float:
    """Multiplier on the starting learning rates at ``iteration`` (1-based) of ``total``.

    The paper states only *starting* rates (Adam, 1e-4 for G, 1e-5 for D). Decaying them lets a
    short run settle: at a constant rate the adversarial gradient keeps the generator moving, so
    the validation scores of successive checkpoints scatter. A pure function of the iteration,
    so a resumed run follows exactly the schedule of an uninterrupted one.
    """
    if schedule == "none":
        return 1.0
    if schedule == "cosine":
        progress = min(max(iteration - 1, 0) / max(total - 1, 1), 1.0)
        return LR_FLOOR + (1.0 - LR_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


@dataclass
class TrainConfig:
    """Everything that defines a run; stored in every checkpoint and in the model card."""

    dataset: str
    out: str
    iterations: int = 2000
    batch_size: int = 12
    patch_size: int = 64
    width: int = 16
    d_width: int | None = None
    lr_g: float = 1e-4
    lr_d: float = 1e-5
    #: "none" keeps the starting rates; "cosine" decays both to LR_FLOOR of them by the last iteration
    lr_decay: str = "none"
    #: > 0: keep an exponential moving average of G's weights with this decay; validate and ship it
    ema_decay: float = 0.0
    adversarial: bool = True
    use_ssim: bool = True
    reg_share: float = 0.05
    lam: float | None = None
    nu: float | None = None
    val_every: int = 100
    val_patches: int = 48
    log_every: int = 10
    select_on: str = "total"
    init_from: str | None = None
    seed: int = 0
    data_range: float = 1.0
    device: str = "auto"
    resume: bool = True
    command: str = ""
    progress: bool = True
    #: "bf16": forward passes under torch.autocast(bfloat16) (losses, optimiser state and the weights
    #: stay float32); pays where the CPU has AVX512_BF16/AMX or the GPU has bf16 tensor cores
    precision: str = "fp32"
    #: NHWC memory layout for G, D and the batches (oneDNN/cuDNN often prefer it for convolutions)
    channels_last: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.select_on not in ("total", "content"):
            raise ValueError(f"select_on must be 'total' or 'content', not {self.select_on!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), not {self.ema_decay}")
        if self.lr_decay not in LR_SCHEDULES:
            raise ValueError(f"lr_decay must be one of {LR_SCHEDULES}, not {self.lr_decay!r}")
        if self.iterations < 1 or self.batch_size < 1 or self.val_every < 1:
            raise ValueError("iterations, batch_size and val_every must be >= 1")
        if self.patch_size % 16:
            raise ValueError(f"patch_size must be a multiple of 16 (4 pooling levels), not {self.patch_size}")


@dataclass
class TrainResult:
    out: Path
    best_iteration: int
    best_val: float
    iterations: int
    wall_s: float


class _Dist:
    """Rank/world info; a no-op outside ``torchrun``."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.enabled = self.world > 1
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def _device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(name)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _psnr(mse: float, data_range: float) -> float:
    return 10.0 * math.log10(data_range**2 / mse) if mse > 0 else float("inf")


class Trainer:
    def __init__(self, config: TrainConfig) -> None:
        self.cfg = config
        self.device = _device(config.device)
        self.dist = _Dist(self.device)
        self.out = Path(config.out)
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.attrs = read_attrs(config.dataset)
        self.sampler = PatchSampler.from_dataset(config.dataset, "train", config.patch_size, config.seed)
        val_lr, val_hr = load_split(config.dataset, "val")
        val_lr, val_hr = central_crop(val_lr, 16), central_crop(val_hr, 16)
        self.val_lr = torch.from_numpy(np.ascontiguousarray(val_lr[: config.val_patches]))[:, None]
        self.val_hr = torch.from_numpy(np.ascontiguousarray(val_hr[: config.val_patches]))[:, None]

        torch.manual_seed(config.seed)
        self.g_config = GeneratorConfig(width=config.width)
        self.d_config = DiscriminatorConfig(width=config.d_width or config.width, max_channels=8 * (config.d_width or config.width))
        self.G = Generator(self.g_config).to(self.device)
        # The averaged generator is what validation scores and checkpoints ship; G keeps training.
        self.G_ema = (copy.deepcopy(self.G).requires_grad_(False).eval()
                      if config.ema_decay > 0 else None)
        self.D = Discriminator(self.d_config).to(self.device) if config.adversarial else None
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d) if self.D is not None else None
        self.iteration = 0
        self.elapsed = 0.0
        self.best_val = float("inf")
        self.best_iteration = 0
        self.parent: dict[str, Any] | None = None
        self.weights: LossWeights | None = None

        last = self.out / "last.pt"
        if config.resume and last.is_file():
            self._restore(load_checkpoint(last))
        else:
            if config.init_from:
                self._init_from(config.init_from)
            self.weights = self._choose_weights()
        if config.channels_last:
            self.G.to(memory_format=torch.channels_last)
            if self.D is not None:
                self.D.to(memory_format=torch.channels_last)
        self.G_train = self.G
        self.D_train = self.D
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_train = DDP(self.G, device_ids=ids)
            if self.D is not None:
                self.D_train = DDP(self.D, device_ids=ids)

    # -- set-up ---------------------------------------------------------------------------------
    def _choose_weights(self) -> LossWeights:
        cfg = self.cfg
        if cfg.lam is not None:
            return LossWeights(lam=cfg.lam, nu=(cfg.nu or 0.0) if cfg.use_ssim else 0.0)
        lr, hr = self.sampler.batch(-1, 64)
        prediction, reference = lr, "input"
        if self.parent is not None:  # transfer learning: calibrate on where the generator starts
            was_training = self.G.training
            self.G.eval()
            with torch.no_grad():
                prediction = torch.cat([self.G(chunk.to(self.device)).cpu() for chunk in lr.split(16)])
            self.G.train(was_training)
            reference = "initial generator"
        w = auto_weights(prediction, hr, share=cfg.reg_share, use_ssim=cfg.use_ssim, data_range=cfg.data_range,
                         reference=reference)
        if cfg.nu is not None:
            w = replace(w, nu=cfg.nu)
        return w

    def _init_from(self, path: str) -> None:
        """Transfer learning: start from an earlier model's weights, fresh optimisers and schedule.

        ``path`` is a run directory, a checkpoint, or a shipped ``.onnx`` model (generator only)."""
        state = generator_state_from_onnx(path) if str(path).endswith(".onnx") else load_checkpoint(path)
        if state["generator_config"] != self.g_config.to_dict():
            raise ValueError(f"--init-from {path}: generator {state['generator_config']} differs from "
                             f"this run's {self.g_config.to_dict()}")
        self.G.load_state_dict(state["generator"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["generator"])
        if self.D is not None and state.get("discriminator") is not None:
            self.D.load_state_dict(state["discriminator"])
        self.parent = {"checkpoint": str(path), "iteration": state.get("iteration"),
                       "dataset": state.get("config", {}).get("dataset"),
                       "provenance": state.get("provenance", {})}

    def _restore(self, state: dict[str, Any]) -> None:
        if state["generator_config"] != self.g_config.to_dict():
            raise ValueError(f"{self.out}/last.pt was trained with {state['generator_config']}; "
                             "use a new --out or --fresh")
        self.G.load_state_dict(state.get("generator_train", state["generator"]))
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.D is not None:
            if state.get("discriminator") is None:
                raise ValueError(f"{self.out}/last.pt is a CNN-only run; cannot resume it as a GAN")
            self.D.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
        self.iteration = state["iteration"]
        self.elapsed = state["elapsed_s"]
        self.best_val = state["best_val"]
        self.best_iteration = state["best_iteration"]
        self.parent = state.get("parent")
        self.weights = LossWeights(**state["loss_weights"])

    # -- state ----------------------------------------------------------------------------------
    def provenance(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "command": cfg.command or " ".join(sys.argv),
            "dataset": str(cfg.dataset),
            "git_commit": git_commit(),
            "generator_width": cfg.width,
            "iterations_run": self.iteration,
            "train_wall_s": round(self.elapsed, 1),
            "device": str(self.device),
            "world_size": self.dist.world,
            "torch": torch.__version__,
            "adversarial": cfg.adversarial,
            "loss_weights": self.weights.to_dict() if self.weights else None,
            "parent": self.parent,
        }

    def _state(self, *, full: bool) -> dict[str, Any]:
        state: dict[str, Any] = {
            "generator": self.shipped_generator.state_dict(),
            "generator_config": self.g_config.to_dict(),
            "discriminator": self.D.state_dict() if self.D is not None else None,
            "discriminator_config": self.d_config.to_dict(),
            "dataset_attrs": self.attrs,
            "loss_weights": self.weights.to_dict(),
            "config": asdict(self.cfg),
            "iteration": self.iteration,
            "elapsed_s": self.elapsed,
            "best_val": self.best_val,
            "best_iteration": self.best_iteration,
            "parent": self.parent,
            "provenance": self.provenance(),
        }
        if full:
            if self.G_ema is not None:  # the raw weights, to resume training exactly
                state["generator_train"] = self.G.state_dict()
            state["opt_g"] = self.opt_g.state_dict()
            state["opt_d"] = self.opt_d.state_dict() if self.opt_d is not None else None
        return state

    # -- one iteration --------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """One G update then one D update (each with the other held fixed)."""
        cfg, w = self.cfg, self.weights
        self.iteration += 1
        lr, hr = self.sampler.batch(self.iteration, cfg.batch_size, self.dist.rank)
        lr, hr = lr.to(self.device), hr.to(self.device)
        if cfg.channels_last:
            lr, hr = lr.contiguous(memory_format=torch.channels_last), hr.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")

        factor = learning_rate_factor(self.iteration, cfg.iterations, cfg.lr_decay)
        for group in self.opt_g.param_groups:
            group["lr"] = cfg.lr_g * factor
        if self.opt_d is not None:
            for group in self.opt_d.param_groups:
                group["lr"] = cfg.lr_d * factor

        with autocast:
            fake = self.G_train(lr)
            if self.D is not None:
                self.D.requires_grad_(False)  # G step: D fixed (and its DDP hooks untouched)
                fake_logits = self.D(fake)
                self.D.requires_grad_(True)
            else:
                fake_logits = None
        # the losses (MSE, SSIM's small differences of means) in float32
        fake = fake.float()
        fake_logits = fake_logits.float() if fake_logits is not None else None
        terms = generator_loss(fake_logits, fake, hr, w, cfg.data_range)
        self.opt_g.zero_grad(set_to_none=True)
        terms.total.backward()
        self.opt_g.step()
        if self.G_ema is not None:
            self._update_ema()
        row = terms.as_floats()

        if self.D is not None:
            with autocast:
                real_logits, fake_logits = self.D_train(hr), self.D_train(fake.detach())
            d_loss = discriminator_loss(real_logits.float(), fake_logits.float())
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            row["d_loss"] = float(d_loss.detach())
        return row

    @property
    def shipped_generator(self) -> Generator:
        """The weights validation scores, selection picks and export ships: the average if kept."""
        return self.G_ema if self.G_ema is not None else self.G

    @torch.no_grad()
    def _update_ema(self) -> None:
        """Average out the step-to-step jitter the adversarial gradient gives G's weights."""
        for averaged, current in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            averaged.lerp_(current, 1.0 - self.cfg.ema_decay)
        for averaged, current in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            averaged.copy_(current)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """L(G;D) on the validation patches with the current D; also the D-free content terms."""
        cfg, w = self.cfg, self.weights
        G = self.shipped_generator
        G.eval()
        sums = {"adversarial": 0.0, "mse": 0.0, "ssim_term": 0.0}
        ssim_sum, n_total = 0.0, 0
        from .losses import ssim_index

        for i in range(0, len(self.val_lr), cfg.batch_size):
            lr = self.val_lr[i:i + cfg.batch_size].to(self.device)
            hr = self.val_hr[i:i + cfg.batch_size].to(self.device)
            fake = G(lr)
            terms = generator_loss(self.D(fake) if self.D is not None else None, fake, hr, w, cfg.data_range)
            n = len(lr)
            for k in sums:
                sums[k] += float(getattr(terms, k)) * n
            ssim_sum += float(ssim_index(fake, hr, cfg.data_range)) * n
            n_total += n
        self.G.train()  # G_ema stays in eval mode
        m = {k: v / n_total for k, v in sums.items()}
        content = w.lam * m["mse"] + w.nu * m["ssim_term"]
        return {
            "g_total": m["adversarial"] + content, "g_adversarial": m["adversarial"], "g_mse": m["mse"],
            "g_ssim_term": m["ssim_term"], "content": content, "psnr_db": _psnr(m["mse"], cfg.data_range),
            "ssim": ssim_sum / n_total,
        }

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.cfg
        if self.dist.main:
            _truncate_log(self.out / "log.csv", self.iteration)
        start_it = self.iteration
        bar = tqdm(total=cfg.iterations, initial=start_it, desc=f"train {self.out.name}",
                   disable=not (cfg.progress and self.dist.main), dynamic_ncols=True)
        acc: dict[str, list[float]] = {}
        t_last = time.perf_counter()
        while self.iteration < cfg.iterations:
            row = self.step()
            now = time.perf_counter()
            self.elapsed += now - t_last
            t_last = now
            for k, v in row.items():
                acc.setdefault(k, []).append(v)
            bar.update(1)
            if self.iteration % cfg.log_every == 0 and self.dist.main:
                mean = {k: float(np.mean(v)) for k, v in acc.items()}
                acc.clear()
                _append_log(self.out / "log.csv", {"iteration": self.iteration, "split": "train",
                                                   **{f"g_{k}" if not k.startswith(("d_", "g_")) else k: v
                                                      for k, v in mean.items()},
                                                   "wall_s": round(self.elapsed, 2)})
                bar.set_postfix(G=f"{mean['total']:.3f}", D=f"{mean.get('d_loss', float('nan')):.3f}")
            if self.iteration % cfg.val_every == 0 or self.iteration == cfg.iterations:
                if self.dist.main:
                    self._validate_and_checkpoint()
                    t_last = time.perf_counter()  # validation/checkpoint time is not training time
                self.dist.barrier()
        bar.close()
        if self.dist.main:
            from .curves import plot_curves

            plot_curves(self.out / "log.csv", self.out / "curves.png", best_iteration=self.best_iteration)
            summary = {"best_iteration": self.best_iteration, "best_val": self.best_val,
                       "iterations": self.iteration, "train_wall_s": round(self.elapsed, 1),
                       "select_on": cfg.select_on, "loss_weights": self.weights.to_dict()}
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return TrainResult(self.out, self.best_iteration, self.best_val, self.iteration, self.elapsed)

    def _validate_and_checkpoint(self) -> None:
        v = self.validate()
        _append_log(self.out / "log.csv", {"iteration": self.iteration, "split": "val", **v,
                                           "wall_s": round(self.elapsed, 2)})
        score = v["g_total"] if self.cfg.select_on == "total" else v["content"]
        if score < self.best_val:
            self.best_val, self.best_iteration = score, self.iteration
            best = self._state(full=False)
            best["val"] = v
            save_checkpoint(best, self.out / "best.pt")
        save_checkpoint(self._state(full=True), self.out / "last.pt")


def _append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_log(path: Path, iteration: int) -> None:
    """Drop log rows after the checkpoint we resume from (they describe a run that was lost)."""
    if not path.exists():
        return
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["iteration"]) <= iteration]
    path.unlink()
    for r in rows:
        _append_log(path, r)


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) a run; returns where the selected model is and how it scored."""
    trainer = Trainer(config)
    try:
        return trainer.run()
    finally:
        if trainer.dist.enabled and dist.is_initialized():
            dist.destroy_process_group()
