"""The paper's pair preparation, end to end, for one field of view.

background → resample LR to the HR pixel size → global NCC match (+ 2D Gaussian peak) →
pyramidal elastic registration (skipped for drift-only modalities such as confocal → STED) →
crop 10 px borders → float32. Registration is estimated on background-subtracted copies, but
the *raw* counts are what get warped and returned, so the global normalisation stored for the
model card (offset = background, scale) still maps raw camera counts to network input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .background import estimate_background, subtract_background
from .elastic import ElasticResult, elastic_register, warp
from .global_match import GlobalShift, global_shift
from .resample import resample_to_hr


@dataclass
class QualityGate:
    """Thresholds a registered pair must meet to enter the training set."""

    min_correlation: float = 0.5       # Pearson r of registered LR vs HR (background removed)
    max_residual_shift_px: float = 0.5  # RMS of the last elastic correction


@dataclass
class RegisteredPair:
    lr: np.ndarray                 # float32 raw LR counts on the HR grid, registered, cropped
    hr: np.ndarray                 # float32 raw HR counts, cropped
    background_lr: float
    background_hr: float
    global_shift: GlobalShift
    displacement: np.ndarray       # (2, H, W) total u(x) on the uncropped HR grid
    elastic: ElasticResult | None
    correlation_before: float
    correlation_global: float
    correlation: float             # after the full pipeline
    residual_shift_px: float
    crop: int
    accepted: bool = True
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "global_shift_yx_px": list(self.global_shift.shift_yx),
            "ncc_peak": self.global_shift.peak,
            "correlation_before": self.correlation_before,
            "correlation_global": self.correlation_global,
            "correlation": self.correlation,
            "residual_shift_px": self.residual_shift_px,
            "elastic_iterations": self.elastic.iterations if self.elastic else 0,
            "background_lr": self.background_lr,
            "background_hr": self.background_hr,
            "accepted": self.accepted,
            "reasons": self.reasons,
        }


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def register_pair(lr: np.ndarray, hr: np.ndarray, lr_pixel_size_um: float, hr_pixel_size_um: float, *,
                  elastic: bool = True, crop: int = 10, gate: QualityGate | None = None,
                  max_global_shift_px: int = 32, start_block: int = 256, stop_block: int = 64,
                  shrink: float = 1.2, iterations_per_level: int = 5, tolerance_px: float = 0.2) -> RegisteredPair:
    """Register one LR/HR field of view onto the HR grid (see module docstring for the steps)."""
    lr = np.asarray(lr)
    hr = np.asarray(hr)
    if lr.ndim != 2 or hr.ndim != 2:
        raise ValueError(f"register_pair needs 2D images, got {lr.shape} and {hr.shape}")
    hr_f = hr.astype(np.float32)
    lr_up = resample_to_hr(lr, lr_pixel_size_um, hr_pixel_size_um, hr_shape=hr.shape)
    if lr_up.shape != hr.shape:
        raise ValueError(f"LR {lr.shape} at {lr_pixel_size_um} µm does not cover HR {hr.shape} at {hr_pixel_size_um} µm")
    bg_lr = estimate_background(lr)
    bg_hr = estimate_background(hr)
    ref = subtract_background(hr_f, bg_hr)
    mov = subtract_background(lr_up, bg_lr)

    shift = global_shift(ref, mov, max_shift=max_global_shift_px)
    u = np.empty((2, *hr.shape), dtype=np.float32)
    u[0], u[1] = shift.shift_yx
    result = None
    if elastic:
        result = elastic_register(ref, mov, u, start_block=start_block, stop_block=stop_block, shrink=shrink,
                                  iterations_per_level=iterations_per_level, tolerance_px=tolerance_px)
        u = result.displacement
    inner = (slice(crop, hr.shape[0] - crop), slice(crop, hr.shape[1] - crop))
    registered = warp(lr_up, u, order=3)
    corr_before = pearson(mov[inner], ref[inner])
    corr_global = pearson(warp(mov, np.broadcast_to(np.array(shift.shift_yx, np.float32)[:, None, None], u.shape))[inner],
                          ref[inner])
    corr_after = pearson(subtract_background(registered, bg_lr)[inner], ref[inner])
    residual = result.last_update_rms_px if result else 0.0
    pair = RegisteredPair(registered[inner].copy(), hr_f[inner].copy(), bg_lr, bg_hr, shift, u, result,
                          corr_before, corr_global, corr_after, residual, crop)
    gate = gate or QualityGate()
    if corr_after < gate.min_correlation:
        pair.reasons.append(f"correlation {corr_after:.3f} < {gate.min_correlation}")
    if residual > gate.max_residual_shift_px:
        pair.reasons.append(f"residual shift {residual:.2f} px > {gate.max_residual_shift_px}")
    pair.accepted = not pair.reasons
    return pair
