"""Registration diagnostics as a PNG: people judge an overlay faster than a table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .register import RegisteredPair


def _norm(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [1, 99.8])
    return np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1)


def _overlay(moving: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """LR in magenta, HR in green: aligned structure turns white/grey, misalignment shows colour fringes."""
    m, r = _norm(moving), _norm(reference)
    return np.stack([m, r, m], axis=-1)


def registration_figure(reg: RegisteredPair, lr_up_before: np.ndarray, hr: np.ndarray, path: Path,
                        zoom: int = 128) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = reg.crop
    hr_c = np.asarray(hr, dtype=np.float32)[c:-c or None, c:-c or None]
    before = np.asarray(lr_up_before, dtype=np.float32)[c:-c or None, c:-c or None]
    h, w = hr_c.shape
    z = min(zoom, h, w)
    sl = (slice(h // 2 - z // 2, h // 2 + z // 2), slice(w // 2 - z // 2, w // 2 + z // 2))
    fig, axes = plt.subplots(2, 2, figsize=(10, 10))
    axes[0, 0].imshow(_overlay(before[sl], hr_c[sl]))
    axes[0, 0].set_title(f"before (centre {z}px) r={reg.correlation_before:.3f}\nLR magenta, HR green")
    axes[0, 1].imshow(_overlay(reg.lr[sl], hr_c[sl]))
    axes[0, 1].set_title(f"after r={reg.correlation:.3f}")
    u = reg.displacement
    mag = np.hypot(u[0], u[1])
    im = axes[1, 0].imshow(mag, cmap="magma")
    step = max(u.shape[1] // 16, 1)
    yy, xx = np.mgrid[step // 2:u.shape[1]:step, step // 2:u.shape[2]:step]
    axes[1, 0].quiver(xx, yy, u[1][yy, xx], -u[0][yy, xx], color="cyan", angles="xy")
    axes[1, 0].set_title(f"displacement field |u| (px); global {reg.global_shift.shift_yx[0]:.2f}, {reg.global_shift.shift_yx[1]:.2f}")
    fig.colorbar(im, ax=axes[1, 0], fraction=0.046)
    if reg.elastic and reg.elastic.history:
        hist = reg.elastic.history
        axes[1, 1].semilogy([hh["rms_update_px"] for hh in hist], "o-", label="RMS block correction")
        axes[1, 1].semilogy([hh["max_update_px"] for hh in hist], ".:", label="max block correction")
        for k, hh in enumerate(hist):
            if k == 0 or hh["block"] != hist[k - 1]["block"]:
                axes[1, 1].axvline(k, color="0.8", lw=0.5)
                axes[1, 1].text(k, axes[1, 1].get_ylim()[1], str(hh["block"]), fontsize=7, va="top")
        axes[1, 1].axhline(0.2, color="r", ls="--", lw=0.8, label="tolerance 0.2 px")
        axes[1, 1].set_xlabel("iteration (block size on top)")
        axes[1, 1].legend()
    else:
        axes[1, 1].text(0.5, 0.5, "drift correction only", ha="center", va="center")
    axes[1, 1].set_title("elastic pyramid convergence")
    for ax in axes.ravel()[:2]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
