"""Enhancer end to end on real ONNX Runtime sessions, against an independent whole-image reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from srscope.runtime import (
    Enhancer,
    InvalidImageError,
    ModelCardError,
    default_overlap,
    read_card,
)
from srscope.runtime.enhancer import BORDER_CONTEXT_PX, default_border
from srscope.runtime.synthetic import structured_image


def reference_whole_image(model: Path, image: np.ndarray, border: int | None = None) -> np.ndarray:
    """Whole-image inference written independently of srscope.runtime.tiling and .intensity: mirror-pad
    by ``border`` (default: the halo; and up to the size multiple) about the field's edge, one session
    call, crop, denormalise."""
    card = read_card(model)
    h = card.halo_px if border is None else border
    m, s = card.size_multiple, card.integer_scale
    rows, cols = image.shape
    extra_y = -(-(rows + 2 * h) // m) * m - rows - h
    extra_x = -(-(cols + 2 * h) // m) * m - cols - h
    if card.intensity.mode == "percentile":   # each image by its own percentiles, back the same way
        low, high = np.percentile(image.astype(np.float64), [card.intensity.low, card.intensity.high])
        offset_in, scale_in = offset_out, scale_out = float(low), float(high - low)
    else:
        offset_in, scale_in = card.normalization.offset, card.normalization.scale
        offset_out, scale_out = card.denormalization.offset, card.denormalization.scale
    x = (image.astype(np.float32) - np.float32(offset_in)) / np.float32(scale_in)
    x = np.pad(x, ((h, extra_y), (h, extra_x)), mode="symmetric")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
    y = session.run(None, {name: x[None, None].astype(dtype)})[0][0, 0].astype(np.float32)
    y = y[h * s:(h + rows) * s, h * s:(h + cols) * s]
    return y * scale_out + offset_out


def psnr(a: np.ndarray, ref: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - ref) ** 2))
    peak = float(ref.max() - ref.min())
    return float("inf") if mse == 0 else 10 * np.log10(peak ** 2 / mse)


@pytest.mark.parametrize("shape", [(150, 203), (97, 61)])
def test_tiled_matches_whole_image(model_x2: Path, shape: tuple[int, int]) -> None:
    image = structured_image(shape, seed=1)
    enhancer = Enhancer.from_file(model_x2, tile=48, batch_size=3)
    assert enhancer.plan(shape).count > 1, "test must exercise several tiles"
    out = enhancer.enhance(image)
    ref = reference_whole_image(model_x2, image, enhancer.border)
    assert out.shape == (2 * shape[0], 2 * shape[1]) and out.dtype == np.float32
    assert psnr(out, ref) >= 50.0


def test_output_denormalised_with_card_statistics(tmp_path: Path) -> None:
    from srscope.runtime.synthetic import build_test_model

    raw = build_test_model(tmp_path / "raw.onnx", denormalization=(0.0, 1.0))
    counts = build_test_model(tmp_path / "counts.onnx", denormalization=(50.0, 4000.0))
    image = structured_image((40, 50), seed=2)
    network_units = Enhancer.from_file(raw).enhance(image)
    physical = Enhancer.from_file(counts).enhance(image)
    np.testing.assert_allclose(physical, network_units * 4000.0 + 50.0, rtol=1e-5, atol=1e-2)
    # Input normalisation is applied too: a uint16 and a float64 copy of the same counts agree.
    np.testing.assert_allclose(Enhancer.from_file(counts).enhance(image.astype(np.float64)), physical,
                               rtol=0, atol=1e-3)


def test_enhance_many_equals_individual_calls(model_x2: Path) -> None:
    frames = [structured_image((80, 90), seed=k) for k in range(3)] + [structured_image((33, 70), seed=9)]
    enhancer = Enhancer.from_file(model_x2, tile=40, batch_size=5)
    together = enhancer.enhance_many(frames)
    streamed = list(enhancer.enhance_stream(iter(frames), group=2))
    for frame, a, b in zip(frames, together, streamed):
        single = enhancer.enhance(frame)
        np.testing.assert_allclose(a, single, rtol=0, atol=1e-2)
        np.testing.assert_allclose(b, single, rtol=0, atol=1e-2)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 5, 6)), "2D"),
    (np.zeros((0, 5)), "empty"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
    (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN/Inf"),
    (np.zeros((4, 4), dtype=complex), "real"),
])
def test_bad_input_is_a_clear_value_error(model_x2: Path, bad: np.ndarray, message: str) -> None:
    enhancer = Enhancer.from_file(model_x2)
    with pytest.raises(InvalidImageError, match=message) as info:
        enhancer.enhance(bad)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_file_without_card_is_rejected(model_x2: Path, tmp_path: Path) -> None:
    import onnx

    model = onnx.load(str(model_x2))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(ModelCardError, match="no srscope model card"):
        Enhancer.from_file(bare)


def test_checksum_mismatch_is_rejected(model_x2: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_x2))
    init = next(t for t in model.graph.initializer if t.name == "head.weight")
    tampered = numpy_helper.to_array(init).copy()
    tampered[0, 0, 1, 1] += 0.5
    init.CopyFrom(numpy_helper.from_array(tampered, init.name))
    path = tmp_path / "tampered.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelCardError, match="checksum mismatch"):
        Enhancer.from_file(path)


def _shipped_params() -> list:
    """Every shipped model; only the cheapest (smallest halo) runs by default, the rest are slow."""
    shipped = sorted((Path(__file__).resolve().parents[2] / "models").glob("*.onnx"))
    halos = {p: read_card(p, verify=False).halo_px * read_card(p, verify=False).integer_scale for p in shipped}
    cheapest = min(shipped, key=lambda p: (halos[p], p.name)) if shipped else None
    return [pytest.param(p, id=p.stem, marks=() if p == cheapest else pytest.mark.slow) for p in shipped]


SHIPPED = _shipped_params()


@pytest.mark.skipif(not SHIPPED, reason="no shipped models/*.onnx yet")
@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_model_tiles_match_whole_image(model: Path) -> None:
    """Torch-exported generators (real pooling, padding subgraphs, large halo) tile exactly too."""
    card = read_card(model)
    # The smallest tile that fits the overlap, on an image just too big for one tile: 2×2 tiles
    # at the least arithmetic (these halos are >100 px).
    tile = default_overlap(card) + 2 * card.size_multiple
    enhancer = Enhancer.from_file(model, tile=tile, batch_size=2)
    side = tile - 2 * enhancer.border + 3 * card.size_multiple
    image = structured_image((side, side + 5), seed=12)
    assert enhancer.plan(image.shape).count >= 4
    out = enhancer.enhance(image)
    assert out.shape == (image.shape[0] * card.integer_scale, image.shape[1] * card.integer_scale)
    assert psnr(out, reference_whole_image(model, image, enhancer.border)) >= 50.0


MODELS = Path(__file__).resolve().parents[2] / "models"


def test_default_border_is_thin_where_measured_enough_and_the_full_halo_otherwise() -> None:
    """Widefield-type cards (halo below the receptive field) get 8 px; confocal → STED keeps its halo."""
    widefield = read_card(MODELS / "widefield-10x0.4-to-20x0.75.onnx", verify=False)
    sted = read_card(MODELS / "confocal-to-sted.onnx", verify=False)
    assert default_border(widefield) == BORDER_CONTEXT_PX == 8 < widefield.halo_px
    assert default_border(sted) == sted.halo_px == sted.receptive_field_px
    # congruent to the halo modulo the size multiple: the pooling grid stays where it was
    assert (widefield.halo_px - default_border(widefield)) % widefield.size_multiple == 0
    assert default_border(widefield, halo=4) == 4  # never more than the halo asked for


def test_thin_border_changes_only_the_outer_ring_of_the_shipped_widefield_model() -> None:
    model = MODELS / "widefield-10x0.4-to-20x0.75.onnx"
    card = read_card(model)
    image = structured_image((160, 168), seed=21)
    thin = Enhancer.from_file(model, device="cpu", tile=None)
    full = Enhancer.from_file(model, device="cpu", tile=None, border=card.halo_px)
    assert thin.border == 8 and thin.plan((1024, 1024)).tile_shape == (1040, 1040)
    a, b = thin.enhance(image), full.enhance(image)
    span = float(np.ptp(b))
    ring = 2 * card.halo_px * card.integer_scale  # 96 HR px
    assert np.abs(a - b).max() > 1e-3 * span  # the edge did see less mirror
    assert np.abs(a - b)[ring:-ring, ring:-ring].max() <= 1e-5 * span  # and nothing else moved


@pytest.mark.parametrize("model_name", ["widefield-10x0.4-to-20x0.75.onnx", "widefield-10x0.4-to-20x0.75-fp16.onnx"])
@pytest.mark.parametrize("dtype", [np.uint16, np.float64])
def test_fused_whole_image_path_is_bit_identical_to_normalise_pad_run_crop(model_name: str, dtype: type) -> None:
    """Normalising straight into the bound batch buffer, mirroring in place and denormalising while
    cropping must compute exactly what the plain steps compute, for float16 models too."""
    enhancer = Enhancer.from_file(MODELS / model_name, device="cpu", tile=None)
    image = structured_image((72, 90), seed=22).astype(dtype)
    plan = enhancer.plan(image.shape)
    mapping = enhancer.intensity.input_mapping(image)
    feed = plan.pad(mapping.normalise(image))[None, None].astype(enhancer._input_dtype)
    raw = enhancer.session.run(None, {enhancer.session.get_inputs()[0].name: feed})[0][0, 0]
    b, s = enhancer.border, enhancer.scale
    expected = raw[b * s:(b + 72) * s, b * s:(b + 90) * s].astype(np.float32)
    expected *= np.float32(mapping.scale)
    expected += np.float32(mapping.offset)
    for _ in range(2):  # the second call reuses every buffer
        np.testing.assert_array_equal(enhancer.enhance(image), expected)
