"""Bilinear, Lucy–Richardson (with its metric-driven search) and NNLS baselines."""

import numpy as np
import pytest
from scipy.signal import fftconvolve
from skimage.restoration import richardson_lucy as skimage_richardson_lucy
from srscope.training.evaluation.baselines import (
    DeconvolutionOptics,
    bilinear_upsample,
    nnls_deconvolution,
    richardson_lucy,
    richardson_lucy_iterates,
    search_lucy_richardson,
)
from srscope.training.evaluation.fwhm import measure_fwhm
from srscope.training.evaluation.metrics import score_image

PIXEL_UM = 0.1625  # 10x camera pixels after the paper's bilinear ×2


@pytest.fixture(scope="module")
def beads():
    """Sparse point sources blurred by the paper's 10x/0.4 Born & Wolf PSF, with Poisson noise."""
    rng = np.random.default_rng(11)
    obj = np.zeros((192, 192))
    ys, xs = np.meshgrid(np.arange(16, 180, 24), np.arange(16, 180, 24), indexing="ij")
    obj[ys.ravel(), xs.ravel()] = 4000.0
    psf = DeconvolutionOptics(na=0.4, n_immersion=1.0, emission_nm=630).psf(PIXEL_UM)
    blurred = np.clip(fftconvolve(obj, psf, mode="same"), 0, None)
    noisy = rng.poisson(blurred + 2.0).astype(float) - 2.0
    return obj, psf, noisy


def test_fft_lucy_richardson_matches_scikit_image_in_the_interior(beads):
    _, psf, image = beads
    ours = richardson_lucy(np.clip(image, 0, None), psf, iterations=10, damping=0.0)
    reference = skimage_richardson_lucy(np.clip(image, 0, None) + 1e-3, psf, num_iter=10, clip=False)
    inner = (slice(40, -40), slice(40, -40))
    assert np.abs(ours[inner] - reference[inner]).max() < 1e-3 * reference.max()


def test_lucy_richardson_and_nnls_sharpen_beads(beads):
    _, psf, image = beads
    lr = richardson_lucy(image, psf, iterations=20, damping=0.0)
    nnls = nnls_deconvolution(image, psf)
    widths = measure_fwhm([image], {"input": [image], "lr": [lr], "nnls": [nnls]}, PIXEL_UM * 1000, crop=15)
    assert widths["input"].n_spots >= 40
    assert widths["lr"].median_nm < 0.8 * widths["input"].median_nm
    assert widths["nnls"].median_nm < 0.95 * widths["input"].median_nm
    # Deconvolution redistributes intensity but keeps it: total flux within a few percent.
    assert lr.sum() == pytest.approx(np.clip(image, 0, None).sum(), rel=0.05)


def test_iterates_are_the_same_as_separate_runs(beads):
    _, psf, image = beads
    iterates = richardson_lucy_iterates(image, psf, [3, 7], damping=0.01)
    assert np.allclose(iterates[7], richardson_lucy(image, psf, 7, 0.01))
    assert not np.allclose(iterates[3], iterates[7])


def test_damping_suppresses_noise_amplification(beads):
    _, psf, image = beads
    background = (slice(0, 8), slice(0, 192))  # no beads in the top rows
    plain = richardson_lucy(image, psf, iterations=50, damping=0.0)
    damped = richardson_lucy(image, psf, iterations=50, damping=0.1)
    assert damped[background].std() < plain[background].std()


def test_search_picks_the_best_grid_point_on_validation_data(beads):
    obj, psf, image = beads
    truth = fftconvolve(obj, DeconvolutionOptics(0.75, 1.0, 630).psf(PIXEL_UM), mode="same")
    choice = search_lucy_richardson(image, truth, psf, lambda a, b: score_image(a, b).ssim,
                                    iterations=(1, 5, 20), dampings=(0.0, 0.1))
    assert len(choice.grid) == 6
    assert choice.score == max(row[2] for row in choice.grid)
    assert choice.iterations > 1  # deconvolving helps over a single iteration here


def test_bilinear_upsample_keeps_geometry_and_values():
    img = np.arange(16, dtype=float).reshape(4, 4)
    up = bilinear_upsample(img, 2)
    assert up.shape == (8, 8)
    assert up.mean() == pytest.approx(img.mean())
    assert np.array_equal(bilinear_upsample(img, 1), img)
    with pytest.raises(ValueError):
        bilinear_upsample(img[0], 2)


def test_confocal_psf_is_narrower_than_widefield():
    wide = DeconvolutionOptics(1.4, 1.518, emission_nm=670).psf(0.03, size=41)
    conf = DeconvolutionOptics(1.4, 1.518, emission_nm=670, excitation_nm=640).psf(0.03, size=41)
    assert conf.sum() == pytest.approx(1.0) and conf.max() > wide.max()
