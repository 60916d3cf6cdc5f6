"""Semi-real evaluation pairs: real images from PyPI packages, Gaussian optics, sCMOS/EMCCD cameras."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage
from srscope.training.evaluation import semireal as sr

FORBIDDEN_PACKAGES = {"stardist", "nanopyx", "nanoimagingpack"}


def _require(name: str) -> sr.RealSource:
    source = sr.SOURCES[name]
    pytest.importorskip(source.module, reason=f"{source.package} not installed")
    if not source.available:
        pytest.skip(f"{source.package} installed without {source.relative_path}")
    return source


@pytest.fixture(scope="module")
def pairs() -> dict[tuple[str, str], sr.SemiRealPair]:
    names = sr.available_sources()
    if not names:
        pytest.skip("no semi-real source package installed (pip install srscope-training[semireal])")
    return {(p.source, p.camera.name): p for p in sr.semireal_pairs(names, seed=3)}


def test_registry_is_documented_and_avoids_reserved_packages() -> None:
    assert {"nuclei", "microtubules", "puncta", "neuron"} <= set(sr.SOURCES)
    for source in sr.SOURCES.values():
        assert source.package.lower() not in FORBIDDEN_PACKAGES
        assert source.module.lower() not in FORBIDDEN_PACKAGES
        assert source.licence and source.describe and source.version
        assert source.source_pixel_size_um > 0
        assert source.default_hr_size % 16 == 0
    assert set(sr.available_sources()) <= set(sr.SOURCES)


@pytest.mark.parametrize("name", sorted(sr.SOURCES))
def test_source_loads_real_2d_structure(name: str) -> None:
    source = _require(name)
    image = source.loader()
    assert image.ndim == 2 and image.dtype == np.float32
    assert min(image.shape) >= 112 and np.isfinite(image).all()
    assert image.std() > 0
    # real structure is spatially correlated: it survives smoothing, a pixel shuffle of it does not
    shuffled = np.random.default_rng(0).permutation(image.ravel()).reshape(image.shape)

    def smooth_cv(a: np.ndarray) -> float:
        s = ndimage.gaussian_filter(a.astype(np.float64), 2.0)
        return float(s.std() / s.mean())

    assert smooth_cv(image) > 2.0 * smooth_cv(shuffled)


def test_missing_package_is_reported_not_downloaded() -> None:
    ghost = replace(sr.SOURCES["nuclei"], name="ghost", package="srscope-no-such-package",
                    module="srscope_no_such_package")
    assert not ghost.available
    with pytest.raises(sr.SourceUnavailableError, match="srscope-no-such-package"):
        ghost.loader()
    with pytest.raises(KeyError):
        sr.semireal_pairs(["no-such-source"], seed=0)
    with pytest.raises(KeyError):
        sr.semireal_pairs([], seed=0, cameras=["no-such-camera"])


def test_pair_geometry_dtype_and_calibration(pairs: dict[tuple[str, str], sr.SemiRealPair]) -> None:
    assert {cam for _, cam in pairs} == set(sr.DEFAULT_CAMERAS)
    for pair in pairs.values():
        assert pair.lr.dtype == np.uint16 and pair.hr.dtype == np.uint16
        assert pair.hr_clean.dtype == np.float32 and pair.hr_clean.shape == pair.hr.shape
        assert pair.hr.shape[0] % 16 == 0 and pair.hr.shape[1] % 16 == 0
        assert pair.hr.shape == (2 * pair.lr.shape[0], 2 * pair.lr.shape[1])
        assert pair.object.shape == (2 * pair.hr.shape[0], 2 * pair.hr.shape[1])
        assert pair.lr_pixel_size_um == pytest.approx(0.325) and pair.hr_pixel_size_um == pytest.approx(0.1625)
        assert pair.scale == 2 and pair.lr_pixel_size_um / pair.object_pixel_size_um == pytest.approx(4)
        assert pair.lr_na == 0.4 and pair.hr_na == 0.75 and pair.emission_wavelength_nm == 520.0
        assert pair.camera_description.startswith(pair.camera.name)
        ev = pair.to_eval_pair()
        assert ev.scale == 2 and ev.lr_background() == pytest.approx(pair.background_lr)
    nuclei = [p for (s, _), p in pairs.items() if s == "nuclei"]
    if nuclei:
        assert nuclei[0].hr.shape == (512, 512)


def test_nominal_baseline_psf_is_born_wolf_not_the_gaussian(pairs: dict[tuple[str, str], sr.SemiRealPair]) -> None:
    pair = next(iter(pairs.values()))
    psf = pair.nominal_lr_psf(33)
    assert psf.shape == (33, 33) and psf.sum() == pytest.approx(1.0)
    sigma_lr, sigma_hr = pair.psf_sigma_um
    assert sigma_lr == pytest.approx(0.21 * 0.52 / 0.4) and sigma_hr == pytest.approx(0.21 * 0.52 / 0.75)
    # an Airy pattern has rings: its tail holds more energy than the Gaussian of the same core
    yy, xx = np.mgrid[-16:17, -16:17] * pair.lr_pixel_size_um
    gauss = np.exp(-(yy**2 + xx**2) / (2 * sigma_lr**2))
    gauss /= gauss.sum()
    tail = np.hypot(yy, xx) > 3 * sigma_lr
    assert psf[tail].sum() > 5 * gauss[tail].sum()


def _band_power(image: np.ndarray, lo: float, hi: float) -> float:
    """Power of the mean-removed, Hann-windowed image (no edge leakage) in ``[lo, hi)`` cycles/pixel."""
    window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    a = (image - image.mean()) * window
    power = np.abs(np.fft.fft2(a)) ** 2
    f = np.hypot(np.fft.fftfreq(a.shape[0])[:, None], np.fft.fftfreq(a.shape[1])[None, :])
    return float(power[(f >= lo) & (f < hi)].sum())


def test_lr_is_blurrier_than_hr(pairs: dict[tuple[str, str], sr.SemiRealPair]) -> None:
    for (source, cam), pair in pairs.items():
        if cam != "scmos-500":
            continue
        hr_maps = sr.sensor_maps(pair.camera, pair.hr.shape)
        lr_maps = sr.sensor_maps(pair.camera, pair.lr.shape)
        hr_signal = (pair.hr_clean - hr_maps.offset) / hr_maps.gain
        lr_signal = (pair.lr_clean - lr_maps.offset) / lr_maps.gain
        hr_on_lr = hr_signal.reshape(pair.lr.shape[0], 2, pair.lr.shape[1], 2).sum(axis=(1, 3))
        # same object, same grid: the LR/HR power ratio must fall with frequency (Gaussian OTFs
        # predict ~0.95 at 0.05 and ~0.09 at 0.35 cycles per LR pixel)
        low = _band_power(lr_signal, 0.02, 0.1) / _band_power(hr_on_lr, 0.02, 0.1)
        high = _band_power(lr_signal, 0.3, 0.45) / _band_power(hr_on_lr, 0.3, 0.45)
        assert high < 0.2 * low, source
        # one object flux: a flat LR pixel holds (4/2)² × (0.4/0.75)² ≈ 1.14 × the HR photons
        assert lr_signal.mean() / hr_on_lr.mean() == pytest.approx((0.4 / 0.75) ** 2, rel=0.02)


def test_scmos_offset_map_is_a_fixed_per_pixel_pattern() -> None:
    for name, nominal in (("scmos-100", 100.0), ("scmos-500", 500.0)):
        cam = sr.CAMERAS[name]
        maps = sr.sensor_maps(cam, (128, 128))
        assert maps.offset.mean() == pytest.approx(nominal, abs=1.5)
        assert maps.offset.std() > 2.0 and maps.gain.std() > 0 and maps.read_noise_e.std() > 0
        assert maps.read_noise_e.max() > 3 * np.median(maps.read_noise_e)   # hot (RTS) pixels
        rng = np.random.default_rng(5)
        dark = np.zeros((128, 128))
        a = np.mean([sr.expose(dark, cam, rng)[0] for _ in range(8)], axis=0)
        b = np.mean([sr.expose(dark, cam, rng)[0] for _ in range(8)], axis=0)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8   # the same pattern in every frame
        np.testing.assert_array_equal(sr.sensor_maps(cam, (64, 64)).offset, maps.offset[:64, :64])
    assert not np.allclose(sr.sensor_maps(sr.CAMERAS["scmos-100"], (64, 64)).offset - 100,
                           sr.sensor_maps(sr.CAMERAS["scmos-500"], (64, 64)).offset - 500)
    emccd = sr.sensor_maps(sr.CAMERAS["emccd"], (64, 64))
    assert emccd.offset.std() == 0   # one output amplifier


def _gain_normalised_variance_ratio(cam: sr.CameraModel, photons: float) -> float:
    shape = (256, 256)
    counts, _ = sr.expose(np.full(shape, photons), cam, np.random.default_rng(9))
    maps = sr.sensor_maps(cam, shape)
    electrons = (counts - maps.offset) / (maps.gain * cam.em_gain)
    read_var = float(np.mean((maps.read_noise_e / cam.em_gain) ** 2))
    mean_e = cam.quantum_efficiency * photons + cam.cic_e
    return (float(electrons.var()) - read_var) / mean_e


def test_emccd_doubles_the_shot_noise_variance_and_scmos_does_not() -> None:
    assert _gain_normalised_variance_ratio(sr.CAMERAS["emccd"], 50.0) == pytest.approx(2.0, rel=0.06)
    assert _gain_normalised_variance_ratio(sr.CAMERAS["scmos-500"], 200.0) == pytest.approx(1.0, rel=0.06)


def test_camera_settings_differ_as_stated(pairs: dict[tuple[str, str], sr.SemiRealPair]) -> None:
    source = next(iter(pairs))[0]
    low, high, em = (pairs[(source, c)] for c in ("scmos-100", "scmos-500", "emccd"))
    assert np.percentile(low.hr, 1) < 130
    assert np.percentile(high.hr, 1) > 480
    assert low.background_hr < high.background_hr
    # peak photons 400 vs 1500: relative noise in bright pixels falls accordingly
    def rel_noise(p: sr.SemiRealPair) -> float:
        signal = p.hr_clean - p.background_hr
        bright = signal > np.percentile(signal, 95)
        return float(np.std((p.hr - p.hr_clean)[bright]) / signal[bright].mean())
    assert rel_noise(high) < rel_noise(low) < rel_noise(em)


def test_pairs_are_deterministic_in_seed() -> None:
    name = _require("puncta").name
    a = sr.semireal_pairs([name], seed=1, cameras=["scmos-100", "emccd"])
    b = sr.semireal_pairs([name], seed=1, cameras=["scmos-100", "emccd"])
    c = sr.semireal_pairs([name], seed=2, cameras=["scmos-100", "emccd"])
    for pa, pb, pc in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(pa.lr, pb.lr)
        np.testing.assert_array_equal(pa.hr, pb.hr)
        assert not np.array_equal(pa.hr, pc.hr)
        np.testing.assert_array_equal(pa.hr_clean, pc.hr_clean)   # only the noise depends on the seed
    with pytest.raises(ValueError, match="multiple of 16"):
        sr.semireal_pairs([name], seed=0, hr_size=100)
    small = sr.semireal_pairs([name], seed=0, cameras=["scmos-100"], hr_size=64)[0]
    assert small.hr.shape == (64, 64) and small.lr.shape == (32, 32)
