"""The one pixel-size tolerance policy shared by srrun and live acquisition."""

from __future__ import annotations

import pytest
from srscope.runtime.pixelsize import REFUSE, WARN, Verdict, check_pixel_size


@pytest.mark.parametrize(("actual", "verdict"), [
    (0.325, Verdict.OK), (0.325 * (1 + WARN * 0.9), Verdict.OK), (0.325 * (1 - WARN * 1.1), Verdict.WARN),
    (0.325 * (1 + REFUSE * 0.9), Verdict.WARN), (0.325 * (1 + REFUSE * 1.1), Verdict.REFUSE),
    ((0.325, 0.65), Verdict.REFUSE),  # the worst axis decides
])
def test_thresholds(actual, verdict):
    check = check_pixel_size(actual, 0.325, model="m")
    assert check.verdict is verdict and (check.message is None) == (verdict is Verdict.OK)


def test_messages_and_ignore():
    refused = check_pixel_size(0.65, 0.325, model="wf", what="input")
    assert refused.refused and refused.relative_difference == pytest.approx(1.0)
    assert refused.message == ("input pixel size 0.65 µm differs from model 'wf''s 0.325 µm by 100%; "
                               "use a model trained for this magnification (or --ignore-pixel-size)")
    ignored = check_pixel_size(0.65, 0.325, model="wf", ignore=True)
    assert ignored.verdict is Verdict.WARN and "by 100%" in ignored.message
    with pytest.raises(ValueError, match="positive"):
        check_pixel_size(0.0, 0.325, model="wf")
