"""PSF-FWHM characterisation on isolated spots, as in the paper's Figs. 4 and 5.

Wang et al. pick > 400 independent bright spots in the ground-truth (STED) images, crop 19 × 19
pixels around each in the input, the network output and the ground truth, fit a 2D Gaussian to
every crop, histogram the FWHMs per image kind and fit a 1D Gaussian to the histogram's main
peak. Spots are found only in the ground truth so every image kind is measured at the same
places: a method cannot improve its number by the choice of spots it is measured on.

"Isolated" is made explicit here: a spot is kept only when no other spot (found at a lower
threshold, so dim neighbours count too) lies within ``min_separation_px``, because a neighbour
inside the crop would widen the fitted Gaussian of the blurrier images first and bias the
comparison in favour of the sharper ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.optimize import OptimizeWarning, curve_fit
from skimage.feature import peak_local_max
from srscope.training.analysis.gaussfit import Gaussian2DFit, fit_gaussian_2d

CROP_PX = 19  # the paper's 19 × 19 crops (~577 nm at 30 nm pixels)


def _robust_background(image: np.ndarray) -> tuple[float, float]:
    """Median and MAD-based standard deviation: the background level and its noise."""
    median = float(np.median(image))
    mad = float(np.median(np.abs(image - median))) * 1.4826
    return median, max(mad, 1e-12 * max(1.0, abs(median)))


def detect_isolated_spots(
    image: np.ndarray,
    *,
    crop: int = CROP_PX,
    min_separation_px: float | None = None,
    min_snr: float = 8.0,
    neighbour_snr: float = 5.0,
    smooth_sigma_px: float = 1.0,
) -> np.ndarray:
    """Centres ``(row, col)`` (int, shape (K, 2)) of bright spots with no neighbour nearby.

    Peaks of the lightly smoothed image brighter than ``min_snr`` noise σ above the background
    are candidates; any peak above ``neighbour_snr`` σ counts as a neighbour. Spots whose crop
    would leave the image are dropped. ``min_separation_px`` defaults to the crop size, i.e. no
    other spot in or at the edge of the crop.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"spot detection needs a 2D image, got shape {img.shape}")
    if crop % 2 != 1 or crop < 5:
        raise ValueError(f"crop must be odd and >= 5, got {crop}")
    smoothed = gaussian_filter(img, smooth_sigma_px) if smooth_sigma_px > 0 else img
    background, noise = _robust_background(smoothed)
    neighbours = peak_local_max(smoothed, min_distance=2, threshold_abs=background + neighbour_snr * noise,
                                exclude_border=False)
    if len(neighbours) == 0:
        return np.zeros((0, 2), dtype=int)
    bright = smoothed[neighbours[:, 0], neighbours[:, 1]] > background + min_snr * noise
    separation = float(crop if min_separation_px is None else min_separation_px)
    half = crop // 2
    keep = []
    for i in np.flatnonzero(bright):
        r, c = neighbours[i]
        if r < half or c < half or r >= img.shape[0] - half or c >= img.shape[1] - half:
            continue
        d2 = np.sum((neighbours - neighbours[i]).astype(np.float64) ** 2, axis=1)
        d2[i] = np.inf
        if np.min(d2) >= separation**2:
            keep.append(neighbours[i])
    return np.asarray(keep, dtype=int).reshape(-1, 2)


def fit_spot(image: np.ndarray, centre: tuple[int, int], crop: int = CROP_PX) -> Gaussian2DFit | None:
    """2D Gaussian fit of the ``crop × crop`` region around ``centre``; ``None`` if the fit is not credible.

    Rejected: failed optimisation, a centre more than a quarter crop from the spot position (the
    fit wandered to something else), or a width at the fitter's bounds or wider than the crop.
    """
    half = crop // 2
    r, c = int(centre[0]), int(centre[1])
    patch = np.asarray(image, dtype=np.float64)[r - half: r + half + 1, c - half: c + half + 1]
    if patch.shape != (crop, crop):
        return None
    fit = fit_gaussian_2d(patch)
    off_centre = np.hypot(fit.x0 - half, fit.y0 - half)
    widths_ok = 0.15 < min(fit.sigma_x, fit.sigma_y) and max(fit.sigma_x, fit.sigma_y) < crop / 2.0
    if not fit.success or fit.amplitude <= 0 or off_centre > crop / 4.0 or not widths_ok:
        return None
    return fit


@dataclass(frozen=True)
class PeakFit:
    """1D Gaussian fitted to the main peak of a FWHM histogram (the numbers the paper quotes)."""

    center: float
    sigma: float
    amplitude: float
    bin_edges: list[float]
    counts: list[int]
    fitted_range: tuple[float, float]


def fit_main_peak(values: np.ndarray, bins: int | str | np.ndarray = "fd") -> PeakFit:
    """Histogram ``values`` and fit a Gaussian to the bins of the main (modal) peak.

    The main-peak region is the run of bins around the mode whose counts stay above 10 % of the
    mode's: spots that merged with an unseen neighbour or sit on structured background give a
    long tail of wide fits, which the paper also leaves out of its peak fit.
    """
    vals = np.asarray(values, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if vals.size < 3:
        raise ValueError(f"need at least 3 FWHM values for a histogram fit, got {vals.size}")
    if isinstance(bins, np.ndarray):
        edges = np.asarray(bins, dtype=np.float64)
    else:
        lo, hi = np.percentile(vals, [0.5, 99.5])
        if hi <= lo:
            hi = lo + max(abs(lo) * 1e-3, 1e-9)
        edges = np.histogram_bin_edges(vals, bins=bins, range=(lo, hi))
        if len(edges) < 8:  # too few bins to see a peak shape
            edges = np.linspace(lo, hi, 16)
        edges = edges[:201]
    counts, edges = np.histogram(vals, bins=edges)
    centres = 0.5 * (edges[:-1] + edges[1:])
    mode = int(np.argmax(counts))
    floor = 0.1 * counts[mode]
    left = mode
    while left > 0 and counts[left - 1] > floor:
        left -= 1
    right = mode
    while right < len(counts) - 1 and counts[right + 1] > floor:
        right += 1
    region = slice(left, right + 1)
    in_region = vals[(vals >= edges[left]) & (vals <= edges[right + 1])]
    center0 = float(np.mean(in_region))
    sigma0 = float(max(np.std(in_region), (edges[1] - edges[0]) / 2))
    center, sigma, amplitude = center0, sigma0, float(counts[mode])
    if right - left + 1 >= 3:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)  # the covariance is not used
                popt, _ = curve_fit(
                    lambda x, a, m, s: a * np.exp(-0.5 * ((x - m) / s) ** 2),
                    centres[region], counts[region].astype(np.float64),
                    p0=[amplitude, center0, sigma0], maxfev=5000,
                )
            if edges[left] <= popt[1] <= edges[right + 1] and abs(popt[2]) > 0:
                amplitude, center, sigma = float(popt[0]), float(popt[1]), float(abs(popt[2]))
        except RuntimeError:
            pass  # keep the moments of the main-peak region
    return PeakFit(center=center, sigma=sigma, amplitude=amplitude, bin_edges=edges.tolist(),
                   counts=counts.astype(int).tolist(), fitted_range=(float(edges[left]), float(edges[right + 1])))


@dataclass
class FwhmDistribution:
    """FWHMs (nm) measured in one kind of image at the ground truth's spots, and their main peak."""

    name: str
    values_nm: list[float] = field(default_factory=list)
    n_spots: int = 0
    peak: PeakFit | None = None

    @property
    def median_nm(self) -> float:
        return float(np.median(self.values_nm)) if self.values_nm else float("nan")

    def summary(self) -> dict[str, float]:
        return {
            "n_spots": self.n_spots,
            "n_fitted": len(self.values_nm),
            "median_fwhm_nm": self.median_nm,
            "peak_fwhm_nm": self.peak.center if self.peak else float("nan"),
            "peak_sigma_nm": self.peak.sigma if self.peak else float("nan"),
        }


def measure_fwhm(
    truth_images: list[np.ndarray],
    images: Mapping[str, list[np.ndarray]],
    pixel_size_nm: float,
    *,
    crop: int = CROP_PX,
    min_separation_px: float | None = None,
    min_snr: float = 8.0,
) -> dict[str, FwhmDistribution]:
    """Detect isolated spots in each ground-truth image and fit the same crops in every image kind.

    ``images`` maps a kind ("input", "GAN", "ground truth", ...) to one image per ground-truth
    image, all on the ground truth's grid (up-sample low-resolution inputs first). A spot counts
    for a kind only where that kind's fit is credible, so ``n_fitted`` can differ between kinds.
    """
    results = {name: FwhmDistribution(name=name) for name in images}
    for index, truth in enumerate(truth_images):
        spots = detect_isolated_spots(truth, crop=crop, min_separation_px=min_separation_px, min_snr=min_snr)
        for name, stack in images.items():
            image = np.asarray(stack[index])
            if image.shape != np.shape(truth):
                raise ValueError(f"{name} image {index} has shape {image.shape}, ground truth {np.shape(truth)}")
            results[name].n_spots += len(spots)
            for spot in spots:
                fit = fit_spot(image, (int(spot[0]), int(spot[1])), crop)
                if fit is not None:
                    results[name].values_nm.append(fit.fwhm * pixel_size_nm)
    fit_peaks(results)
    return results


def fit_peaks(distributions: Mapping[str, FwhmDistribution], n_bins: int = 60) -> None:
    """Fit every distribution's main peak on one set of bin edges spanning all of them.

    Shared bins keep the histograms of input, outputs and ground truth comparable in one plot
    (the paper's Fig. 4 layout) and give every kind the same FWHM resolution.
    """
    pooled = np.concatenate([np.asarray(d.values_nm, dtype=np.float64) for d in distributions.values()]
                            or [np.zeros(0)])
    pooled = pooled[np.isfinite(pooled)]
    edges: np.ndarray | str = "fd"
    if pooled.size >= 3:
        lo, hi = np.percentile(pooled, [0.5, 99.5])
        if hi > lo:
            pad = 0.05 * (hi - lo)
            edges = np.linspace(lo - pad, hi + pad, n_bins + 1)
    for dist in distributions.values():
        dist.peak = fit_main_peak(np.asarray(dist.values_nm), bins=edges) if len(dist.values_nm) >= 3 else None
