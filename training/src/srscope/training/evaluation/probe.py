"""``srtrain probe CHECKPOINT...``: score training checkpoints on simulated fields, without exporting them.

Why: following a run on a development set (seeds the final report will not use) by exporting each
checkpoint and running ``srtrain evaluate`` costs ~10 min a time; this scores the checkpoint's
shipped generator (the weight average when the run keeps one) in PyTorch in seconds, with the
runtime's border context (mirror-padded about the field's edge) and the evaluation's metrics
(PSNR/SSIM after an affine intensity fit), so the numbers match the exported model's run through
the runtime with the same margin (tested). docs/evaluation.md names it for its development set.

    srtrain probe runs/a/best.pt runs/b/best.pt --structure mitochondria --seed 500000 -n 8
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class CheckpointScore:
    checkpoint: str
    iteration: int | None
    psnr: float
    ssim: float
    per_image_psnr: tuple[float, ...]

    def format(self) -> str:
        return (f"{self.checkpoint}: iteration {self.iteration}  PSNR {self.psnr:.2f} dB  SSIM {self.ssim:.4f}  "
                f"(per image {', '.join(f'{p:.2f}' for p in self.per_image_psnr)})")


def enhance_whole_image(graph: torch.nn.Module, lr: np.ndarray, *, scale: int, multiple: int,
                        margin: int) -> np.ndarray:
    """One forward pass over the whole normalised image, padded by ``margin`` (and up to the size
    multiple) with the runtime's own single-tile plan, cropped back to the field."""
    from srscope.runtime.tiling import TilePlan

    plan = TilePlan.for_image(lr.shape, tile=None, overlap=0, halo=margin, multiple=multiple, scale=scale)
    with torch.no_grad():
        y = graph(torch.from_numpy(plan.pad(lr.astype(np.float32)))[None, None])[0, 0].numpy()
    h, w = lr.shape
    return y[margin * scale:(margin + h) * scale, margin * scale:(margin + w) * scale]


def score_checkpoints(checkpoints: list[str | Path], pairs: list, *, margin: int = 24) -> list[CheckpointScore]:
    from srscope.runtime.card import AffineIntensity
    from srscope.runtime.intensity import percentile_affine
    from srscope.training.evaluation.metrics import score_image
    from srscope.training.gan.checkpoint import load_checkpoint
    from srscope.training.gan.export import checkpoint_graph

    scores = []
    for path in checkpoints:
        state = load_checkpoint(path)
        graph, _, scale, multiple = checkpoint_graph(state)
        attrs = state["dataset_attrs"]
        rule = attrs.get("intensity", {"mode": "fixed"})
        fixed = AffineIntensity(**attrs["normalization"])

        def normalise(lr: np.ndarray, rule: dict = rule, fixed: AffineIntensity = fixed) -> np.ndarray:
            # percentile datasets: each image by its own percentiles, as the runtime does
            if rule["mode"] == "percentile":
                return percentile_affine(lr, rule["low"], rule["high"]).normalise(lr)
            return fixed.normalise(lr)

        per_image = [score_image(enhance_whole_image(graph, normalise(p.lr), scale=scale, multiple=multiple,
                                                     margin=margin), np.asarray(p.hr, dtype=np.float64))
                     for p in pairs]
        scores.append(CheckpointScore(str(path), state.get("iteration"),
                                      float(np.mean([s.psnr for s in per_image])),
                                      float(np.mean([s.ssim for s in per_image])),
                                      tuple(float(s.psnr) for s in per_image)))
    return scores


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", help="checkpoint files (best.pt, last.pt) or run directories")
    p.add_argument("--modality", default="widefield")
    p.add_argument("--structure", default="mitochondria")
    p.add_argument("--seed", type=int, default=500_000, help="first simulator seed (the development set)")
    p.add_argument("-n", type=int, default=8, help="number of fields")
    p.add_argument("--hr-size", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)


def run(a: argparse.Namespace) -> int:
    from srscope.training.evaluation.testset import simulated_pairs

    torch.set_num_threads(a.threads)
    pairs = list(simulated_pairs(a.modality, a.structure, a.n, seed=a.seed, hr_shape=(a.hr_size, a.hr_size)))
    try:
        for score in score_checkpoints(a.checkpoints, pairs):
            print(score.format(), flush=True)
    except (FileNotFoundError, ValueError) as exc:
        print(f"srtrain probe: {exc}", file=sys.stderr)
        return 2
    return 0
