"""2D Gaussian fitting: the one tool behind three of the paper's measurements.

The paper fits 2D Gaussians to (1) the normalised cross-correlation peak for global
registration and drift correction, (2) isolated beads for PSF-FWHM characterisation, and the
simulator's bead check reuses (2). One least-squares fitter serves all three.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

SIGMA_TO_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class Gaussian2DFit:
    """Fit result in pixel units; ``x0``/``y0`` are column/row of the centre in the patch."""

    amplitude: float
    x0: float
    y0: float
    sigma_x: float
    sigma_y: float
    offset: float
    success: bool
    residual_rms: float

    @property
    def fwhm_x(self) -> float:
        return SIGMA_TO_FWHM * self.sigma_x

    @property
    def fwhm_y(self) -> float:
        return SIGMA_TO_FWHM * self.sigma_y

    @property
    def fwhm(self) -> float:
        """Geometric-mean FWHM, the single number the paper's histograms show."""
        return SIGMA_TO_FWHM * float(np.sqrt(self.sigma_x * self.sigma_y))


def gaussian_2d(yy: np.ndarray, xx: np.ndarray, amplitude: float, x0: float, y0: float,
                sigma_x: float, sigma_y: float, offset: float) -> np.ndarray:
    return offset + amplitude * np.exp(
        -0.5 * (((xx - x0) / sigma_x) ** 2 + ((yy - y0) / sigma_y) ** 2)
    )


def fit_gaussian_2d(patch: np.ndarray, *, with_offset: bool = True) -> Gaussian2DFit:
    """Least-squares fit of an axis-aligned 2D Gaussian (plus constant offset) to ``patch``.

    Starts from the intensity-weighted centroid and second moments, bounds the centre to the
    patch and sigmas to (0.1 px, patch size) so a failed fit cannot run away.
    """
    data = np.asarray(patch, dtype=np.float64)
    if data.ndim != 2 or min(data.shape) < 3:
        raise ValueError(f"need a 2D patch of at least 3×3, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("patch contains NaN or Inf")
    ny, nx = data.shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    base = float(np.min(data)) if with_offset else 0.0
    weights = np.clip(data - base, 0, None)
    total = weights.sum()
    if total <= 0:
        cy, cx, sx, sy = (ny - 1) / 2, (nx - 1) / 2, 1.0, 1.0
    else:
        cy = float((weights * yy).sum() / total)
        cx = float((weights * xx).sum() / total)
        sy = float(np.sqrt(max((weights * (yy - cy) ** 2).sum() / total, 0.25)))
        sx = float(np.sqrt(max((weights * (xx - cx) ** 2).sum() / total, 0.25)))
    peak = float(data.max() - base)
    p0 = [peak if peak > 0 else 1.0, cx, cy, sx, sy, base]
    lower = [0.0, -0.5, -0.5, 0.1, 0.1, -np.inf]
    upper = [np.inf, nx - 0.5, ny - 0.5, float(max(nx, ny)), float(max(nx, ny)), np.inf]
    if not with_offset:
        p0, lower, upper = p0[:5], lower[:5], upper[:5]
    p0 = np.clip(p0, np.array(lower) + 1e-9, np.array(upper) - 1e-9)

    def residuals(p: np.ndarray) -> np.ndarray:
        off = p[5] if with_offset else 0.0
        return (gaussian_2d(yy, xx, *p[:5], off) - data).ravel()

    result = least_squares(residuals, p0, bounds=(lower, upper), method="trf", x_scale="jac")
    p = result.x
    return Gaussian2DFit(
        amplitude=float(p[0]), x0=float(p[1]), y0=float(p[2]),
        sigma_x=float(p[3]), sigma_y=float(p[4]),
        offset=float(p[5]) if with_offset else 0.0,
        success=bool(result.success),
        residual_rms=float(np.sqrt(np.mean(result.fun**2))),
    )
