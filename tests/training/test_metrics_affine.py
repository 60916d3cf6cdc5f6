"""Metrics after the affine intensity fit: invariant to gain/offset, sensitive to structure."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from srscope.training.evaluation.metrics import (
    aggregate,
    fit_affine_intensity,
    score_image,
    summarise,
)


@pytest.fixture
def truth() -> np.ndarray:
    rng = np.random.default_rng(1)
    return gaussian_filter(rng.random((96, 96)), 2.0) * 1000 + 50


def test_affine_fit_recovers_gain_and_offset(truth):
    fit = fit_affine_intensity((truth - 7.0) / 3.0, truth)
    assert fit.gain == pytest.approx(3.0, rel=1e-9)
    assert fit.offset == pytest.approx(7.0, rel=1e-6)


def test_scores_invariant_to_gain_and_offset(truth):
    rng = np.random.default_rng(2)
    candidate = truth + rng.normal(0, 20, truth.shape)
    base = score_image(candidate, truth)
    for gain, offset in [(0.01, 0.0), (250.0, -3e4), (1.0, 1e5)]:
        moved = score_image(gain * candidate + offset, truth)
        assert moved.psnr == pytest.approx(base.psnr, abs=1e-6)
        assert moved.ssim == pytest.approx(base.ssim, abs=1e-6)
        assert moved.nrmse == pytest.approx(base.nrmse, rel=1e-6)
    # Without the fit, a gain change is punished: that is what the fit protects against.
    assert score_image(2.0 * candidate, truth, fit=False).psnr < base.psnr - 3


def test_scores_rank_by_structure(truth):
    identical = score_image(truth, truth)
    assert identical.psnr == float("inf") and identical.ssim == pytest.approx(1.0)
    assert identical.nrmse == pytest.approx(0.0, abs=1e-12)
    blurred = score_image(gaussian_filter(truth, 1.0), truth)
    more_blurred = score_image(gaussian_filter(truth, 3.0), truth)
    assert blurred.psnr > more_blurred.psnr
    assert blurred.ssim > more_blurred.ssim
    assert blurred.nrmse < more_blurred.nrmse


def test_bad_input_is_rejected_with_a_clear_message(truth):
    with pytest.raises(ValueError, match="shape"):
        score_image(truth[:-1], truth)
    with pytest.raises(ValueError, match="constant"):
        score_image(truth, np.ones_like(truth))


def test_aggregate_reports_spread(truth):
    per_image = [{"a": score_image(truth + k, truth), "b": score_image(gaussian_filter(truth, 1 + k), truth)}
                 for k in range(3)]
    table = aggregate(per_image)
    assert set(table) == {"a", "b"}
    assert table["b"]["ssim"].n == 3
    assert table["b"]["ssim"].std > 0
    assert table["b"]["ssim"].min <= table["b"]["ssim"].median <= table["b"]["ssim"].max
    assert summarise([1.0]).std == 0.0
