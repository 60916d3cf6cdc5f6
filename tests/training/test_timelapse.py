"""The held-out TIRF time-lapse: the sequence really drifts, bleaches and keeps one camera."""

from dataclasses import replace

import numpy as np
from srscope.training.evaluation.timelapse import CAMERAS, simulate_timelapse


def test_frames_drift_by_whole_lr_pixels_and_bleach():
    seq = simulate_timelapse("ccps", 800_000, CAMERAS[0], frames=3, hr_size=64, drift_lr_px=2, bleach=0.1,
                             turnover=0.0)
    r0, r1 = seq[0].reference, seq[1].reference
    # 2 LR px = 4 HR px of drift; 10 % fewer photons in the next frame
    np.testing.assert_allclose(r1[:-4, :-4], 0.9 * r0[4:, 4:], rtol=1e-5, atol=1e-4)
    assert all(f.lr.dtype == np.uint16 and f.lr.shape == (32, 32) for f in seq)


def test_specimen_turns_over_within_the_sequence():
    seq = simulate_timelapse("ccps", 800_000, CAMERAS[0], frames=3, hr_size=64, drift_lr_px=0, bleach=0.0,
                             turnover=1.0)
    first, last = seq[0].reference, seq[-1].reference
    assert np.corrcoef(first.ravel(), last.ravel())[0, 1] < 0.5   # other pits by the end
    middle = seq[1].reference
    np.testing.assert_allclose(middle, 0.5 * (first + last), rtol=1e-5, atol=1e-4)


def test_camera_offset_is_the_only_difference_between_offset_settings():
    base = replace(CAMERAS[0], offset=0.0)
    high = replace(CAMERAS[0], offset=1000.0)
    a = simulate_timelapse("filaments", 800_010, base, frames=2, hr_size=64)
    b = simulate_timelapse("filaments", 800_010, high, frames=2, hr_size=64)
    for fa, fb in zip(a, b, strict=True):
        diff = fb.lr.astype(np.int64) - fa.lr.astype(np.int64)
        unclipped = fa.lr > 0
        assert np.all(diff[unclipped] == 1000)
        np.testing.assert_array_equal(fa.reference, fb.reference)
