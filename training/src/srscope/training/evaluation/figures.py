"""PNG figures of an evaluation (matplotlib, Agg): crops, difference maps, error maps, spectra, FWHM.

Panels that compare images share one intensity scale, set by the ground truth after the affine
fit, so a brighter-looking panel really is brighter relative to the truth and not just
auto-contrasted.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.ndimage import uniform_filter
from srscope.training.evaluation.runner import INPUT, TRUTH, EvaluationResult

CROP_PX = 160


def _crop_window(truth: np.ndarray, size: int = CROP_PX) -> tuple[slice, slice]:
    """The ``size``² window with the most ground-truth signal: the crops should show structure."""
    h, w = truth.shape
    size = min(size, h, w)
    density = uniform_filter(truth.astype(np.float64), size=size, mode="constant")
    half = size // 2
    inner = density[half: h - (size - half) + 1, half: w - (size - half) + 1]
    r, c = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return slice(r, r + size), slice(c, c + size)


def _scale_bar(ax: plt.Axes, pixel_size_um: float, width_px: int) -> None:
    """A white bar of a round length (~1/5 of the panel) in the lower left."""
    target = width_px * pixel_size_um / 5
    length_um = min((0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0), key=lambda v: abs(v - target))
    length_px = length_um / pixel_size_um
    y = width_px * 0.92
    ax.plot([width_px * 0.05, width_px * 0.05 + length_px], [y, y], color="white", linewidth=3)
    label = f"{length_um * 1000:.0f} nm" if length_um < 1 else f"{length_um:g} µm"
    ax.text(width_px * 0.05, y - width_px * 0.04, label, color="white", fontsize=7)


def crops_figure(result: EvaluationResult, path: Path) -> Path:
    """Side-by-side crops: input (bilinear-upsampled), every method, ground truth; one row per example."""
    kinds = [INPUT, *result.methods, TRUTH]
    rows = len(result.examples)
    fig, axes = plt.subplots(rows, len(kinds), figsize=(2.2 * len(kinds), 2.3 * rows), squeeze=False)
    for row, example in enumerate(result.examples):
        window = _crop_window(example.images[TRUTH])
        truth_crop = example.images[TRUTH][window]
        vmin, vmax = np.percentile(truth_crop, [0.5, 99.8])
        for col, kind in enumerate(kinds):
            ax = axes[row, col]
            ax.imshow(example.images[kind][window], cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(kind, fontsize=9)
            if col == 0:
                ax.set_ylabel(example.name, fontsize=7)
                _scale_bar(ax, example.hr_pixel_size_um, truth_crop.shape[1])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def differences_figure(result: EvaluationResult, path: Path) -> Path:
    """Output − ground truth (after the affine fit) on the first example's crop, symmetric colour scale."""
    example = result.examples[0]
    window = _crop_window(example.images[TRUTH])
    truth = example.images[TRUTH][window]
    kinds = [INPUT, *result.methods]
    diffs = {k: example.images[k][window] - truth for k in kinds}
    limit = float(np.percentile(np.abs(np.concatenate([d.ravel() for d in diffs.values()])), 99.5)) or 1.0
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.3 * len(kinds) + 1.0, 2.8), squeeze=False, layout="constrained")
    for ax, kind in zip(axes[0], kinds):
        im = ax.imshow(diffs[kind], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(f"{kind} − truth", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="counts (truth scale)")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def squirrel_figure(result: EvaluationResult, path: Path) -> Path:
    """SQUIRREL error maps |input − re-blurred output| for the first example, one shared scale."""
    example = result.examples[0]
    kinds = [*result.methods, TRUTH]
    maps = [example.squirrel_maps[k] for k in kinds]
    vmax = float(np.percentile(np.concatenate([m.ravel() for m in maps]), 99.5)) or 1.0
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.3 * len(kinds) + 1.0, 2.9), squeeze=False, layout="constrained")
    for ax, kind, emap in zip(axes[0], kinds, maps):
        im = ax.imshow(emap, cmap="inferno", vmin=0, vmax=vmax, interpolation="nearest")
        first = result.squirrel[kind][0]
        ax.set_title(f"{kind}\nRSE {first['rse']:.3g}  RSP {first['rsp']:.3f}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="|input − re-blurred| (input counts)")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def spectra_figure(result: EvaluationResult, path: Path) -> Path:
    """Radially averaged power spectra, normalised to agree at low frequencies, with supports marked."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    low_band = result.low_cutoff_fraction * result.spectra[INPUT].nyquist_per_um
    for kind, spec in result.spectra.items():
        f, p = spec.frequency_per_um[1:], spec.power[1:]
        band = f <= low_band
        norm = float(np.mean(p[band])) if np.any(band) and np.mean(p[band]) > 0 else float(p.max() or 1.0)
        style = {"linewidth": 2.2, "color": "black"} if kind == TRUTH else {"linewidth": 1.3}
        line, = ax.semilogy(f, p / norm, label=kind, **style)
        support = float(np.median(result.support_per_um[kind]))
        ax.axvline(support, color=line.get_color(), linestyle=":", linewidth=1)
    ax.axhline(float(np.median(result.support_level)), color="grey", linestyle=":", linewidth=1)
    ax.axvline(result.spectra[INPUT].nyquist_per_um, color="grey", linestyle="--", linewidth=1)
    ax.text(result.spectra[INPUT].nyquist_per_um, ax.get_ylim()[1], " input Nyquist", fontsize=7,
            va="top", color="grey")
    ax.set_xlabel("spatial frequency (cycles/µm)")
    ax.set_ylabel("power (normalised at low frequency)")
    ax.set_title("Radially averaged power spectra (dotted: 10× the input's noise level, and where each\n"
                 "spectrum last crosses it = its support)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fwhm_figure(result: EvaluationResult, path: Path) -> Path:
    """FWHM histograms per image kind with the 1D Gaussian fitted to each main peak (paper Fig. 4)."""
    assert result.fwhm is not None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for kind, dist in result.fwhm.items():
        if dist.peak is None:
            continue
        edges = np.asarray(dist.peak.bin_edges)
        counts = np.asarray(dist.peak.counts)
        line = ax.stairs(counts, edges, label=f"{kind}: {dist.peak.center:.0f} ± {dist.peak.sigma:.0f} nm "
                                              f"(n={len(dist.values_nm)})")
        x = np.linspace(*dist.peak.fitted_range, 200)
        ax.plot(x, dist.peak.amplitude * np.exp(-0.5 * ((x - dist.peak.center) / dist.peak.sigma) ** 2),
                color=line.get_edgecolor(), linewidth=1.5)
    ax.set_xlabel("FWHM (nm)")
    ax.set_ylabel("spots")
    ax.set_title("PSF FWHM at ground-truth spots (lines: Gaussian fit of the main peak)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def lr_search_figure(result: EvaluationResult, path: Path) -> Path:
    """Validation score of Lucy–Richardson over iterations, one line per damping threshold."""
    choice = result.lr_choice
    assert choice is not None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for damping in sorted({row[1] for row in choice.grid}):
        rows = sorted((r for r in choice.grid if r[1] == damping), key=lambda r: r[0])
        ax.semilogx([r[0] for r in rows], [r[2] for r in rows], marker="o", label=f"damping {damping:.1%}")
    ax.plot([choice.iterations], [choice.score], marker="*", markersize=14, color="black", linestyle="none",
            label="chosen")
    ax.set_xlabel("iterations")
    ax.set_ylabel(f"validation {choice.metric.upper()}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def metrics_figure(result: EvaluationResult, path: Path) -> Path:
    """Per-image PSNR and SSIM per method (box plots), to show the spread behind the means."""
    fig, axes = plt.subplots(1, 2, figsize=(2.0 + 1.3 * len(result.methods), 3.6))
    for ax, metric in zip(axes, ("psnr", "ssim")):
        data = [[getattr(scores[m], metric) for scores in result.scores] for m in result.methods]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(result.methods) + 1), result.methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric.upper() + (" (dB)" if metric == "psnr" else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
