"""int8 (static QDQ) models: the card, the runtime path, and the export gate that refuses lossy ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from srscope.runtime import Enhancer, ModelCardError
from srscope.runtime.card import read_card, weights_checksum
from srscope.runtime.halo import psnr_db
from srscope.runtime.synthetic import build_test_model, structured_image
from srscope.training.gan import quantise

REPO = Path(__file__).resolve().parents[2]
WIDEFIELD = REPO / "models" / "widefield-10x0.4-to-20x0.75.onnx"


def _counts(seed: int, shape: tuple[int, int] = (96, 80)) -> np.ndarray:
    return structured_image(shape, seed=seed).astype(np.float32) * 40 + 300


def test_int8_model_carries_its_card_and_runs_in_the_enhancer(tmp_path: Path) -> None:
    fp32 = build_test_model(tmp_path / "fp32.onnx", scale=2, channels=8)
    # calibrated on other fields of the same kind, fed as the runtime feeds them
    feeds = quantise.runtime_feeds(read_card(fp32), [_counts(seed, (64, 72)) for seed in range(10, 14)])
    path = quantise.quantise_model(fp32, tmp_path / "int8.onnx", feeds)
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format: float I/O, int8 inside
    card = read_card(path)  # verifies its own weights checksum
    assert card.precision == "int8" and card.weights_sha256 == weights_checksum(model) != read_card(fp32).weights_sha256
    image = _counts(2)
    ref = Enhancer.from_file(fp32, device="cpu").enhance(image).astype(np.float64)
    got = Enhancer.from_file(path, device="cpu").enhance(image).astype(np.float64)
    assert got.shape == ref.shape
    assert 25 < psnr_db(ref, got) < 200  # close to fp32, but really quantised (not bit-identical)
    with pytest.raises(ModelCardError):  # int8 is a precision, not a free-form string
        dataclasses.replace(card, precision="int4")


def test_export_gate_refuses_a_lossy_int8_model_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "wf-int8.onnx"
    # One small calibration field and one held-out field keep the test short; the shipped model
    # fails the gate at full size too (bench_runtime's int8 section), by the same mechanism.
    code = quantise.main([str(WIDEFIELD), str(out), "--fields", "1", "--heldout", "1", "--fov", "128"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists() and not out.with_suffix(".onnx.tmp").exists()
    assert len(err) == 1 and "not written" in err[0] and "dB" in err[0]
