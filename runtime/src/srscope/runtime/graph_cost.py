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


def _float_bytes(shape: tuple[int, ...], elem_type: int) -> int:
    size = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.BFLOAT16: 2,
            onnx.TensorProto.UINT8: 1, onnx.TensorProto.INT8: 1}.get(elem_type, 0)
    return size * int(np.prod(shape))


def activation_bytes_per_input_pixel(model: onnx.ModelProto | str | Path, *, probe: int = 256) -> float:
    """Peak bytes of simultaneously live activations per input pixel (batch 1).

    Why: the default tile size is bounded by a memory budget, and a U-Net's skip connections keep
    full-resolution tensors alive across the whole decoder, so the largest single tensor
    underestimates the working set. This walks the graph in its (topological) node order, frees each
    tensor after its last consumer, and reports the largest live sum of activation tensors (float or
    8-bit; shape tensors are too small to matter), from the real shapes of one ``probe``² run.
    Graph inputs count; initializers (weights) do not, as they are per session, not per pixel.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    initializers = {t.name for t in model.graph.initializer}
    constants = {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    produced = [o for n in model.graph.node for o in n.output if o and n.op_type != "Constant"]
    probed = onnx.ModelProto()
    probed.CopyFrom(model)
    existing = {o.name for o in probed.graph.output}
    for name in produced:
        if name not in existing:
            probed.graph.output.append(onnx.ValueInfoProto(name=name))
    import onnxruntime as ort

    session = ort.InferenceSession(probed.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    dtype = np.float16 if feed.type == "tensor(float16)" else np.float32
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {feed.name: np.zeros((1, 1, probe, probe), dtype=dtype)})
    types = {np.dtype(np.float32): onnx.TensorProto.FLOAT, np.dtype(np.float16): onnx.TensorProto.FLOAT16,
             np.dtype(np.uint8): onnx.TensorProto.UINT8, np.dtype(np.int8): onnx.TensorProto.INT8}
    sizes = {n: _float_bytes(v.shape, types.get(v.dtype, 0)) for n, v in zip(names, values)}
    sizes[feed.name] = probe * probe * np.dtype(dtype).itemsize
    last_use: dict[str, int] = {}
    for i, node in enumerate(model.graph.node):
        for name in node.input:
            last_use[name] = i
    for out in model.graph.output:
        last_use[out.name] = len(model.graph.node)
    live = {feed.name: sizes[feed.name]}
    peak = sum(live.values())
    for i, node in enumerate(model.graph.node):
        for name in node.output:
            if name and name not in constants and name not in initializers:
                live[name] = sizes.get(name, 0)
        peak = max(peak, sum(live.values()))
        for name in [n for n in live if last_use.get(n, -1) <= i]:
            del live[name]
    return peak / (probe * probe)
