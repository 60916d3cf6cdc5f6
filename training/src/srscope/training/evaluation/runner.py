"""Run every method on every test pair and collect what the report needs.

One pass over the test set: each method's output is scored (PSNR/SSIM/NRMSE after the affine
fit), timed, checked against the input with SQUIRREL, measured for spectral support and
decorrelation resolution and, for spot-like samples, PSF FWHM at the ground truth's spots. Only
the first few images' outputs are kept (for figures), so memory does not grow with the test set.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from srscope.training.evaluation.baselines import (
    LucyRichardsonChoice,
    bilinear_upsample,
)
from srscope.training.evaluation.fwhm import (
    FwhmDistribution,
    fit_peaks,
    measure_fwhm,
)
from srscope.training.evaluation.methods import Method
from srscope.training.evaluation.metrics import (
    ImageScores,
    fit_affine_intensity,
    score_image,
)
from srscope.training.evaluation.spectrum import (
    RadialSpectrum,
    decorrelation_resolution,
    radial_power_spectrum,
    spectral_support,
    support_level,
)
from srscope.training.evaluation.squirrel import squirrel
from srscope.training.evaluation.testset import EvalPair
from tqdm.auto import tqdm

INPUT = "input"
TRUTH = "ground truth"


@dataclass
class Example:
    """Full images of one test pair for figures: input (up-sampled), each method, truth, error maps."""

    name: str
    images: dict[str, np.ndarray]
    squirrel_maps: dict[str, np.ndarray]
    hr_pixel_size_um: float


@dataclass
class EvaluationResult:
    """Everything measured in one evaluation run, keyed by method name (plus input / ground truth)."""

    methods: list[str]
    image_names: list[str] = field(default_factory=list)
    scores: list[dict[str, ImageScores]] = field(default_factory=list)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    output_megapixels: list[float] = field(default_factory=list)
    squirrel: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    resolution_um: dict[str, list[float]] = field(default_factory=dict)
    support_per_um: dict[str, list[float]] = field(default_factory=dict)
    spectra: dict[str, RadialSpectrum] = field(default_factory=dict)
    #: per image, the relative power level that defines spectral support (from the input's noise floor)
    support_level: list[float] = field(default_factory=list)
    low_cutoff_fraction: float = 0.15
    fwhm: dict[str, FwhmDistribution] | None = None
    examples: list[Example] = field(default_factory=list)
    lr_choice: LucyRichardsonChoice | None = None
    scale: int = 1
    lr_pixel_size_um: float = float("nan")
    hr_pixel_size_um: float = float("nan")

    def seconds_per_megapixel(self, method: str) -> float:
        """Median over images of run time / output megapixels."""
        per = [t / mp for t, mp in zip(self.seconds.get(method, []), self.output_megapixels) if mp > 0]
        return float(np.median(per)) if per else float("nan")


def _match_shape(image: np.ndarray, shape: tuple[int, int], what: str) -> np.ndarray:
    """Crop to ``shape`` (a network may pad to its size multiple); refuse anything smaller."""
    if image.shape[0] < shape[0] or image.shape[1] < shape[1]:
        raise ValueError(f"{what} output {image.shape} is smaller than the ground truth {shape}")
    return image[: shape[0], : shape[1]]


class _SpectrumAverager:
    """Mean radial power spectrum per kind over images of one shape (others are skipped)."""

    def __init__(self) -> None:
        self.sums: dict[str, RadialSpectrum] = {}
        self.counts: dict[str, int] = {}

    def add(self, kind: str, spectrum: RadialSpectrum) -> None:
        if kind not in self.sums:
            self.sums[kind], self.counts[kind] = spectrum, 1
        elif self.sums[kind].power.shape == spectrum.power.shape:
            prev = self.sums[kind]
            self.sums[kind] = RadialSpectrum(prev.frequency_per_um, prev.power + spectrum.power, prev.nyquist_per_um)
            self.counts[kind] += 1

    def result(self) -> dict[str, RadialSpectrum]:
        return {k: RadialSpectrum(s.frequency_per_um, s.power / self.counts[k], s.nyquist_per_um)
                for k, s in self.sums.items()}


def evaluate(
    pairs: Iterable[EvalPair],
    methods: Sequence[Method],
    *,
    n_pairs: int | None = None,
    measure_spots: bool = False,
    n_examples: int = 3,
    lr_choice: LucyRichardsonChoice | None = None,
    progress: bool = True,
    low_cutoff_fraction: float = 0.15,
) -> EvaluationResult:
    """Run ``methods`` on ``pairs`` and measure them (see the module docstring)."""
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    result = EvaluationResult(methods=names, lr_choice=lr_choice, low_cutoff_fraction=low_cutoff_fraction)
    result.seconds = {name: [] for name in names}
    kinds = [INPUT, *names, TRUTH]
    result.squirrel = {k: [] for k in kinds[1:]}
    result.resolution_um = {k: [] for k in kinds}
    result.support_per_um = {k: [] for k in kinds}
    spectra = _SpectrumAverager()
    fwhm_parts: list[dict[str, FwhmDistribution]] = []

    bar = tqdm(pairs, total=n_pairs, desc="evaluate", unit="image", disable=not progress)
    for pair in bar:
        truth = np.asarray(pair.hr, dtype=np.float64)
        scale = pair.scale
        result.scale, result.lr_pixel_size_um, result.hr_pixel_size_um = scale, pair.lr_pixel_size_um, pair.hr_pixel_size_um
        outputs: dict[str, np.ndarray] = {}
        for method in methods:
            bar.set_postfix_str(method.name)
            start = time.perf_counter()
            out = np.asarray(method.run(pair), dtype=np.float64)
            result.seconds[method.name].append(time.perf_counter() - start)
            outputs[method.name] = _match_shape(out, truth.shape, method.name)
        result.image_names.append(pair.name)
        result.output_megapixels.append(truth.size / 1e6)
        result.scores.append({name: score_image(img, truth) for name, img in outputs.items()})

        upsampled_input = bilinear_upsample(pair.lr, scale)[: truth.shape[0], : truth.shape[1]]
        lr_crop = np.asarray(pair.lr, dtype=np.float64)[: truth.shape[0] // scale, : truth.shape[1] // scale]
        analysed = {INPUT: None, **outputs, TRUTH: truth}
        maps: dict[str, np.ndarray] = {}
        input_spectrum = radial_power_spectrum(pair.lr, pair.lr_pixel_size_um)
        low_cutoff = low_cutoff_fraction * input_spectrum.nyquist_per_um
        level = support_level(input_spectrum, low_cutoff)
        result.support_level.append(level)
        for kind, image in analysed.items():
            if kind == INPUT:
                native, pixel = np.asarray(pair.lr, dtype=np.float64), pair.lr_pixel_size_um
            else:
                native, pixel = image, pair.hr_pixel_size_um
                sq = squirrel(lr_crop, image[: lr_crop.shape[0] * scale, : lr_crop.shape[1] * scale], scale)
                result.squirrel[kind].append(sq.summary())
                maps[kind] = sq.error_map
            spectrum = input_spectrum if kind == INPUT else radial_power_spectrum(native, pixel)
            spectra.add(kind, spectrum)
            result.support_per_um[kind].append(spectral_support(spectrum, level=level, low_cutoff_per_um=low_cutoff))
            result.resolution_um[kind].append(decorrelation_resolution(native, pixel).resolution_um)
        if measure_spots:
            images = {INPUT: [upsampled_input], **{k: [v] for k, v in outputs.items()}, TRUTH: [truth]}
            fwhm_parts.append(measure_fwhm([truth], images, pair.hr_pixel_size_um * 1000.0))
        if len(result.examples) < n_examples:
            shown = {INPUT: upsampled_input, **outputs, TRUTH: truth}
            # Shown after the same affine fit the metrics use, so panels share one intensity scale.
            fitted = {k: fit_affine_intensity(v, truth).apply(v).astype(np.float32) for k, v in shown.items()}
            result.examples.append(Example(pair.name, fitted, maps, pair.hr_pixel_size_um))
    bar.close()
    if not result.image_names:
        raise ValueError("the test set is empty")
    result.spectra = spectra.result()
    if measure_spots:
        result.fwhm = merge_fwhm(fwhm_parts)
    return result


def merge_fwhm(parts: Sequence[dict[str, FwhmDistribution]]) -> dict[str, FwhmDistribution]:
    """Pool per-image FWHM measurements and refit each kind's histogram peak."""
    merged: dict[str, FwhmDistribution] = {}
    for part in parts:
        for kind, dist in part.items():
            target = merged.setdefault(kind, FwhmDistribution(name=kind))
            target.values_nm.extend(dist.values_nm)
            target.n_spots += dist.n_spots
    fit_peaks(merged)
    return merged
