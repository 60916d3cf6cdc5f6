"""Physically faithful LR/HR pair simulation.

One specimen is rendered on a fine grid (HR pixel / oversample), imaged through each side's
PSF (Born & Wolf widefield, confocal with a 1 AU pinhole, STED, or SIM) with the camera pixel
aperture folded into the OTF, and then point-sampled: the HR at its pixel centres, the LR at its
(coarser) pixel centres pushed through a ground-truth misregistration. Detector noise
(Poisson, read noise, offset, gain, 8/16-bit) comes last. Because imaging happens in Fourier
space on one grid, sub-pixel shifts and bead positions are exact rather than interpolated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from ..optics.psf import born_wolf_psf
from ..optics.scanning import confocal_psf, sted_psf
from .modalities import MODALITIES, Detector, ImagingSpec, ModalitySpec
from .structures import GENERATORS, STRUCTURES, Specimen
from .transforms import Misregistration

__all__ = ["MODALITIES", "STRUCTURES", "ModalitySpec", "SimulatedPair", "simulate_pair"]


@dataclass
class SimulatedPair:
    lr: np.ndarray                  # detector counts on the LR grid, misregistered (uint16 / uint8)
    hr: np.ndarray                  # detector counts on the HR grid: the reference frame
    truth_lr_on_hr: np.ndarray      # expected LR counts (noise-free) sampled on the HR grid, aligned to hr
    hr_clean: np.ndarray            # expected HR counts (noise-free, float32), aligned to hr
    lr_pixel_size_um: float
    hr_pixel_size_um: float
    modality: str
    structure: str
    emission_wavelength_nm: float
    background_lr: float            # mean background + offset in LR counts
    background_hr: float
    transform: Misregistration      # LR→HR ground truth, see transforms.py for the convention
    bead_positions_hr_px: np.ndarray | None  # (K, 2) y, x in HR pixels (beads only)
    seed: int = 0

    @property
    def scale(self) -> int:
        return round(self.lr_pixel_size_um / self.hr_pixel_size_um)


def _psf_for(side: ImagingSpec, fine_px_um: float, size: int, defocus_um: float) -> np.ndarray:
    if side.psf == "widefield":
        return born_wolf_psf(size, fine_px_um, side.emission_wavelength_um, side.na, side.n_immersion,
                             defocus_um=defocus_um + side.defocus_um, oversample=1,
                             spherical_rms_waves=side.spherical_rms_waves)
    if side.psf == "sim":
        # Linear SIM (after reconstruction) passes frequencies up to ~(1 + k_pattern) × the
        # widefield cutoff; modelled as the widefield PSF of a λ/gain emission.
        return born_wolf_psf(size, fine_px_um, side.emission_wavelength_um / side.resolution_gain, side.na,
                             side.n_immersion, defocus_um=defocus_um, oversample=1)
    if side.psf == "confocal":
        return confocal_psf(size, fine_px_um, side.excitation_wavelength_um, side.emission_wavelength_um,
                            side.na, side.n_immersion, side.pinhole_au)
    if side.psf == "sted":
        return sted_psf(size, fine_px_um, side.excitation_wavelength_um, side.emission_wavelength_um,
                        side.depletion_wavelength_um, side.na, side.saturation_factor, side.n_immersion,
                        side.pinhole_au)
    raise ValueError(f"unknown PSF kind {side.psf!r}")


@lru_cache(maxsize=32)
def _otf(side: ImagingSpec, fine_px_um: float, fine_shape: tuple[int, int], defocus_um: float,
         aperture_fine_px: float) -> np.ndarray:
    """rfft2 transfer function on the fine grid: PSF × detector pixel aperture (sinc).
    Cached: a data set of hundreds of pairs reuses a handful of OTFs."""
    extent_um = (12.0 * side.emission_wavelength_um / side.na + 2.0 * abs(defocus_um + side.defocus_um) * side.na
                 + 8.0 * side.spherical_rms_waves * side.emission_wavelength_um / side.na)
    half = int(np.ceil(extent_um / 2.0 / fine_px_um))
    half = min(half, (min(fine_shape) - 1) // 2)
    psf = _psf_for(side, fine_px_um, 2 * half + 1, defocus_um).astype(np.float32)
    padded = np.zeros(fine_shape, dtype=np.float32)
    padded[: psf.shape[0], : psf.shape[1]] = psf
    padded = np.roll(padded, (-half, -half), axis=(0, 1))
    otf = sfft.rfft2(padded)
    if aperture_fine_px > 0.0:
        fy = sfft.fftfreq(fine_shape[0])[:, None]
        fx = sfft.rfftfreq(fine_shape[1])[None, :]
        otf *= (np.sinc(fy * aperture_fine_px) * np.sinc(fx * aperture_fine_px)).astype(np.float32)
    return otf.astype(np.complex64)


def _point_spectrum(points_yx: np.ndarray, weights: np.ndarray, fine_shape: tuple[int, int],
                    diameter_fine_px: float) -> np.ndarray:
    """Exact rfft2 of weighted Dirac points at sub-pixel positions, as a (H×K)(K×W) product."""
    fy = sfft.fftfreq(fine_shape[0])
    fx = sfft.rfftfreq(fine_shape[1])
    ey = np.exp(-2j * np.pi * np.outer(fy, points_yx[:, 0])).astype(np.complex64)
    ex = np.exp(-2j * np.pi * np.outer(points_yx[:, 1], fx)).astype(np.complex64)
    spectrum = (ey * weights[None, :].astype(np.float32)) @ ex
    if diameter_fine_px > 0:
        sigma = diameter_fine_px / 2.0 / np.sqrt(5.0)  # RMS width of a projected uniform sphere
        spectrum *= np.exp(-2 * np.pi**2 * sigma**2 * (fy[:, None] ** 2 + fx[None, :] ** 2)).astype(np.float32)
    return spectrum


def camera_pattern(det: Detector, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel (offset, gain, read noise) maps of a camera; uniform unless ``det.kind == "scmos"``.

    An sCMOS pixel has its own amplifier: offsets spread by ``offset_sd`` counts, gains by
    ``gain_sd``, and read noise is log-normal around ``read_noise`` (a few percent of pixels several
    times noisier, the "salt" seen in dark frames). Drawn from ``pattern_seed``, not the frame's
    seed, so one camera keeps its pattern across frames, as real ones do.
    """
    if det.kind != "scmos":
        return (np.full(shape, det.offset, np.float32), np.full(shape, det.gain, np.float32),
                np.full(shape, det.read_noise, np.float32))
    prng = np.random.default_rng([det.pattern_seed, *shape])
    offset = det.offset + det.offset_sd * prng.standard_normal(shape)
    gain = det.gain * (1.0 + det.gain_sd * prng.standard_normal(shape))
    read = det.read_noise * prng.lognormal(0.0, 0.5, shape)
    return offset.astype(np.float32), np.clip(gain, 0.1 * det.gain, None).astype(np.float32), read.astype(np.float32)


def _expose(expected_photons: np.ndarray, det: Detector, rng: np.random.Generator) -> np.ndarray:
    frames = max(det.frames_averaged, 1)
    electrons = rng.poisson(np.clip(expected_photons, 0, None) * frames).astype(np.float32)
    if det.kind == "emccd":
        # gain register: n electrons out of the register ~ Gamma(n, 1) (mean n, variance n on top
        # of the Poisson variance n: excess noise factor √2); zero in, zero out.
        electrons = rng.gamma(np.maximum(electrons, 1e-12), 1.0).astype(np.float32) * (electrons > 0)
    photons = electrons / frames
    offset, gain, read = camera_pattern(det, photons.shape)
    counts = gain * photons + offset
    if det.read_noise > 0:
        counts += rng.normal(0.0, 1.0, counts.shape).astype(np.float32) * read / np.sqrt(frames)
    top = 2**det.bit_depth - 1
    return np.clip(np.rint(counts), 0, top).astype(np.uint8 if det.bit_depth == 8 else np.uint16)


def expose(expected_photons: np.ndarray, det: Detector, rng: np.random.Generator) -> np.ndarray:
    """Camera counts of one exposure of ``expected_photons`` through ``det`` (the simulator's own model).

    Public so that evaluations which build their own noise-free scenes (time-lapses, drifting
    fields) expose them exactly as training fields are exposed.
    """
    return _expose(expected_photons, det, rng)


def _background(shape: tuple[int, int], mean_photons: float, tilt: np.ndarray,
                texture: np.ndarray | None = None) -> np.ndarray:
    """Autofluorescence/haze: a gentle linear gradient around the mean (known exactly), times an
    optional smooth texture field (mean 1) sampled on this grid."""
    yy = (np.arange(shape[0], dtype=np.float32) / max(shape[0] - 1, 1) - 0.5)[:, None]
    xx = (np.arange(shape[1], dtype=np.float32) / max(shape[1] - 1, 1) - 0.5)[None, :]
    plane = mean_photons * (1.0 + tilt[0] * yy + tilt[1] * xx)
    if texture is not None:
        plane = plane * _resize_smooth(texture, shape)
    return plane


def _texture_field(rng: np.random.Generator, amplitude: float, field_um: float) -> np.ndarray | None:
    """A smooth positive random field (mean ~1, features ~5–20 µm) on a 64² grid spanning the field."""
    if amplitude <= 0:
        return None
    noise = rng.standard_normal((64, 64))
    sigma = max(64 * 8.0 / max(field_um, 1e-6), 1.0)
    smooth = ndimage.gaussian_filter(noise, sigma, mode="wrap")
    smooth = (smooth - smooth.mean()) / (smooth.std() + 1e-12)
    return np.exp(amplitude * smooth - 0.5 * amplitude**2).astype(np.float32)


def _resize_smooth(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    zoom = (shape[0] / field.shape[0], shape[1] / field.shape[1])
    out = ndimage.zoom(field, zoom, order=1, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1]]


def _bright_end(image: np.ndarray) -> float:
    """The level mapped to ``peak_photons``: the 99.9th percentile, or half the maximum for
    sparse samples (beads) where the percentile still lies in the background."""
    return float(max(np.percentile(image, 99.9), 0.5 * image.max(), 1e-12))


def simulate_pair(modality: str, structure: str, *, seed: int, hr_shape: tuple[int, int] = (512, 512),
                  misregister: bool = True, **overrides: object) -> SimulatedPair:
    """Simulate one LR/HR pair of ``structure`` for ``modality`` (deterministic in ``seed``).

    ``overrides`` replace :class:`ModalitySpec` fields (``defocus_layer_um=0``) or one side's
    fields (``hr__saturation_factor=7``); ``density=`` scales the specimen density.
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose from {sorted(MODALITIES)}")
    if structure not in GENERATORS:
        raise ValueError(f"unknown structure {structure!r}; choose from {list(STRUCTURES)}")
    density = float(overrides.pop("density", 1.0))
    spec = MODALITIES[modality].with_overrides(**overrides)
    scale = spec.scale
    hr_h, hr_w = (int(v) for v in hr_shape)
    if hr_h % scale or hr_w % scale or min(hr_h, hr_w) < 32:
        raise ValueError(f"hr_shape {hr_shape} must be >= 32 and divisible by the LR/HR scale {scale}")
    rng = np.random.default_rng(seed)
    os_ = spec.oversample
    if os_ < 1 or os_ % 2 == 0:
        raise ValueError("oversample must be odd so HR pixel centres fall on the fine grid")
    fine_px = spec.hr.pixel_size_um / os_

    transform = (Misregistration.random(rng, (hr_h, hr_w), spec.max_shift_px, spec.max_rotation_deg,
                                        spec.max_scale_error, spec.elastic_amplitude_px)
                 if misregister else Misregistration.identity((hr_h, hr_w)))
    max_disp = 0.0
    if misregister:
        border = np.array([[0, 0], [0, hr_w - 1], [hr_h - 1, 0], [hr_h - 1, hr_w - 1]], dtype=np.float64)
        uy, ux = transform.displacement_at(border[:, 0], border[:, 1])
        max_disp = float(np.max(np.abs(np.concatenate([uy, ux])))) + 4 * spec.elastic_amplitude_px
    margin = int(np.ceil(max_disp)) + 24
    margin += (-margin) % scale
    fine_shape = ((hr_h + 2 * margin) * os_, (hr_w + 2 * margin) * os_)
    # the FFT is fastest on 5-smooth sizes; extra rows on the far side are simply cropped away
    fine_shape = (sfft.next_fast_len(fine_shape[0], real=True), sfft.next_fast_len(fine_shape[1], real=True))

    generator = GENERATORS[structure]
    if structure == "beads":
        # isolated at the LR resolution: ≥ 3 × the LR Airy FWHM (≥ 1 µm) between beads
        separation = max(1.0, 3 * 0.51 * spec.lr.emission_wavelength_um / spec.lr.na)
        generator = partial(generator, min_separation_um=separation)
    layers: list[tuple[float, Specimen]] = []
    if spec.defocus_layer_um and spec.defocus_fraction > 0 and structure != "beads":  # beads sit on the coverslip
        layers.append((0.0, generator(fine_shape, fine_px, rng, density * (1 - spec.defocus_fraction))))
        layers.append((spec.defocus_layer_um, generator(fine_shape, fine_px, rng, density * spec.defocus_fraction)))
    else:
        layers.append((0.0, generator(fine_shape, fine_px, rng, density)))

    spectra = []
    for depth, specimen in layers:
        spectrum = sfft.rfft2(specimen.density, workers=-1)
        if specimen.points_yx is not None and len(specimen.points_yx):
            spectrum = spectrum + _point_spectrum(specimen.points_yx, specimen.point_weights, fine_shape,
                                                  specimen.point_diameter_um / fine_px)
        spectra.append((depth, spectrum))

    def image_through(side: ImagingSpec, aperture_fine_px: float) -> np.ndarray:
        total = None
        for depth, spectrum in spectra:
            term = spectrum * _otf(side, fine_px, fine_shape, depth, aperture_fine_px)
            total = term if total is None else total + term
        return sfft.irfft2(total, s=fine_shape, workers=-1).astype(np.float32)

    hr_aperture = os_ if spec.hr.sampling == "camera" else 0.0
    lr_aperture = os_ * scale if spec.lr.sampling == "camera" else 0.0
    hr_fine = image_through(spec.hr, hr_aperture)
    lr_fine = image_through(spec.lr, lr_aperture)

    def fine_index(hr_coord: np.ndarray) -> np.ndarray:
        return (hr_coord + margin) * os_ + os_ // 2

    hr_sl = (slice(fine_index(0), fine_index(hr_h), os_), slice(fine_index(0), fine_index(hr_w), os_))
    hr_signal = hr_fine[hr_sl]
    lr_signal_on_hr = lr_fine[hr_sl]

    # LR pixel i spans HR pixels [i·s, (i+1)·s): its centre, in HR pixels, is i·s + (s−1)/2.
    lr_h, lr_w = hr_h // scale, hr_w // scale
    py, px = np.meshgrid(np.arange(lr_h) * scale + (scale - 1) / 2.0,
                         np.arange(lr_w) * scale + (scale - 1) / 2.0, indexing="ij")
    sy, sx = transform.inverse_map(py, px) if misregister else (py, px)
    lr_signal = ndimage.map_coordinates(lr_fine, [fine_index(sy), fine_index(sx)], order=1, mode="nearest")

    hr_gain = spec.hr.detector.peak_photons / _bright_end(hr_signal)
    lr_gain = spec.lr.detector.peak_photons / _bright_end(lr_signal_on_hr)
    tilt = rng.uniform(-0.15, 0.15, 2)
    texture = (_texture_field(np.random.default_rng([seed, 7]), spec.background_texture,
                              max(hr_h, hr_w) * spec.hr.pixel_size_um) if spec.background_texture > 0 else None)
    bg_hr = _background((hr_h, hr_w), spec.hr.detector.background_photons, tilt, texture)
    bg_lr = _background((lr_h, lr_w), spec.lr.detector.background_photons, tilt, texture)
    bg_lr_on_hr = _background((hr_h, hr_w), spec.lr.detector.background_photons, tilt, texture)

    hr_photons = np.clip(hr_signal, 0, None) * hr_gain + bg_hr
    lr_photons = np.clip(lr_signal, 0, None) * lr_gain + bg_lr
    lr_on_hr_photons = np.clip(lr_signal_on_hr, 0, None) * lr_gain + bg_lr_on_hr
    hd, ld = spec.hr.detector, spec.lr.detector

    beads_hr = None
    first = layers[0][1]
    if first.points_yx is not None:
        beads_hr = ((first.points_yx - os_ // 2) / os_ - margin).astype(np.float64)
        inside = ((beads_hr[:, 0] >= 0) & (beads_hr[:, 0] <= hr_h - 1)
                  & (beads_hr[:, 1] >= 0) & (beads_hr[:, 1] <= hr_w - 1))
        beads_hr = beads_hr[inside]

    return SimulatedPair(
        lr=_expose(lr_photons, ld, rng),
        hr=_expose(hr_photons, hd, rng),
        truth_lr_on_hr=(ld.gain * lr_on_hr_photons + ld.offset).astype(np.float32),
        hr_clean=(hd.gain * hr_photons + hd.offset).astype(np.float32),
        lr_pixel_size_um=spec.lr.pixel_size_um,
        hr_pixel_size_um=spec.hr.pixel_size_um,
        modality=modality,
        structure=structure,
        emission_wavelength_nm=spec.hr.emission_wavelength_um * 1000.0,
        background_lr=float(ld.gain * ld.background_photons + ld.offset),
        background_hr=float(hd.gain * hd.background_photons + hd.offset),
        transform=transform,
        bead_positions_hr_px=beads_hr,
        seed=seed,
    )
