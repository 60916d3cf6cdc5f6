"""Domain randomisation: draw, per simulated field, a microscope that is not srscope's default one.

Models trained on one simulated camera and one PSF learn that camera and that PSF: the v3.0
widefield model lost 1–4 dB to a camera offset change and fell below bilinear interpolation on real
images. Each field of a training set therefore gets its own camera (offset 0–1,000 counts, gain,
photon budget ~100–10,000 photons peak, read noise, CCD / sCMOS / EMCCD noise), sample (background
and autofluorescence texture, out-of-focus haze, density) and optics (NA ±5 %, emission
450–700 nm, focus error up to ±2 µm and mild spherical aberration, pixel size ±10 %, residual misregistration).

The result is a dict of :func:`srscope.training.data.simulate.simulate_pair` overrides plus the
misregistration flag, so every knob stays testable on its own and a field can be re-simulated
exactly from its record (the dataset stores it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from .modalities import MODALITIES, Detector


@dataclass(frozen=True)
class Span:
    """A closed range drawn uniformly, or log-uniformly (``log=True``) for scale-like quantities."""

    lo: float
    hi: float
    log: bool = False

    def draw(self, rng: np.random.Generator) -> float:
        if self.lo == self.hi:
            return float(self.lo)
        if self.log:
            return float(np.exp(rng.uniform(np.log(self.lo), np.log(self.hi))))
        return float(rng.uniform(self.lo, self.hi))


@dataclass(frozen=True)
class DomainRandomisation:
    """Ranges of every randomised knob. Defaults target widefield cameras and objectives in use.

    Relative knobs (``na_jitter``, ``pixel_size_jitter``) scale the modality's nominal values; the
    HR side keeps its nominal NA (it is the target the model must reproduce) but shares the
    specimen's emission and the pixel-size factor (both set by the sample and the camera).
    """

    offset_counts: Span = Span(0.0, 1000.0)
    gain: Span = Span(0.25, 4.0, log=True)                # counts per photo-electron
    peak_photons: Span = Span(100.0, 10000.0, log=True)
    read_noise_e: Span = Span(0.7, 8.0, log=True)         # electrons RMS
    camera_kinds: tuple[str, ...] = ("ccd", "scmos", "emccd")
    background_fraction: Span = Span(0.005, 0.5, log=True)  # background photons / peak photons
    background_texture: Span = Span(0.0, 0.6)
    haze_depth_um: Span = Span(0.5, 3.0)
    haze_fraction: Span = Span(0.0, 0.5)
    density: Span = Span(0.4, 2.5, log=True)
    na_jitter: float = 0.05
    emission_nm: Span = Span(450.0, 700.0)
    focus_error_um: Span = Span(-2.0, 2.0)              # ~±0.6 of the 10x/0.4 depth of field (λ/NA²)
    spherical_rms_waves: Span = Span(0.0, 0.12)
    pixel_size_jitter: float = 0.10
    residual_shift_px: float = 0.5          # HR pixels
    residual_rotation_deg: float = 0.05
    residual_scale_error: float = 0.001
    residual_elastic_px: float = 0.3
    hr_peak_photons: Span = Span(1000.0, 10000.0, log=True)  # the target camera: good but not noise-free
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Per-modality defaults. Point-scanning confocal/STED detectors count tens to hundreds of photons
#: (the paper exports them 8-bit): photon budgets, read noise and background follow, and EMCCD-like
#: excess noise stands for a PMT/HyD's gain statistics. Emission is tied to the depletion line.
DEFAULTS: dict[str, DomainRandomisation] = {
    "widefield": DomainRandomisation(),
    "tirf-sim": DomainRandomisation(focus_error_um=Span(-0.2, 0.2)),   # TIRF: ~100 nm evanescent field
    "confocal-sted": DomainRandomisation(
        peak_photons=Span(20.0, 500.0, log=True), hr_peak_photons=Span(30.0, 300.0, log=True),
        read_noise_e=Span(0.1, 1.0, log=True), camera_kinds=("ccd", "emccd"),
        background_fraction=Span(0.002, 0.1, log=True), haze_fraction=Span(0.0, 0.0),
        residual_shift_px=1.0, residual_rotation_deg=0.0, residual_scale_error=0.0, residual_elastic_px=0.0),
}


def randomisation_from_dict(values: dict[str, Any]) -> DomainRandomisation:
    """The inverse of :meth:`DomainRandomisation.to_dict` (as a dataset's attributes record it)."""
    kwargs: dict[str, Any] = {}
    for f in fields(DomainRandomisation):
        if f.name not in values:
            continue
        value = values[f.name]
        if isinstance(value, dict) and {"lo", "hi"} <= set(value):
            value = Span(float(value["lo"]), float(value["hi"]), bool(value.get("log", False)))
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return DomainRandomisation(**kwargs)


def defaults_for(modality: str) -> DomainRandomisation:
    """The randomisation ranges srscope trains ``modality`` with."""
    return DEFAULTS.get(modality, DomainRandomisation())


#: Modalities whose PSFs are camera-based widefield ones, so emission, focus and aberration apply.
_WIDEFIELD_LIKE = ("widefield", "tirf-sim")


@dataclass(frozen=True)
class RandomisedField:
    """One field's draw: ``simulate_pair(modality, structure, seed=..., misregister=..., **overrides)``."""

    overrides: dict[str, Any]
    misregister: bool
    record: dict[str, Any]   # JSON-friendly summary of what was drawn (stored in the dataset)


#: Brightest expected pixel (peak + background) at most this share of the 16-bit range above the
#: offset: a saturated frame is a different problem (the trust score's), not a training example.
_HEADROOM = 0.6


def _camera(rng: np.random.Generator, r: DomainRandomisation, nominal: Detector, peak: float,
            background_photons: float, pattern_seed: int, kinds: tuple[str, ...]) -> Detector:
    kind = str(rng.choice(kinds))
    gain = r.gain.draw(rng)
    read_e = r.read_noise_e.draw(rng)
    offset = r.offset_counts.draw(rng)
    if kind == "emccd":
        gain *= 10.0        # EM gain lifts the signal far above the (unchanged) read noise
    gain = min(gain, _HEADROOM * (65535.0 - offset) / (peak + background_photons))
    return Detector(gain=gain, offset=offset, read_noise=gain * read_e if kind != "emccd" else read_e,
                    bit_depth=16, peak_photons=peak, background_photons=background_photons,
                    frames_averaged=nominal.frames_averaged, kind=kind, pattern_seed=pattern_seed,
                    offset_sd=float(rng.uniform(0.5, 3.0)) * gain if kind == "scmos" else 0.0,
                    gain_sd=float(rng.uniform(0.005, 0.03)) if kind == "scmos" else 0.0)


def draw_field(modality: str, rng: np.random.Generator, r: DomainRandomisation | None = None) -> RandomisedField:
    """Draw one field's microscope for ``modality`` from the ranges in ``r``."""
    r = r or defaults_for(modality)
    spec = MODALITIES[modality]
    lr_peak = r.peak_photons.draw(rng)
    lr_bg = r.background_fraction.draw(rng) * lr_peak
    hr_peak = r.hr_peak_photons.draw(rng)
    hr_bg = lr_bg / lr_peak * hr_peak
    pattern_seed = int(rng.integers(0, 2**31 - 1))
    lr_det = _camera(rng, r, spec.lr.detector, lr_peak, lr_bg, pattern_seed, r.camera_kinds)
    # the target camera is a well-exposed CCD/sCMOS (no EM excess noise in the reference)
    hr_det = _camera(rng, r, spec.hr.detector, hr_peak, hr_bg, pattern_seed + 1,
                     tuple(k for k in r.camera_kinds if k != "emccd") or ("ccd",))
    pixel_factor = float(rng.uniform(1 - r.pixel_size_jitter, 1 + r.pixel_size_jitter))
    overrides: dict[str, Any] = {
        "lr__detector": lr_det, "hr__detector": hr_det,
        "lr__pixel_size_um": spec.lr.pixel_size_um * pixel_factor,
        "hr__pixel_size_um": spec.hr.pixel_size_um * pixel_factor,
        "lr__na": min(spec.lr.na * float(rng.uniform(1 - r.na_jitter, 1 + r.na_jitter)), spec.lr.n_immersion),
        "background_texture": r.background_texture.draw(rng),
        "density": r.density.draw(rng),
        "max_shift_px": r.residual_shift_px, "max_rotation_deg": r.residual_rotation_deg,
        "max_scale_error": r.residual_scale_error, "elastic_amplitude_px": r.residual_elastic_px,
    }
    if spec.defocus_layer_um:     # widefield: an out-of-focus layer of the same structure
        overrides["defocus_layer_um"] = r.haze_depth_um.draw(rng)
        overrides["defocus_fraction"] = r.haze_fraction.draw(rng)
    if modality in _WIDEFIELD_LIKE:
        emission = r.emission_nm.draw(rng) / 1000.0
        overrides["lr__emission_wavelength_um"] = emission
        overrides["hr__emission_wavelength_um"] = emission
        overrides["lr__defocus_um"] = r.focus_error_um.draw(rng)
        overrides["lr__spherical_rms_waves"] = r.spherical_rms_waves.draw(rng)
    record = {k: (asdict(v) if isinstance(v, Detector) else v) for k, v in overrides.items()}
    return RandomisedField(overrides=overrides, misregister=True, record=record)
