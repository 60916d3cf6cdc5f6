"""Arithmetic cost of a generator graph, from ONNX shape inference rather than from the model code.

Throughput numbers alone do not say whether a runtime is good: 5 MP/s is excellent for a
paper-size U-Net and poor for a three-layer toy. Dividing achieved GFLOP/s by the machine's
measured matmul peak gives a fraction that is comparable across models and machines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx


def _probe_shapes(model: onnx.ModelProto, names: set[str], probe: int) -> dict[str, tuple[int, ...]]:
    """Actual shapes of ``names`` from one ONNX Runtime run on a zero ``probe``² input.

    Running the graph rather than using ONNX shape inference, because exporters (torch's F.pad
    among them) compute pads and scales in subgraphs that static inference leaves unsized.
    """
    import onnxruntime as ort

    probed = onnx.ModelProto()
    probed.CopyFrom(model)
    existing = {o.name for o in probed.graph.output}
    for name in sorted(names - existing):
        probed.graph.output.append(onnx.ValueInfoProto(name=name))
    session = ort.InferenceSession(probed.SerializeToString(), providers=["CPUExecutionProvider"])
    feed_info = session.get_inputs()[0]
    dtype = np.float16 if feed_info.type == "tensor(float16)" else np.float32
    wanted = [o.name for o in session.get_outputs() if o.name in names]
    values = session.run(wanted, {feed_info.name: np.zeros((1, 1, probe, probe), dtype=dtype)})
    return {name: value.shape for name, value in zip(wanted, values)}


def conv_gflop_per_megapixel(model: onnx.ModelProto | str | Path, *, probe: int = 256) -> float:
    """GFLOP (2 × multiply-accumulates of Conv/ConvTranspose) per input megapixel.

    Shapes come from running the graph once at a ``probe``×``probe`` input (which must satisfy the
    model's size multiple); convolutions dominate these generators, so other ops are ignored.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    initializers = {t.name: tuple(t.dims) for t in model.graph.initializer}
    names = set()
    for node in convs:
        names.add(node.output[0] if node.op_type == "Conv" else node.input[0])
        if node.input[1] not in initializers:
            names.add(node.input[1])
    shapes = {**initializers, **_probe_shapes(model, names, probe)}
    macs = 0
    for node in convs:
        weight = shapes[node.input[1]]
        ref = shapes[node.output[0] if node.op_type == "Conv" else node.input[0]]
        # Conv: each output value sums C_in/groups × kernel products. ConvTranspose: each input
        # value scatters into C_out/groups × kernel outputs. Both are prod(ref) × prod(weight[1:]).
        macs += int(np.prod(ref)) * int(np.prod(weight[1:]))
    return 2 * macs / 1e9 / (probe * probe / 1e6)
