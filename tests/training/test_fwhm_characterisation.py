"""PSF-FWHM characterisation: isolated-spot detection, 19×19 fits, histogram main-peak fit."""

import numpy as np
import pytest
from srscope.training.analysis.gaussfit import SIGMA_TO_FWHM
from srscope.training.evaluation.fwhm import (
    detect_isolated_spots,
    fit_main_peak,
    fit_spot,
    measure_fwhm,
)


def render_spots(shape, centres, sigma, amplitude=1000.0, background=100.0, noise=5.0, seed=0):
    """Point-sampled Gaussians at sub-pixel centres plus Gaussian read noise."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    img = np.full(shape, background)
    for cy, cx in centres:
        img += amplitude * np.exp(-0.5 * (((yy - cy) / sigma) ** 2 + ((xx - cx) / sigma) ** 2))
    return img + np.random.default_rng(seed).normal(0, noise, shape)


def grid_centres(shape, spacing, seed=1):
    rng = np.random.default_rng(seed)
    ys, xs = np.meshgrid(np.arange(spacing, shape[0] - spacing + 1, spacing),
                         np.arange(spacing, shape[1] - spacing + 1, spacing), indexing="ij")
    return np.stack([ys.ravel(), xs.ravel()], 1) + rng.uniform(-0.5, 0.5, (ys.size, 2))


@pytest.mark.parametrize("sigma_px", [1.2, 2.0, 3.5])
def test_recovers_known_gaussian_widths_within_two_percent(sigma_px):
    shape = (256, 256)
    centres = grid_centres(shape, 24)
    img = render_spots(shape, centres, sigma_px)
    spots = detect_isolated_spots(img)
    assert len(spots) == len(centres)
    pixel_nm = 30.0
    result = measure_fwhm([img], {"truth": [img]}, pixel_nm)["truth"]
    true_fwhm = SIGMA_TO_FWHM * sigma_px * pixel_nm
    assert len(result.values_nm) == len(centres)
    assert np.median(result.values_nm) == pytest.approx(true_fwhm, rel=0.02)
    assert result.peak is not None
    assert result.peak.center == pytest.approx(true_fwhm, rel=0.02)


def test_crowded_spots_are_not_counted_as_isolated():
    shape = (128, 128)
    lone = [(30.0, 30.0), (30.0, 95.0)]
    pair = [(95.0, 60.0), (95.0, 66.0)]  # 6 px apart: inside each other's 19×19 crop
    img = render_spots(shape, lone + pair, 1.5)
    found = {tuple(p) for p in detect_isolated_spots(img)}
    assert found == {(30, 30), (30, 95)}


def test_spots_are_measured_at_truth_positions_in_every_image():
    shape = (192, 192)
    centres = grid_centres(shape, 24, seed=4)
    truth = render_spots(shape, centres, 1.5, seed=5)
    blurred = render_spots(shape, centres, 3.0, seed=6)
    result = measure_fwhm([truth], {"input": [blurred], "truth": [truth]}, 30.0)
    assert result["input"].peak.center == pytest.approx(2 * result["truth"].peak.center, rel=0.03)
    assert result["input"].n_spots == result["truth"].n_spots == len(centres)


def test_main_peak_fit_ignores_the_tail():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(110.0, 8.0, 400), rng.uniform(180, 400, 60)])
    peak = fit_main_peak(values)
    assert peak.center == pytest.approx(110.0, abs=3.0)
    assert peak.sigma == pytest.approx(8.0, rel=0.25)
    assert sum(peak.counts) <= values.size


def test_fit_of_empty_crop_is_rejected():
    flat = np.random.default_rng(8).normal(100, 5, (64, 64))
    assert fit_spot(flat, (32, 32)) is None or fit_spot(flat, (32, 32)).amplitude < 50
    assert fit_spot(flat, (3, 3)) is None  # crop would leave the image
