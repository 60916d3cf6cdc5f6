"""Domain randomisation: every knob is drawn in its stated range and really changes the simulated data.

Each test simulates the same specimen (same seed) with one knob moved and measures the effect on
the images, so a knob that is drawn but never reaches the simulator fails here.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage
from srscope.training.data.modalities import MODALITIES, Detector
from srscope.training.data.randomise import DomainRandomisation, Span, draw_field
from srscope.training.data.simulate import camera_pattern, simulate_pair

R = DomainRandomisation()
WF = MODALITIES["widefield"]
SHAPE = (128, 128)


@pytest.fixture(scope="module")
def draws() -> list:
    return [draw_field("widefield", np.random.default_rng([i, 1])) for i in range(300)]


def _det(**kw) -> Detector:
    base = {"gain": 1.0, "offset": 100.0, "read_noise": 2.0, "bit_depth": 16, "peak_photons": 2000.0, "background_photons": 100.0}
    return Detector(**{**base, **kw})


def _sim(structure: str = "filaments", seed: int = 3, **overrides):
    return simulate_pair("widefield", structure, seed=seed, hr_shape=SHAPE, misregister=False, **overrides)


def _hf_power(image: np.ndarray) -> float:
    """Share of the (mean-free) spectral power above a third of Nyquist: falls as an image blurs."""
    f = np.abs(np.fft.fftshift(np.fft.fft2(image - image.mean()))) ** 2
    h, w = image.shape
    yy, xx = np.mgrid[-h // 2:h - h // 2, -w // 2:w - w // 2]
    r = np.hypot(yy / (h / 2), xx / (w / 2))
    return float(f[r > 1 / 3].sum() / f.sum())


def _in_range(values: list[float], span: Span, coverage: float = 0.8) -> None:
    v = np.asarray(values)
    assert v.min() >= span.lo - 1e-9 and v.max() <= span.hi + 1e-9
    if span.log:
        spread = (np.log(v.max()) - np.log(v.min())) / (np.log(span.hi) - np.log(span.lo))
    else:
        spread = (v.max() - v.min()) / (span.hi - span.lo)
    assert spread >= coverage, f"draws cover only {spread:.0%} of [{span.lo}, {span.hi}]"


def test_draws_cover_every_stated_range(draws) -> None:
    lr = [d.overrides["lr__detector"] for d in draws]
    _in_range([d.offset for d in lr], R.offset_counts)
    _in_range([d.peak_photons for d in lr], R.peak_photons)
    _in_range([d.background_photons / d.peak_photons for d in lr], R.background_fraction)
    _in_range([d.overrides["background_texture"] for d in draws], R.background_texture)
    _in_range([d.overrides["defocus_layer_um"] for d in draws], R.haze_depth_um)
    _in_range([d.overrides["defocus_fraction"] for d in draws], R.haze_fraction)
    _in_range([d.overrides["lr__emission_wavelength_um"] * 1000 for d in draws], R.emission_nm)
    _in_range([d.overrides["lr__defocus_um"] for d in draws], R.focus_error_um)
    _in_range([d.overrides["lr__spherical_rms_waves"] for d in draws], R.spherical_rms_waves)
    _in_range([d.overrides["density"] for d in draws], R.density)
    na = np.array([d.overrides["lr__na"] for d in draws]) / WF.lr.na
    assert 0.95 - 1e-9 <= na.min() < 0.96 and 1.04 < na.max() <= 1.05 + 1e-9
    px = np.array([d.overrides["lr__pixel_size_um"] for d in draws]) / WF.lr.pixel_size_um
    assert 0.9 - 1e-9 <= px.min() < 0.92 and 1.08 < px.max() <= 1.1 + 1e-9
    ratio = np.array([d.overrides["hr__pixel_size_um"] / d.overrides["lr__pixel_size_um"] for d in draws])
    np.testing.assert_allclose(ratio, 0.5)   # the ×2 grid of the card is kept
    assert {d.kind for d in lr} == {"ccd", "scmos", "emccd"}
    assert {d.overrides["hr__detector"].kind for d in draws} <= {"ccd", "scmos"}
    # no camera is driven into saturation: peak + background stays in 60 % of the range
    for d in lr:
        assert d.gain * (d.peak_photons + d.background_photons) <= 0.6 * (65535 - d.offset) + 1e-6


def test_offset_shifts_counts_by_exactly_the_offset() -> None:
    a = _sim(lr__detector=_det(offset=0.0, read_noise=0.0))
    b = _sim(lr__detector=_det(offset=1000.0, read_noise=0.0))
    np.testing.assert_array_equal(b.lr.astype(np.int64) - a.lr.astype(np.int64), 1000)


def test_gain_scales_counts_above_the_offset() -> None:
    a = _sim(lr__detector=_det(gain=0.5, read_noise=0.0))
    b = _sim(lr__detector=_det(gain=4.0, read_noise=0.0))
    ratio = (b.lr.astype(float) - 100).mean() / (a.lr.astype(float) - 100).mean()
    assert ratio == pytest.approx(8.0, rel=0.02)


def test_photon_budget_sets_the_shot_noise() -> None:
    def relative_noise(peak: float) -> float:
        p = _sim(lr__detector=_det(peak_photons=peak, background_photons=0.05 * peak, read_noise=0.0))
        t = p.truth_lr_on_hr   # LR pixel i is centred between HR pixels 2i and 2i+1
        expected = 0.25 * (t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2])
        flat = expected <= np.percentile(expected, 30)   # background: no interpolation error
        return float(np.std((p.lr - expected)[flat]) / (expected[flat] - 100).mean())
    # 100 → 10,000 photons: ten times less relative noise (√100), within the resampling slack
    assert 6.0 < relative_noise(100.0) / relative_noise(10000.0) < 14.0


def test_read_noise_raises_the_dark_floor() -> None:
    dark = {"peak_photons": 1e-3, "background_photons": 0.0}
    quiet = _sim(lr__detector=_det(read_noise=0.5, **dark)).lr.astype(float)
    loud = _sim(lr__detector=_det(read_noise=8.0, **dark)).lr.astype(float)
    assert loud.std() == pytest.approx(8.0, rel=0.1) and quiet.std() < 1.0


def test_scmos_has_a_fixed_per_pixel_pattern_and_emccd_doubles_the_shot_noise() -> None:
    scmos = _det(kind="scmos", offset_sd=3.0, gain_sd=0.02, pattern_seed=11)
    off1, gain1, read1 = camera_pattern(scmos, (64, 64))
    off2, _, _ = camera_pattern(scmos, (64, 64))
    np.testing.assert_array_equal(off1, off2)                   # the same camera every frame
    assert 2.0 < off1.std() < 4.0 and gain1.std() > 0.01 and read1.std() > 0.3
    other, _, _ = camera_pattern(replace(scmos, pattern_seed=12), (64, 64))
    assert not np.array_equal(off1, other)
    flat = {"peak_photons": 1e-3, "read_noise": 0.0, "offset": 0.0}
    ccd = _sim(lr__detector=_det(background_photons=400.0, **flat)).lr.astype(float)
    em = _sim(lr__detector=_det(background_photons=400.0, kind="emccd", **flat)).lr.astype(float)
    assert ccd.mean() == pytest.approx(em.mean(), rel=0.02)
    assert em.var() / ccd.var() == pytest.approx(2.0, rel=0.15)


def test_background_fraction_and_texture_change_the_background() -> None:
    low = _sim(structure="vesicles", lr__detector=_det(background_photons=20.0, read_noise=0.0))
    high = _sim(structure="vesicles", lr__detector=_det(background_photons=1000.0, read_noise=0.0))
    assert np.percentile(high.lr, 5) - np.percentile(low.lr, 5) > 800
    flat = _sim(structure="vesicles", background_texture=0.0, lr__detector=_det(background_photons=1000.0))
    textured = _sim(structure="vesicles", background_texture=0.6, lr__detector=_det(background_photons=1000.0))
    smooth = [ndimage.gaussian_filter(p.lr.astype(float), 8) for p in (flat, textured)]
    assert smooth[1].std() > 3 * smooth[0].std()


def test_haze_fraction_adds_out_of_focus_light() -> None:
    crisp = _sim(defocus_fraction=0.0)
    hazy = _sim(defocus_fraction=0.5, defocus_layer_um=3.0)
    assert _hf_power(hazy.truth_lr_on_hr) < 0.95 * _hf_power(crisp.truth_lr_on_hr)
    assert hazy.truth_lr_on_hr.std() < crisp.truth_lr_on_hr.std()   # half the light is now a blur


@pytest.mark.parametrize(("knob", "sharp", "blurred"), [
    ("lr__na", 0.42, 0.38),
    ("lr__emission_wavelength_um", 0.45, 0.70),
    ("lr__defocus_um", 0.0, 2.0),
    ("lr__spherical_rms_waves", 0.0, 0.12),
])
def test_optics_knobs_change_the_lr_resolution(knob: str, sharp: float, blurred: float) -> None:
    a = _sim(structure="vesicles", defocus_fraction=0.0, **{knob: sharp})
    b = _sim(structure="vesicles", defocus_fraction=0.0, **{knob: blurred})
    assert _hf_power(b.truth_lr_on_hr) < 0.97 * _hf_power(a.truth_lr_on_hr)
    assert _hf_power(b.hr_clean) == pytest.approx(_hf_power(a.hr_clean), rel=0.02) or knob.endswith("wavelength_um")


def test_pixel_size_jitter_rescales_the_specimen_on_the_grid() -> None:
    a = _sim(structure="vesicles", seed=5, lr__pixel_size_um=0.325 * 0.9, hr__pixel_size_um=0.1625 * 0.9)
    b = _sim(structure="vesicles", seed=5, lr__pixel_size_um=0.325 * 1.1, hr__pixel_size_um=0.1625 * 1.1)
    assert a.lr_pixel_size_um == pytest.approx(0.2925) and b.hr_pixel_size_um == pytest.approx(0.17875)
    # coarser pixels: the same PSF spans fewer pixels, so the image holds more high-frequency power
    assert _hf_power(b.hr_clean) > _hf_power(a.hr_clean)


def test_residual_misregistration_stays_sub_pixel(draws) -> None:
    d = draws[0]
    pair = simulate_pair("widefield", "filaments", seed=1, hr_shape=SHAPE, misregister=d.misregister, **d.overrides)
    shift = np.abs(pair.transform.shift_yx_px)
    assert d.misregister and shift.max() <= R.residual_shift_px
    assert abs(pair.transform.rotation_deg) <= R.residual_rotation_deg


def test_recorded_ranges_round_trip_and_a_dye_band_recipe_redraws_its_own_fields():
    from dataclasses import replace

    from srscope.training.data.randomise import (
        Span,
        defaults_for,
        randomisation_from_dict,
    )
    from srscope.training.gan.degradation_fit import SimRecipe

    for modality in ("widefield", "confocal-sted", "tirf-sim"):
        assert randomisation_from_dict(defaults_for(modality).to_dict()) == defaults_for(modality)
    band = replace(defaults_for("widefield"), emission_nm=Span(500.0, 570.0))
    assert randomisation_from_dict(band.to_dict()) == band
    recipe = SimRecipe.parse("widefield filaments out.zarr --val 1 --fov 64 --randomise --emission-nm 500,570")
    assert recipe.randomisation == band and "--emission-nm 500,570" in recipe.describe()
    # the calibration fields are drawn from the band's ranges, not the defaults
    default = SimRecipe.parse("widefield filaments out.zarr --val 1 --fov 64 --randomise")
    assert not np.array_equal(recipe.fields("val")[0].lr, default.fields("val")[0].lr)
