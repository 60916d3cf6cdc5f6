"""Image-quality metrics (PSNR, SSIM, NRMSE) against ground truth, after an affine intensity fit.

Every method in the comparison lands on a different intensity scale: bilinear keeps the input's
counts, deconvolution redistributes them, the network maps to the output modality's counts, and
the ground truth has its own background and gain. Scoring raw intensities would rank methods by
their normalisation rather than their resolution, so each candidate is first mapped onto the
ground truth by the least-squares ``a·x + b`` and only then scored (the same idea as NanoJ-SQUIRREL's
intensity rescaling). The fit is global per image, so it cannot hide structural errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
from skimage.metrics import (
    normalized_root_mse,
    peak_signal_noise_ratio,
    structural_similarity,
)

METRIC_NAMES: tuple[str, ...] = ("psnr", "ssim", "nrmse")
#: True where a larger value is better; the report uses it to mark the best method per metric.
HIGHER_IS_BETTER: dict[str, bool] = {"psnr": True, "ssim": True, "nrmse": False}


@dataclass(frozen=True)
class AffineFit:
    """``fitted = gain · candidate + offset`` minimises the squared error to the reference."""

    gain: float
    offset: float

    def apply(self, image: np.ndarray) -> np.ndarray:
        return (self.gain * np.asarray(image, dtype=np.float64) + self.offset).astype(np.float64)


@dataclass(frozen=True)
class ImageScores:
    """Scores of one candidate image against one ground truth (after the affine fit)."""

    psnr: float
    ssim: float
    nrmse: float
    gain: float
    offset: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _check_pair(candidate: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cand = np.asarray(candidate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if cand.ndim != 2 or ref.ndim != 2:
        raise ValueError(f"metrics need 2D images, got {cand.shape} and {ref.shape}")
    if cand.shape != ref.shape:
        raise ValueError(f"candidate shape {cand.shape} differs from ground truth {ref.shape}")
    if not (np.all(np.isfinite(cand)) and np.all(np.isfinite(ref))):
        raise ValueError("images contain NaN or Inf")
    return cand, ref


def fit_affine_intensity(candidate: np.ndarray, reference: np.ndarray) -> AffineFit:
    """Least-squares gain and offset mapping ``candidate`` onto ``reference``.

    A constant candidate has no gain to fit; it is mapped to the reference mean (gain 0), which
    is the best any constant can do and keeps the metrics finite.
    """
    cand, ref = _check_pair(candidate, reference)
    c = cand.ravel() - cand.mean()
    r = ref.ravel() - ref.mean()
    var = float(c @ c)
    gain = float(c @ r) / var if var > 0 else 0.0
    return AffineFit(gain=gain, offset=float(ref.mean() - gain * cand.mean()))


def score_image(candidate: np.ndarray, reference: np.ndarray, *, fit: bool = True) -> ImageScores:
    """PSNR (dB), SSIM (Gaussian window, σ = 1.5 as in Wang et al. 2004) and NRMSE of ``candidate``.

    The data range for PSNR/SSIM is the ground truth's (max − min), fixed per image so every
    method is scored on the same scale. NRMSE is normalised by the ground truth's Euclidean norm
    (scikit-image's default), after the affine fit.
    """
    cand, ref = _check_pair(candidate, reference)
    affine = fit_affine_intensity(cand, ref) if fit else AffineFit(1.0, 0.0)
    fitted = affine.apply(cand)
    data_range = float(ref.max() - ref.min())
    if data_range <= 0:
        raise ValueError("ground truth is constant; PSNR/SSIM are undefined")
    mse = float(np.mean((fitted - ref) ** 2))
    psnr = float("inf") if mse == 0 else float(peak_signal_noise_ratio(ref, fitted, data_range=data_range))
    ssim = float(structural_similarity(ref, fitted, data_range=data_range, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))
    nrmse = float(normalized_root_mse(ref, fitted, normalization="euclidean"))
    return ImageScores(psnr=psnr, ssim=ssim, nrmse=nrmse, gain=affine.gain, offset=affine.offset)


@dataclass(frozen=True)
class Spread:
    """Summary of one metric over a test set: the report shows mean ± std and the median."""

    mean: float
    std: float
    median: float
    min: float
    max: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarise(values: Iterable[float]) -> Spread:
    """Mean, sample std (0 for a single image), median and range of finite ``values``."""
    arr = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        nan = float("nan")
        return Spread(nan, nan, nan, nan, nan, 0)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return Spread(float(arr.mean()), std, float(np.median(arr)), float(arr.min()), float(arr.max()),
                  int(arr.size))


def aggregate(per_image: Iterable[Mapping[str, ImageScores]]) -> dict[str, dict[str, Spread]]:
    """Turn ``[{method: scores}, ...]`` (one dict per test image) into ``{method: {metric: Spread}}``."""
    collected: dict[str, dict[str, list[float]]] = {}
    for image_scores in per_image:
        for method, scores in image_scores.items():
            bucket = collected.setdefault(method, {m: [] for m in METRIC_NAMES})
            for metric in METRIC_NAMES:
                bucket[metric].append(getattr(scores, metric))
    return {method: {metric: summarise(vals) for metric, vals in metrics.items()}
            for method, metrics in collected.items()}
