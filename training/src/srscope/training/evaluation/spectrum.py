"""Spatial-frequency analysis: radially averaged power spectra, spectral support, FRC and decorrelation.

The question the paper's spectra answer is whether the network puts real high-frequency content
beyond the input's optical support (cut-off 2 NA / λ) rather than just sharpening edges. Spectra
are computed in physical units (cycles/µm), each image on its own pixel grid, so an input at
325 nm pixels and an output at 162.5 nm pixels are comparable without resampling either.

Resolution needs a number that does not require a ground truth: Fourier ring correlation (FRC)
when two noise-independent images of the same field exist, and otherwise the single-image
decorrelation analysis of Descloux, Grußmayer & Radenovic (Nat. Methods 2019), written here from
the paper's definition because nanopyx (which has it) weighs 838 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

#: FRC threshold: the fixed 1/7 criterion commonly used for half-data-set FRC.
FRC_THRESHOLD = 1.0 / 7.0


def _apodize(image: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Mean-subtracted image with a cosine (Tukey) edge taper.

    Without it the discontinuity between opposite image edges puts a bright cross into the
    spectrum that would read as high-frequency "content".
    """
    img = np.asarray(image, dtype=np.float64)
    img = img - img.mean()
    windows = []
    for n in img.shape:
        w = np.ones(n)
        m = max(1, int(fraction * n))
        ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(m) + 0.5) / m))
        w[:m] = ramp
        w[n - m:] = ramp[::-1]
        windows.append(w)
    return img * windows[0][:, None] * windows[1][None, :]


def _radial_index(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Integer ring index of each centred-FFT pixel and its radius in cycles/pixel."""
    fy = sfft.fftshift(sfft.fftfreq(shape[0]))
    fx = sfft.fftshift(sfft.fftfreq(shape[1]))
    radius = np.hypot(fy[:, None], fx[None, :])
    ring_width = 1.0 / max(shape)
    return np.round(radius / ring_width).astype(int), radius


def _check_2d(image: np.ndarray, what: str = "image") -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 16:
        raise ValueError(f"{what} must be 2D and at least 16×16, got shape {img.shape}")
    if not np.all(np.isfinite(img)):
        raise ValueError(f"{what} contains NaN or Inf")
    return img


@dataclass(frozen=True)
class RadialSpectrum:
    """Radially averaged power spectrum up to the Nyquist frequency, in cycles/µm."""

    frequency_per_um: np.ndarray
    power: np.ndarray
    nyquist_per_um: float


def radial_power_spectrum(image: np.ndarray, pixel_size_um: float) -> RadialSpectrum:
    """Mean |FFT|² over rings of one frequency bin width, normalised by the number of pixels."""
    img = _check_2d(image)
    if pixel_size_um <= 0:
        raise ValueError("pixel size must be positive")
    power = np.abs(sfft.fftshift(sfft.fft2(_apodize(img), workers=-1))) ** 2 / img.size
    ring, _ = _radial_index(img.shape)
    n_rings = max(img.shape) // 2 + 1
    sums = np.bincount(ring.ravel(), weights=power.ravel(), minlength=n_rings)[:n_rings]
    counts = np.bincount(ring.ravel(), minlength=n_rings)[:n_rings]
    freq_cyc_px = np.arange(n_rings) / max(img.shape)
    return RadialSpectrum(frequency_per_um=freq_cyc_px / pixel_size_um,
                          power=sums / np.maximum(counts, 1), nyquist_per_um=0.5 / pixel_size_um)


def low_frequency_power(spectrum: RadialSpectrum, cutoff_per_um: float) -> float:
    """Mean power over (0, ``cutoff_per_um``]: the reference that makes spectra of differently scaled
    images comparable (every method reproduces the coarse structure, so it agrees there)."""
    f, p = spectrum.frequency_per_um, spectrum.power
    band = (f > 0) & (f <= cutoff_per_um)
    if not np.any(band):
        band = f > 0
        band[np.argmax(band) + 1:] = False  # the first non-DC ring
    return float(np.mean(p[band]))


def noise_floor(spectrum: RadialSpectrum, band: float = 0.1) -> float:
    """Median power in the outermost ``band`` of frequencies below Nyquist."""
    f, p = spectrum.frequency_per_um, spectrum.power
    outer = (f >= (1.0 - band) * spectrum.nyquist_per_um) & (f <= spectrum.nyquist_per_um)
    return float(np.median(p[outer])) if np.any(outer) else float(p[-1])


def support_level(reference: RadialSpectrum, low_cutoff_per_um: float, factor: float = 10.0) -> float:
    """The relative power level ``factor`` × (noise floor / low-frequency power) of ``reference``.

    Using the *input's* level for every image asks one question of all of them: up to which
    frequency does this image hold content clearly above what the input's noise allowed?
    """
    return factor * noise_floor(reference) / max(low_frequency_power(reference, low_cutoff_per_um), 1e-300)


def spectral_support(spectrum: RadialSpectrum, *, level: float | None = None,
                     low_cutoff_per_um: float | None = None, factor: float = 10.0) -> float:
    """Highest frequency (cycles/µm) where the power stays above a threshold.

    Without ``level``: ``factor``× the image's own noise floor (median power in the outermost 10 %
    below Nyquist, where a band-limited image holds only noise). With ``level`` (from
    :func:`support_level` of a reference image): power relative to this image's low-frequency
    power (below ``low_cutoff_per_um``) must exceed ``level``; that compares images with different
    intensity scales, and also noise-free ones whose own floor would be meaningless.
    """
    f, p = spectrum.frequency_per_um, spectrum.power
    valid = (f > 0) & (f <= spectrum.nyquist_per_um)
    if level is None:
        threshold = factor * noise_floor(spectrum)
    else:
        cutoff = low_cutoff_per_um if low_cutoff_per_um is not None else 0.15 * spectrum.nyquist_per_um
        threshold = level * low_frequency_power(spectrum, cutoff)
    f, p = f[valid], p[valid]
    # Smooth over 5 rings so a single noisy ring cannot set the support.
    smooth = np.convolve(np.log10(np.maximum(p, 1e-300)), np.ones(5) / 5, mode="same")
    above = np.flatnonzero(smooth > np.log10(max(threshold, 1e-300)))
    return float(f[above[-1]]) if above.size else 0.0


@dataclass(frozen=True)
class ResolutionEstimate:
    """A resolution in µm plus the curve it came from (for plotting)."""

    resolution_um: float
    cutoff_per_um: float
    curve_frequency_per_um: np.ndarray
    curve: np.ndarray


def fourier_ring_correlation(image_a: np.ndarray, image_b: np.ndarray, pixel_size_um: float,
                             threshold: float = FRC_THRESHOLD) -> ResolutionEstimate:
    """FRC of two noise-independent images of the same field; resolution = 1 / first crossing of ``threshold``.

    Only meaningful when the two images have independent noise (two exposures, or the two halves of
    a split acquisition); an image correlated with itself gives FRC = 1 everywhere.
    """
    a, b = _check_2d(image_a, "image_a"), _check_2d(image_b, "image_b")
    if a.shape != b.shape:
        raise ValueError(f"FRC needs images of one shape, got {a.shape} and {b.shape}")
    fa = sfft.fftshift(sfft.fft2(_apodize(a), workers=-1))
    fb = sfft.fftshift(sfft.fft2(_apodize(b), workers=-1))
    ring, _ = _radial_index(a.shape)
    n_rings = min(a.shape) // 2
    r = ring.ravel()
    inside = r < n_rings
    num = np.bincount(r[inside], weights=np.real(fa * np.conj(fb)).ravel()[inside], minlength=n_rings)
    den_a = np.bincount(r[inside], weights=(np.abs(fa) ** 2).ravel()[inside], minlength=n_rings)
    den_b = np.bincount(r[inside], weights=(np.abs(fb) ** 2).ravel()[inside], minlength=n_rings)
    frc = num / np.sqrt(np.maximum(den_a * den_b, 1e-300))
    freq = np.arange(n_rings) / max(a.shape) / pixel_size_um
    # Smooth lightly and skip the lowest rings, which always correlate.
    smooth = np.convolve(frc, np.ones(3) / 3, mode="same")
    below = np.flatnonzero((smooth < threshold) & (np.arange(n_rings) > 2))
    cutoff = float(freq[below[0]]) if below.size else float(freq[-1])
    return ResolutionEstimate(resolution_um=1.0 / cutoff if cutoff > 0 else float("inf"),
                              cutoff_per_um=cutoff, curve_frequency_per_um=freq, curve=frc)


def _decorrelation_peak(magnitude_sorted: np.ndarray, cum_counts: np.ndarray, radii: np.ndarray,
                        total_energy: float, n_radii: int) -> tuple[float, float, np.ndarray]:
    """d(r) on ``n_radii`` normalised radii and its last local maximum (position, amplitude)."""
    cum = np.concatenate([[0.0], np.cumsum(magnitude_sorted)])
    r_grid = np.linspace(0.0, 1.0, n_radii + 1)[1:]
    idx = np.searchsorted(radii, r_grid, side="right")
    counts = cum_counts[idx]
    d = cum[idx] / np.sqrt(total_energy * np.maximum(counts, 1))
    # The peak: the maximum of d over [0, r_end], shrinking r_end while the maximum sits at r_end.
    # White noise alone makes d rise monotonically towards r = 1, so the signal's peak is the
    # last maximum that is not on that rising edge (as in the reference implementation).
    end = n_radii
    k = int(np.argmax(d[:end]))
    while end > 1 and k == end - 1:
        end -= 1
        k = int(np.argmax(d[:end]))
    if end <= 1 or d[k] <= 0:
        return 0.0, 0.0, d
    # Refine with a parabola through the neighbours.
    if 0 < k < n_radii - 1:
        y0, y1, y2 = d[k - 1], d[k], d[k + 1]
        denom = y0 - 2 * y1 + y2
        shift = 0.5 * (y0 - y2) / denom if denom != 0 else 0.0
        return float(r_grid[k] + np.clip(shift, -1, 1) * (r_grid[1] - r_grid[0])), float(y1), d
    return float(r_grid[k]), float(d[k]), d


def decorrelation_resolution(image: np.ndarray, pixel_size_um: float, *, n_radii: int = 50,
                             n_filters: int = 10, min_amplitude: float = 0.05) -> ResolutionEstimate:
    """Single-image resolution by decorrelation analysis (Descloux et al. 2019).

    d(r) is the Pearson correlation between the image spectrum I(k) and its phase-only,
    low-passed version I(k)/|I(k)| · [|k| < r]; with unit-modulus phases it reduces to
    Σ_{|k|<r} |I(k)| / sqrt(Σ|I|² · N(r)), so every curve is one sorted cumulative sum. The peak
    of d(r) moves to higher r as the image is high-passed (Gaussian high-pass of decreasing
    width); the largest peak position k_c with amplitude above ``min_amplitude`` gives the
    resolution 2·pixel / k_c (r = 1 at Nyquist).
    """
    img = _check_2d(image)
    n = min(img.shape)
    img = img[:n, :n]  # square, so normalised radius 1 is Nyquist along both axes
    spectrum = sfft.fftshift(sfft.fft2(_apodize(img), workers=-1))
    _, radius_cyc_px = _radial_index(img.shape)
    r_norm = (radius_cyc_px / 0.5).ravel()
    inside = r_norm <= 1.0
    order = np.argsort(r_norm[inside])
    radii = r_norm[inside][order]
    cum_counts = np.arange(radii.size + 1)
    magnitude = np.abs(spectrum).ravel()[inside][order]
    r_sorted = radii

    def curve(weights: np.ndarray) -> tuple[float, float, np.ndarray]:
        mag = magnitude * weights
        energy = float(np.sum(mag**2))
        if energy <= 0:
            return 0.0, 0.0, np.zeros(n_radii)
        return _decorrelation_peak(mag, cum_counts, r_sorted, energy, n_radii)

    r0, a0, d0 = curve(np.ones_like(magnitude))
    peaks = [(r0, a0)]
    # Gaussian high-passes, widths log-spaced from wide (mild) to narrow (strong), in normalised units.
    for sigma in np.exp(np.linspace(np.log(0.5), np.log(0.02), n_filters)):
        weights = 1.0 - np.exp(-0.5 * (r_sorted / sigma) ** 2)
        peaks.append(curve(weights)[:2])
    valid = [r for r, a in peaks if a >= min_amplitude and 0 < r < 1]
    kc = max(valid) if valid else 0.0
    freq = np.linspace(0.0, 1.0, n_radii + 1)[1:] * 0.5 / pixel_size_um
    cutoff = kc * 0.5 / pixel_size_um
    return ResolutionEstimate(resolution_um=2 * pixel_size_um / kc if kc > 0 else float("inf"),
                              cutoff_per_um=cutoff, curve_frequency_per_um=freq, curve=d0)
