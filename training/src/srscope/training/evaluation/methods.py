"""The contenders of one evaluation: bilinear, Lucy–Richardson, NNLS and the exported networks.

Every method maps an :class:`EvalPair`'s low-resolution counts to an image on the ground truth's
grid. Networks run through the runtime's ONNX :class:`~srscope.runtime.Enhancer`, exactly as a lab
would run them, so the evaluation measures the shipped artefact rather than a training checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from srscope.training.evaluation.baselines import (
    DeconvolutionOptics,
    LucyRichardsonChoice,
    bilinear_upsample,
    nnls_deconvolution,
    richardson_lucy,
)
from srscope.training.evaluation.testset import EvalPair

#: The *input* microscope of each modality, as the deconvolution baselines model it.
#: Widefield is the paper's 10x/0.4 dry objective; confocal is the paper's 100x/1.40 oil STED
#: objective at 633 nm excitation; TIRF is a 100x/1.49 oil objective imaged as widefield.
INPUT_OPTICS: dict[str, dict[str, float]] = {
    "widefield": {"na": 0.4, "n_immersion": 1.0},
    "confocal-sted": {"na": 1.4, "n_immersion": 1.518, "excitation_nm": 633.0},
    "tirf-sim": {"na": 1.49, "n_immersion": 1.518},
}
#: Emission assumed when neither the pair nor the model card names one (the paper's Texas Red).
DEFAULT_EMISSION_NM = 630.0


@dataclass(frozen=True)
class Method:
    """A named way of producing a high-resolution estimate from a pair's low-resolution image."""

    name: str
    run: Callable[[EvalPair], np.ndarray]
    is_network: bool = False
    #: the network's model card (``srscope.runtime.ModelCard``), shown in the report
    card: object | None = None


def input_optics(modality: str, emission_nm: float | None) -> DeconvolutionOptics:
    """The deconvolution PSF's optics for ``modality`` at ``emission_nm``.

    For simulated modalities the simulator's own description of the input microscope is used
    (e.g. its effective confocal NA), so the baselines deconvolve with the PSF that made the
    data: the fairest footing a classical method can get. Otherwise :data:`INPUT_OPTICS`.
    """
    try:
        from srscope.training.data.modalities import MODALITIES
    except ImportError:  # simulator not installed alongside: fall back to the paper's optics
        MODALITIES = {}
    if modality in MODALITIES:
        lr = MODALITIES[modality].lr
        excitation = lr.excitation_wavelength_um * 1000.0 if lr.psf == "confocal" else None
        emission = emission_nm or lr.emission_wavelength_um * 1000.0
        return DeconvolutionOptics(na=lr.na, n_immersion=lr.n_immersion, emission_nm=float(emission),
                                   excitation_nm=excitation, pinhole_au=lr.pinhole_au)
    if modality not in INPUT_OPTICS:
        raise ValueError(f"no input optics known for modality {modality!r}; "
                         f"known: {', '.join(sorted(INPUT_OPTICS))}")
    return DeconvolutionOptics(emission_nm=float(emission_nm or DEFAULT_EMISSION_NM), **INPUT_OPTICS[modality])


def describe_optics(optics: DeconvolutionOptics) -> str:
    """One line for the report, e.g. 'a Born & Wolf PSF (NA 0.4, n 1.0, 532 nm emission)'."""
    if optics.excitation_nm is None:
        return (f"a Born & Wolf widefield PSF (NA {optics.na:g}, n {optics.n_immersion:g}, "
                f"{optics.emission_nm:.0f} nm emission)")
    return (f"a confocal PSF (Born & Wolf excitation {optics.excitation_nm:.0f} nm × emission "
            f"{optics.emission_nm:.0f} nm through a {optics.pinhole_au:g} AU pinhole, NA {optics.na:g}, "
            f"n {optics.n_immersion:g})")


@lru_cache(maxsize=16)
def _psf(optics: DeconvolutionOptics, pixel_size_um: float) -> np.ndarray:
    return optics.psf(pixel_size_um)


def deconvolution_input(pair: EvalPair) -> np.ndarray:
    """Bilinear ×scale, background-subtracted, clipped at 0: what both deconvolutions start from."""
    return np.clip(bilinear_upsample(pair.lr, pair.scale) - pair.lr_background(), 0.0, None)


def baseline_psf(pair: EvalPair, modality: str) -> np.ndarray:
    return _psf(input_optics(modality, pair.emission_wavelength_nm), round(pair.hr_pixel_size_um, 9))


def baseline_methods(modality: str, lr_choice: LucyRichardsonChoice) -> list[Method]:
    """Bilinear, Lucy–Richardson with the searched parameters, and NNLS (100 it., step 0.5)."""

    def bilinear(pair: EvalPair) -> np.ndarray:
        return bilinear_upsample(pair.lr, pair.scale)

    def lucy_richardson(pair: EvalPair) -> np.ndarray:
        return richardson_lucy(deconvolution_input(pair), baseline_psf(pair, modality),
                               lr_choice.iterations, lr_choice.damping)

    def nnls(pair: EvalPair) -> np.ndarray:
        return nnls_deconvolution(deconvolution_input(pair), baseline_psf(pair, modality))

    return [Method("bilinear", bilinear), Method("lucy-richardson", lucy_richardson), Method("nnls", nnls)]


def gaussian_box_psf(sigma_um: float, box_um: float, pixel_size_um: float, size: int | None = None) -> np.ndarray:
    """A Gaussian PSF of ``sigma_um`` integrated over a ``box_um`` camera pixel, on a ``pixel_size_um`` grid.

    The semi-real set images real specimens through a Gaussian PSF and bins them into 325 nm LR
    pixels; deconvolving its bilinear-×2 input with exactly that kernel is the Lucy–Richardson
    upper bound (a user's Born & Wolf PSF from NA and emission is the *nominal* row). Separable
    and analytic (differences of erf), so no library is needed.
    """
    from scipy.special import erf

    if size is None:
        size = int(np.clip(np.ceil((8 * sigma_um + box_um) / pixel_size_um), 9, 101)) | 1
    x = (np.arange(size) - size // 2) * pixel_size_um
    root2s = np.sqrt(2.0) * sigma_um
    profile = 0.5 * (erf((x + box_um / 2) / root2s) - erf((x - box_um / 2) / root2s))
    psf = np.outer(profile, profile)
    return psf / psf.sum()


def exact_lucy_richardson_method(psf: np.ndarray, choice: LucyRichardsonChoice) -> Method:
    """Lucy–Richardson with the PSF that really made the data (an upper bound a user rarely has)."""

    def run(pair: EvalPair) -> np.ndarray:
        return richardson_lucy(deconvolution_input(pair), psf, choice.iterations, choice.damping)

    return Method("lucy-richardson-exact", run)


def network_method(name: str, model_path: Path, *, device: str = "auto", tile: int = 512) -> Method:
    """An exported generator run through the runtime's Enhancer (tiled, in physical counts)."""
    from srscope.runtime import Enhancer

    enhancer = Enhancer.from_file(model_path, device=device, tile=tile)

    def run(pair: EvalPair) -> np.ndarray:
        return np.asarray(enhancer.enhance(pair.lr), dtype=np.float32)

    return Method(name, run, is_network=True, card=enhancer.card)
