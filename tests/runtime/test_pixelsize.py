"""The one pixel-size tolerance policy shared by srrun and live acquisition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from srscope.runtime.batch import plan_job
from srscope.runtime.card import read_card
from srscope.runtime.io import Image, write_image
from srscope.runtime.pixelsize import REFUSE, WARN, Verdict, check_pixel_size
from srscope.runtime.planework import BatchError


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


@pytest.mark.parametrize("factor", [1.0 + WARN * 0.5, 1.0 + WARN * 2, 1.0 + REFUSE * 1.5])
def test_srrun_judges_by_the_same_policy(tmp_path: Path, model_x2: Path, factor: float):
    """srrun's plan gives exactly the policy's verdict and message (no second set of thresholds)."""
    card = read_card(model_x2)
    px = card.input_pixel_size_um * factor
    src = write_image(tmp_path / "in.ome.zarr", Image(np.zeros((16, 16), np.uint16), "yx", (px, px)))
    expected = check_pixel_size((px, px), card.input_pixel_size_um, model=card.name)
    if expected.refused:
        with pytest.raises(BatchError) as refused:
            plan_job(src, tmp_path / "out.ome.zarr", [str(model_x2)])
        assert str(refused.value) == expected.message
        ignored = plan_job(src, tmp_path / "out.ome.zarr", [str(model_x2)], ignore_pixel_size=True)
        assert ignored.warnings == [check_pixel_size(px, card.input_pixel_size_um, model=card.name,
                                                     ignore=True).message]
    else:
        plan = plan_job(src, tmp_path / "out.ome.zarr", [str(model_x2)])
        assert plan.warnings == ([] if expected.message is None else [expected.message])
        assert plan.output_pixel_size_um == pytest.approx((px / 2, px / 2))
