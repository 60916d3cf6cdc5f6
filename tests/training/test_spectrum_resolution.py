"""Radial spectra, spectral support, decorrelation and FRC respond to resolution the right way."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from srscope.training.evaluation.spectrum import (
    decorrelation_resolution,
    fourier_ring_correlation,
    radial_power_spectrum,
    spectral_support,
)

PIXEL_UM = 0.1


def sample(sigma_px, seed, shape=(256, 256)):
    rng = np.random.default_rng(0)  # same object for every seed; only the noise differs
    obj = np.zeros(shape)
    obj[rng.integers(0, shape[0], 1500), rng.integers(0, shape[1], 1500)] = 100.0
    clean = gaussian_filter(obj, sigma_px) * 10 + 100
    return np.random.default_rng(seed).poisson(clean).astype(float)


def test_white_noise_spectrum_is_flat_and_ends_at_nyquist():
    noise = np.random.default_rng(1).normal(0, 1, (128, 128))
    spec = radial_power_spectrum(noise, PIXEL_UM)
    assert spec.nyquist_per_um == pytest.approx(5.0)
    assert spec.frequency_per_um[-1] == pytest.approx(5.0)
    mid = spec.power[5:60]
    assert mid.std() / mid.mean() < 0.25


def test_support_shrinks_with_blur():
    supports = [spectral_support(radial_power_spectrum(sample(s, 1), PIXEL_UM)) for s in (1.0, 2.0, 4.0)]
    assert supports[0] > supports[1] > supports[2] > 0


def test_decorrelation_resolution_tracks_blur():
    estimates = [decorrelation_resolution(sample(s, 1), PIXEL_UM).resolution_um for s in (1.0, 2.0, 3.0)]
    assert estimates[0] < estimates[1] < estimates[2]
    for sigma, est in zip((1.0, 2.0, 3.0), estimates):
        fwhm_um = 2.355 * sigma * PIXEL_UM
        assert 0.7 * fwhm_um < est < 1.7 * fwhm_um


def test_frc_of_independent_noise_tracks_blur_and_self_frc_is_meaningless():
    sharp = fourier_ring_correlation(sample(1.0, 1), sample(1.0, 2), PIXEL_UM)
    blurred = fourier_ring_correlation(sample(3.0, 1), sample(3.0, 2), PIXEL_UM)
    assert sharp.resolution_um < blurred.resolution_um
    assert 0.7 * 2.355 * 0.3 < blurred.resolution_um < 1.5 * 2.355 * 0.3
    same = sample(3.0, 1)
    assert np.allclose(fourier_ring_correlation(same, same, PIXEL_UM).curve, 1.0)


def test_common_level_support_is_not_fooled_by_noise_free_interpolation():
    """Bilinear ×2 of a noisy LR image has almost no power near the new Nyquist; judged by its own
    floor it would seem to reach far, judged by the input's noise level it must not gain support."""
    from skimage.transform import rescale
    from srscope.training.evaluation.spectrum import support_level

    lr = sample(2.0, 1)[::2, ::2]
    lr_spec = radial_power_spectrum(lr, 2 * PIXEL_UM)
    low = 0.15 * lr_spec.nyquist_per_um
    level = support_level(lr_spec, low)
    up_spec = radial_power_spectrum(rescale(lr, 2, order=1, anti_aliasing=False), PIXEL_UM)
    sharp_spec = radial_power_spectrum(sample(1.0, 1), PIXEL_UM)
    lr_support = spectral_support(lr_spec, level=level, low_cutoff_per_um=low)
    up_support = spectral_support(up_spec, level=level, low_cutoff_per_um=low)
    sharp_support = spectral_support(sharp_spec, level=level, low_cutoff_per_um=low)
    assert up_support <= 1.1 * lr_support
    assert sharp_support > 1.3 * lr_support
