"""SQUIRREL-style RSE/RSP: an exact re-blur scores ~0 / ~1, and artifacts show up in the error map."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from srscope.training.evaluation.squirrel import block_mean, squirrel


@pytest.fixture
def high_res() -> np.ndarray:
    rng = np.random.default_rng(3)
    img = np.zeros((128, 128))
    img[rng.integers(0, 128, 150), rng.integers(0, 128, 150)] = 1.0
    return gaussian_filter(img, 1.0) * 500


def test_exact_reblur_gives_zero_error_and_unit_correlation(high_res):
    reference = block_mean(gaussian_filter(high_res, 2.5), 2) * 3.0 + 40.0
    result = squirrel(reference, high_res, scale=2)
    assert result.rse_relative < 1e-3
    assert result.rsp > 0.9999
    assert result.rsf_sigma_px == pytest.approx(2.5, abs=0.05)
    assert result.gain == pytest.approx(3.0, rel=1e-3)
    assert result.offset == pytest.approx(40.0, abs=0.5)
    assert result.error_map.shape == reference.shape


def test_hallucinated_structure_is_localised_in_the_error_map(high_res):
    reference = block_mean(gaussian_filter(high_res, 2.5), 2)
    faked = high_res.copy()
    faked[62:64, 20:100] += 20.0  # a faint filament the sample does not have
    result = squirrel(reference, faked, scale=2)
    exact = squirrel(reference, high_res, scale=2)
    assert result.rse > 10 * exact.rse
    assert result.rsp < exact.rsp
    band = np.zeros(result.error_map.shape, dtype=bool)
    band[29:34, 10:50] = True  # the fake filament on the 2× coarser grid
    assert result.error_map[band].mean() > 5 * result.error_map[~band].mean()


def test_shape_mismatch_is_a_clear_error(high_res):
    with pytest.raises(ValueError, match="not reference"):
        squirrel(high_res[:64, :64], high_res[:100], scale=2)


def test_rsf_search_on_the_centre_still_scores_the_whole_image():
    rng = np.random.default_rng(4)
    img = np.zeros((640, 640))
    img[rng.integers(0, 640, 2000), rng.integers(0, 640, 2000)] = 1.0
    high_res = gaussian_filter(img, 1.0) * 500
    reference = block_mean(gaussian_filter(high_res, 3.0), 2)
    reference[:20, :20] += 50.0  # a defect outside the central search window
    result = squirrel(reference, high_res, scale=2, search_size=128)
    assert result.rsf_sigma_px == pytest.approx(3.0, abs=0.05)
    assert result.error_map[:20, :20].mean() > 20 * result.error_map[100:, 100:].mean()
