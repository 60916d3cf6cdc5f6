"""The fp16 export path (ONNX Runtime's float16 converter) against the shipped fp16 model file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from srscope.runtime.synthetic import structured_image
from srscope.training.gan.export import _convert_fp16

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_converter_reproduces_the_shipped_fp16_file() -> None:
    # The shipped fp16 file was written by the hand-written cast this converter replaced, from the
    # same weights as the shipped fp32 file: converting the fp32 graph must give the same numbers.
    fp32 = onnx.load(str(MODELS / "widefield-10x0.4-to-20x0.75.onnx"))
    converted = _convert_fp16(fp32)
    onnx.checker.check_model(converted)
    resize_scales = [i for n in converted.graph.node if n.op_type == "Resize" for i in n.input[2:3]]
    inits = {t.name: t.data_type for t in converted.graph.initializer}
    assert resize_scales and all(inits[s] == onnx.TensorProto.FLOAT for s in resize_scales)  # spec: float32
    x = (structured_image((96, 104), seed=5) / 3000).astype(np.float16)[None, None]
    runs = []
    for model in (converted.SerializeToString(), str(MODELS / "widefield-10x0.4-to-20x0.75-fp16.onnx")):
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].type == "tensor(float16)"
        runs.append(session.run(None, {session.get_inputs()[0].name: x})[0])
    assert runs[0].dtype == np.float16
    np.testing.assert_array_equal(runs[0], runs[1])
    assert float(np.ptp(runs[0].astype(np.float32))) > 0.05  # a real image, not a constant
