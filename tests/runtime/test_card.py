"""The model card round-trips through a real ONNX file and rejects anything it cannot trust."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import onnx
import pytest
from srscope.runtime.card import (
    CARD_KEY,
    AffineIntensity,
    ModelCard,
    ModelCardError,
    embed_card,
    read_card,
)


def test_card_round_trips_through_a_saved_file(model_x2: Path, tmp_path: Path) -> None:
    card = read_card(model_x2)
    assert card.integer_scale == 2 and card.scale_factor == pytest.approx(2.0)
    assert card.output_pixel_size_um == pytest.approx(0.1625)
    again = ModelCard.from_json(card.to_json())
    assert again == card
    model = onnx.load(str(model_x2))
    embed_card(model, dataclasses.replace(card, description="second"))  # replaces, not appends
    copy = tmp_path / "copy.onnx"
    onnx.save(model, str(copy))
    assert [p.key for p in onnx.load(str(copy)).metadata_props].count(CARD_KEY) == 1
    assert read_card(copy).description == "second"


def _raw(model_x2: Path) -> dict:
    return json.loads(read_card(model_x2).to_json())


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("halo_px"), "lacks required fields: halo_px"),
    (lambda r: r.update(colour="red"), "unknown fields: colour"),
    (lambda r: r.update(schema_version=99), "schema_version 99"),
    (lambda r: r.update(precision="int4"), "precision"),
    (lambda r: r["normalization"].update(scale=0.0), "invalid intensity mapping"),
    (lambda r: r.update(input_pixel_size_um=-1.0), "pixel sizes"),
])
def test_invalid_card_fields_are_rejected(model_x2: Path, edit, message: str) -> None:
    raw = _raw(model_x2)
    edit(raw)
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_json(json.dumps(raw))


def test_non_json_card_and_non_integer_scale(model_x2: Path) -> None:
    with pytest.raises(ModelCardError, match="not valid JSON"):
        ModelCard.from_json("{nope")
    card = dataclasses.replace(read_card(model_x2), output_pixel_size_um=0.13)
    with pytest.raises(ModelCardError, match="not an integer"):
        _ = card.integer_scale


def test_embed_refuses_card_for_other_weights(model_x2: Path, tmp_path: Path) -> None:
    model = onnx.load(str(model_x2))
    card = dataclasses.replace(read_card(model), weights_sha256="0" * 64)
    with pytest.raises(ModelCardError, match="does not match"):
        embed_card(model, card)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match="not found"):
        read_card(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a protobuf\xff" * 10)
    with pytest.raises(ModelCardError, match="not a readable ONNX model"):
        read_card(junk)


def test_affine_intensity_is_exactly_invertible() -> None:
    import numpy as np

    mapping = AffineIntensity(offset=100.0, scale=1000.0)
    counts = np.array([0, 100, 4095, 65535], dtype=np.uint16)
    np.testing.assert_allclose(mapping.denormalise(mapping.normalise(counts)), counts, rtol=1e-6)
