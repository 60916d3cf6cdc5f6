"""The three cross-modality pairs of the paper, as optical + detector parameters.

Numbers follow the paper's Methods where it states them (objectives, pixel sizes, 1 AU pinhole,
775 nm depletion, 8-bit confocal/STED export, ~300/65535 widefield background). Where the
paper reports a *measured* resolution rather than the optics (confocal ~290 nm on a 1.4 NA
objective), the NA is an effective one that reproduces the measurement: aberrations of the
real instrument are folded into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Sampling = Literal["camera", "scanning"]


CameraKind = Literal["ccd", "scmos", "emccd"]


@dataclass(frozen=True)
class Detector:
    """Detector model: counts = gain · Poisson(photons) + N(0, read_noise) + offset, clipped.

    ``frames_averaged`` models line/frame averaging of a photon-counting scanner: the photon
    noise of the average falls by its square root while the mean stays the same.

    ``kind`` adds what real cameras do beyond that uniform model: ``scmos`` gives every pixel its
    own offset, gain and read noise (a fixed pattern drawn from ``pattern_seed``, the same for every
    frame of one camera, with a log-normal read-noise tail of noisy pixels); ``emccd`` multiplies
    the photo-electrons through a gamma-distributed gain register (excess noise factor √2, so the
    shot-noise variance doubles) and has negligible read noise relative to the signal.
    """

    gain: float                  # counts per photo-electron
    offset: float                # counts added by the electronics
    read_noise: float            # counts RMS
    bit_depth: Literal[8, 16]
    peak_photons: float          # photons at the bright end (99.9th pct) of the clean signal
    background_photons: float    # mean photons per pixel of autofluorescence / out-of-focus haze
    frames_averaged: int = 1
    kind: CameraKind = "ccd"
    pattern_seed: int = 0
    offset_sd: float = 0.0       # sCMOS: per-pixel offset spread (counts)
    gain_sd: float = 0.0         # sCMOS: per-pixel relative gain spread


@dataclass(frozen=True)
class ImagingSpec:
    """One side (LR or HR) of a pair."""

    name: str
    psf: Literal["widefield", "confocal", "sted", "sim"]
    na: float
    n_immersion: float
    emission_wavelength_um: float
    pixel_size_um: float
    detector: Detector
    sampling: Sampling = "camera"
    excitation_wavelength_um: float | None = None
    depletion_wavelength_um: float | None = None
    saturation_factor: float = 0.0
    pinhole_au: float = 1.0
    resolution_gain: float = 1.0  # SIM: effective OTF support relative to the widefield one
    defocus_um: float = 0.0       # focus error of this side's focal plane (widefield PSFs)
    spherical_rms_waves: float = 0.0  # primary spherical aberration (widefield PSFs)


@dataclass(frozen=True)
class ModalitySpec:
    """A cross-modality pair: LR input, HR target, and how the simulation samples them."""

    name: str
    lr: ImagingSpec
    hr: ImagingSpec
    #: fine simulation grid pixel = HR pixel / oversample (odd, so HR pixel centres are grid points)
    oversample: int
    #: out-of-focus layer: depth below focus and share of the structure living there (widefield only)
    defocus_layer_um: float = 0.0
    defocus_fraction: float = 0.0
    #: typical misregistration of a real pair (HR pixels / degrees / relative scale / elastic px)
    max_shift_px: float = 4.0
    max_rotation_deg: float = 0.5
    max_scale_error: float = 0.005
    elastic_amplitude_px: float = 1.0
    #: autofluorescence/haze texture: relative amplitude of a smooth random field on the background
    background_texture: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def scale(self) -> int:
        """Integer LR→HR pixel ratio (2 for 10x→20x)."""
        return round(self.lr.pixel_size_um / self.hr.pixel_size_um)

    def with_overrides(self, **overrides: object) -> ModalitySpec:
        """Copy with fields replaced; ``lr__na=0.3`` style keys reach into the LR/HR specs."""
        top: dict[str, object] = {}
        sides: dict[str, dict[str, object]] = {"lr": {}, "hr": {}}
        for key, value in overrides.items():
            if key.startswith(("lr__", "hr__")):
                side, sub = key.split("__", 1)
                sides[side][sub] = value
            elif key in self.__dataclass_fields__:
                top[key] = value
            else:
                raise ValueError(f"unknown simulation override {key!r}")
        spec = replace(self, **top)
        for side, values in sides.items():
            if values:
                spec = replace(spec, **{side: replace(getattr(spec, side), **values)})
        return spec


_WIDEFIELD_CAMERA = {"gain": 1.0, "offset": 100.0, "read_noise": 2.0, "bit_depth": 16}

MODALITIES: dict[str, ModalitySpec] = {
    # 10x/0.4 and 20x/0.75 dry objectives with the paper's effective pixels of 325 and 162.5 nm
    # (Born & Wolf, immersion index 1.0, as in the paper's deconvolution baseline); FITC-like emission.
    "widefield": ModalitySpec(
        name="widefield",
        lr=ImagingSpec("widefield 10x/0.4NA", "widefield", na=0.4, n_immersion=1.0,
                       emission_wavelength_um=0.532, pixel_size_um=0.325,
                       detector=Detector(**_WIDEFIELD_CAMERA, peak_photons=3000.0, background_photons=200.0)),
        hr=ImagingSpec("widefield 20x/0.75NA", "widefield", na=0.75, n_immersion=1.0,
                       emission_wavelength_um=0.532, pixel_size_um=0.1625,
                       detector=Detector(**_WIDEFIELD_CAMERA, peak_photons=2000.0, background_photons=150.0)),
        oversample=1, defocus_layer_um=1.0, defocus_fraction=0.25,
        max_shift_px=5.0, max_rotation_deg=0.6, max_scale_error=0.006, elastic_amplitude_px=1.2,
    ),
    # Leica SP8 100x/1.4 oil, 633 nm excitation, 645-720 nm detection, 1 AU, ~30 nm scan step,
    # 775 nm depletion; exported 8-bit. Effective NA 1.07 reproduces the measured ~290 nm.
    "confocal-sted": ModalitySpec(
        name="confocal-sted",
        lr=ImagingSpec("confocal 1 AU", "confocal", na=1.07, n_immersion=1.518,
                       emission_wavelength_um=0.66, pixel_size_um=0.03, sampling="scanning",
                       excitation_wavelength_um=0.633,
                       detector=Detector(gain=1.0, offset=2.0, read_noise=0.5, bit_depth=8,
                                         peak_photons=120.0, background_photons=2.0, frames_averaged=1)),
        hr=ImagingSpec("STED 775 nm", "sted", na=1.07, n_immersion=1.518,
                       emission_wavelength_um=0.66, pixel_size_um=0.03, sampling="scanning",
                       excitation_wavelength_um=0.633, depletion_wavelength_um=0.775,
                       saturation_factor=9.0,
                       detector=Detector(gain=1.0, offset=2.0, read_noise=0.5, bit_depth=8,
                                         peak_photons=100.0, background_photons=2.0, frames_averaged=1)),
        oversample=1,
        # sequential scans on one stand: drift only (~10 nm ≈ 0.3 px), no distortion
        max_shift_px=1.0, max_rotation_deg=0.0, max_scale_error=0.0, elastic_amplitude_px=0.0,
    ),
    # 100x/1.49 TIRF objective, sCMOS 6.5 µm → 65 nm; SIM reconstructed on a 2× finer grid.
    # TIRF = the average of the 9 SIM exposures, so the pair is nearly registered by construction.
    "tirf-sim": ModalitySpec(
        name="tirf-sim",
        lr=ImagingSpec("TIRF 100x/1.49NA", "widefield", na=1.49, n_immersion=1.518,
                       emission_wavelength_um=0.51, pixel_size_um=0.065,
                       detector=Detector(**_WIDEFIELD_CAMERA, peak_photons=1500.0, background_photons=60.0)),
        hr=ImagingSpec("TIRF-SIM", "sim", na=1.49, n_immersion=1.518,
                       emission_wavelength_um=0.51, pixel_size_um=0.0325, resolution_gain=1.9,
                       detector=Detector(**_WIDEFIELD_CAMERA, peak_photons=800.0, background_photons=30.0)),
        oversample=1,
        max_shift_px=1.0, max_rotation_deg=0.1, max_scale_error=0.001, elastic_amplitude_px=0.3,
    ),
}
