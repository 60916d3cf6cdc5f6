"""Registration stages against known ground truth on small simulated pairs."""

import numpy as np
import pytest
from scipy import ndimage
from srscope.training.data.accuracy import stage_errors
from srscope.training.data.background import estimate_background
from srscope.training.data.elastic import block_shifts
from srscope.training.data.global_match import global_shift
from srscope.training.data.register import register_pair
from srscope.training.data.resample import resample_to_hr
from srscope.training.data.simulate import simulate_pair


@pytest.fixture(scope="module")
def widefield_pair():
    return simulate_pair("widefield", "mitochondria", seed=21, hr_shape=(256, 256))


def test_global_ncc_recovers_a_subpixel_shift(widefield_pair):
    ref = widefield_pair.hr_clean
    true = (2.37, -1.62)
    # moving(x + shift) = reference(x)  ⇔  moving = reference shifted by +shift
    moving = ndimage.shift(ref, true, order=3, mode="nearest")
    est = global_shift(ref, moving)
    assert est.shift_yx == pytest.approx(true, abs=0.05)
    assert est.peak > 0.9


def test_block_shifts_are_unbiased_for_a_uniform_shift(widefield_pair):
    ref = widefield_pair.hr_clean
    moving = ndimage.shift(ref, (0.6, -0.3), order=3, mode="nearest")
    est = block_shifts(ref, moving, 64)
    assert est.valid.sum() >= 10
    assert np.median(est.shift[0][est.valid]) == pytest.approx(0.6, abs=0.05)
    assert np.median(est.shift[1][est.valid]) == pytest.approx(-0.3, abs=0.05)


def test_resampling_keeps_pixel_centres():
    """A linear ramp sampled at LR pixel centres comes back as the same ramp on the HR grid."""
    s = 2
    hr_coords = np.arange(64, dtype=np.float64)
    lr_centres = np.arange(32) * s + (s - 1) / 2
    lr = np.tile(lr_centres, (32, 1)).astype(np.float32)
    up = resample_to_hr(lr, 0.325, 0.1625)
    assert up.shape == (64, 64)
    np.testing.assert_allclose(up[5, 2:-2], hr_coords[2:-2], atol=1e-4)


def test_each_stage_improves_and_elastic_reaches_subpixel(widefield_pair):
    err = stage_errors(widefield_pair, start_block=128)
    assert err["rms_none_px"] > err["rms_global_px"] > err["rms_elastic_px"]
    assert err["rms_elastic_structured_px"] < 0.25
    assert err["correlation"]["final"] > err["correlation"]["global"] > err["correlation"]["before"]


def test_drift_only_for_confocal_sted():
    pair = simulate_pair("confocal-sted", "beads", seed=4, hr_shape=(256, 256), density=3.0)
    err = stage_errors(pair, elastic=False)
    assert err["rms_none_px"] > 0.1
    assert err["rms_global_px"] < 0.15


def test_background_estimate_close_to_truth(widefield_pair):
    bg = estimate_background(widefield_pair.hr)
    assert abs(bg - widefield_pair.background_hr) < 0.15 * (widefield_pair.background_hr - 100)


def test_quality_gate_rejects_a_mismatched_pair(widefield_pair):
    other = simulate_pair("widefield", "mitochondria", seed=99, hr_shape=(256, 256))
    bad = register_pair(other.lr, widefield_pair.hr, other.lr_pixel_size_um, other.hr_pixel_size_um, start_block=128)
    assert not bad.accepted and bad.reasons
    good = register_pair(widefield_pair.lr, widefield_pair.hr, 0.325, 0.1625, start_block=128)
    assert good.accepted
    assert good.lr.shape == good.hr.shape == (236, 236) and good.lr.dtype == np.float32
