"""Arithmetic cost of a generator graph, from ONNX shape inference rather than from the model code.

Throughput numbers alone do not say whether a runtime is good: 5 MP/s is excellent for a
paper-size U-Net and poor for a three-layer toy. Dividing achieved GFLOP/s by the machine's
measured matmul peak gives a fraction that is comparable across models and machines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference


def _with_fixed_input(model: onnx.ModelProto, height: int, width: int) -> onnx.ModelProto:
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    dims = fixed.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 1, height, width)):
        dim.ClearField("dim_param")
        dim.dim_value = value
    del fixed.graph.value_info[:]
    return shape_inference.infer_shapes(fixed, data_prop=True)


def _shape(info: dict[str, list[int]], name: str) -> list[int] | None:
    shape = info.get(name)
    return shape if shape and all(d > 0 for d in shape) else None


def conv_gflop_per_megapixel(model: onnx.ModelProto | str | Path, *, probe: int = 256) -> float:
    """GFLOP (2 × multiply-accumulates of Conv/ConvTranspose/MatMul/Gemm) per input megapixel.

    The graph is shape-inferred at a ``probe``×``probe`` input (must satisfy the model's size
    multiple); convolutions dominate these generators, so the other ops are ignored.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    inferred = _with_fixed_input(model, probe, probe)
    shapes: dict[str, list[int]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    macs = 0
    for node in inferred.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            weight = _shape(shapes, node.input[1])
            ref = _shape(shapes, node.output[0] if node.op_type == "Conv" else node.input[0])
            if weight is None or ref is None:
                raise ValueError(f"shape inference left {node.op_type} {node.name or node.output[0]} unsized")
            # Conv: every output pixel does C_in/groups × kernel MACs per output channel.
            # ConvTranspose: every input pixel scatters into C_out/groups × kernel outputs.
            macs += int(np.prod(ref)) * int(np.prod(weight[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            a, out = _shape(shapes, node.input[0]), _shape(shapes, node.output[0])
            if a is not None and out is not None:
                macs += int(np.prod(out)) * a[-1]
    return 2 * macs / 1e9 / (probe * probe / 1e6)
