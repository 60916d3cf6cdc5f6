"""Per-plane consistency score: does this super-resolved plane still explain the input it came from?

A GAN can invent structure. SQUIRREL (Culley et al. 2018, used offline by Wang et al. 2019)
checks an output without ground truth: degrade it back to the input's resolution and compare. The
runtime does that for every plane, on the fly, with the degradation the card carries
(:class:`~srscope.runtime.card.DegradationModel`, fitted on the model's training pairs at export):

1. **re-degrade**: correlate the output with the card's kernel and sample it at the input pixel
   centres (output coordinate ``i·s + (s − 1)/2``), exactly, as ``s²`` FFT correlations of the
   output's phase images on the input grid (:func:`redegrade`);
2. **affine fit** of the re-degraded plane to the input (least squares gain and offset, so neither
   the intensity policy nor a background decides the score), then
   - ``rsp``: Pearson correlation of the two (SQUIRREL's RSP),
   - ``rse``: RMS error after the fit, relative to the input's robust range P1–P99.8 (camera
     independent, like the percentile intensity rule),
   - ``error_fraction``: the fraction of input pixels whose *local* relative error (RMS in a
     Gaussian window) exceeds the card's ``error_threshold``, the level only 1 % of in-domain
     pixels exceed,
   - ``gain``: the fitted gain (≈ 1 when the output stays in the input's counts),
   - ``rse_noise``: the RMS error in units of the input's own noise σ (≈ 1 when the output explains
     everything but the noise; photon-starved and bright planes become comparable);
3. **input-side features**, which catch what re-degradation cannot (an input the model should
   never have seen): ``noise`` (the noise σ relative to the robust range, estimated from the finest
   diagonal Haar detail, which a Nyquist-sampled microscope image leaves to noise),
   ``saturation`` (the fraction of pixels at the plane's maximum) and
   ``band_0`` … ``band_{B−1}`` (log10 of the input's power in radial frequency bands over the power
   its noise alone would give, :func:`band_snr`: pure noise, a confocal-sampled model fed
   widefield data, or a defocused plane has another spectrum).

Each feature has an in-domain ``[lo, hi]`` in the card, calibrated on held-out fields at export;
:func:`score_plane` flags the plane when any feature leaves its range and names them in
``reasons``. Cards calibrated since run 5 also carry a joint **domain model**
(:class:`~srscope.runtime.card.DomainModel`): the calibration planes' standardised feature
vectors, against which a plane's k-nearest-neighbour distance is its ``domain`` novelty (reason
``domain``). It catches combinations no single range does, e.g. the confocal→STED model's input
with widefield structure at every frequency but a calibrated noise level. ``score`` is the
largest excursion (ranges: in units of the range's width; domain: in units of its threshold;
negative inside everything), so it ranks planes for a ROC.

The score costs a few percent of inference on CPU (``bench/bench_consistency.py``): float32,
``s² + 1`` FFTs of input size for the re-degradation, one of (at most) a central 512² crop of
the input for the spectrum, and the local-error window on a 2 × 2-binned grid (the card's
``error_window``; older cards keep the full-resolution Gaussian they were calibrated with).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy.ndimage import gaussian_filter
from srscope.runtime.card import DegradationModel, DomainModel
from srscope.runtime.errors import UserError

#: Radial bands of the input's power spectrum, as fractions of the Nyquist frequency (edges).
BAND_EDGES: tuple[float, ...] = (0.02, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0)
BAND_FEATURES: tuple[str, ...] = tuple(f"band_{i}" for i in range(len(BAND_EDGES) - 1))
#: Which side of its range flags each feature: "low", "high" or "both".
SIDES: dict[str, str] = {"rsp": "low", "rse": "high", "rse_noise": "high", "error_fraction": "high",
                         "gain": "both", "noise": "both", "saturation": "high",
                         **{name: "both" for name in BAND_FEATURES}}
FEATURES: tuple[str, ...] = tuple(SIDES)
#: Central crop (input pixels) the spectrum is taken on: enough for a stable estimate, bounded cost.
SPECTRUM_CROP = 512
#: Percentiles of the input's robust range (those of the percentile intensity rule).
RANGE_PERCENTILES = (1.0, 99.8)
#: Smallest range width of a feature, so a feature constant in calibration does not divide by 0.
MIN_WIDTH = 1e-6
#: Smallest calibrated spread of a feature: in-domain planes almost always have a single pixel at
#: their maximum, so without a floor two tied pixels would count as saturation.
MIN_SPREAD: dict[str, float] = {"saturation": 0.002}


class ConsistencyError(UserError):
    """The input and output of a plane cannot be scored together (shape, scale, content)."""


@dataclass(frozen=True)
class PlaneScore:
    """One plane's consistency score; ``flagged`` when any feature is outside its in-domain range.

    ``rse`` is relative to the input's P1–P99.8 range; ``rse_counts`` is the same in input counts.
    ``features`` holds every feature's value, ``reasons`` the names of those outside their range.
    """

    rsp: float
    rse: float
    rse_counts: float
    error_fraction: float
    gain: float
    offset: float
    score: float
    flagged: bool
    reasons: tuple[str, ...] = ()
    features: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The JSON-able summary stored with an output plane (``rsp, rse, error_fraction, flagged, reasons``)."""
        return {"rsp": self.rsp, "rse": self.rse, "error_fraction": self.error_fraction,
                "flagged": self.flagged, "reasons": list(self.reasons), "score": self.score}


def _phase_kernels(kernel: np.ndarray, scale: int) -> tuple[int, list[tuple[int, int, np.ndarray]]]:
    """The kernel split by the phase of the output grid each tap reads, on a common shift frame.

    Output pixel ``i`` reads ``image[i·s + c + u]`` with ``c = (s − n)/2``; writing
    ``c + u = δ·s + φ``, that is phase image ``image[φ::s]`` at ``i + δ``. Each phase pair
    ``(φy, φx)`` gets the taps that read it, at index ``δ + q`` (``q`` strides of padding cover
    every ``δ``), so the re-degraded plane is ``Σ_φ correlate(phase_φ, kernel_φ)``, evaluated at
    the input grid itself.
    """
    n = kernel.shape[0]
    c = (scale - n) // 2
    q = -(-(n + scale) // scale)
    delta = [(c + u) // scale + q for u in range(n)]
    phase = [(c + u) % scale for u in range(n)]
    out = []
    for py in range(scale):
        for px in range(scale):
            sub = np.zeros((2 * q + 1, 2 * q + 1), dtype=np.float64)
            for uy in (u for u in range(n) if phase[u] == py):
                for ux in (u for u in range(n) if phase[u] == px):
                    sub[delta[uy], delta[ux]] = kernel[uy, ux]
            if sub.any():
                out.append((py, px, sub))
    return q, out


_SPECTRA: dict[tuple, tuple[int, list[tuple[int, int, np.ndarray]]]] = {}


def _kernel_spectra(model: DegradationModel, shape: tuple[int, int]) -> tuple[int, list[tuple[int, int, np.ndarray]]]:
    """Conjugate spectra of the phase kernels at FFT ``shape`` (cached: a run reuses one shape)."""
    key = (model.kernel, model.scale, shape)
    if key not in _SPECTRA:
        q, phases = _phase_kernels(np.asarray(model.kernel, dtype=np.float64), model.scale)
        if len(_SPECTRA) > 8:
            _SPECTRA.clear()
        _SPECTRA[key] = (q, [(py, px, np.conj(sfft.rfft2(sub, shape)).astype(np.complex64)) for py, px, sub in phases])
    return _SPECTRA[key]


def redegrade(sr_output: np.ndarray, model: DegradationModel, lr_shape: tuple[int, int]) -> np.ndarray:
    """The output mapped to the input grid with the card's kernel (float32, shape ``lr_shape``).

    ``out[i, j] = Σ_{u,v} kernel[u, v] · sr[i·s + c + u, j·s + c + v]``, ``c = (s − n)/2``, with
    borders mirrored (``scipy.ndimage``'s ``reflect``). Computed exactly, for any kernel, as
    ``s²`` FFT correlations of the output's phase images on the *input* grid, summed in the
    frequency domain: ``s² + 1`` FFTs of input size, whatever the kernel's size or rank.
    """
    sr = np.asarray(sr_output, dtype=np.float32)
    s = model.scale
    q = -(-(len(model.kernel) + s) // s)
    padded = np.pad(sr, q * s, mode="symmetric")
    shape = (sfft.next_fast_len(lr_shape[0] + 2 * q + 1, real=True),
             sfft.next_fast_len(lr_shape[1] + 2 * q + 1, real=True))
    q, spectra = _kernel_spectra(model, shape)
    total = None
    for py, px, spectrum in spectra:
        term = sfft.rfft2(padded[py::s, px::s], shape, workers=-1) * spectrum
        total = term if total is None else total + term
    full = sfft.irfft2(total, shape, workers=-1)
    return np.ascontiguousarray(full[:lr_shape[0], :lr_shape[1]], dtype=np.float32)


def _checked(lr_input: np.ndarray, sr_output: np.ndarray, model: DegradationModel) -> tuple[np.ndarray, np.ndarray]:
    lr = np.asarray(lr_input)
    sr = np.asarray(sr_output)
    if lr.ndim != 2 or sr.ndim != 2:
        raise ConsistencyError(f"consistency score needs 2D planes, got input {lr.shape} and output {sr.shape}")
    expected = (lr.shape[0] * model.scale, lr.shape[1] * model.scale)
    if sr.shape != expected:
        raise ConsistencyError(f"output shape {sr.shape} is not input {lr.shape} × {model.scale} = {expected}")
    lr = lr.astype(np.float32, copy=False)
    sr = sr.astype(np.float32, copy=False)
    if not (np.all(np.isfinite(lr)) and np.all(np.isfinite(sr))):
        raise ConsistencyError("consistency score: input or output contains NaN/Inf")
    return lr, sr


def _robust_range(lr: np.ndarray) -> tuple[float, float]:
    step = max(1, int(np.sqrt(lr.size / 250_000)))  # percentiles of a strided sample: same range, less cost
    lo, hi = np.percentile(lr[::step, ::step], RANGE_PERCENTILES)
    span = float(hi - lo)
    return float(lo), span if span > 0 else max(abs(float(hi)), 1.0)


@dataclass(frozen=True)
class _Residual:
    residual: np.ndarray     # input − (gain·re-degraded output + offset), relative to the robust range
    rsp: float
    rse: float
    rse_counts: float
    gain: float
    offset: float
    noise: float             # the input's noise σ relative to its robust range
    noise_floor: float       # the plane-average noise RMS in counts (:func:`noise_rms`)


def _haar_diagonal(lr: np.ndarray) -> np.ndarray:
    """``(a − b − c + d)/2`` over each 2×2 block: white noise keeps its σ, and only the corner of the
    spectrum, beyond the optical cutoff of a Nyquist-sampled image, gets through."""
    h, w = (lr.shape[0] // 2) * 2, (lr.shape[1] // 2) * 2
    x = lr[:h, :w]
    return (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) * np.float32(0.5)


#: Detail coefficients the noise MAD is taken over at most (a strided sample of larger planes:
#: the median of 65k samples is within ~0.5 % of the full one, at a fraction of the sort).
NOISE_SAMPLES = 65_536


def noise_sigma(lr: np.ndarray) -> float:
    """Robust noise σ of a plane (counts): the MAD of its finest diagonal Haar detail (the typical,
    background-dominated noise)."""
    d = _haar_diagonal(lr)
    step = max(1, int(np.sqrt(d.size / NOISE_SAMPLES)))
    d = d[::step, ::step]
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def noise_rms(lr: np.ndarray) -> float:
    """RMS of the same detail: the plane-average noise variance, photon noise of bright structure
    included, i.e. the level white noise would have in the plane's power spectrum."""
    d = _haar_diagonal(lr).ravel()
    d = d - np.float32(d.mean())
    return float(np.sqrt(np.dot(d, d) / max(d.size, 1)))


def _residual(lr: np.ndarray, sr: np.ndarray, model: DegradationModel) -> _Residual:
    blurred = redegrade(sr, model, lr.shape)
    b = model.border_px if min(lr.shape) > 4 * model.border_px else 0
    inner = (slice(b, lr.shape[0] - b), slice(b, lr.shape[1] - b))
    # centred float32 (the means, in float64, taken off first), BLAS dot products. The sums stay
    # accurate enough for the residual sum below: float32 dots lose ~1e-6 relative per term
    # summed pairwise, and in-domain fits leave 1 − rsp² ≳ 1e-3 of ``syy``.
    xm, ym = float(blurred[inner].mean(dtype=np.float64)), float(lr[inner].mean(dtype=np.float64))
    xc = (blurred[inner] - np.float32(xm)).ravel()
    yc = (lr[inner] - np.float32(ym)).ravel()
    sxx, syy, sxy = float(np.dot(xc, xc)), float(np.dot(yc, yc)), float(np.dot(xc, yc))
    gain = sxy / sxx if sxx > 0 else 0.0
    offset = ym - gain * xm
    rsp = sxy / np.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0
    _, span = _robust_range(lr)
    # (lr − (gain·blurred + offset)) / span, in place on one float32 array
    residual = blurred
    residual *= np.float32(-gain)
    residual += lr
    residual -= np.float32(offset)
    residual /= np.float32(span)
    # the least-squares residual sum of squares, from the sums already taken (no second pass)
    rss = max(syy - (sxy * sxy / sxx if sxx > 0 else 0.0), 0.0)
    rse = float(np.sqrt(rss / max(yc.size, 1))) / span
    noise = noise_sigma(lr)
    return _Residual(residual, float(rsp), rse, rse * span, float(gain), float(offset), noise / span, noise_rms(lr))


def local_error(residual: np.ndarray, sigma_px: float, window: str = "gaussian") -> np.ndarray:
    """Local RMS of the relative residual in a window of ``sigma_px`` input pixels, on the input grid.

    ``binned`` (the card's :attr:`~srscope.runtime.card.DegradationModel.error_window` since v2 of
    the check) averages the squared residual over 2 × 2 pixels first and filters that quarter-size
    grid with σ/2 (σ in input pixels), then repeats each value over its 2 × 2 block: the block
    adds 1/4 px² of variance per axis to σ² (2.25 px² at σ = 1.5, an effective window 5 % wider)
    at a quarter of the filtering cost, which is most of the score's budget on large frames. Odd
    edges repeat their last row/column.
    """
    if window == "gaussian":
        return np.sqrt(gaussian_filter(np.square(residual, dtype=np.float32), sigma_px, mode="reflect"))
    if window != "binned":
        raise ConsistencyError(f"unknown local-error window {window!r}")
    h, w = residual.shape
    coarse = np.sqrt(_binned_mean_square(residual, sigma_px))
    return np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:h, :w]


def _binned_mean_square(residual: np.ndarray, sigma_px: float) -> np.ndarray:
    """The ``binned`` window's local mean square on the 2 × 2-binned grid (odd edges repeated)."""
    squared = np.square(residual, dtype=np.float32)
    h, w = squared.shape
    even = np.pad(squared, ((0, h % 2), (0, w % 2)), mode="edge")
    binned = even.reshape(even.shape[0] // 2, 2, even.shape[1] // 2, 2).mean(axis=(1, 3), dtype=np.float32)
    return gaussian_filter(binned, sigma_px / 2.0, mode="reflect")


def _error_fraction(residual: np.ndarray, model: DegradationModel) -> float:
    """The fraction of (border-trimmed) input pixels whose local error exceeds the card's threshold.

    With the ``binned`` window it is counted on the quarter-size grid (each cell stands for its
    four pixels), so the full-size map is never built for the score.
    """
    b = model.border_px if min(residual.shape) > 4 * model.border_px else 0
    if model.error_window == "binned":
        # compare squared values: no square root over the grid
        coarse = _binned_mean_square(residual, model.error_sigma_px)
        cb = -(-b // 2)
        inner = coarse[cb:coarse.shape[0] - cb, cb:coarse.shape[1] - cb]
        return float(np.count_nonzero(inner > np.float32(model.error_threshold) ** 2)) / max(inner.size, 1)
    error = local_error(residual, model.error_sigma_px)
    inner = error[b:error.shape[0] - b, b:error.shape[1] - b]
    return float(np.count_nonzero(inner > model.error_threshold)) / max(inner.size, 1)


def saturation_fraction(lr: np.ndarray) -> float:
    """The fraction of pixels at the plane's maximum: a clipped camera or a saturated detector."""
    top = float(lr.max())
    if top <= float(lr.min()):
        return 1.0
    return float(np.count_nonzero(lr >= top)) / lr.size


def band_snr(lr: np.ndarray, noise: float) -> np.ndarray:
    """log10 of the input's mean power in each radial band of :data:`BAND_EDGES` (Nyquist = 1),
    relative to the power white noise of RMS ``noise`` (counts, :func:`noise_rms`) would put there.

    ≈ 0 where a band holds only noise, > 0 where it holds structure, whatever the gain, offset or
    photon budget: a confocal-sampled model's input has nothing but noise above its optical
    cutoff (widefield data at its pixel size has structure there), a Nyquist-sampled widefield
    input has structure up to the top bands (pure noise has none anywhere). Taken on a central
    crop of at most :data:`SPECTRUM_CROP`² pixels with a Hann window (no border leakage).
    """
    h, w = min(lr.shape[0], SPECTRUM_CROP), min(lr.shape[1], SPECTRUM_CROP)
    r0, c0 = (lr.shape[0] - h) // 2, (lr.shape[1] - w) // 2
    crop = lr[r0:r0 + h, c0:c0 + w].astype(np.float32)
    crop = crop - np.float32(crop.mean())
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.abs(sfft.rfft2(crop * window)) ** 2
    fy = sfft.fftfreq(h)[:, None] * 2.0
    fx = sfft.rfftfreq(w)[None, :] * 2.0
    bins = np.digitize(np.sqrt(fy ** 2 + fx ** 2).ravel(), BAND_EDGES) - 1
    n_bands = len(BAND_EDGES) - 1
    bins = np.where((bins >= 0) & (bins < n_bands), bins, n_bands)
    sums = np.bincount(bins, weights=power.ravel(), minlength=n_bands + 1)[:n_bands]
    counts = np.maximum(np.bincount(bins, minlength=n_bands + 1)[:n_bands], 1)
    floor = max(noise, 1e-6 * max(float(np.abs(crop).max()), 1e-12)) ** 2 * float(np.sum(window.astype(np.float64) ** 2))
    return np.log10(np.maximum(sums / counts / floor, 1e-12))


def plane_features(lr_input: np.ndarray, sr_output: np.ndarray, model: DegradationModel) -> dict[str, float]:
    """Every feature of :data:`FEATURES` for one plane (what calibration collects and scoring ranges)."""
    lr, sr = _checked(lr_input, sr_output, model)
    return _features(lr, _residual(lr, sr, model), model)


def _features(lr: np.ndarray, res: _Residual, model: DegradationModel) -> dict[str, float]:
    features = {"rsp": res.rsp, "rse": res.rse,
                "error_fraction": _error_fraction(res.residual, model),
                "gain": res.gain, "rse_noise": res.rse / max(res.noise, 1e-9), "noise": res.noise,
                "saturation": saturation_fraction(lr)}
    features.update(zip(BAND_FEATURES, (float(v) for v in band_snr(lr, res.noise_floor))))
    return features


#: The features of the joint domain model (:class:`~srscope.runtime.card.DomainModel`) and how each
#: enters its space. Saturation stays a range of its own: it is 0 on almost every in-domain plane,
#: so it has no spread to standardise by, and a saturated plane is wrong whatever else it shows.
DOMAIN_FEATURES: dict[str, str] = {"rsp": "log1m", "rse": "log", "error_fraction": "logeps", "gain": "identity",
                                   "rse_noise": "log", "noise": "log", **dict.fromkeys(BAND_FEATURES, "identity")}


def _transformed(value: float, transform: str) -> float:
    if transform == "log":
        return float(np.log(max(value, 1e-9)))
    if transform == "log1m":
        return float(np.log(max(1.0 - value, 1e-6)))
    if transform == "logeps":
        return float(np.log(max(value, 0.0) + 1e-3))
    return float(value)


def transformed_features(features: dict[str, float], names: Sequence[str], transforms: Sequence[str]) -> np.ndarray:
    """A plane's ``names`` features, each through its transform, before standardisation (float64)."""
    return np.asarray([_transformed(features[name], t) for name, t in zip(names, transforms)])


def domain_vector(features: dict[str, float], domain: DomainModel) -> np.ndarray:
    """A plane's features in the domain model's standardised space (one float64 vector)."""
    raw = transformed_features(features, domain.features, domain.transforms)
    return (raw - np.asarray(domain.center)) / np.asarray(domain.spread)


def knn_distance(vectors: np.ndarray, reference: np.ndarray, k: int, *, leave_one_out: bool = False) -> np.ndarray:
    """Mean Euclidean distance of each row of ``vectors`` to its ``k`` nearest rows of ``reference``
    (``leave_one_out``: ``vectors`` is ``reference``, and each row's own zero distance is skipped).

    Written out (not scikit-learn's ``NearestNeighbors``): the runtime does not depend on
    scikit-learn for one brute-force query against a few hundred reference vectors.
    """
    d2 = (np.square(vectors).sum(1)[:, None] + np.square(reference).sum(1)[None, :]
          - 2.0 * vectors @ reference.T)
    d = np.sqrt(np.maximum(d2, 0.0))
    if leave_one_out:
        np.fill_diagonal(d, np.inf)
    kk = min(k, d.shape[1] - (1 if leave_one_out else 0))
    return np.partition(d, kk - 1, axis=1)[:, :kk].mean(axis=1)


def novelty(features: dict[str, float], domain: DomainModel) -> float:
    """How far outside the calibrated domain a plane lies: its k-NN distance over the card's
    threshold, minus one (< 0 inside, > 0 flagged: in units of the threshold)."""
    v = domain_vector(features, domain)[None, :]
    return float(knn_distance(v, np.asarray(domain.reference), domain.k)[0] / domain.threshold - 1.0)


def excursions(features: dict[str, float], model: DegradationModel) -> dict[str, float]:
    """Each ranged feature's distance outside its card range, in units of the range width (< 0 inside)."""
    out: dict[str, float] = {}
    for name, (lo, hi) in model.ranges.items():
        if name not in features:
            continue
        value, width = features[name], max(hi - lo, MIN_WIDTH)
        side = SIDES.get(name, "both")
        above, below = (value - hi) / width, (lo - value) / width
        out[name] = above if side == "high" else below if side == "low" else max(above, below)
    return out


def score_plane(lr_input: np.ndarray, sr_output: np.ndarray, model: DegradationModel) -> PlaneScore:
    """Score one plane: ``lr_input`` (counts, input grid) against ``sr_output`` (its model output).

    ``sr_output`` must be ``scale``× ``lr_input`` along each axis (the Enhancer's output geometry).
    Raises :class:`ConsistencyError` (one line) otherwise, or on NaN/Inf.
    """
    lr, sr = _checked(lr_input, sr_output, model)
    res = _residual(lr, sr, model)
    features = _features(lr, res, model)
    exc = excursions(features, model)
    if model.domain is not None:
        exc["domain"] = novelty(features, model.domain)
    score = max(exc.values()) if exc else float("-inf")
    reasons = tuple(sorted(name for name, value in exc.items() if value > 0))
    return PlaneScore(rsp=res.rsp, rse=res.rse, rse_counts=res.rse_counts,
                      error_fraction=features["error_fraction"], gain=res.gain, offset=res.offset,
                      score=float(score), flagged=bool(reasons), reasons=reasons, features=features)


def with_pixel_size(score: PlaneScore, pixel_size_um: float | Sequence[float] | None, expected_um: float,
                    ) -> PlaneScore:
    """``score`` with the plane's own pixel size taken into account, where the caller knows it.

    The pixel features cannot tell a 30 nm confocal bead field from a dim widefield one; the file's
    pixel size can. A plane whose pixel size differs from the card's by more than the house
    tolerance (:data:`srscope.runtime.pixelsize.WARN`) gets the reason ``pixel_size``, and its
    excursion (the difference over the tolerance, minus one) enters ``score``. ``None``: unchanged.
    """
    if pixel_size_um is None:
        return score
    from srscope.runtime.pixelsize import WARN, check_pixel_size

    check = check_pixel_size(pixel_size_um, expected_um, model="card", ignore=True)
    excursion = check.relative_difference / WARN - 1.0
    features = {**score.features, "pixel_size_difference": check.relative_difference}
    if excursion <= 0:
        return dataclasses.replace(score, features=features)
    return dataclasses.replace(score, score=max(score.score, excursion), flagged=True, features=features,
                               reasons=tuple(sorted({*score.reasons, "pixel_size"})))


def local_error_map(lr_input: np.ndarray, sr_output: np.ndarray, model: DegradationModel, *,
                    trim_border: bool = False) -> np.ndarray:
    """The local relative error on the *input* grid (float32): the RMS, in the card's Gaussian
    window, of ``(input − matched re-degraded output) / (P99.8 − P1)``. ``trim_border`` drops the
    card's ``border_px`` on each side, as the score does (calibration pools these values)."""
    lr, sr = _checked(lr_input, sr_output, model)
    error = local_error(_residual(lr, sr, model).residual, model.error_sigma_px,
                        model.error_window).astype(np.float32, copy=False)
    b = model.border_px if trim_border and min(lr.shape) > 4 * model.border_px else 0
    return error[b:error.shape[0] - b, b:error.shape[1] - b] if b else error


def error_map(lr_input: np.ndarray, sr_output: np.ndarray, model: DegradationModel) -> np.ndarray:
    """The local relative error on the *output* grid (float32, ``sr_output``'s shape).

    Each input pixel's value of :func:`local_error_map` fills the ``s × s`` output pixels it
    covers, so the map overlays the output exactly (same shape, pixel size and origin). Values
    above the card's ``error_threshold`` are where only 1 % of in-domain pixels go.
    """
    s = model.scale
    return np.repeat(np.repeat(local_error_map(lr_input, sr_output, model), s, axis=0), s, axis=1)
