"""Per-plane consistency score (issue 14) on the shipped models through real ONNX Runtime sessions.

In-domain fields come from the simulator with the cards' domain randomisation, on seeds that are
neither calibration (val split, 100000+/105000+), tuning (300000+) nor benchmark (400000+) seeds.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from scipy.ndimage import correlate
from scipy.spatial.distance import cdist
from srscope.runtime import Enhancer, planework
from srscope.runtime.card import (
    BEHAVIOUR_FIELDS,
    CARD_KEY,
    DegradationModel,
    ModelCardError,
    behaviour_checksum,
    read_card,
)
from srscope.runtime.consistency import (
    DOMAIN_FEATURES,
    FEATURES,
    ConsistencyError,
    error_map,
    knn_distance,
    local_error,
    novelty,
    plane_features,
    redegrade,
    score_plane,
)
from srscope.runtime.planes import Plane

ROOT = Path(__file__).resolve().parents[2]
WIDEFIELD = ROOT / "models" / "widefield-10x0.4-to-20x0.75.onnx"
STED = ROOT / "models" / "confocal-to-sted.onnx"
LEGACY = ROOT / "models" / "legacy" / "widefield-10x0.4-to-20x0.75-v3.0.onnx"
#: calibrated before the domain model and the binned window existed: its card is the old format
V40 = ROOT / "models" / "legacy" / "widefield-10x0.4-to-20x0.75-v4.0.onnx"
WF_STRUCTURES = ("filaments", "actin", "ccps", "nuclei", "vesicles", "er", "cells", "membranes", "dense_filaments")
TEST_SEEDS = range(610_000, 610_004)


def _randomisation(modality: str):
    """The domain randomisation of the shipped model for ``modality``: its card's recipe (the v4.1
    widefield model was trained on a green dye band), else the modality's defaults."""
    randomise = pytest.importorskip("srscope.training.data.randomise")
    fit = pytest.importorskip("srscope.training.gan.degradation_fit")
    path = WIDEFIELD if modality == "widefield" else STED
    recipe = fit.SimRecipe.parse(read_card(path).degradation.provenance["recipe"])
    return recipe.randomisation or randomise.defaults_for(modality)


def _field(modality: str, structure: str, seed: int, fov: int, **extra):
    """One domain-randomised field as the card's training set drew them (camera counts)."""
    randomise = pytest.importorskip("srscope.training.data.randomise")
    simulate = pytest.importorskip("srscope.training.data.simulate")
    draw = randomise.draw_field(modality, np.random.default_rng([seed, 1]), _randomisation(modality))
    return simulate.simulate_pair(modality, structure, seed=seed, hr_shape=(fov, fov), misregister=draw.misregister,
                                  **{**draw.overrides, **extra})


@pytest.fixture(scope="module")
def widefield() -> Enhancer:
    return Enhancer.from_file(WIDEFIELD, device="cpu", intra_op_threads=2)


@pytest.fixture(scope="module")
def sted() -> Enhancer:
    return Enhancer.from_file(STED, device="cpu", intra_op_threads=2)


@pytest.fixture(scope="module")
def widefield_fields():
    return [_field("widefield", WF_STRUCTURES[(3 * i) % 9], seed, 256).lr for i, seed in enumerate(TEST_SEEDS)]


def test_shipped_cards_carry_a_calibrated_degradation_model():
    for path in (WIDEFIELD, STED):
        card = read_card(path)
        d = card.degradation
        assert d is not None and d.scale == card.integer_scale
        k = d.kernel_array
        assert k.shape[0] % 2 == d.scale % 2 and abs(float(k.sum()) - 1) < 1e-3 and k.min() >= 0
        assert set(d.ranges) == set(FEATURES)
        assert d.provenance["calibration_planes"] >= 50


def test_in_domain_fields_are_not_flagged(widefield, widefield_fields):
    outputs, scores = widefield.enhance_with_scores(widefield_fields)
    assert [o.shape for o in outputs] == [(256, 256)] * len(widefield_fields)
    for score in scores:
        assert not score.flagged, score
        assert score.rsp > 0.9 and score.score < 0


def test_pure_noise_is_flagged(widefield):
    noise = np.random.default_rng(0).poisson(300, (128, 128)).astype(np.uint16)
    score = widefield.score(noise, widefield.enhance(noise))
    assert score.flagged and {"noise", "rsp"} & set(score.reasons)


def test_saturated_input_is_flagged(widefield, widefield_fields):
    lr = widefield_fields[0]
    clipped = np.minimum(lr, np.percentile(lr, 97)).astype(lr.dtype)
    score = widefield.score(clipped, widefield.enhance(clipped))
    assert score.flagged and "saturation" in score.reasons
    unclipped = widefield.score(lr, widefield.enhance(lr))  # the same field, unclipped, passes
    assert not unclipped.flagged


def test_sted_model_on_widefield_data_is_flagged(sted, widefield_fields):
    lr = widefield_fields[1][:96, :96]
    score = sted.score(lr, sted.enhance(lr))
    assert score.flagged, score


def test_old_cards_load_with_the_check_off():
    enhancer = Enhancer.from_file(LEGACY, device="cpu", tile=None)
    assert enhancer.card.degradation is None and not enhancer.checks_consistency
    image = np.random.default_rng(1).integers(100, 2000, (64, 64)).astype(np.uint16)
    outputs, scores = enhancer.enhance_with_scores([image])
    assert scores == [None] and outputs[0].shape == (128, 128)
    assert enhancer.error_map(image, outputs[0]) is None


def test_behaviour_checksum_covers_the_degradation_model(tmp_path):
    card = read_card(WIDEFIELD)
    d = card.degradation
    edited = dataclasses.replace(d, error_threshold=d.error_threshold * 2)
    assert behaviour_checksum(dataclasses.replace(card, degradation=edited)) != behaviour_checksum(card)
    assert behaviour_checksum(dataclasses.replace(card, degradation=None)) != behaviour_checksum(card)
    # an edited range in the file is caught at load time
    model = onnx.load(str(WIDEFIELD))
    entry = next(p for p in model.metadata_props if p.key == CARD_KEY)
    raw = json.loads(entry.value)
    raw["degradation"]["ranges"]["rsp"][0] = -1.0
    entry.value = json.dumps(raw)
    onnx.save(model, str(tmp_path / "edited.onnx"))
    with pytest.raises(ModelCardError, match="behaviour checksum"):
        read_card(tmp_path / "edited.onnx")


def test_degradation_model_rejects_bad_fields():
    good = read_card(WIDEFIELD).degradation
    with pytest.raises(ModelCardError, match="sum to 1"):
        dataclasses.replace(good, kernel=tuple(tuple(2 * v for v in row) for row in good.kernel))
    with pytest.raises(ModelCardError, match="mod 2"):
        DegradationModel(scale=2, kernel=((1.0,),), error_threshold=0.1, ranges={})


@pytest.mark.parametrize("scale,size", [(2, 6), (1, 5), (3, 7)])
def test_redegrade_centres_the_kernel_on_input_pixel_centres(scale, size):
    rng = np.random.default_rng(scale)
    kernel = rng.random((size, size))  # any kernel: asymmetric, full rank
    kernel /= kernel.sum()
    model = DegradationModel(scale=scale, kernel=tuple(map(tuple, kernel)), error_threshold=0.1, ranges={})
    hr = rng.random((24 * scale, 24 * scale)).astype(np.float32)
    # independent reference: one 2-D correlation, sampled at HR coordinate i·s + c + n//2
    c = (scale - size) // 2
    full = correlate(hr.astype(np.float64), kernel, mode="reflect")
    expected = full[c + size // 2::scale, c + size // 2::scale][:24, :24]
    got = redegrade(hr, model, (24, 24))
    inner = slice(size, 24 - size)
    np.testing.assert_allclose(got[inner, inner], expected[inner, inner], rtol=2e-4, atol=2e-5)


def test_error_map_has_the_output_geometry_and_marks_an_invented_object(widefield, widefield_fields):
    lr = widefield_fields[2]
    sr = widefield.enhance(lr)
    clean = error_map(lr, sr, widefield.card.degradation)
    assert clean.shape == sr.shape and clean.dtype == np.float32
    forged = sr.copy()
    forged[100:140, 60:100] += float(np.percentile(sr, 99.8) - np.percentile(sr, 1))  # an object the input lacks
    emap = error_map(lr, forged, widefield.card.degradation)
    threshold = widefield.card.degradation.error_threshold
    assert emap[110:130, 70:90].min() > threshold > np.median(emap)
    assert score_plane(lr, forged, widefield.card.degradation).error_fraction > \
        score_plane(lr, sr, widefield.card.degradation).error_fraction


def test_score_refuses_mismatched_planes(widefield):
    with pytest.raises(ConsistencyError, match="not input"):
        score_plane(np.zeros((32, 32)), np.zeros((60, 64)), widefield.card.degradation)


def test_process_plane_records_the_score(monkeypatch, widefield_fields):
    lr = widefield_fields[3]
    recorded: dict[int, dict] = {}

    class Writer:
        def write_plane(self, index, values, levels):
            self.values = values

    class Record:
        def __init__(self, store):
            pass

        def mark_done(self, number, info):
            recorded[number] = info

    monkeypatch.setattr(planework, "_input", lambda task: (lambda index: lr))
    monkeypatch.setattr(planework, "_output", lambda task: (Writer(), []))
    monkeypatch.setattr(planework, "ProgressRecord", Record)
    task = planework.PlaneTask("in.tif", "out.zarr", (str(WIDEFIELD),), 2,
                               planework.RunOptions(device="cpu", threads=2), run_token="consistency-test")
    try:
        planework.process_plane(task, Plane(0, (), 0, "yx"))
    finally:
        planework.forget_cached()
    info = recorded[0]["consistency"]
    assert set(info) >= {"rsp", "rse", "error_fraction", "flagged", "reasons"}
    assert info["flagged"] is False and info["rsp"] > 0.9
    json.dumps(info)  # stored as JSON


def test_shipped_cards_carry_a_domain_model_on_held_out_calibration_fields():
    for path in (WIDEFIELD, STED):
        d = read_card(path).degradation
        assert d.error_window == "binned" and d.domain is not None
        assert d.domain.features == tuple(DOMAIN_FEATURES) and len(d.domain.reference) >= 200
        assert d.provenance["calibration_seeds"][0] >= 120_000  # the held-out block, not a split


def test_an_edited_domain_reference_is_caught_at_load_time(tmp_path):
    model = onnx.load(str(WIDEFIELD))
    entry = next(p for p in model.metadata_props if p.key == CARD_KEY)
    raw = json.loads(entry.value)
    raw["degradation"]["domain"]["reference"][0][0] += 5.0
    entry.value = json.dumps(raw)
    onnx.save(model, str(tmp_path / "edited.onnx"))
    with pytest.raises(ModelCardError, match="behaviour checksum"):
        read_card(tmp_path / "edited.onnx")


def test_cards_calibrated_before_the_domain_model_still_verify_and_score_as_before(widefield_fields):
    """The v4.0 file's card predates ``error_window`` and ``domain``; its checksum was computed
    without them. Recomputed here the old way (canonical JSON of the behaviour fields), it must be
    the one in the file, and the card must load with the Gaussian window and no domain model."""
    model = onnx.load(str(V40))
    raw = json.loads(next(p.value for p in model.metadata_props if p.key == CARD_KEY))
    assert "domain" not in raw["degradation"] and "error_window" not in raw["degradation"]
    import hashlib

    def canonical(v):
        if isinstance(v, dict):
            return {k: canonical(x) for k, x in v.items()}
        if isinstance(v, list):
            return [canonical(x) for x in v]
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    covered = {name: raw[name] for name in BEHAVIOUR_FIELDS}
    covered["degradation"] = raw["degradation"]
    old_way = hashlib.sha256(json.dumps(canonical(covered), sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert old_way == raw["behaviour_sha256"]
    card = read_card(V40)
    assert card.degradation.error_window == "gaussian" and card.degradation.domain is None
    enhancer = Enhancer.from_file(V40, device="cpu", intra_op_threads=2)
    score = enhancer.score(widefield_fields[0], enhancer.enhance(widefield_fields[0]))
    assert "domain" not in score.reasons and np.isfinite(score.score)


def test_knn_distance_matches_a_brute_force_reference():
    rng = np.random.default_rng(3)
    ref, queries = rng.normal(size=(50, 12)), rng.normal(size=(7, 12))
    expected = np.sort(cdist(queries, ref), axis=1)[:, :5].mean(axis=1)
    assert np.allclose(knn_distance(queries, ref, 5), expected)
    full = cdist(ref, ref)
    np.fill_diagonal(full, np.inf)
    assert np.allclose(knn_distance(ref, ref, 5, leave_one_out=True), np.sort(full, axis=1)[:, :5].mean(axis=1))


def test_binned_error_window_follows_the_full_gaussian_one():
    """The cheap window (2 × 2 bins, σ/2 there) tracks the full-resolution Gaussian: same level,
    same places (a bright error blob and a quiet background)."""
    rng = np.random.default_rng(4)
    residual = rng.normal(0, 0.01, (200, 201)).astype(np.float32)
    residual[80:100, 60:90] += 0.2
    full, binned = local_error(residual, 1.5, "gaussian"), local_error(residual, 1.5, "binned")
    assert binned.shape == full.shape
    assert np.corrcoef(full.ravel(), binned.ravel())[0, 1] > 0.98
    assert abs(float(np.median(binned) / np.median(full)) - 1) < 0.05
    with pytest.raises(ConsistencyError):
        local_error(residual, 1.5, "box")


def test_domain_novelty_separates_in_domain_planes_from_another_modality(widefield, sted, widefield_fields):
    """In-domain planes sit inside their card's domain; widefield planes through the confocal→STED
    model rank above every in-domain STED plane, and most are flagged (the input has widefield
    structure at frequencies where a confocal-sampled input holds only noise)."""
    def novelty_of(enhancer, lr):
        return novelty(plane_features(lr, enhancer.enhance(lr), enhancer.card.degradation),
                       enhancer.card.degradation.domain)

    for lr in widefield_fields:
        assert novelty_of(widefield, lr) < 0
    sted_planes = [f.lr[r:r + 128, c:c + 128] for f in (_field("confocal-sted", "beads", seed, 512)
                                                         for seed in TEST_SEEDS[:2])
                   for r in (0, 128) for c in (0, 128)]
    inside = [novelty_of(sted, lr) for lr in sted_planes]
    outside = [novelty_of(sted, lr[:128, :128]) for lr in widefield_fields]
    assert max(inside) < 0 and min(outside) > max(inside), (inside, outside)
    assert sum(v > 0 for v in outside) >= 3, outside


def test_a_known_pixel_size_flags_a_plane_from_another_magnification(sted, widefield_fields):
    """A STED-channel bead field through the widefield model scores like a dim widefield field on
    its pixels alone; its file's 30 nm pixel size against the card's 325 nm settles it."""
    from srscope.runtime.consistency import with_pixel_size

    lr = widefield_fields[0]
    score = score_plane(lr, sted.enhance(lr), sted.card.degradation)
    expected = sted.card.input_pixel_size_um
    same = with_pixel_size(score, expected * 1.02, expected)
    assert same.reasons == score.reasons and same.features["pixel_size_difference"] == pytest.approx(0.02)
    other = with_pixel_size(score, 0.325, expected)
    assert other.flagged and "pixel_size" in other.reasons and other.score > 1
    assert with_pixel_size(score, None, expected) is score


def test_the_enhancer_takes_the_plane_pixel_size_into_its_score(widefield, widefield_fields):
    lr = widefield_fields[2]
    out = widefield.enhance(lr)
    assert widefield.score(lr, out, pixel_size_um=0.325).reasons == widefield.score(lr, out).reasons
    assert "pixel_size" in widefield.score(lr, out, pixel_size_um=(0.03, 0.03)).reasons
