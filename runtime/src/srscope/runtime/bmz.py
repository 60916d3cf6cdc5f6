"""``srscope-bmz``: export an srscope model as a BioImage Model Zoo package (model format 0.5).

    srscope-bmz MODEL.onnx OUT.zip [--cover PNG] [--test-image IMAGE] [--maintainer GITHUB_USER]

The package (``rdf.yaml`` + files, zipped by :func:`bioimageio.spec.save_bioimageio_package`)
runs in bioimageio.core, deepImageJ and other BMZ consumers. What it holds, and why:

Weights
    One ONNX file: the card's graph *wrapped* in a few ONNX nodes, weights untouched (same
    initializers, same opset). Before the graph, the input is mirror-padded exactly as srscope's
    whole-image inference pads it (``numpy.pad(mode="symmetric")`` by the Enhancer's image-edge
    border, :func:`srscope.runtime.enhancer.default_border`, on both sides,
    plus up to the size multiple at the end, see :mod:`srscope.runtime.tiling`); after it, the
    output is cropped back to ``H·s × W·s``. Without this, a BMZ consumer would run the bare
    graph, whose convolutions zero-pad at the border and whose pooling grid sits ``halo_px``
    pixels off srscope's, so no BMZ run could reproduce srscope's own output (and
    ``bioimageio.core``'s test feeds the test input unpadded). fp16 models keep their fp16
    weights and arithmetic: format 0.5 has no float16 tensor type, so the wrapper adds a
    float32→float16 Cast on the input and float16→float32 on the output. That computes exactly
    what srscope's runtime computes for the fp16 file (it too casts the normalised float32 input
    to float16), so the test tensors still come from srscope; refusing fp16 would leave GPU users
    without a package, and converting the weights to fp32 would change the model. The srscope
    card moves to the ONNX metadata key ``srscope.card.source`` (and ``srscope-card.json`` in the
    package): the wrapped file is not an srscope-native graph (it pads itself), so
    ``read_card``/``srrun`` refuse it instead of padding twice.

Axes, sizes, halo
    ``batch, channel(1), y, x``; ``y``/``x`` sized ``ParameterizedSize(min, step=size_multiple)``
    with ``min`` a multiple of the size multiple larger than two halos. Outputs reference the
    input axes through their physical pixel sizes (``SizeReference``: size = input size ×
    input scale / output scale = ``H·s``), with float scales chosen so that this ratio is exact.
    The output halo is ``halo·s`` where ``halo`` is the card's ``halo_px`` rounded *up* to a
    multiple of the size multiple: bioimageio.core's blocks then start on the pooling grid of
    whole-image inference (it crops halos without blending, so the halo must be explicit and the
    grid aligned), and block outputs match srscope's whole-image output to the card's calibrated
    halo accuracy.

Intensities
    ``fixed`` cards: ``fixed_zero_mean_unit_variance`` (mean = offset, std = scale) in,
    ``scale_linear`` (gain = scale, offset = offset of the card's denormalisation) out: the
    package outputs camera counts, as srscope does. ``percentile`` cards: ``scale_range`` with the
    card's low/high percentiles per sample over ``y, x`` in. BMZ 0.5 cannot map the output back
    through *the same* per-image affine: its post-processing can use an input's statistics only
    to divide by them (``scale_range`` with ``reference_tensor``) or to match mean and standard
    deviation (``scale_mean_variance``, which uses the *output's* own mean/std and so is a
    different, content-dependent affine), and it has no operation multiplying by an input's
    percentile range. The package therefore outputs **input-normalised units**:
    ``counts = value · (P_high − P_low) + P_low`` with ``P`` the input image's own percentiles
    (numpy's linear interpolation), which the README and the rdf description state.
    Inputs are declared float32 (uint16 camera images are cast by the leading ``ensure_dtype``).

Test tensors
    ``srscope.runtime.synthetic.structured_image`` (or ``test_image``) run through srscope's own
    :class:`~srscope.runtime.enhancer.Enhancer` on the whole image, expressed in the package's
    output units, so ``bioimageio.core``'s ``test_model`` compares the package with srscope.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from srscope.runtime.card import CARD_KEY, ModelCard, ModelCardError, read_card
from srscope.runtime.tiling import round_up

#: ONNX metadata key the wrapped graph keeps the original srscope card under.
SOURCE_CARD_KEY = "srscope.card.source"
#: ONNX metadata key describing the BMZ wrapper (padding, casts, crop).
WRAPPER_KEY = "srscope.bmz_wrapper"
#: Edge of the default synthetic test image (input pixels), rounded to a valid size.
DEFAULT_TEST_EDGE = 256
TEST_IMAGE_SEED = 0

CITATION_TEXT = ("Wang, H., Rivenson, Y., Jin, Y. et al. Deep learning enables cross-modality super-resolution "
                 "in fluorescence microscopy. Nature Methods 16, 103–110 (2019).")
CITATION_DOI = "10.1038/s41592-018-0239-0"
AUTHOR_NAME = "srscope contributors"
LICENSE = "BSD-3-Clause"

_PREFIX = "srscope_bmz/"
_INT64_MIN = np.iinfo(np.int64).min


class BmzExportError(ValueError):
    """The model cannot be exported as a BMZ package (one-line reason)."""


# --------------------------------------------------------------------------------------------
# geometry

def bmz_name(card_name: str) -> str:
    """A BMZ model name from an srscope card name: BMZ allows letters, digits, ``_+- ()`` only.

    A dot between digits becomes ``p`` (``10x0.4`` → ``10x0p4``, the usual way to write a decimal
    in a file-safe name); any other disallowed character becomes ``-``.
    """
    name = re.sub(r"(?<=\d)\.(?=\d)", "p", card_name.strip())
    name = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", name)
    name = re.sub(r"-{2,}", "-", name).strip("- ") or "model"
    if len(name) < 5:
        name = f"srscope {name}"
    return name[:128]


def bmz_halo(card: ModelCard) -> int:
    """The package's halo in *input* pixels: ``halo_px`` rounded up to the size multiple.

    bioimageio.core starts block ``i`` at ``i·(block − 2·halo)`` (the last one flush with the
    image end); with a block size and halo that are multiples of the size multiple, every block's
    pooling grid coincides with whole-image inference's, so blockwise output matches it.
    """
    return round_up(card.halo_px, card.size_multiple) if card.halo_px else 0


def bmz_min_size(card: ModelCard) -> int:
    """Smallest input edge the package declares: two halos plus one size multiple, rounded."""
    return round_up(2 * bmz_halo(card) + card.size_multiple, card.size_multiple)


def _valid_size(card: ModelCard, at_least: int) -> int:
    lo, step = bmz_min_size(card), card.size_multiple
    return lo + step * max(0, math.ceil((at_least - lo) / step))


def _axis_scales(card: ModelCard) -> tuple[float, float]:
    """``(input, output)`` pixel sizes in µm whose ratio is exactly the integer scale in float64.

    bioimageio computes output sizes as ``int(size · in_scale / out_scale)`` and the input halo as
    ``halo · out_scale / in_scale`` (asserted integral), so an inexact ratio would truncate an
    output edge by one pixel. The output size is rounded to float32 precision (≤ 6e-8 relative)
    and the input size set to exactly ``s`` times it; products with sizes below 2^28 stay exact.
    """
    s = card.integer_scale
    out_um = float(np.float32(card.output_pixel_size_um))
    in_um = out_um * s
    return in_um, out_um


# --------------------------------------------------------------------------------------------
# the wrapped graph

def wrap_graph(model: onnx.ModelProto, card: ModelCard) -> onnx.ModelProto:
    """The card's graph with srscope's whole-image border handling (and fp16 casts) built in.

    The wrapped graph takes float32 ``[N,1,H,W]`` (normalised) and returns float32
    ``[N,1,H·s,W·s]``, equal to what :class:`~srscope.runtime.enhancer.Enhancer` with
    ``tile=None`` computes between its normalisation and denormalisation, for any ``H, W`` at
    least ``halo_px + size_multiple``. Weights (initializers) and opset are unchanged.
    """
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    g = wrapped.graph
    opset = _default_opset(wrapped)
    if opset < 11:
        raise BmzExportError(f"ONNX opset {opset} is too old for the BMZ wrapper (needs >= 11)")
    init_names = {t.name for t in g.initializer}
    real_inputs = [i for i in g.input if i.name not in init_names]
    if len(real_inputs) != 1 or len(g.output) < 1:
        raise BmzExportError("model does not follow the srscope graph contract: one [N,1,H,W] input, one output")
    src_in, src_out = real_inputs[0].name, g.output[0].name
    names = {n for node in g.node for n in (*node.input, *node.output)} | init_names
    if any(n.startswith(_PREFIX) for n in names):
        raise BmzExportError(f"model already contains {_PREFIX!r} names (already wrapped?)")
    io_types = {real_inputs[0].type.tensor_type.elem_type, g.output[0].type.tensor_type.elem_type}
    expected = TensorProto.FLOAT16 if card.precision == "fp16" else TensorProto.FLOAT
    if io_types != {expected}:
        raise BmzExportError(f"card says precision {card.precision} but the graph's I/O types are "
                             f"{sorted(TensorProto.DataType.Name(t) for t in io_types)}")
    core_in, core_out = _PREFIX + "core_in", _PREFIX + "core_out"
    for node in g.node:
        for i, n in enumerate(node.input):
            if n == src_in:
                node.input[i] = core_in
            elif n == src_out:
                node.input[i] = core_out
        for i, n in enumerate(node.output):
            if n == src_out:
                node.output[i] = core_out
    for vi in g.value_info:
        if vi.name in (src_in, src_out):
            vi.name = core_in if vi.name == src_in else core_out

    from srscope.runtime.enhancer import default_border

    # the Enhancer's whole-image border (not the inter-tile halo), so the package reproduces srscope
    h, m, s = default_border(card), card.size_multiple, card.integer_scale
    pre: list[onnx.NodeProto] = []
    post: list[onnx.NodeProto] = []
    counter = iter(range(1_000_000))

    def tmp(tag: str) -> str:
        return f"{_PREFIX}{tag}_{next(counter)}"

    def const(nodes: list[onnx.NodeProto], values: Sequence[int]) -> str:
        name = tmp("const")
        nodes.append(helper.make_node("Constant", [], [name], name=name,
                                      value=numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)))
        return name

    def op(nodes: list[onnx.NodeProto], kind: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        out = out or tmp(kind.lower())
        nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    shape = op(pre, "Shape", [src_in])
    sizes = {axis: op(pre, "Gather", [shape, const(pre, [axis])], axis=0) for axis in (2, 3)}
    x = src_in
    if card.precision == "fp16":
        # Cast first and pad/crop in float16 (pure data movement, exact). On CPU, ONNX Runtime runs
        # fp16 nodes lacking fp16 kernels in fp32 and drops Cast pairs that end up adjacent, which
        # would silently skip the fp16 rounding of input and output that srscope performs by
        # feeding and reading float16; the Slice/Concat between our Casts and the graph keep it.
        x = op(pre, "Cast", [x], to=TensorProto.FLOAT16)
    for axis in (2, 3):
        # numpy.pad(mode="symmetric"): h mirrored rows before; after = h + (−(N + 2h) mod m) after.
        rem = op(pre, "Mod", [op(pre, "Add", [sizes[axis], const(pre, [2 * h + m - 1])]), const(pre, [m])])
        after = op(pre, "Sub", [const(pre, [h + m - 1]), rem])
        parts = []
        if h > 0:
            parts.append(op(pre, "Slice", [x, const(pre, [h - 1]), const(pre, [_INT64_MIN]), const(pre, [axis]),
                                           const(pre, [-1])]))
        parts.append(x)
        if h + m - 1 > 0:
            ends = op(pre, "Sub", [const(pre, [-1]), after])
            parts.append(op(pre, "Slice", [x, const(pre, [-1]), ends, const(pre, [axis]), const(pre, [-1])]))
        if len(parts) > 1:
            x = op(pre, "Concat", parts, out=core_in if axis == 3 else None, axis=axis)
    if x != core_in:
        op(pre, "Identity", [x], core_in)

    hw = op(post, "Concat", [sizes[2], sizes[3]], axis=0)
    ends = op(post, "Add", [op(post, "Mul", [hw, const(post, [s])]), const(post, [h * s])])
    if card.precision == "fp16":
        cropped = op(post, "Slice", [core_out, const(post, [h * s, h * s]), ends, const(post, [2, 3])])
        op(post, "Cast", [cropped], src_out, to=TensorProto.FLOAT)
    else:
        op(post, "Slice", [core_out, const(post, [h * s, h * s]), ends, const(post, [2, 3])], src_out)

    nodes = [*pre, *g.node, *post]
    del g.node[:]
    g.node.extend(nodes)
    in_dims = [d.dim_param or d.dim_value for d in real_inputs[0].type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in g.output[0].type.tensor_type.shape.dim]
    new_in = helper.make_tensor_value_info(src_in, TensorProto.FLOAT, in_dims or None)
    new_out = helper.make_tensor_value_info(src_out, TensorProto.FLOAT, out_dims or None)
    kept_inputs = [i for i in g.input if i.name in init_names]
    del g.input[:]
    g.input.extend([new_in, *kept_inputs])
    del g.output[:]
    g.output.append(new_out)

    meta = {p.key: p.value for p in wrapped.metadata_props}
    card_json = meta.pop(CARD_KEY, card.to_json())
    meta[SOURCE_CARD_KEY] = card_json
    meta[WRAPPER_KEY] = json.dumps({
        "purpose": "BioImage Model Zoo export; not an srscope-native graph (read_card/srrun refuse it)",
        "input": "float32 [N,1,H,W], normalised as the card says",
        "pad": f"numpy.pad mode=symmetric: {h} px before, {h} px + up to the size multiple {m} after, per axis",
        "precision": card.precision + (" (float32 I/O, Cast to/from float16 around the graph)"
                                       if card.precision == "fp16" else ""),
        "crop": f"output[..., {h * s}:{h * s}+H*{s}, {h * s}:{h * s}+W*{s}]",
    }, sort_keys=True)
    del wrapped.metadata_props[:]
    for key, value in meta.items():
        entry = wrapped.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(wrapped)
    return wrapped


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise BmzExportError("model has no default-domain ONNX opset")


# --------------------------------------------------------------------------------------------
# test tensors, cover, README

def _load_test_image(test_image: np.ndarray | str | Path | None, card: ModelCard) -> np.ndarray:
    if test_image is None:
        from srscope.runtime.synthetic import structured_image

        edge = _valid_size(card, DEFAULT_TEST_EDGE)
        return structured_image((edge, edge), seed=TEST_IMAGE_SEED)
    if isinstance(test_image, np.ndarray):
        image = test_image
    else:
        path = Path(test_image)
        if not path.is_file():
            raise BmzExportError(f"test image not found: {path}")
        if path.suffix.lower() == ".npy":
            image = np.load(path)
        else:
            import tifffile

            image = tifffile.imread(path)
    image = np.squeeze(np.asarray(image))
    if image.ndim != 2:
        raise BmzExportError(f"test image must be one 2D plane, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image) or not np.isfinite(image).all():
        raise BmzExportError("test image must hold finite real numbers")
    lo = bmz_min_size(card)
    if min(image.shape) < lo:
        raise BmzExportError(f"test image {image.shape} is smaller than the package's minimum input {lo}×{lo}")
    # Centre crop to the largest valid size (min + k·size_multiple) that fits.
    crop = []
    for n in image.shape:
        valid = lo + card.size_multiple * ((n - lo) // card.size_multiple)
        start = (n - valid) // 2
        crop.append(slice(start, start + valid))
    return image[tuple(crop)]


def _display(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image.astype(np.float64), [0.5, 99.8])
    unit = np.clip((image - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return np.round(unit * 255.0).astype(np.uint8)


def render_cover(image: np.ndarray, output: np.ndarray, scale: int) -> np.ndarray:
    """``input | output`` side by side (input nearest-up-sampled to the output grid), uint8."""
    up = np.repeat(np.repeat(np.asarray(image, dtype=np.float64), scale, axis=0), scale, axis=1)
    left, right = _display(up), _display(np.asarray(output, dtype=np.float64))
    cover = np.concatenate([left, right], axis=1)
    cover[:, left.shape[1] - 1:left.shape[1] + 1] = 255  # a thin divider
    return cover


def _fmt_um(um: float) -> str:
    return f"{um * 1000:.4g} nm"


def _structures(card: ModelCard) -> list[str]:
    prov = card.provenance
    found = prov.get("dataset_structures") or (prov.get("dataset_source") or {}).get("structure") or []
    if isinstance(found, str):
        found = found.split(",")
    return [str(s).strip() for s in found if str(s).strip()]


def _intensity_text(card: ModelCard) -> str:
    rule = card.intensity
    if rule.mode == "percentile":
        lo, hi = f"P{rule.low:g}", f"P{rule.high:g}"
        return (f"**Output units: input-normalised, not camera counts.** The package maps each input "
                f"image by its own percentiles, `x_norm = (x − {lo}) / ({hi} − {lo})` (BMZ `scale_range`, "
                f"min_percentile {rule.low:g}, max_percentile {rule.high:g}, per sample over y and x), exactly as "
                f"srscope does. srscope then maps the network output back through *the same* affine, "
                f"`counts = y · ({hi} − {lo}) + {lo}`, which makes the result camera-independent and "
                f"quantitative (`enhance(a·x + b) = a·enhance(x) + b`). BioImage Model Zoo format 0.5 cannot "
                f"express that inverse: its post-processing can divide by an input's percentile range "
                f"(`scale_range` with `reference_tensor`) or match the output's own mean and standard deviation "
                f"to the input's (`scale_mean_variance`, a different, content-dependent affine), but cannot "
                f"multiply by the input's percentile range. So this package returns `y` in the normalised units "
                f"above. To get counts, compute {lo} and {hi} of your input image (numpy `percentile`, linear "
                f"interpolation) and apply `counts = output · ({hi} − {lo}) + {lo}`, or run the original "
                f"`.onnx` with srscope (`srrun`), which does this for you.")
    n, d = card.normalization, card.denormalization
    return (f"Fixed (one camera's) mapping, as srscope applies it: input `(counts − {n.offset:g}) / {n.scale:g}` "
            f"(BMZ `fixed_zero_mean_unit_variance`, mean {n.offset:g}, std {n.scale:g}); output "
            f"`y · {d.scale:g} + {d.offset:g}` (BMZ `scale_linear`). **Output units: camera counts** of the "
            f"camera the model was trained for; other cameras' offsets and gains shift the input out of the "
            f"trained range.")


#: Card ``builder`` prefixes of random-weight models (the module's name before and after its rename).
SYNTHETIC_BUILDERS = ("srscope.runtime.synthetic.", "srscope.runtime." + "testing.")


def _training_text(card: ModelCard) -> str:
    prov = card.provenance
    source = prov.get("dataset_source") or {}
    simulator = source.get("simulator")
    if not simulator and not prov.get("dataset"):
        builder = prov.get("builder", "")
        if str(builder).startswith(SYNTHETIC_BUILDERS):
            return ("Not trained: random weights from `srscope.runtime.synthetic` (a generator that exercises "
                    "the export and runtimes, not the science). Do not use it on data.")
        return "The model card records no training data."
    lines = [
        (f"Training data are **simulated**, not acquired: pairs of low- and high-resolution images rendered by "
        f"srscope's physical simulator (`{simulator or 'srscope.training.data.simulate'}`), not recorded on a "
        f"microscope. No real specimen images were used for training."),
        "",
        f"- dataset: `{prov.get('dataset', '?')}`"
        + (f", modality {source['modality']}" if source.get("modality") else ""),
    ]
    if _structures(card):
        lines.append(f"- simulated structures: {', '.join(_structures(card))}")
    if prov.get("dataset_splits"):
        lines.append(f"- patches per split: {prov['dataset_splits']}")
    if source.get("seeds"):
        lines.append(f"- simulator seeds: {source['seeds']}, fields of view {source.get('fov_hr_px')} HR px")
    if prov.get("dataset_registration"):
        lines.append(f"- registration: {prov['dataset_registration']}")
    randomisation = prov.get("dataset_randomisation")
    if randomisation:
        lines.append("- **domain randomisation**: every simulated field draws its camera, sample and optics from "
                     "these ranges (from the model card):")
        lines += [f"  - `{k}`: {json.dumps(v)}" for k, v in sorted(randomisation.items())]
    else:
        lines.append("- domain randomisation: **none recorded** in the model card; a dataset simulated without "
                     "randomisation uses one set of camera and optics parameters, so real data that differ from "
                     "them are out of distribution.")
    return "\n".join(lines)


def _validation_text(card: ModelCard, test_shape: tuple[int, int], synthetic: bool) -> str:
    prov = card.provenance
    val = prov.get("validation") or {}
    lines = [
        f"The test input (`test_input.npy`, {test_shape[0]}×{test_shape[1]} px"
        + (f", `srscope.runtime.synthetic.structured_image(seed={TEST_IMAGE_SEED})`: filaments, puncta, a gradient "
           "and shot noise)" if synthetic else ", supplied at export)")
        + " and test output (`test_output.npy`) were computed with srscope's own runtime "
          "(`srscope.runtime.enhancer.Enhancer`, whole image, ONNX Runtime), in this package's output units. "
          "`bioimageio test` therefore checks this package against srscope.",
        "",
        "Blockwise prediction in bioimageio.core (input blocks a valid size, the declared halo) matches srscope's "
        "whole-image output to the halo's calibrated accuracy"
        + (f" ({prov['halo_calibration'].get('target_psnr_db')} dB target)"
           if isinstance(prov.get("halo_calibration"), dict) else "") + ".",
    ]
    if val.get("psnr_db") is not None:
        lines += ["", f"On srscope's simulated validation split the selected weights scored PSNR "
                      f"{val['psnr_db']:.2f} dB" + (f", SSIM {val['ssim']:.3f}" if val.get("ssim") is not None else "")
                  + " (simulated data; see the srscope model card for held-out results)."]
    lines += ["", ("To validate on your own data, image a few fields at both the input and the output "
                  "configuration, register them, and compare after an affine intensity fit (PSNR/SSIM).")]
    return "\n".join(lines)


def _readme(card: ModelCard, *, name: str, halo: int, min_size: int, test_shape: tuple[int, int],
            synthetic: bool) -> str:
    s = card.integer_scale
    prov = card.provenance
    rows = [
        f"| input | {card.input_modality}, {_fmt_um(card.input_pixel_size_um)} pixels |",
        f"| output | {card.output_modality}, {_fmt_um(card.output_pixel_size_um)} pixels (×{s}) |",
        f"| emission | {card.emission_wavelength_nm:g} nm |" if card.emission_wavelength_nm else "| emission | – |",
        f"| intensity | {card.intensity.mode}"
        + (f" (P{card.intensity.low:g} / P{card.intensity.high:g} per image)" if card.intensity.mode == "percentile"
           else "") + " |",
        f"| input size | y and x: {min_size} + k·{card.size_multiple} pixels (k = 0, 1, …) |",
        (f"| halo | {halo} input px = {halo * s} output px per side (card: {card.halo_px}, rounded up to the size "
        f"multiple {card.size_multiple}) |"),
        f"| precision | {card.precision}" + (" weights and arithmetic, float32 input/output" if card.precision == "fp16"
                                            else "") + " |",
        f"| srscope card | `{card.name}` v{card.version}, weights sha256 `{card.weights_sha256[:16]}…` |",
    ]
    if prov.get("git_commit"):
        rows.append(f"| git commit | `{prov['git_commit']}` |")
    parts = [
        f"# {name}",
        "",
        card.description or "srscope super-resolution model.",
        "",
        ("Deep-learning cross-modality super-resolution after Wang et al., Nature Methods 16, 103–110 (2019), "
        "exported from [srscope](#provenance) as a BioImage Model Zoo package (format 0.5)."),
        "",
        "| | |", "|---|---|", *rows,
        "",
        "## Intensities",
        "",
        _intensity_text(card),
        "",
        "## Geometry and tiling",
        "",
        f"The ONNX file is the srscope graph with srscope's whole-image border handling built in: the input is "
        f"mirror-padded (numpy `symmetric`) by {card.halo_px} px and up to a multiple of {card.size_multiple}, "
        f"the graph runs, and the output is cropped back to {s}× the input size. Weights are unchanged. For large "
        f"images use blockwise prediction with block edges of a valid input size; the declared halo "
        f"({halo * s} output px) is cropped from every block, and with valid block sizes every block sits on the "
        f"pooling grid of whole-image inference, so blockwise output equals srscope's whole-image output to the "
        f"halo's calibrated accuracy."
        + (" **Prefer blockwise prediction for this model:** bioimageio.core 0.11's whole-image prediction pads "
           f"the image by the halo ({halo} px, mirrored) *before* computing the input percentiles, so its P"
           f"{card.intensity.low:g}/P{card.intensity.high:g} (and hence its output) can differ noticeably from "
           "srscope's, which uses the image itself: the mirrored border enters the percentiles, most where the "
           "image's edges differ from its interior. Blockwise prediction computes the percentiles on the unpadded "
           "image, as srscope does." if card.intensity.mode == "percentile" else ""),
        "",
        "## Training data",
        "",
        _training_text(card),
        "",
        "## Validation",
        "",
        _validation_text(card, test_shape, synthetic),
        "",
        "## Provenance",
        "",
        ("Exported by `srscope-bmz` (`srscope.runtime.bmz`). The full srscope model card, including the training "
        "command and configuration, is `srscope-card.json` in this package and the ONNX metadata key "
        f"`{SOURCE_CARD_KEY}`."),
    ]
    if prov.get("command"):
        parts += ["", "Training command:", "", "```", str(prov["command"]), "```"]
    parts += ["", "## Citation", "", f"{CITATION_TEXT} https://doi.org/{CITATION_DOI}", ""]
    return "\n".join(parts)


def _description(card: ModelCard) -> str:
    if card.intensity.mode == "percentile":
        units = (f" Output is in input-normalised units: counts = value·(P{card.intensity.high:g} − "
                 f"P{card.intensity.low:g}) + P{card.intensity.low:g} of the input image (BMZ cannot express "
                 "srscope's inverse mapping); see README.")
    else:
        units = " Output in camera counts (fixed intensity mapping)."
    base = (card.description or f"{card.input_modality} to {card.output_modality} super-resolution.").strip()
    room = 512 - len(units)
    if len(base) > room:
        base = base[:room - 1].rstrip() + "…"
    return base + units


def _tags(card: ModelCard) -> list[str]:
    tags = ["super-resolution", "fluorescence-light-microscopy", "2d", "image-restoration", "image-reconstruction",
            "onnx", "deepimagej", "srscope", "cross-modality"]
    text = f"{card.input_modality} {card.output_modality}".lower()
    if "sted" in text or "sim" in text.split() or "storm" in text:
        tags.append("super-resolution-microscopy")
    for word in ("widefield", "confocal", "sted", "tirf"):
        if word in text:
            tags.append(word)
    if card.provenance.get("generator_config"):
        tags += ["unet", "pytorch"]
    if card.provenance.get("adversarial"):
        tags.append("gan")
    content = {"nuclei": "nuclei", "cells": "cells", "membranes": "cell-membrane", "membrane": "cell-membrane",
               "mitochondria": "mitochondria"}
    tags += [content[s] for s in _structures(card) if s in content]
    return list(dict.fromkeys(tags))


# --------------------------------------------------------------------------------------------
# export

def export_bmz(model_path: str | Path, out_zip: str | Path, *, cover_image: str | Path | None = None,
               test_image: np.ndarray | str | Path | None = None,
               maintainers: Sequence[str] = ()) -> Path:
    """Write ``model_path`` (an srscope ``.onnx`` with card) as a BMZ format-0.5 package ``out_zip``.

    ``cover_image``: a PNG/JPEG cover to use instead of the rendered ``input | output`` one.
    ``test_image``: a 2D image (array, ``.npy`` or TIFF) for the test tensors instead of the
    synthetic ``structured_image``; it is centre-cropped to a valid input size. ``maintainers``:
    GitHub user names (BMZ uploads need at least one; bioimageio.spec checks them online).
    Returns the path of the written package.
    """
    try:
        from bioimageio.spec import ValidationContext, save_bioimageio_package
        from bioimageio.spec.model import v0_5
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise BmzExportError("BMZ export needs bioimageio.spec: pip install 'srscope-runtime[bmz]'") from None
    from srscope.runtime.enhancer import Enhancer

    model_path, out_zip = Path(model_path), Path(out_zip)
    card = read_card(model_path)
    scale = card.integer_scale
    halo, min_size, step = bmz_halo(card), bmz_min_size(card), card.size_multiple
    name = bmz_name(card.name)
    image = _load_test_image(test_image, card)
    enhancer = Enhancer.from_file(model_path, device="cpu", tile=None, intra_op_threads=1)
    outputs, mappings = enhancer.enhance_many_with_mappings([image])
    counts = outputs[0]
    if card.intensity.mode == "percentile":
        expected = (counts - np.float32(mappings[0].offset)) / np.float32(mappings[0].scale)
    else:
        expected = counts
    in_um, out_um = _axis_scales(card)

    with tempfile.TemporaryDirectory(prefix="srscope-bmz-") as tmp_dir:
        tmp = Path(tmp_dir)
        weights = tmp / f"{re.sub(r'[^A-Za-z0-9_+-]', '_', name)}.onnx"
        onnx.save(wrap_graph(onnx.load(str(model_path)), card), str(weights))
        test_in, test_out = tmp / "test_input.npy", tmp / "test_output.npy"
        np.save(test_in, image.astype(np.float32)[None, None])
        np.save(test_out, expected.astype(np.float32)[None, None])
        # Sample tensors (for people browsing the zoo): the same images as TIFF.
        import tifffile

        sample_in, sample_out = tmp / "sample_input.tif", tmp / "sample_output.tif"
        tifffile.imwrite(sample_in, image.astype(np.float32)[None, None])
        tifffile.imwrite(sample_out, expected.astype(np.float32)[None, None])
        if cover_image is None:
            import imageio.v3 as iio

            cover = tmp / "cover.png"
            iio.imwrite(cover, render_cover(image, counts, scale))
        else:
            cover = Path(cover_image)
            if not cover.is_file():
                raise BmzExportError(f"cover image not found: {cover}")
        readme = tmp / "README.md"
        readme.write_text(_readme(card, name=name, halo=halo, min_size=min_size, test_shape=image.shape,
                                  synthetic=test_image is None), encoding="utf-8")
        card_file = tmp / "srscope-card.json"
        card_file.write_text(card.to_json(), encoding="utf-8")

        if card.intensity.mode == "percentile":
            normalise: list[Any] = [v0_5.ScaleRangeDescr(kwargs=v0_5.ScaleRangeKwargs(
                axes=[v0_5.AxisId("y"), v0_5.AxisId("x")], min_percentile=card.intensity.low,
                max_percentile=card.intensity.high))]
            denormalise: list[Any] = []
            out_text = (f"SR image in input-normalised units: counts = value*(P{card.intensity.high:g}-"
                        f"P{card.intensity.low:g})+P{card.intensity.low:g} of the input")
        else:
            normalise = [v0_5.FixedZeroMeanUnitVarianceDescr(kwargs=v0_5.FixedZeroMeanUnitVarianceKwargs(
                mean=card.normalization.offset, std=card.normalization.scale))]
            denormalise = [v0_5.ScaleLinearDescr(kwargs=v0_5.ScaleLinearKwargs(
                gain=card.denormalization.scale, offset=card.denormalization.offset))]
            out_text = "SR image in camera counts (the card's fixed denormalisation)"
        f32 = v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32"))
        in_id, out_id = v0_5.TensorId("input"), v0_5.TensorId("output")

        def out_axis(axis: str) -> Any:
            size = v0_5.SizeReference(tensor_id=in_id, axis_id=v0_5.AxisId(axis))
            common = {"id": v0_5.AxisId(axis), "size": size, "unit": "micrometer", "scale": out_um}
            if halo:
                return v0_5.SpaceOutputAxisWithHalo(halo=halo * scale, **common)
            return v0_5.SpaceOutputAxis(**common)

        # No explicit `pad`: bioimageio.spec 0.5.12 writes SymmetricPadding() as `pad: {}`, which
        # reads back as ConstantPadding (zeros). Left out, bioimageio.core pads symmetrically, as
        # srscope does.
        inputs = [v0_5.InputTensorDescr(
            id=in_id,
            description=f"{card.input_modality}, {_fmt_um(card.input_pixel_size_um)} px; float32 (uint16 is cast)",
            axes=[v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=["intensity"]),
                  *[v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=v0_5.ParameterizedSize(min=min_size, step=step),
                                        unit="micrometer", scale=in_um) for a in ("y", "x")]],
            test_tensor=v0_5.FileDescr(source=test_in),
            sample_tensor=v0_5.FileDescr(source=sample_in),
            data=v0_5.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=[f32, *normalise, f32],
        )]
        outputs_descr = [v0_5.OutputTensorDescr(
            id=out_id,
            description=out_text[:128],
            axes=[v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=["intensity"]), out_axis("y"), out_axis("x")],
            test_tensor=v0_5.FileDescr(source=test_out),
            sample_tensor=v0_5.FileDescr(source=sample_out),
            data=v0_5.IntervalOrRatioDataDescr(type="float32"),
            postprocessing=[*denormalise, f32],
        )]
        comment = ("srscope graph wrapped with srscope's whole-image border handling (symmetric pad by "
                   f"{card.halo_px} px and to a multiple of {step}, crop after)"
                   + ("; fp16 weights with float32 I/O casts" if card.precision == "fp16" else "")
                   + "; initializers unchanged")
        config = {
            "srscope": {"card_name": card.name, "card_version": card.version, "intensity": card.intensity.mode,
                        "percentiles": [card.intensity.low, card.intensity.high],
                        "output_units": "input-normalised" if card.intensity.mode == "percentile" else "counts",
                        "halo_px": card.halo_px, "bmz_halo_px": halo, "size_multiple": step, "scale": scale,
                        "precision": card.precision, "weights_sha256": card.weights_sha256},
        }
        try:
            with ValidationContext(perform_io_checks=True):
                descr = v0_5.ModelDescr(
                    name=name,
                    description=_description(card),
                    authors=[v0_5.Author(name=AUTHOR_NAME)],
                    maintainers=[v0_5.Maintainer(github_user=u) for u in maintainers],
                    cite=[v0_5.CiteEntry(text=CITATION_TEXT, doi=v0_5.Doi(CITATION_DOI))],
                    license=v0_5.LicenseId(LICENSE),
                    tags=_tags(card),
                    documentation=v0_5.FileDescr(source=readme),
                    covers=[v0_5.FileDescr(source=cover)],
                    attachments=[v0_5.FileDescr(source=card_file)],
                    version=_version(card.version),
                    inputs=inputs,
                    outputs=outputs_descr,
                    weights=v0_5.WeightsDescr(onnx=v0_5.OnnxWeightsDescr(
                        source=weights, opset_version=_default_opset(onnx.load(str(weights), load_external_data=False)),
                        comment=comment)),
                    config=v0_5.Config(**config),
                )
        except Exception as exc:
            raise BmzExportError(f"bioimageio.spec rejected the description: {exc}") from exc
        out_zip.parent.mkdir(parents=True, exist_ok=True)
        if out_zip.exists():
            out_zip.unlink()
        return Path(save_bioimageio_package(descr, output_path=out_zip))


def _version(text: str) -> Any:
    from bioimageio.spec.model import v0_5

    try:
        return v0_5.Version(text)
    except Exception:  # noqa: BLE001 - an unparsable card version just is not carried over
        return None


# --------------------------------------------------------------------------------------------
# command line

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        print(f"srscope-bmz: error: {message} (see srscope-bmz --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="srscope-bmz", description="Export an srscope model (.onnx with card) as a BioImage Model Zoo "
                                                "package (format 0.5) for bioimageio.core, deepImageJ and others.")
    p.add_argument("model", type=Path, help="srscope model (.onnx)")
    p.add_argument("out", type=Path, help="package to write (.zip)")
    p.add_argument("--cover", type=Path, default=None, help="cover image (PNG/JPEG) instead of the rendered one")
    p.add_argument("--test-image", type=Path, default=None,
                   help="2D image (.npy or TIFF) for the test tensors instead of the synthetic one")
    p.add_argument("--maintainer", action="append", default=[], metavar="GITHUB_USER",
                   help="GitHub user maintaining the package (repeatable; checked online by bioimageio.spec)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = export_bmz(args.model, args.out, cover_image=args.cover, test_image=args.test_image,
                          maintainers=args.maintainer)
    except (BmzExportError, ModelCardError) as exc:
        if args.debug:
            raise
        print(f"srscope-bmz: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
