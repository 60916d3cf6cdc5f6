"""Global match / drift correction: normalised cross-correlation with a 2D-Gaussian peak fit.

This is the paper's first registration step (and, for confocal → STED, the only one). The
cross-correlation is computed with FFTs on zero-mean, unit-variance images, and the sub-pixel
peak is the centre of a 2D Gaussian fitted to the neighbourhood of the integer maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from ..analysis.gaussfit import fit_gaussian_2d


@dataclass(frozen=True)
class GlobalShift:
    """``moving(x + shift) ≈ reference(x)``; ``peak`` is the NCC at the optimum (−1…1)."""

    shift_yx: tuple[float, float]
    peak: float


def ncc_map(reference: np.ndarray, moving: np.ndarray, max_shift: int) -> np.ndarray:
    """NCC for integer shifts in [−max_shift, max_shift]², index [max_shift, max_shift] = 0 shift.

    c[d] = Σ w(x)ref(x)·w(x+d)mov(x+d) / Σ w(x)w(x+d) of standardised images; circular (FFT),
    so both are tapered (w) at the border and the taper's overlap is divided out.
    """
    if reference.shape != moving.shape:
        raise ValueError(f"shape mismatch {reference.shape} vs {moving.shape}")
    window = _tukey2d(reference.shape)
    a = _standardise(reference) * window
    b = _standardise(moving) * window
    fa = sfft.rfft2(a, workers=-1)
    fb = sfft.rfft2(b, workers=-1)
    corr = sfft.irfft2(np.conj(fa) * fb, s=a.shape, workers=-1)
    # divide by the window overlap so the taper does not pull the peak towards zero shift
    overlap = sfft.irfft2(np.abs(sfft.rfft2(window)) ** 2, s=a.shape, workers=-1)
    corr /= np.maximum(overlap, 0.05 * overlap.max())
    corr = np.fft.fftshift(corr)
    cy, cx = a.shape[0] // 2, a.shape[1] // 2
    return corr[cy - max_shift: cy + max_shift + 1, cx - max_shift: cx + max_shift + 1]


def global_shift(reference: np.ndarray, moving: np.ndarray, *, max_shift: int = 32, fit_radius: int = 3) -> GlobalShift:
    """Sub-pixel translation of ``moving`` relative to ``reference`` (HR pixels)."""
    max_shift = int(min(max_shift, min(reference.shape) // 4))
    corr = ncc_map(reference, moving, max_shift)
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    r = fit_radius
    y0, y1 = max(iy - r, 0), min(iy + r + 1, corr.shape[0])
    x0, x1 = max(ix - r, 0), min(ix + r + 1, corr.shape[1])
    patch = corr[y0:y1, x0:x1]
    dy, dx = float(iy), float(ix)
    if min(patch.shape) >= 3:
        fit = fit_gaussian_2d(patch)
        # trust the fit only if it stayed near the integer peak (a flat/noisy map can run off)
        if fit.success and abs(y0 + fit.y0 - iy) <= 1.0 and abs(x0 + fit.x0 - ix) <= 1.0:
            dy, dx = y0 + fit.y0, x0 + fit.x0
    return GlobalShift((dy - max_shift, dx - max_shift), float(corr[iy, ix]))


def _standardise(image: np.ndarray) -> np.ndarray:
    data = np.asarray(image, dtype=np.float32)
    std = float(data.std())
    return (data - data.mean()) / (std if std > 0 else 1.0)


def _tukey2d(shape: tuple[int, int], alpha: float = 0.1) -> np.ndarray:
    def tukey(n: int) -> np.ndarray:
        w = np.ones(n, dtype=np.float32)
        edge = max(int(alpha * n / 2), 1)
        ramp = 0.5 * (1 - np.cos(np.pi * np.arange(edge) / edge))
        w[:edge] = ramp
        w[n - edge:] = ramp[::-1]
        return w

    return tukey(shape[0])[:, None] * tukey(shape[1])[None, :]
