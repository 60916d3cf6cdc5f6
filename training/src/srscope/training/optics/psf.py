"""Born & Wolf scalar PSF, integrated over camera pixels.

The paper's deconvolution baselines use the Born & Wolf model (Fiji PSF Generator) with
NA 0.4, immersion index 1.0 and 325 nm pixels; the simulator uses the same model for widefield
pairs so that simulated LR/HR images and the baselines share one optical description.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import j0, j1


def _pixel_integrated_radial_psf(
    size: int,
    pixel_size_um: float,
    oversample: int,
    pupil_samples: int,
    amplitude: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Σ over each camera pixel of |∫₀¹ amplitude(r, ρ) ρ dρ|², on an ``oversample``× finer grid.

    The pupil integral is radially symmetric, so it is evaluated on a 1D grid of radii and
    interpolated onto the 2D grid: O(radii × pupil) instead of O(pixels × pupil). Unnormalised.
    """
    if size % 2 != 1 or size < 3:
        raise ValueError(f"PSF size must be odd and >= 3, got {size}")
    if oversample % 2 != 1:
        raise ValueError("oversample must be odd so the PSF stays centred")
    fine = size * oversample
    step = pixel_size_um / oversample
    coords = (np.arange(fine) - (fine - 1) / 2.0) * step
    r = np.hypot(coords[:, None], coords[None, :])
    r_grid = np.linspace(0.0, r.max() + step, 4 * fine)
    rho, weights = np.polynomial.legendre.leggauss(pupil_samples)
    rho = 0.5 * (rho + 1.0)
    weights = 0.5 * weights
    integrand = amplitude(r_grid[:, None], rho[None, :]) * (rho * weights)[None, :]
    profile = np.abs(integrand.sum(axis=1)) ** 2
    psf_fine = np.interp(r.ravel(), r_grid, profile).reshape(fine, fine)
    return psf_fine.reshape(size, oversample, size, oversample).sum(axis=(1, 3))


def born_wolf_psf(
    size: int,
    pixel_size_um: float,
    wavelength_um: float,
    na: float,
    n_immersion: float = 1.0,
    defocus_um: float = 0.0,
    oversample: int = 5,
    pupil_samples: int = 256,
    spherical_rms_waves: float = 0.0,
) -> np.ndarray:
    """A ``size × size`` (odd) 2D PSF at ``defocus_um`` from focus, summing to 1.

    h(r, z) = |∫₀¹ J₀(k·NA·r·ρ) · exp(−½ i k z NA² ρ² / n) · exp(2πi·c·Z₄⁰(ρ)) ρ dρ|², k = 2π/λ
    (Born & Wolf, paraxial defocus), with an optional primary spherical aberration of ``c`` waves
    RMS (Zernike Z₄⁰ = √5(6ρ⁴ − 6ρ² + 1)): the one aberration a radially symmetric pupil integral
    can carry, and the commonest on real stands (index mismatch, wrong coverslip). Evaluated on an
    ``oversample``× finer grid and summed per camera pixel, because at 325 nm pixels the Airy core
    is only ~2 pixels wide and point sampling would misstate its width.
    """
    if not (0 < na <= n_immersion):
        raise ValueError(f"NA {na} must be in (0, n_immersion={n_immersion}]")
    k = 2.0 * np.pi / wavelength_um

    def amplitude(r: np.ndarray, rho: np.ndarray) -> np.ndarray:
        phase = -0.5 * k * defocus_um * na**2 * rho**2 / n_immersion
        if spherical_rms_waves:
            phase = phase + 2.0 * np.pi * spherical_rms_waves * np.sqrt(5.0) * (6 * rho**4 - 6 * rho**2 + 1)
        return j0(k * na * r * rho) * np.exp(1j * phase)

    psf = _pixel_integrated_radial_psf(size, pixel_size_um, oversample, pupil_samples, amplitude)
    return (psf / psf.sum()).astype(np.float64)


def airy_fwhm_um(wavelength_um: float, na: float) -> float:
    """Lateral FWHM of the in-focus Airy pattern, 0.51 λ / NA."""
    return 0.51 * wavelength_um / na


def vortex_donut_psf(
    size: int,
    pixel_size_um: float,
    wavelength_um: float,
    na: float,
    oversample: int = 1,
    pupil_samples: int = 256,
) -> np.ndarray:
    """Focal intensity of a beam with a 0→2π helical phase plate (the STED depletion donut).

    With the vortex exp(iφ) in the pupil, the azimuthal integral turns J₀ into J₁, so
    h(r) = |∫₀¹ J₁(k·NA·r·ρ) ρ dρ|²: zero on axis and a ring of radius ~0.6 λ/NA. Scalar and
    in focus, which is enough to set the STED resolution through the saturation factor ζ.
    Returned with peak 1 (not sum 1) because depletion depends on the local intensity relative
    to the saturation intensity, not on the total power.
    """
    k = 2.0 * np.pi / wavelength_um
    donut = _pixel_integrated_radial_psf(size, pixel_size_um, oversample, pupil_samples,
                                         lambda r, rho: j1(k * na * r * rho))
    return donut / donut.max()
