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
from srscope.runtime import Enhancer, planework
from srscope.runtime.card import (
    CARD_KEY,
    DegradationModel,
    ModelCardError,
    behaviour_checksum,
    read_card,
)
from srscope.runtime.consistency import (
    FEATURES,
    ConsistencyError,
    error_map,
    redegrade,
    score_plane,
)
from srscope.runtime.planes import Plane

ROOT = Path(__file__).resolve().parents[2]
WIDEFIELD = ROOT / "models" / "widefield-10x0.4-to-20x0.75.onnx"
STED = ROOT / "models" / "confocal-to-sted.onnx"
LEGACY = ROOT / "models" / "legacy" / "widefield-10x0.4-to-20x0.75-v3.0.onnx"
WF_STRUCTURES = ("filaments", "actin", "ccps", "nuclei", "vesicles", "er", "cells", "membranes", "dense_filaments")
TEST_SEEDS = range(610_000, 610_004)


def _field(modality: str, structure: str, seed: int, fov: int, **extra):
    """One domain-randomised field as the card's training set drew them (camera counts)."""
    randomise = pytest.importorskip("srscope.training.data.randomise")
    simulate = pytest.importorskip("srscope.training.data.simulate")
    draw = randomise.draw_field(modality, np.random.default_rng([seed, 1]), randomise.defaults_for(modality))
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
