"""The automatic tile choice, the activation-memory estimate it rests on, and buffer reuse across batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from srscope.runtime import Enhancer, create_session
from srscope.runtime.graph_cost import activation_bytes_per_input_pixel
from srscope.runtime.providers import BoundRunner, activation_budget_bytes
from srscope.runtime.synthetic import structured_image
from srscope.runtime.tiling import (
    TARGET_COMPUTED_FRACTION,
    TilePlan,
    TilingError,
    choose_tile,
)

REPO = Path(__file__).resolve().parents[2]
WIDEFIELD = REPO / "models" / "widefield-10x0.4-to-20x0.75.onnx"


def _fraction(shape: tuple[int, int], tile: int | None, **geometry: int) -> float:
    return TilePlan.for_image(shape, tile=tile, scale=1, **geometry).computed_fraction


def test_whole_image_when_it_fits_the_budget() -> None:
    geometry = {"overlap": 40, "halo": 16, "multiple": 8}
    assert choose_tile((1024, 1024), max_pixels_per_call=1056 * 1056, **geometry) is None
    # one pixel less and it has to tile
    assert choose_tile((1024, 1024), max_pixels_per_call=1056 * 1056 - 1, **geometry) is not None


@pytest.mark.parametrize("shape", [(2048, 2048), (2304, 1536), (1200, 1600)])
def test_chosen_tile_beats_every_fixed_tile_within_the_budget(shape: tuple[int, int]) -> None:
    geometry = {"overlap": 40, "halo": 16, "multiple": 8}
    budget = 1200 * 1200
    tile = choose_tile(shape, max_pixels_per_call=budget, **geometry)
    assert tile is not None
    plan = TilePlan.for_image(shape, tile=tile, scale=1, **geometry)
    assert plan.y.tile * plan.x.tile <= budget
    chosen = plan.computed_fraction
    assert chosen <= TARGET_COMPUTED_FRACTION
    for fixed in (256, 384, 512, 768, 1024):
        fixed_plan = TilePlan.for_image(shape, tile=fixed, scale=1, **geometry)
        if fixed_plan.y.tile * fixed_plan.x.tile <= budget:
            assert chosen <= fixed_plan.computed_fraction + 1e-9
    assert chosen < _fraction(shape, 512, **geometry)


def test_batch_counts_against_the_budget() -> None:
    geometry = {"overlap": 40, "halo": 16, "multiple": 8}
    one = choose_tile((2048, 2048), max_pixels_per_call=1200 * 1200, batch=1, **geometry)
    four = choose_tile((2048, 2048), max_pixels_per_call=1200 * 1200, batch=4, **geometry)
    plan = TilePlan.for_image((2048, 2048), tile=four, scale=1, **geometry)
    assert min(4, plan.count) * plan.y.tile * plan.x.tile <= 1200 * 1200
    assert four < one
    with pytest.raises(TilingError):
        choose_tile((64, 64), max_pixels_per_call=0, **geometry)


def test_activation_estimate_counts_the_unet_skip_tensors() -> None:
    per_px = activation_bytes_per_input_pixel(WIDEFIELD, probe=128)
    # The ×2 U-Net at width 8 keeps a 8-channel HR skip tensor (8·4·4 B per input pixel) alive while
    # its decoder concatenates 16 + 8 channels: the live peak is well above the largest tensor alone.
    largest_single = 24 * 4 * 4
    assert per_px > largest_single
    assert per_px == activation_bytes_per_input_pixel(WIDEFIELD, probe=256)  # per pixel: size-independent


def test_auto_enhancer_runs_whole_when_it_fits_and_tiles_under_a_small_budget() -> None:
    image = structured_image((200, 232), seed=4)
    auto = Enhancer.from_file(WIDEFIELD, device="cpu")
    assert auto.tile == "auto"
    assert auto.pixels_per_call * 2 * activation_bytes_per_input_pixel(WIDEFIELD, probe=128) <= (
        activation_budget_bytes(auto.info) * 1.001)
    whole = Enhancer.from_file(WIDEFIELD, device="cpu", tile=None)
    assert auto.tile_for(image.shape) is None
    np.testing.assert_array_equal(auto.enhance(image), whole.enhance(image))
    # A budget of one 128² tile per call: the plan tiles, the output still matches whole-image
    # inference to the calibrated halo's 60 dB.
    auto._pixels_per_call = 128 * 128
    auto._auto_tiles.clear()
    plan = auto.plan(image.shape)
    assert plan.count > 1 and plan.y.tile * plan.x.tile <= 128 * 128
    reference = whole.enhance(image).astype(np.float64)
    tiled = auto.enhance(image).astype(np.float64)
    psnr = 10 * np.log10(np.ptp(reference) ** 2 / np.mean((tiled - reference) ** 2))
    assert psnr >= 60


def test_reused_buffers_do_not_leak_between_frames(model_x2: Path) -> None:
    enhancer = Enhancer.from_file(model_x2, device="cpu", tile=None, batch_size=1)
    frames = [structured_image((96, 80), seed=s) for s in range(3)]
    together = enhancer.enhance_many(frames)  # same shape, one frame per call: one reused buffer
    for frame, out in zip(frames, together):
        np.testing.assert_array_equal(out, Enhancer.from_file(model_x2, device="cpu", tile=None).enhance(frame))
    tiled = Enhancer.from_file(model_x2, device="cpu", tile=48, batch_size=3)
    np.testing.assert_array_equal(tiled.enhance_many(frames)[2], tiled.enhance(frames[2]))


def test_bound_runner_matches_session_run_and_reuses_its_output(model_x2: Path) -> None:
    session, info = create_session(model_x2, "cpu")
    runner = BoundRunner(session, info)
    assert runner.device == "cpu"
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    a, b = (rng.random((2, 1, 32, 48), dtype=np.float32) for _ in range(2))
    out_a = runner.run(a)
    np.testing.assert_array_equal(out_a, session.run(None, {name: a})[0])
    out_b = runner.run(b)
    assert out_b is out_a  # same shape: the same bound buffer, overwritten
    np.testing.assert_array_equal(out_b, session.run(None, {name: b})[0])
    assert isinstance(session.io_binding(), ort.IOBinding)
