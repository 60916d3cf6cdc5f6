"""Synthetic images and small random-weight ONNX generators with valid cards (``onnx.helper``; no torch).

Not only for tests: production code uses it. Halo calibration (:mod:`srscope.runtime.halo`) and the
BioImage Model Zoo package's test tensor (:mod:`srscope.runtime.bmz`) run on :func:`structured_image`,
and ``sracquire``'s demo falls back to :func:`build_test_model` when no model is shipped. Tests and
benchmarks across srscope need a model that behaves like an exported generator — same graph
contract, same card, genuine ONNX Runtime execution — without shipping weights or waiting for
training. The graph here follows the contract exactly::

    lr [N,1,H,W] → bilinear Resize ×s → conv → LeakyReLU ─┬─────────────────────┐
                                                           └→ 2×2 avg-pool → conv → LeakyReLU → nearest ×2 ─┤+
                    → conv → LeakyReLU → conv → (+ resized input) → hr [N,1,sH,sW]

The pooled branch makes the output depend on the alignment of the pooling grid, like a real U-Net,
so a tiler that starts tiles at the wrong offsets is caught. The receptive field is known
analytically (see :func:`test_model_halo`) and checked by an impulse-response test.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from srscope.runtime.card import (
    AffineIntensity,
    IntensityRule,
    ModelCard,
    embed_card,
    weights_checksum,
)

OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime >= 1.14

#: Receptive-field radius of the test graph on the output (HR) grid, in HR pixels:
#: conv (1) + pool/conv/upsample branch (3) + two convs (2).
_HR_RADIUS = 6


def test_model_halo(scale: int) -> int:
    """Receptive-field radius in *input* pixels: the HR radius mapped back, plus bilinear support."""
    return math.ceil(_HR_RADIUS / scale) + 1


test_model_halo.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name


def _conv(rng: np.random.Generator, name: str, c_out: int, c_in: int, gain: float,
          inits: list[onnx.TensorProto]) -> tuple[str, str]:
    """He-initialised 3×3 weights; returns the initializer names (weight, bias)."""
    weight = rng.normal(0.0, gain * math.sqrt(2.0 / (9 * c_in)), size=(c_out, c_in, 3, 3)).astype(np.float32)
    bias = rng.normal(0.0, 0.01, size=(c_out,)).astype(np.float32)
    inits.append(numpy_helper.from_array(weight, f"{name}.weight"))
    inits.append(numpy_helper.from_array(bias, f"{name}.bias"))
    return f"{name}.weight", f"{name}.bias"


def _graph(scale: int, channels: int, seed: int, precision: str) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = [
        numpy_helper.from_array(np.array([1.0, 1.0, scale, scale], dtype=np.float32), "scales_in"),
        numpy_helper.from_array(np.array([1.0, 1.0, 2.0, 2.0], dtype=np.float32), "scales_up2"),
    ]
    nodes: list[onnx.NodeProto] = []
    io_type = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
    source = "lr"
    if precision == "fp16":
        # Weights stay fp32 so the graph runs on ORT's CPU kernels too; the fp16 I/O is what the
        # runtime must honour (feed float16, read float16 back).
        nodes.append(helper.make_node("Cast", ["lr"], ["lr32"], to=TensorProto.FLOAT))
        source = "lr32"

    def conv(name: str, x: str, c_out: int, c_in: int, gain: float, act: bool) -> str:
        w, b = _conv(rng, name, c_out, c_in, gain, inits)
        nodes.append(helper.make_node("Conv", [x, w, b], [f"{name}.out"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        if not act:
            return f"{name}.out"
        nodes.append(helper.make_node("LeakyRelu", [f"{name}.out"], [f"{name}.act"], alpha=0.1))
        return f"{name}.act"

    nodes.append(helper.make_node("Resize", [source, "", "scales_in"], ["up"], mode="linear",
                                  coordinate_transformation_mode="half_pixel"))
    f1 = conv("enc", "up", channels, 1, 1.0, True)
    nodes.append(helper.make_node("AveragePool", [f1], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]))
    low = conv("low", "pooled", channels, channels, 1.0, True)
    nodes.append(helper.make_node("Resize", [low, "", "scales_up2"], ["low_up"], mode="nearest",
                                  coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
    nodes.append(helper.make_node("Add", [f1, "low_up"], ["skip"]))
    f2 = conv("dec", "skip", channels, channels, 1.0, True)
    detail = conv("head", f2, 1, channels, 0.3, False)
    result = "hr32" if precision == "fp16" else "hr"
    nodes.append(helper.make_node("Add", ["up", detail], [result]))
    if precision == "fp16":
        nodes.append(helper.make_node("Cast", ["hr32"], ["hr"], to=TensorProto.FLOAT16))

    graph = helper.make_graph(
        nodes, "srscope_test_generator",
        [helper.make_tensor_value_info("lr", io_type, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("hr", io_type, ["N", 1, "sH", "sW"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="srscope.runtime.synthetic")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def build_test_model(path: str | Path, *, scale: int = 2, name: str = "test-model",
                     input_pixel_size_um: float = 0.325, seed: int = 0, channels: int = 8,
                     size_multiple: int = 4, halo_px: int | None = None, precision: str = "fp32",
                     normalization: tuple[float, float] = (100.0, 1000.0),
                     denormalization: tuple[float, float] = (100.0, 1000.0),
                     input_modality: str = "widefield-10x-0.4NA",
                     output_modality: str = "widefield-20x-0.75NA",
                     emission_wavelength_nm: float = 530.0,
                     provenance: dict[str, Any] | None = None,
                     intensity: IntensityRule | None = None) -> Path:
    """Write a deterministic test generator with a valid card to ``path`` and return the path.

    ``halo_px`` defaults to the true receptive-field radius; pass a smaller value to model a
    generator whose card under-states its receptive field (what blending is for).
    ``normalization``/``denormalization`` are ``(offset, scale)`` in camera counts; ``intensity``
    (default: fixed) makes a percentile card instead.
    """
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, not {scale}")
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be fp32 or fp16, not {precision!r}")
    # The pooled branch needs even HR sizes and pooling cells aligned across tiles.
    if (size_multiple * scale) % 2:
        raise ValueError(f"size_multiple {size_multiple} × scale {scale} must be even for the pooled branch")
    model = _graph(scale, channels, seed, precision)
    card = ModelCard(
        name=name,
        version="0.0.0+test",
        input_modality=input_modality,
        output_modality=output_modality,
        input_pixel_size_um=input_pixel_size_um,
        output_pixel_size_um=input_pixel_size_um / scale,
        normalization=AffineIntensity(*normalization),
        denormalization=AffineIntensity(*denormalization),
        halo_px=test_model_halo(scale) if halo_px is None else halo_px,
        size_multiple=size_multiple,
        weights_sha256=weights_checksum(model),
        emission_wavelength_nm=emission_wavelength_nm,
        precision=precision,
        description="Random-weight test generator (not trained): exercises the runtime, not the science.",
        provenance=provenance if provenance is not None else
        {"builder": "srscope.runtime.synthetic.build_test_model", "seed": seed, "channels": channels},
        intensity=intensity or IntensityRule(),
    )
    embed_card(model, card)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def structured_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Deterministic uint16 counts: filaments, puncta, a gradient and shot noise.

    The filaments are long straight lines at random angles, so they cross every tile border;
    that is what makes a seam or misaligned tile visible in a tiled-vs-whole comparison.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    img = 200 + 3 * xx + 2 * yy
    for _ in range(6):  # diagonal filaments
        a, b = rng.uniform(-1, 1, 2)
        c = rng.uniform(0, max(shape))
        dist = np.abs(a * xx + b * yy - c) / np.hypot(a, b)
        img += 1500 * np.exp(-0.5 * (dist / 1.5) ** 2)
    for _ in range(40):  # puncta
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        img += 2500 * np.exp(-0.5 * (((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0 ** 2))
    img += rng.poisson(30, size=shape)
    return np.clip(img, 0, 65535).astype(np.uint16)


def build_unet_model(path: str | Path, *, scale: int = 2, width: int = 32, levels: int = 4,
                     name: str = "bench-unet", input_pixel_size_um: float = 0.325, seed: int = 0,
                     normalization: tuple[float, float] = (100.0, 1000.0)) -> Path:
    """A paper-shaped U-Net generator (random weights) for benchmarks: realistic cost and halo.

    Mirrors Wang et al. 2019's generator at the graph level: in-graph bilinear ×``scale``, then
    ``levels`` residual down-blocks of three 3×3 conv + LeakyReLU(0.1) with 2×2 average pooling,
    a bottom conv, bilinear ×2 up-sampling with skip concatenation and three convs per level, and
    a final ``width → 1`` conv. Channels double per level. The card's halo is *measured* on the
    built graph (:func:`measure_receptive_field`), not guessed.
    """
    if scale < 1 or levels < 1 or width < 1:
        raise ValueError("scale, levels and width must be positive")
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = [
        numpy_helper.from_array(np.array([1.0, 1.0, scale, scale], dtype=np.float32), "scales_in"),
        numpy_helper.from_array(np.array([1.0, 1.0, 2.0, 2.0], dtype=np.float32), "scales_up2"),
    ]
    nodes: list[onnx.NodeProto] = []
    counter = iter(range(10_000))

    def conv_act(x: str, c_in: int, c_out: int, act: bool = True) -> str:
        tag = f"c{next(counter)}"
        w, b = _conv(rng, tag, c_out, c_in, 1.0 if act else 0.3, inits)
        nodes.append(helper.make_node("Conv", [x, w, b], [f"{tag}.out"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        if not act:
            return f"{tag}.out"
        nodes.append(helper.make_node("LeakyRelu", [f"{tag}.out"], [f"{tag}.act"], alpha=0.1))
        return f"{tag}.act"

    nodes.append(helper.make_node("Resize", ["lr", "", "scales_in"], ["x0"], mode="linear",
                                  coordinate_transformation_mode="half_pixel"))
    x, c_in, skips = "x0", 1, []
    for level in range(levels):
        c_out = width * 2 ** level
        body = conv_act(conv_act(conv_act(x, c_in, c_out), c_out, c_out), c_out, c_out)
        pads = f"pad{level}"  # zero-pad the block input in channels, then add (the paper's residual)
        inits.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, c_out - c_in, 0, 0], dtype=np.int64), pads))
        nodes.append(helper.make_node("Pad", [x, pads], [f"skip{level}.pad"]))
        nodes.append(helper.make_node("Add", [f"skip{level}.pad", body], [f"down{level}"]))
        skips.append((f"down{level}", c_out))
        nodes.append(helper.make_node("AveragePool", [f"down{level}"], [f"pool{level}"], kernel_shape=[2, 2],
                                      strides=[2, 2]))
        x, c_in = f"pool{level}", c_out
    x = conv_act(x, c_in, 2 * c_in)
    c_in *= 2
    for level in reversed(range(levels)):
        skip, c_skip = skips[level]
        nodes.append(helper.make_node("Resize", [x, "", "scales_up2"], [f"up{level}"], mode="linear",
                                      coordinate_transformation_mode="half_pixel"))
        nodes.append(helper.make_node("Concat", [skip, f"up{level}"], [f"cat{level}"], axis=1))
        x = conv_act(conv_act(conv_act(f"cat{level}", c_skip + c_in, c_skip), c_skip, c_skip), c_skip, c_skip)
        c_in = c_skip
    out = conv_act(x, c_in, 1, act=False)
    nodes.append(helper.make_node("Identity", [out], ["hr"]))
    graph = helper.make_graph(
        nodes, "srscope_bench_unet",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("hr", TensorProto.FLOAT, ["N", 1, "sH", "sW"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="srscope.runtime.synthetic")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    multiple = max(1, 2 ** levels // math.gcd(2 ** levels, scale))
    halo = measure_receptive_field(model.SerializeToString(), multiple=multiple, scale=scale)
    card = ModelCard(
        name=name, version="0.0.0+bench", input_modality="widefield-10x-0.4NA",
        output_modality="widefield-20x-0.75NA", input_pixel_size_um=input_pixel_size_um,
        output_pixel_size_um=input_pixel_size_um / scale, normalization=AffineIntensity(*normalization),
        denormalization=AffineIntensity(*normalization), halo_px=halo, size_multiple=multiple,
        weights_sha256=weights_checksum(model), emission_wavelength_nm=530.0,
        description="Random-weight U-Net with the paper generator's shape, for benchmarks only.",
        provenance={"builder": "srscope.runtime.synthetic.build_unet_model", "seed": seed, "width": width,
                    "levels": levels},
    )
    embed_card(model, card)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def measure_receptive_field(model: bytes | str | Path, *, multiple: int, scale: int, rows: int | None = None,
                            max_radius: int = 256) -> int:
    """Receptive-field radius in input pixels, measured on the graph with ONNX Runtime.

    A whole input *column* is perturbed and the extent of the output change along x is read off;
    dependency extent along x does not depend on the image height, so a thin strip suffices and
    the probe stays cheap even for paper-size U-Nets. Every column phase modulo ``multiple`` is
    probed because pooling makes the reach depend on where a pixel sits in its pooling cell.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rows = rows or 2 * multiple
    radius_bound = max_radius
    width = 2 * (radius_bound + multiple) + multiple
    width = -(-width // multiple) * multiple
    base = np.random.default_rng(0).random((1, 1, rows, width), dtype=np.float32)
    reference = session.run(None, {name: base})[0][0, 0]
    centre = (width // 2) // multiple * multiple
    reach = 0.0
    for phase in range(multiple):
        column = centre + phase
        poked = base.copy()
        poked[0, 0, :, column] += 1.0
        changed = np.abs(session.run(None, {name: poked})[0][0, 0] - reference).max(axis=0) > 1e-7
        cols = np.nonzero(changed)[0]
        if cols.size == 0:
            continue
        if cols[0] == 0 or cols[-1] == changed.size - 1:
            raise ValueError(f"receptive field exceeds the probe ({max_radius} px); raise max_radius")
        centre_out = (column + 0.5) * scale - 0.5
        reach = max(reach, np.abs(cols - centre_out).max() / scale)
    return math.ceil(reach)
