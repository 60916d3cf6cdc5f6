"""Execution-provider selection on the real onnxruntime build of this machine, and the fp16 feed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from srscope.runtime import (
    DeviceUnavailableError,
    Enhancer,
    ModelCardError,
    available_devices,
    create_session,
)
from srscope.runtime.card import embed_card, read_card
from srscope.runtime.providers import DEVICE_PROVIDERS, usable_cores
from srscope.runtime.synthetic import build_test_model, structured_image


def test_available_devices_reflect_this_onnxruntime_build() -> None:
    devices = available_devices()
    assert devices[-1] == "cpu"
    present = set(ort.get_available_providers())
    assert {DEVICE_PROVIDERS[d] for d in devices} <= present


def test_auto_records_the_provider_actually_running(model_x2: Path) -> None:
    enhancer = Enhancer.from_file(model_x2, device="auto")
    assert enhancer.provider == enhancer.session.get_providers()[0]
    assert enhancer.device == available_devices()[0] or enhancer.provider == "CPUExecutionProvider"
    assert enhancer.info.intra_op_threads == usable_cores()
    # Nothing better than what runs was advertised, so there is no fall-back to report.
    assert (enhancer.info.fallback is None) == (enhancer.device == available_devices()[0])


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_explicit_gpu_device_that_cannot_be_honoured_is_an_error(model_x2: Path, device: str) -> None:
    if device in available_devices():
        pytest.skip(f"{device} is available here; the refusal path needs a machine without it")
    with pytest.raises(DeviceUnavailableError, match=device):
        Enhancer.from_file(model_x2, device=device)


def test_unknown_device_name_is_rejected(model_x2: Path) -> None:
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        create_session(model_x2, "gpu0")


def test_explicit_cpu_runs_on_cpu(model_x2: Path) -> None:
    session, info = create_session(model_x2, "cpu", intra_op_threads=1)
    assert info.provider == "CPUExecutionProvider" and info.device == "cpu" and not info.on_gpu
    assert session.get_session_options().intra_op_num_threads == 1


def test_fp16_model_is_fed_float16_and_agrees_with_fp32(tmp_path: Path) -> None:
    fp32 = build_test_model(tmp_path / "m32.onnx", seed=7)
    fp16 = build_test_model(tmp_path / "m16.onnx", seed=7, precision="fp16")
    half = Enhancer.from_file(fp16, tile=40)
    assert half.session.get_inputs()[0].type == "tensor(float16)"
    image = structured_image((70, 90), seed=3)
    out16, out32 = half.enhance(image), Enhancer.from_file(fp32, tile=40).enhance(image)
    assert out16.dtype == np.float32
    # float16 keeps ~3 significant digits of the normalised values (counts/1000).
    np.testing.assert_allclose(out16, out32, rtol=0, atol=0.02 * float(np.ptp(out32)))


def test_card_precision_must_match_graph_dtype(tmp_path: Path) -> None:
    path = build_test_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    embed_card(model, dataclasses.replace(read_card(model), precision="fp16"))
    onnx.save(model, str(path))
    with pytest.raises(ModelCardError, match="precision fp16"):
        Enhancer.from_file(path)


def test_fp16_conversion_outside_tensorrt_is_refused(model_x2: Path) -> None:
    if "tensorrt" in available_devices():
        pytest.skip("TensorRT present: auto would honour trt_fp16")
    with pytest.raises(DeviceUnavailableError, match="needs TensorRT"):
        Enhancer.from_file(model_x2, device="auto", trt_fp16=True)
    with pytest.raises(DeviceUnavailableError, match="needs TensorRT"):
        create_session(model_x2, "cpu", trt_fp16=True)
