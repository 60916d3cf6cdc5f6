"""Graph FLOP counting and receptive-field measurement on real ONNX graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from srscope.runtime import Enhancer, read_card
from srscope.runtime.graph_cost import conv_gflop_per_megapixel
from srscope.runtime.synthetic import (
    build_test_model,
    build_unet_model,
    measure_receptive_field,
    structured_image,
)


def test_conv_flops_match_a_hand_count(tmp_path: Path) -> None:
    path = build_test_model(tmp_path / "m.onnx", channels=8, scale=2)
    # Per HR pixel: enc 1→8, dec 8→8, head 8→1 at full res, low 8→8 at quarter area; 3×3 kernels.
    macs_per_hr_pixel = 9 * (1 * 8 + 8 * 8 + 8 * 1) + 9 * 8 * 8 / 4
    expected = 2 * macs_per_hr_pixel * 4 / 1e3  # 4 HR pixels per LR pixel, GFLOP per 1e6 LR pixels
    assert conv_gflop_per_megapixel(path) == pytest.approx(expected)
    assert conv_gflop_per_megapixel(path, probe=64) == pytest.approx(expected)


@pytest.fixture(scope="module")
def small_unet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_unet_model(tmp_path_factory.mktemp("unet") / "u.onnx", width=4, levels=2, scale=2)


def test_unet_card_halo_is_the_measured_receptive_field(small_unet: Path) -> None:
    card = read_card(small_unet)
    assert card.size_multiple == 2  # two 2×2 poolings on the ×2 grid: LR sides must be even
    assert card.halo_px == measure_receptive_field(small_unet, multiple=2, scale=2, max_radius=64)
    # Analytic bound on the HR grid: level-0 convs reach 1 px, level-1 2 px, bottom 4 px, plus
    # pooling/upsampling slack; the measured value must sit below it and well above zero.
    assert 8 <= card.halo_px <= 20


def test_tiled_unet_matches_whole_image(small_unet: Path) -> None:
    """Real pooling levels: tiles must start on the pooling grid or the output would differ."""
    image = structured_image((130, 115), seed=8)
    tiled = Enhancer.from_file(small_unet, tile=64)
    assert tiled.plan(image.shape).count >= 4
    out = tiled.enhance(image)
    ref = Enhancer.from_file(small_unet, tile=None).enhance(image)
    mse = float(np.mean((out.astype(np.float64) - ref) ** 2))
    assert 10 * np.log10(float(np.ptp(ref)) ** 2 / mse) >= 50.0


def test_halo_override_shrinks_padding_and_is_validated(model_x2: Path) -> None:
    card = read_card(model_x2)
    small = Enhancer.from_file(model_x2, tile=48, halo=1)
    assert small.halo == 1 and small.plan((100, 100)).y.halo == 1
    assert small.plan((100, 100)).computed_fraction < Enhancer.from_file(model_x2, tile=48).plan(
        (100, 100)).computed_fraction
    assert small.enhance(structured_image((50, 60))).shape == (100, 120)
    assert card.halo_px > 1
    with pytest.raises(ValueError, match="halo must be >= 0"):
        Enhancer.from_file(model_x2, halo=-1)
