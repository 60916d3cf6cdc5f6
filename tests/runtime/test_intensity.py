"""Camera-independent intensity policies: percentile cards, equivariance, series latching, old cards.

Every shipped model (``models/``, not ``models/legacy/``) must be a percentile card and satisfy
``enhance(a·x + b) == a·enhance(x) + b`` through real ONNX Runtime sessions, on uint16 in and out,
for gains 0.1–10 and offsets 0–1,000: the property that makes a model independent of the user's
camera gain, offset and exposure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from srscope.runtime import AffineIntensity, Enhancer, ModelCardError, read_card
from srscope.runtime.card import CARD_KEY, IntensityRule, ModelCard
from srscope.runtime.cli import main as srrun
from srscope.runtime.intensity import (
    FixedIntensity,
    PlaneIntensity,
    SeriesIntensity,
    intensity_policy,
    parse_intensity,
    percentile_affine,
)
from srscope.runtime.io import Image, read_image, write_image
from srscope.runtime.synthetic import build_test_model, structured_image

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (REPO / "models").rglob("*.onnx") if "legacy" not in p.parts)
LEGACY = REPO / "models" / "legacy" / "widefield-10x0.4-to-20x0.75-v3.0.onnx"

GAINS_OFFSETS = [(0.1, 0.0), (0.5, 100.0), (2.0, 500.0), (10.0, 1000.0)]


@pytest.fixture(scope="module")
def percentile_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_model(tmp_path_factory.mktemp("pct") / "pct.onnx", scale=2,
                            intensity=IntensityRule("percentile", 1.0, 99.8))


def _uint16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 65535).astype(np.uint16)


def test_percentile_affine_commutes_with_positive_affine_maps() -> None:
    x = structured_image((96, 80), seed=4).astype(np.float64)
    base = percentile_affine(x, 1.0, 99.8)
    for a, b in GAINS_OFFSETS:
        m = percentile_affine(a * x + b, 1.0, 99.8)
        assert m.offset == pytest.approx(a * base.offset + b, rel=1e-9, abs=1e-9)
        assert m.scale == pytest.approx(a * base.scale, rel=1e-9)


def test_flat_plane_gets_a_unit_range_not_a_division_by_zero() -> None:
    m = percentile_affine(np.full((16, 16), 300.0), 1.0, 99.8)
    assert m.offset == 300.0 and m.scale == 300.0


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_model_is_camera_equivariant_on_uint16(model: Path) -> None:
    """uint16 in, uint16 out: enhance(a·x + b) == a·enhance(x) + b within the rounding of both sides."""
    card = read_card(model)
    assert card.intensity.mode == "percentile", f"{model.name} ships a fixed (camera-bound) mapping"
    enhancer = Enhancer.from_file(model, tile=None, intra_op_threads=1)
    rng = np.random.default_rng(0)
    side = 8 * card.size_multiple
    photons = rng.poisson(structured_image((side, side), seed=1).astype(np.float64) / 20.0 + 30.0)
    x = photons.astype(np.float64)           # one camera at gain 1, offset 0
    reference = enhancer.enhance(_uint16(x)).astype(np.float64)
    for a, b in GAINS_OFFSETS:
        out = enhancer.enhance(_uint16(a * x + b)).astype(np.float64)
        expected = a * reference + b
        # Rounding a·x + b to whole counts is the only non-equivariant step: ±0.5 count of input
        # noise, which a sharpening network amplifies several times (the STED model most), plus the
        # output's own rounding. A camera-bound model is off by hundreds of counts here.
        error = np.abs(_uint16(out).astype(np.float64) - np.clip(np.rint(expected), 0, 65535))
        assert np.percentile(error, 99) <= 6.0, (model.name, a, b, float(np.percentile(error, 99)))
        assert float(np.mean(error)) <= 1.5, (model.name, a, b, float(np.mean(error)))
        # Without the integer rounding (float counts) the identity holds to float32 precision,
        # relative to the output's own range at this gain: also where uint16 steps are coarse (a = 0.1).
        exact = enhancer.enhance((a * x + b).astype(np.float32)).astype(np.float64)
        span = a * float(np.ptp(reference))
        assert np.abs(exact - expected).max() <= 1e-3 * span + 1e-3 * b, (model.name, a, b)


def test_equivariance_is_exact_on_float_input(percentile_model: Path) -> None:
    enhancer = Enhancer.from_file(percentile_model, tile=64, intra_op_threads=1)
    x = structured_image((100, 90), seed=2).astype(np.float32)
    y = enhancer.enhance(x).astype(np.float64)
    for a, b in GAINS_OFFSETS:
        out = enhancer.enhance((a * x.astype(np.float64) + b).astype(np.float32)).astype(np.float64)
        np.testing.assert_allclose(out, a * y + b, rtol=2e-4, atol=2e-3 * a + 1e-3 * b)


def test_fixed_card_is_not_equivariant_which_is_the_bug_percentile_cards_fix(model_x2: Path) -> None:
    enhancer = Enhancer.from_file(model_x2, tile=None, intra_op_threads=1)
    assert isinstance(enhancer.intensity, FixedIntensity)
    x = structured_image((64, 64), seed=3).astype(np.float32)
    y = enhancer.enhance(x).astype(np.float64)
    shifted = enhancer.enhance(x + 500.0).astype(np.float64)
    assert np.abs(shifted - (y + 500.0)).max() > 1.0


def test_old_schema_1_card_loads_as_fixed_and_refuses_per_plane(tmp_path: Path, model_x2: Path) -> None:
    import onnx

    model = onnx.load(str(model_x2))
    entry = next(p for p in model.metadata_props if p.key == CARD_KEY)
    raw = json.loads(entry.value)
    raw.pop("intensity")
    raw["schema_version"] = 1
    entry.value = json.dumps(raw)
    old = tmp_path / "old.onnx"
    onnx.save(model, str(old))
    card = read_card(old)
    assert card.schema_version == 1 and card.intensity == IntensityRule("fixed")
    fixed_now = Enhancer.from_file(old, tile=None, intra_op_threads=1)
    fixed_new = Enhancer.from_file(model_x2, tile=None, intra_op_threads=1)
    x = structured_image((48, 48), seed=5)
    np.testing.assert_array_equal(fixed_now.enhance(x), fixed_new.enhance(x))
    with pytest.raises(ModelCardError, match="fixed intensity mapping"):
        Enhancer.from_file(old, intensity="plane")
    with pytest.raises(ModelCardError, match="fixed intensity mapping"):
        Enhancer.from_file(old, intensity=AffineIntensity(100.0, 1000.0))


@pytest.mark.skipif(not LEGACY.is_file(), reason="legacy v3.0 model not present")
def test_shipped_legacy_v3_card_still_loads_and_runs() -> None:
    card = read_card(LEGACY)
    assert card.schema_version == 1 and card.intensity.mode == "fixed"
    enhancer = Enhancer.from_file(LEGACY, tile=None, intra_op_threads=1)
    out = enhancer.enhance(structured_image((64, 64), seed=6))
    assert out.shape == (128, 128) and np.isfinite(out).all()


def test_schema_2_round_trip_and_bad_rule() -> None:
    card = read_card(build_test_model(Path("/tmp") / "srscope-rt.onnx", intensity=IntensityRule("percentile", 2, 99.5)))
    again = ModelCard.from_json(card.to_json())
    assert again.intensity == IntensityRule("percentile", 2.0, 99.5) and again.schema_version == 2
    with pytest.raises(ModelCardError):
        IntensityRule("percentile", 99.0, 1.0)
    with pytest.raises(ModelCardError):
        IntensityRule("histogram")


def test_policies_resolve_from_card_and_choice(percentile_model: Path) -> None:
    card = read_card(percentile_model)
    assert isinstance(intensity_policy(card, "auto"), PlaneIntensity)
    assert isinstance(intensity_policy(card, "series"), SeriesIntensity)
    assert isinstance(intensity_policy(card, "fixed"), FixedIntensity)
    explicit = intensity_policy(card, AffineIntensity(100.0, 50.0))
    assert explicit.mapping == AffineIntensity(100.0, 50.0)
    with pytest.raises(ValueError):
        intensity_policy(card, "histogram")
    assert parse_intensity("100:2500") == AffineIntensity(100.0, 2500.0)
    with pytest.raises(ValueError, match="OFFSET:SCALE"):
        parse_intensity("bright")


def test_series_latches_the_first_plane_and_keeps_planes_comparable(percentile_model: Path) -> None:
    """A time-lapse where the bright object leaves: per plane rescales the dim frame, series does not."""
    bright = structured_image((64, 64), seed=7).astype(np.float32)
    dim = 0.5 * bright + 50.0
    plane = Enhancer.from_file(percentile_model, tile=None, intra_op_threads=1, intensity="plane")
    series = Enhancer.from_file(percentile_model, tile=None, intra_op_threads=1, intensity="series")
    series.enhance(bright)
    assert series.intensity.mapping == percentile_affine(bright, 1.0, 99.8)
    # with the series mapping, the dim frame's output is the dim frame through the same affine map
    # as the bright one: ratio of means follows the raw ratio
    s_b, s_d = series.enhance(bright), series.enhance(dim)
    p_b, p_d = plane.enhance(bright), plane.enhance(dim)
    raw_ratio = dim.mean() / bright.mean()
    assert abs(s_d.mean() / s_b.mean() - raw_ratio) < 0.05 * raw_ratio
    _outs, maps = series.enhance_many_with_mappings([dim])
    assert maps[0] == percentile_affine(bright, 1.0, 99.8)
    # plane mode also stays quantitative here (dim = affine of bright), which is the equivariance
    assert abs(p_d.mean() / p_b.mean() - raw_ratio) < 0.05 * raw_ratio


def test_with_intensity_shares_the_session(percentile_model: Path) -> None:
    first = Enhancer.from_file(percentile_model, intensity="series")
    second = first.with_intensity("series")
    assert second.session is first.session and second.intensity is not first.intensity


def test_srrun_intensity_series_uses_the_first_plane_for_every_plane(tmp_path: Path, percentile_model: Path) -> None:
    frames = np.stack([structured_image((64, 64), seed=8), structured_image((64, 64), seed=9) // 3 + 40])
    src = tmp_path / "t.ome.tif"
    write_image(src, Image(frames, "tyx", (0.325, 0.325)))
    out = tmp_path / "series.ome.zarr"
    assert srrun([str(percentile_model), str(src), str(out), "--intensity", "series", "--quiet", "--tile", "0"]) == 0
    got = np.asarray(read_image(out).data).reshape(2, 128, 128)
    first = percentile_affine(frames[0], 1.0, 99.8)
    enhancer = Enhancer.from_file(percentile_model, tile=None, intensity=first)
    np.testing.assert_allclose(got[1], enhancer.enhance(frames[1]), rtol=1e-5, atol=1e-3)
    text = (out / "zarr.json").read_text()
    assert '"intensity": "series"' in text and str(round(first.offset, 3))[:5] in text


def test_srrun_plane_intensity_on_a_fixed_model_is_one_line_exit_2(tmp_path: Path, model_x2: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "p.ome.tif"
    write_image(src, Image(structured_image((32, 32), seed=1), "yx", (0.325, 0.325)))
    code = srrun([str(model_x2), str(src), str(tmp_path / "o.ome.zarr"), "--intensity", "plane", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "fixed intensity mapping" in err[0]
    code = srrun([str(model_x2), str(src), str(tmp_path / "o2.ome.zarr"), "--intensity", "bright", "--quiet"])
    assert code == 2 and "OFFSET:SCALE" in capsys.readouterr().err
