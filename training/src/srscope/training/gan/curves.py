"""Loss-curve figure from a run's ``log.csv``: a GAN's health is read from these curves (G and D
should settle into an equilibrium; divergence shows as D → 0 and G rising), not from one number."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _series(rows: list[dict[str, str]], split: str, key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        if r["split"] == split and r.get(key) not in (None, ""):
            v = float(r[key])
            if math.isfinite(v):
                xs.append(int(r["iteration"]))
                ys.append(v)
    return xs, ys


def plot_curves(log_csv: Path, out_png: Path, *, best_iteration: int | None = None) -> Path:
    with Path(log_csv).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    for key, label in (("g_total", "L(G;D) train"), ("d_loss", "L(D;G) train"), ("g_adversarial", "−log D(G(x)) train")):
        xs, ys = _series(rows, "train", key)
        if xs:
            ax.plot(xs, ys, label=label, lw=1)
    xs, ys = _series(rows, "val", "g_total")
    ax.plot(xs, ys, "o-", label="L(G;D) validation", ms=3)
    ax.set(xlabel="iteration", ylabel="loss", title="adversarial training")
    ax.legend(fontsize=8)
    ax = axes[1]
    for key, label in (("g_mse", "MSE train"), ("g_ssim_term", "−log((1+SSIM)/2) train")):
        xs, ys = _series(rows, "train", key)
        if xs:
            ax.plot(xs, ys, label=label, lw=1)
    for key, label in (("g_mse", "MSE val"), ("g_ssim_term", "−log((1+SSIM)/2) val")):
        xs, ys = _series(rows, "val", key)
        ax.plot(xs, ys, "o-", label=label, ms=3)
    ax.set(xlabel="iteration", yscale="log", title="regularisation terms (unweighted)")
    ax.legend(fontsize=8)
    ax = axes[2]
    xs, ys = _series(rows, "val", "psnr_db")
    ax.plot(xs, ys, "o-", ms=3, color="C3")
    ax.set(xlabel="iteration", ylabel="validation PSNR (dB, normalised units)", title="validation")
    for a in axes:
        if best_iteration:
            a.axvline(best_iteration, color="k", ls=":", lw=1, label="selected")
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
