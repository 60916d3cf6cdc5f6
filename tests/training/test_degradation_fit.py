"""The degradation fit behind the consistency check: kernel recovery, calibration, embedding."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from scipy.ndimage import correlate, gaussian_filter
from srscope.runtime.card import read_card
from srscope.runtime.consistency import FEATURES, score_plane
from srscope.runtime.synthetic import build_test_model
from srscope.training.gan.degradation_fit import (
    SimRecipe,
    calibrate,
    embed_degradation,
    fit_kernel,
    gaussian_kernel,
)


def _pairs(kernel: np.ndarray, scale: int, n: int = 3, size: int = 192, noise: float = 0.01, seed: int = 0):
    """HR specimens (texture + sparse points) and their LR: an independent 2-D correlation with
    ``kernel`` sampled at the LR pixel centres (HR coordinate i·s + (s − 1)/2), plus noise."""
    rng = np.random.default_rng(seed)
    k = len(kernel)
    start = (scale - k) // 2 + k // 2
    pairs = []
    for _ in range(n):
        hr = gaussian_filter(rng.random((size, size)), 0.8) * 50 + (rng.random((size, size)) > 0.995) * 200
        lr = correlate(hr, kernel, mode="reflect")[start::scale, start::scale][: size // scale, : size // scale]
        pairs.append((lr + rng.normal(0, noise * lr.std(), lr.shape), hr))
    return pairs


@pytest.mark.parametrize("scale,sigma,size", [(2, 1.4, 12), (1, 2.0, 13)])
def test_fit_recovers_a_known_isotropic_kernel(scale, sigma, size):
    true = gaussian_kernel(sigma, size)
    fitted = fit_kernel(_pairs(true, scale), scale, size=size)
    assert fitted.shape == true.shape and abs(fitted.sum() - 1) < 1e-9 and fitted.min() >= 0
    assert np.abs(fitted - true).max() < 0.02 * true.max()


def test_fit_recovers_an_asymmetric_kernel_without_symmetrising():
    true = np.zeros((6, 6))
    true[2:4, 1:5] = [[1, 3, 2, 0.5], [0.5, 2, 3, 1]]
    true /= true.sum()
    fitted = fit_kernel(_pairs(true, 2), 2, size=6, symmetric=False)
    assert np.abs(fitted - true).max() < 0.01 * true.max() + 1e-3


def test_automatic_support_covers_the_kernel():
    true = gaussian_kernel(1.2, 10)
    fitted = fit_kernel(_pairs(true, 2, n=2), 2)
    pad = (len(fitted) - len(true)) // 2
    assert len(fitted) >= len(true) and len(fitted) % 2 == 0
    assert np.abs(fitted - np.pad(true, pad)).max() < 0.02 * true.max()


def test_calibration_covers_its_planes_and_flags_a_mismatch():
    true = gaussian_kernel(1.4, 12)
    pairs = _pairs(true, 2, n=6, size=128, noise=0.02, seed=1)
    samples = [(lr, hr) for lr, hr in pairs]  # a perfect "model": the HR itself is the output
    model = calibrate(true, 2, samples)
    assert set(model.ranges) == set(FEATURES) and 0 < model.error_threshold < 1
    assert not any(score_plane(lr, hr, model).flagged for lr, hr in samples)
    lr, hr = _pairs(true, 2, n=1, size=128, noise=0.02, seed=9)[0]
    assert not score_plane(lr, hr, model).flagged  # a fresh in-domain pair
    wrong = np.roll(hr, 9, axis=1)  # an output that no longer explains its input
    assert score_plane(lr, wrong, model).flagged


def test_embedding_keeps_the_weights_bit_identical(tmp_path):
    path = build_test_model(tmp_path / "m.onnx", scale=2)
    before = {t.name: t.SerializeToString() for t in onnx.load(str(path)).graph.initializer}
    true = gaussian_kernel(1.4, 12)
    model = calibrate(true, 2, _pairs(true, 2, n=3, size=128))
    embed_degradation(path, model)
    after = {t.name: t.SerializeToString() for t in onnx.load(str(path)).graph.initializer}
    assert before == after
    card = read_card(path)
    assert card.degradation == model
    embed_degradation(path, None)
    assert read_card(path).degradation is None


def test_recipe_parses_the_command_printed_in_a_card():
    recipe = SimRecipe.parse("python -m srscope.training.gan.simdataset confocal-sted beads sted-beads.zarr "
                             "--train 48 --val 6 --test 2 --fov 512 --patch 128 --randomise --seed 5000")
    assert recipe == SimRecipe("confocal-sted", ("beads",), 48, 6, 512, 5000, True)
    with pytest.raises(ValueError, match="structures"):
        SimRecipe.parse("widefield nope out.zarr")
