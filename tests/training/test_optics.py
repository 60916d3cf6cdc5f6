"""Optical models: normalisation, the STED donut, and resolution versus the textbook numbers."""

import numpy as np
import pytest
from srscope.training.analysis.gaussfit import fit_gaussian_2d
from srscope.training.optics.psf import airy_fwhm_um, born_wolf_psf, vortex_donut_psf
from srscope.training.optics.scanning import airy_unit_um, confocal_psf, sted_psf


def _fwhm_nm(psf, px_um):
    c = psf.shape[0] // 2
    return fit_gaussian_2d(psf[c - 10:c + 11, c - 10:c + 11]).fwhm * px_um * 1e3


def test_donut_is_dark_on_axis_with_a_ring():
    d = vortex_donut_psf(61, 0.02, 0.775, 1.4)
    c = 30
    assert d.max() == pytest.approx(1.0)
    assert d[c, c] < 1e-3
    ring_r = np.hypot(*(np.array(np.unravel_index(np.argmax(d), d.shape)) - c)) * 0.02
    assert ring_r == pytest.approx(0.38 * 0.775 / 1.4, rel=0.1)  # scalar charge-1 vortex: crest at ≈ 0.38 λ/NA


def test_confocal_and_sted_widths():
    conf = confocal_psf(61, 0.03, 0.633, 0.66, 1.07)
    assert conf.sum() == pytest.approx(1.0)
    assert 275 < _fwhm_nm(conf, 0.03) < 305
    widths = [_fwhm_nm(sted_psf(61, 0.03, 0.633, 0.66, 0.775, 1.07, z), 0.03) for z in (0, 3, 9)]
    assert widths[0] == pytest.approx(_fwhm_nm(conf, 0.03), rel=1e-6)  # ζ = 0 is confocal
    assert widths[0] > widths[1] > widths[2]
    assert 108 < widths[2] < 122


def test_confocal_is_sharper_than_widefield_and_pinhole_matters():
    wf = born_wolf_psf(61, 0.03, 0.66, 1.07, 1.518, oversample=1)
    open_pinhole = confocal_psf(61, 0.03, 0.633, 0.66, 1.07, pinhole_au=5.0)
    closed = confocal_psf(61, 0.03, 0.633, 0.66, 1.07, pinhole_au=0.2)
    assert _fwhm_nm(closed, 0.03) < _fwhm_nm(open_pinhole, 0.03) < _fwhm_nm(wf, 0.03)
    assert _fwhm_nm(wf, 0.03) == pytest.approx(airy_fwhm_um(0.66, 1.07) * 1e3, rel=0.08)
    assert airy_unit_um(0.645, 1.4) == pytest.approx(0.562, abs=0.001)


def test_defocus_spreads_high_na_more_than_low_na():
    """The low-NA input has the larger depth of field: 1 µm defocus barely touches 0.4 NA."""
    def peak_drop(na, px):
        return born_wolf_psf(41, px, 0.532, na, defocus_um=1.0).max() / born_wolf_psf(41, px, 0.532, na).max()
    assert peak_drop(0.4, 0.1) > 0.8
    assert peak_drop(0.75, 0.1) < 0.5
