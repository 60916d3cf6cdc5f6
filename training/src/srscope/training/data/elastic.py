"""Pyramidal elastic registration (an iterative NanoJ-style block-matching scheme).

The paper feeds globally matched pairs into "an iterative version of the registration module
in Fiji Plugin NanoJ, with a shrinking block size": block-wise cross-correlation gives a shift
per block, the shifts are smoothed into a dense field, the moving image is warped, and this
repeats from 256 × 256 blocks down to 64 × 64, shrinking 1.2× every 5 iterations, with a 0.2 px
shift tolerance. Blocks without structure (empty background) get no vote: their shift is filled
in from neighbours, so they cannot drag the field.

Field convention (as everywhere in srscope): ``registered(x) = moving(x + u(x))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

#: Gaussian smoothing of the block-shift grid, in blocks (blocks overlap by half)
SMOOTH_BLOCKS = 1.0


@dataclass
class BlockShifts:
    """Per-block shift estimates on a regular grid of block centres (HR pixels)."""

    centres_y: np.ndarray   # (gy,)
    centres_x: np.ndarray   # (gx,)
    shift: np.ndarray       # (2, gy, gx): moving(x + shift) ≈ reference(x) inside the block
    peak: np.ndarray        # (gy, gx) NCC at the optimum
    valid: np.ndarray       # (gy, gx) bool


@dataclass
class ElasticResult:
    displacement: np.ndarray                   # (2, H, W) float32, u(x)
    iterations: int
    block_sizes: list[int] = field(default_factory=list)
    last_update_rms_px: float = 0.0            # size of the final correction: the residual shift
    history: list[dict] = field(default_factory=list)


def block_shifts(reference: np.ndarray, moving: np.ndarray, block: int, *, overlap: float = 0.5,
                 min_ncc: float = 0.3, min_contrast: float | None = None, exact_below: int = 128) -> BlockShifts:
    """Batched FFT NCC of every block pair; integer peak, then (for blocks ≤ ``exact_below``) the sub-pixel peak of the exact
    correlation on a 1/10 px grid (see :func:`_refine_peak`). Blocks with a weak peak, a peak at
    the search limit, or no contrast (empty background) are marked invalid."""
    h, w = reference.shape
    block = int(min(block, h, w))
    stride = max(round(block * (1.0 - overlap)), 1)
    ys = _starts(h, block, stride)
    xs = _starts(w, block, stride)
    ref_blocks = _blocks(reference, ys, xs, block)
    mov_blocks = _blocks(moving, ys, xs, block)
    n = ref_blocks.shape[0]
    contrast = ref_blocks.std(axis=(1, 2))
    # Both blocks are tapered (so the circular FFT correlation sees no edges) and the result is
    # divided by the window's own autocorrelation: otherwise the overlap of the two windows,
    # largest at zero shift, pulls every estimate towards zero and convergence crawls.
    win = _hann(block)
    a = _standardise(ref_blocks) * win
    b = _standardise(mov_blocks) * win
    cross = np.conj(sfft.rfft2(a, axes=(-2, -1), workers=-1)) * sfft.rfft2(b, axes=(-2, -1), workers=-1)
    corr = sfft.irfft2(cross, s=(block, block), axes=(-2, -1), workers=-1)
    corr /= _window_overlap(block)[None]
    corr = np.fft.fftshift(corr, axes=(-2, -1))
    c = block // 2
    r = max(block // 4, 2)
    sub = corr[:, c - r: c + r + 1, c - r: c + r + 1]
    flat = sub.reshape(n, -1)
    idx = np.argmax(flat, axis=1)
    iy, ix = np.unravel_index(idx, sub.shape[1:])
    peak = flat[np.arange(n), idx]
    if block <= exact_below:
        dy, dx = _refine_peak(cross, block, iy - r, ix - r)
    else:  # coarse levels only need to get close: 3-point Gaussian on the integer grid
        k = np.arange(n)
        iy_c, ix_c = np.clip(iy, 1, 2 * r - 1), np.clip(ix, 1, 2 * r - 1)
        dy = _gauss3(sub[k, iy_c - 1, ix_c], sub[k, iy_c, ix_c], sub[k, iy_c + 1, ix_c]) + iy_c - r
        dx = _gauss3(sub[k, iy_c, ix_c - 1], sub[k, iy_c, ix_c], sub[k, iy_c, ix_c + 1]) + ix_c - r
    on_edge = (iy == 0) | (iy == 2 * r) | (ix == 0) | (ix == 2 * r)
    if min_contrast is None:
        min_contrast = 0.25 * float(np.median(contrast)) if n else 0.0
    valid = (peak >= min_ncc) & ~on_edge & (contrast > min_contrast)
    shape = (len(ys), len(xs))
    return BlockShifts(ys + (block - 1) / 2.0, xs + (block - 1) / 2.0,
                       np.stack([dy, dx]).reshape(2, *shape), peak.reshape(shape), valid.reshape(shape))


def dense_field(shifts: BlockShifts, shape: tuple[int, int], smooth_blocks: float = SMOOTH_BLOCKS) -> np.ndarray:
    """Block shifts → smooth dense field (2, H, W).

    The field is split into an affine part (least squares over the valid blocks, with outlier
    blocks dropped) and a residual. The affine part is evaluated exactly everywhere, so the
    image borders, half a block beyond the outermost block centres, get the rotation/scale
    they need; the residual is smoothed by normalised Gaussian convolution (invalid blocks
    filled from valid neighbours) and interpolated linearly between block centres, continued
    linearly to the borders.
    """
    valid = shifts.valid.copy()
    if valid.sum() == 0:
        return np.zeros((2, *shape), dtype=np.float32)
    gy, gx = np.meshgrid(shifts.centres_y, shifts.centres_x, indexing="ij")
    affine = _fit_affine(gy, gx, shifts.shift, valid)
    residual = shifts.shift - _eval_affine(affine, gy, gx)
    sigma = max(smooth_blocks, 0.5)
    norm = ndimage.gaussian_filter(valid.astype(np.float64), sigma, mode="constant")
    coarse = []
    for comp in residual:
        num = ndimage.gaussian_filter(np.where(valid, comp, 0.0), sigma, mode="constant")
        coarse.append(np.where(norm > 1e-3, num / np.maximum(norm, 1e-12), 0.0))
    ay = _interp_matrix(shifts.centres_y, shape[0])
    ax = _interp_matrix(shifts.centres_x, shape[1])
    yy = np.arange(shape[0], dtype=np.float32)[:, None]
    xx = np.arange(shape[1], dtype=np.float32)[None, :]
    dense = np.stack([(ay @ c.astype(np.float32) @ ax.T) for c in coarse])
    dense[0] += affine[0, 0] + affine[0, 1] * yy + affine[0, 2] * xx
    dense[1] += affine[1, 0] + affine[1, 1] * yy + affine[1, 2] * xx
    return dense.astype(np.float32)


def _fit_affine(gy: np.ndarray, gx: np.ndarray, shift: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(2, 3) coefficients [c, a_y, a_x] per component; constant only when too few blocks."""
    keep = valid.copy()
    coef = np.zeros((2, 3))
    for _ in range(2):
        y, x = gy[keep], gx[keep]
        if keep.sum() >= 6:
            design = np.stack([np.ones_like(y), y, x], axis=1)
            for k in range(2):
                coef[k] = np.linalg.lstsq(design, shift[k][keep], rcond=None)[0]
        else:
            coef[:, 0] = [shift[k][keep].mean() for k in range(2)]
            coef[:, 1:] = 0
            break
        dev = np.hypot(*(shift - _eval_affine(coef, gy, gx)))
        mad = np.median(dev[keep]) + 1e-6
        keep = valid & (dev < 4.0 * mad + 0.1)
    return coef


def _eval_affine(coef: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    return np.stack([coef[k, 0] + coef[k, 1] * gy + coef[k, 2] * gx for k in range(2)])


def warp(image: np.ndarray, displacement: np.ndarray, order: int = 1) -> np.ndarray:
    """``image(x + u(x))`` on the same grid, float32 (edges clamp)."""
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return ndimage.map_coordinates(np.asarray(image, dtype=np.float32),
                                   [yy + displacement[0], xx + displacement[1]],
                                   order=order, mode="nearest").astype(np.float32)


def pyramid_block_sizes(start: int = 256, stop: int = 64, shrink: float = 1.2, max_size: int | None = None) -> list[int]:
    sizes = []
    b = float(start)
    while round(b) >= stop:
        sizes.append(round(b))
        b /= shrink
    if sizes and sizes[-1] > stop:  # the paper's pyramid ends *at* the stop size
        sizes.append(stop)
    if max_size is not None:
        sizes = [s for s in sizes if s <= max_size] or [min(stop, max_size)]
    return sizes


def elastic_register(reference: np.ndarray, moving: np.ndarray, initial: np.ndarray | None = None, *,
                     start_block: int = 256, stop_block: int = 64, shrink: float = 1.2,
                     iterations_per_level: int = 5, tolerance_px: float = 0.2,
                     overlap: float = 0.5) -> ElasticResult:
    """Refine ``initial`` (e.g. the global shift as a constant field) so that
    ``moving(x + u(x)) ≈ reference(x)``. Each level iterates until the largest block correction
    falls under ``tolerance_px`` (or ``iterations_per_level`` is reached), then shrinks the block."""
    ref = np.asarray(reference, dtype=np.float32)
    mov = np.asarray(moving, dtype=np.float32)
    u = np.zeros((2, *ref.shape), dtype=np.float32) if initial is None else initial.astype(np.float32).copy()
    sizes = pyramid_block_sizes(start_block, stop_block, shrink, max_size=min(ref.shape) // 2)
    result = ElasticResult(u, 0, sizes)
    for size in sizes:
        for _ in range(iterations_per_level):
            est = block_shifts(ref, warp(mov, u), size, overlap=overlap)
            update = dense_field(est, ref.shape)
            u += update
            result.iterations += 1
            moved = est.shift[:, est.valid]
            biggest = float(np.max(np.hypot(*moved))) if moved.size else 0.0
            rms = float(np.sqrt(np.mean(np.sum(moved**2, axis=0)))) if moved.size else 0.0
            result.history.append({"block": size, "max_update_px": biggest, "rms_update_px": rms,
                                   "valid_blocks": int(est.valid.sum()), "blocks": int(est.valid.size)})
            result.last_update_rms_px = rms
            if rms < tolerance_px:
                break
    result.displacement = u
    return result


def _starts(n: int, block: int, stride: int) -> np.ndarray:
    """Block origins spread evenly from one border to the other (the last block is flush with
    the far border, so no strip of the image is left without a vote)."""
    count = max(int(np.ceil((n - block) / stride)) + 1, 1)
    return np.round(np.linspace(0, n - block, count)).astype(np.int64)


def _blocks(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, block: int) -> np.ndarray:
    view = np.lib.stride_tricks.sliding_window_view(np.asarray(image, dtype=np.float32), (block, block))
    return view[ys[:, None], xs[None, :]].reshape(-1, block, block)


def _standardise(stack: np.ndarray) -> np.ndarray:
    mean = stack.mean(axis=(1, 2), keepdims=True)
    std = stack.std(axis=(1, 2), keepdims=True)
    return (stack - mean) / np.where(std > 0, std, 1.0)


@lru_cache(maxsize=16)
def _window_overlap(n: int) -> np.ndarray:
    """Σ_x w(x)·w(x+d) for every circular shift d (unshifted FFT order), floored so shifts
    near half a block, where the windows barely overlap, cannot blow up."""
    w = _hann(n)
    overlap = sfft.irfft2(np.abs(sfft.rfft2(w)) ** 2, s=(n, n))
    return np.maximum(overlap, 0.05 * overlap.max()).astype(np.float32)


def _hann(n: int) -> np.ndarray:
    w = np.hanning(n + 2)[1:-1].astype(np.float32)
    return w[:, None] * w[None, :]


def _refine_peak(cross: np.ndarray, n: int, iy: np.ndarray, ix: np.ndarray,
                 upsample: int = 10, half_width: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel maximum of each block's cross-correlation, evaluated exactly (no interpolation
    model) on a 1/``upsample`` px grid around the integer peak by a matrix DFT, then refined by a
    3-point Gaussian on that fine grid. A 3-point fit on the coarse grid alone is biased towards
    whole pixels when the correlation peak is broad (smooth widefield images)."""
    m = int(2 * half_width * upsample) + 1
    offsets = (np.arange(m) - (m - 1) / 2.0) / upsample
    freqs = sfft.fftfreq(n)
    rfreqs = sfft.rfftfreq(n)
    # ``cross`` is the rfft half spectrum: a real signal's inverse DFT counts every column but
    # the first (and the Nyquist one, for even n) twice.
    twice = np.full(len(rfreqs), 2.0, dtype=np.float32)
    twice[0] = 1.0
    if n % 2 == 0:
        twice[-1] = 1.0
    power_1d = (np.abs(sfft.fft(np.hanning(n + 2)[1:-1])) ** 2).astype(np.complex64)  # the Hann is separable
    ys = iy[:, None] + offsets[None, :]                       # (k, m)
    xs = ix[:, None] + offsets[None, :]
    ky = np.exp(2j * np.pi * ys[:, :, None] * freqs[None, None, :]).astype(np.complex64)   # (k, m, n)
    kx = np.exp(2j * np.pi * rfreqs[None, :, None] * xs[:, None, :]).astype(np.complex64)  # (k, n//2+1, m)
    fine = np.real(ky @ (cross * twice[None, None, :]).astype(np.complex64) @ kx) / (n * n)
    kx_full = np.exp(2j * np.pi * freqs[None, :, None] * xs[:, None, :]).astype(np.complex64)
    overlap_y = np.real(ky @ power_1d) / n                                   # (k, m)
    overlap_x = np.real(power_1d @ kx_full) / n                              # (k, m)
    fine /= np.maximum(overlap_y[:, :, None] * overlap_x[:, None, :], 1e-6)
    k = np.arange(len(iy))
    flat = fine.reshape(len(iy), -1)
    best = np.argmax(flat, axis=1)
    by, bx = np.unravel_index(best, (m, m))
    by_c = np.clip(by, 1, m - 2)
    bx_c = np.clip(bx, 1, m - 2)
    oy = _gauss3(fine[k, by_c - 1, bx_c], fine[k, by_c, bx_c], fine[k, by_c + 1, bx_c]) + by_c
    ox = _gauss3(fine[k, by_c, bx_c - 1], fine[k, by_c, bx_c], fine[k, by_c, bx_c + 1]) + bx_c
    return ys[k, 0] + oy / upsample, xs[k, 0] + ox / upsample


def _gauss3(left: np.ndarray, centre: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Sub-sample offset of the peak of a Gaussian through three samples; falls back to a
    parabola where a sample is non-positive (the log is undefined)."""
    positive = (left > 0) & (centre > 0) & (right > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ll, lc, lr = (np.log(np.where(positive, v, 1.0)) for v in (left, centre, right))
        g = 0.5 * (ll - lr) / (ll - 2 * lc + lr)
        p = 0.5 * (left - right) / (left - 2 * centre + right)
    off = np.where(positive, g, p)
    return np.clip(np.nan_to_num(off), -0.5, 0.5)


def _interp_matrix(centres: np.ndarray, n: int) -> np.ndarray:
    """(n, len(centres)) matrix doing 1D linear interpolation between block centres, continued
    linearly over the half block between the outermost centres and the image border."""
    m = len(centres)
    pos = np.arange(n, dtype=np.float64)
    out = np.zeros((n, m), dtype=np.float64)
    if m == 1:
        out[:, 0] = 1.0
        return out.astype(np.float32)
    j = np.clip(np.searchsorted(centres, pos) - 1, 0, m - 2)
    t = (pos - centres[j]) / (centres[j + 1] - centres[j])
    rows = np.arange(n)
    out[rows, j] = 1.0 - t
    out[rows, j + 1] = t
    return out.astype(np.float32)
