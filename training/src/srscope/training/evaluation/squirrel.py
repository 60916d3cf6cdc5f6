"""Artifact analysis the NanoJ-SQUIRREL way (Culley et al., Nat. Methods 2018).

A faithful super-resolved image, blurred back to the input's resolution and intensity-matched,
must reproduce the input. SQUIRREL blurs with a Gaussian resolution-scaling function (RSF) whose
width and the affine intensity map are both optimised, then reports the resolution-scaled error
(RSE, root-mean-square difference in input intensity units) and the resolution-scaled Pearson
coefficient (RSP), and maps the per-pixel error. It needs no ground truth, so it is the check a
user can run on real data; on simulated data the ground truth's own RSE/RSP set the floor a
perfect output could reach (the RSF is only Gaussian, and the input has noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.optimize import minimize_scalar
from srscope.training.evaluation.metrics import fit_affine_intensity


def block_mean(image: np.ndarray, scale: int) -> np.ndarray:
    """Average ``scale × scale`` blocks: what a camera pixel ``scale`` times larger integrates."""
    img = np.asarray(image, dtype=np.float64)
    if scale == 1:
        return img
    h, w = (img.shape[0] // scale) * scale, (img.shape[1] // scale) * scale
    return img[:h, :w].reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3))


@dataclass(frozen=True)
class SquirrelResult:
    """RSE (input units), RSE relative to the input's dynamic range, RSP, fitted RSF and the error map."""

    rse: float
    rse_relative: float
    rsp: float
    rsf_sigma_px: float
    gain: float
    offset: float
    error_map: np.ndarray
    reblurred: np.ndarray

    def summary(self) -> dict[str, float]:
        return {"rse": self.rse, "rse_relative": self.rse_relative, "rsp": self.rsp,
                "rsf_sigma_px": self.rsf_sigma_px}


def _reblur(super_resolved: np.ndarray, sigma: float, scale: int) -> np.ndarray:
    blurred = gaussian_filter(super_resolved, sigma, mode="reflect") if sigma > 1e-3 else super_resolved
    return block_mean(blurred, scale)


def _central(ref: np.ndarray, sr: np.ndarray, scale: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Central ``size``² reference pixels and the super-resolved pixels covering them."""
    h, w = min(size, ref.shape[0]), min(size, ref.shape[1])
    r0, c0 = (ref.shape[0] - h) // 2, (ref.shape[1] - w) // 2
    return (ref[r0: r0 + h, c0: c0 + w],
            sr[r0 * scale: (r0 + h) * scale, c0 * scale: (c0 + w) * scale])


def squirrel(reference: np.ndarray, super_resolved: np.ndarray, scale: int, *,
             max_sigma_px: float | None = None, search_size: int = 256) -> SquirrelResult:
    """Compare ``super_resolved`` (on a grid ``scale``× finer) with the low-resolution ``reference``.

    The RSF σ (in super-resolved pixels) minimising the RSE is found by bounded scalar search in
    [0, ``max_sigma_px``] (default 8·scale); for each σ the gain and offset are the least-squares
    fit, so neither the output's intensity scale nor its background decides the score. The σ
    search runs on the central ``search_size``² reference pixels (one RSF per image, as in
    SQUIRREL, needs no more); RSE, RSP and the map then use the whole image.
    """
    ref = np.asarray(reference, dtype=np.float64)
    sr = np.asarray(super_resolved, dtype=np.float64)
    if ref.ndim != 2 or sr.ndim != 2:
        raise ValueError(f"SQUIRREL needs 2D images, got {ref.shape} and {sr.shape}")
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    expected = (ref.shape[0] * scale, ref.shape[1] * scale)
    if sr.shape != expected:
        raise ValueError(f"super-resolved shape {sr.shape} is not reference {ref.shape} × {scale} = {expected}")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(sr))):
        raise ValueError("images contain NaN or Inf")
    upper = float(max_sigma_px if max_sigma_px is not None else 8.0 * scale)

    ref_search, sr_search = _central(ref, sr, scale, search_size)

    def rse_for(sigma: float) -> float:
        blurred = _reblur(sr_search, sigma, scale)
        fit = fit_affine_intensity(blurred, ref_search)
        return float(np.sqrt(np.mean((ref_search - fit.apply(blurred)) ** 2)))

    result = minimize_scalar(rse_for, bounds=(0.0, upper), method="bounded", options={"xatol": 1e-3})
    sigma = float(result.x)
    if rse_for(0.0) <= result.fun:  # the bounded search never evaluates the exact boundary
        sigma = 0.0
    blurred = _reblur(sr, sigma, scale)
    fit = fit_affine_intensity(blurred, ref)
    matched = fit.apply(blurred)
    error = np.abs(ref - matched)
    rse = float(np.sqrt(np.mean((ref - matched) ** 2)))
    span = float(ref.max() - ref.min())
    a, b = ref.ravel() - ref.mean(), blurred.ravel() - blurred.mean()
    denom = float(np.sqrt((a @ a) * (b @ b)))
    rsp = float(a @ b) / denom if denom > 0 else 0.0
    return SquirrelResult(rse=rse, rse_relative=rse / span if span > 0 else float("nan"), rsp=rsp,
                          rsf_sigma_px=sigma, gain=fit.gain, offset=fit.offset,
                          error_map=error.astype(np.float32), reblurred=matched.astype(np.float32))
