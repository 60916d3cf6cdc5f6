"""Export a trained generator to one self-describing ONNX file and prove it computes the same thing.

The graph is ``bilinear ×s resize (align_corners=False) → U-Net``: training saw the LR already
resampled onto the HR grid, so the resize the data pipeline did offline moves into the graph and
the runtime feeds native-pixel-size LR (ONNX graph contract: ``[N,1,H,W] → [N,1,H·s,W·s]``, dynamic
H, W that are multiples of ``card.size_multiple``).

Every export ends with a parity check: ONNX Runtime against PyTorch on held-out tiles (test-split
content, plus a non-square tile to exercise the dynamic axes). The maximum absolute difference is
reported and must be below a tolerance, because a graph that loads and runs can still compute the
wrong thing (pix2pix's users met exactly that for years).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from srscope.runtime.card import (
    AffineIntensity,
    IntensityRule,
    ModelCard,
    embed_card,
    read_card,
    weights_checksum,
)
from srscope.runtime.halo import calibrate_halo, write_calibrated_card
from torch import nn

from .checkpoint import load_checkpoint
from .networks import Generator, GeneratorConfig, receptive_field_radius

OPSET = 17
FP32_TOLERANCE = 1e-3
FP16_TOLERANCE = 5e-2


class ParityError(RuntimeError):
    """ONNX Runtime's output differs from PyTorch's by more than the tolerance."""


class ExportGraph(nn.Module):
    """What goes into the ONNX file: in-graph resampling to the HR grid, then the generator."""

    def __init__(self, generator: nn.Module, scale: int) -> None:
        super().__init__()
        self.generator = generator
        self.scale = int(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != 1:
            x = F.interpolate(x, scale_factor=float(self.scale), mode="bilinear", align_corners=False)
        return self.generator(x)


@dataclass
class ExportReport:
    path: Path
    card: ModelCard
    max_abs_diff: float
    tolerance: float
    tiles: list[tuple[int, int]]
    size_bytes: int
    #: why the card has no consistency check (``None``: it has one, or it was not asked for)
    consistency_note: str | None = None


def integer_scale(attrs: dict[str, Any]) -> int:
    s = attrs["input_pixel_size_um"] / attrs["output_pixel_size_um"]
    if abs(s - round(s)) > 1e-6 or round(s) < 1:
        raise ValueError(f"LR/HR pixel-size ratio {s:.4f} is not a positive integer; the ONNX contract needs one")
    return round(s)


def input_size_multiple(levels: int, scale: int) -> int:
    """Smallest LR side step so that ``side·scale`` divides by ``2**levels``."""
    m = 2**levels
    return m // math.gcd(m, scale)


def halo_in_input_pixels(config: GeneratorConfig, scale: int) -> int:
    """Receptive-field radius of the whole exported graph (resize included), in LR pixels."""
    probe = ExportGraph(Generator(GeneratorConfig(width=1, levels=config.levels)), scale)
    size = 16 * input_size_multiple(config.levels, scale)
    while True:
        try:
            return receptive_field_radius(probe, probe_size=size, scale=scale)
        except ValueError:  # receptive field wider than the probe: grow it
            size *= 2


def build_card(state: dict[str, Any], *, name: str, version: str, precision: str, weights_sha256: str,
               halo_px: int, size_multiple: int, description: str = "",
               extra_provenance: dict[str, Any] | None = None) -> ModelCard:
    attrs = state["dataset_attrs"]
    provenance = dict(state.get("provenance", {}))
    provenance.update({
        "selected_iteration": state.get("iteration"),
        "selection": f"lowest validation loss ({state.get('config', {}).get('select_on', 'total')})",
        "validation": state.get("val"),
        "generator_config": state["generator_config"],
        "training_config": {k: v for k, v in state.get("config", {}).items() if k not in ("extra",)},
        "dataset_structures": attrs.get("structures"),
        "dataset_splits": attrs.get("splits"),
        "dataset_source": attrs.get("source"),
        "dataset_registration": attrs.get("registration"),
        "dataset_randomisation": attrs.get("randomisation"),
    })
    provenance.update(extra_provenance or {})
    return ModelCard(
        name=name, version=version,
        input_modality=attrs["input_modality"], output_modality=attrs["output_modality"],
        input_pixel_size_um=float(attrs["input_pixel_size_um"]),
        output_pixel_size_um=float(attrs["output_pixel_size_um"]),
        normalization=AffineIntensity(**attrs["normalization"]),
        denormalization=AffineIntensity(**attrs["denormalization"]),
        intensity=IntensityRule(**attrs.get("intensity", {"mode": "fixed"})),
        halo_px=halo_px, size_multiple=size_multiple, weights_sha256=weights_sha256,
        emission_wavelength_nm=attrs.get("emission_wavelength_nm"), precision=precision,
        description=description, provenance=provenance,
    )


def parity_tiles(state: dict[str, Any], dataset: str | Path | None, scale: int, multiple: int,
                 n: int = 4, seed: int = 0) -> list[np.ndarray]:
    """Held-out LR tiles at the native LR pixel size.

    Test-split patches (LR on the HR grid) are area-averaged back to the LR grid; without the
    dataset, seeded smooth random fields stand in. A non-square tile checks the dynamic axes.
    """
    rng = np.random.default_rng(seed)
    tiles: list[np.ndarray] = []
    ds = dataset or state.get("config", {}).get("dataset")
    if ds and Path(ds).exists():
        from .patches import load_split

        lr, _ = load_split(ds, "test")
        for img in lr[:n]:
            h, w = (img.shape[0] // scale) * scale, (img.shape[1] // scale) * scale
            small = img[:h, :w].reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3))
            hh, ww = (small.shape[0] // multiple) * multiple, (small.shape[1] // multiple) * multiple
            if hh and ww:
                tiles.append(np.ascontiguousarray(small[:hh, :ww], np.float32))
    if not tiles:
        from scipy import ndimage

        for _ in range(n):
            tiles.append(ndimage.gaussian_filter(rng.random((4 * multiple, 4 * multiple)), 2).astype(np.float32))
    h = tiles[0].shape[0]
    tiles.append(np.ascontiguousarray(rng.random((max(multiple, h // 2 // multiple * multiple), 3 * multiple)),
                                      np.float32))
    return tiles


def check_parity(onnx_path: Path, graph: nn.Module, tiles: list[np.ndarray], precision: str) -> float:
    """Max |ORT − PyTorch| over the tiles (PyTorch in fp32 as the reference)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    graph = graph.float().eval()
    for tile in tiles:
        x = tile[None, None]
        with torch.no_grad():
            ref = graph(torch.from_numpy(x)).numpy()
        feed = x.astype(np.float16) if precision == "fp16" else x
        got = session.run(None, {name: feed})[0].astype(np.float32)
        if got.shape != ref.shape:
            raise ParityError(f"ONNX output shape {got.shape} != PyTorch {ref.shape} for tile {tile.shape}")
        worst = max(worst, float(np.max(np.abs(got - ref))))
    return worst


def checkpoint_graph(state: dict[str, Any]) -> tuple[ExportGraph, GeneratorConfig, int, int]:
    """The graph a checkpoint ships (its shipped generator behind the in-graph resize), in eval mode,
    with its generator config, integer scale and input size multiple."""
    config = GeneratorConfig(**state["generator_config"])
    generator = Generator(config)
    generator.load_state_dict(state["generator"])
    scale = integer_scale(state["dataset_attrs"])
    return ExportGraph(generator, scale).eval(), config, scale, input_size_multiple(config.levels, scale)


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, name: str | None = None, version: str = "1.0",
                      fp16: bool = False, dataset: str | Path | None = None, description: str = "",
                      tolerance: float | None = None, opset: int = OPSET,
                      extra_provenance: dict[str, Any] | None = None, consistency: bool = True) -> ExportReport:
    """Export ``checkpoint`` (a run directory or ``best.pt``) to ``out``; raises :class:`ParityError`.

    With ``consistency`` (default) and a simulator-built training set (its recipe is in the
    checkpoint), the card gets the per-plane consistency check's degradation model, fitted and
    calibrated on the validation split (:mod:`srscope.training.gan.degradation_fit`); otherwise the
    report's ``consistency_note`` says why not.
    """
    state = load_checkpoint(checkpoint)
    last = (Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent) / "last.pt"
    if last.is_file():  # the whole run, not just up to the selected iteration
        run = load_checkpoint(last)
        extra_provenance = {"iterations_total": run["iteration"], "train_wall_s_total": round(run["elapsed_s"], 1),
                            **(extra_provenance or {})}
    graph, config, scale, multiple = checkpoint_graph(state)
    precision = "fp16" if fp16 else "fp32"
    tolerance = tolerance if tolerance is not None else (FP16_TOLERANCE if fp16 else FP32_TOLERANCE)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    model = _to_onnx(graph, multiple, opset, fp16)
    onnx.checker.check_model(model, full_check=True)
    card = build_card(
        state, name=name or out.stem, version=version, precision=precision,
        weights_sha256=weights_checksum(model), halo_px=halo_in_input_pixels(config, scale),
        size_multiple=multiple, description=description,
        extra_provenance={**(extra_provenance or {}), "onnx_opset": opset},
    )
    embed_card(model, card)
    tmp = out.with_suffix(out.suffix + ".tmp")
    onnx.save(model, str(tmp))
    tiles = parity_tiles(state, dataset, scale, multiple)
    diff = check_parity(tmp, graph, tiles, precision)
    if not diff <= tolerance:
        tmp.unlink()
        raise ParityError(f"ONNX Runtime vs PyTorch max |diff| = {diff:.3g} > tolerance {tolerance:g}; "
                          f"{out} not written")
    # record the parity result in the card itself (metadata is outside the weights checksum)
    card = dataclasses.replace(card, provenance={**card.provenance, "onnx_parity": {
        "max_abs_diff": diff, "tolerance": tolerance, "tiles": [list(t.shape) for t in tiles],
        "reference": "PyTorch fp32 eval-mode graph", "runtime": f"onnxruntime {ort.__version__} CPU"}})
    onnx.save(embed_card(model, card), str(tmp))
    # The card's halo starts as the theoretical receptive field; tiling with it is exact but ~3×
    # slower than needed, so store the smallest halo that reproduces whole-image output.
    card = write_calibrated_card(tmp, calibrate_halo(tmp, receptive_field_px=card.halo_px))
    note = None
    if consistency:
        from .degradation_fit import SimRecipe, embed_degradation, fit_degradation

        try:
            recipe = SimRecipe.from_attrs(state["dataset_attrs"], where="the training dataset")
        except ValueError as exc:
            note = f"no consistency check: {exc}"
        else:
            embed_degradation(tmp, fit_degradation(tmp, recipe))
    card = read_card(tmp)
    tmp.replace(out)
    return ExportReport(out, card, diff, tolerance, [t.shape for t in tiles], out.stat().st_size, note)


def _to_onnx(graph: nn.Module, multiple: int, opset: int, fp16: bool) -> onnx.ModelProto:
    """Trace with the TorchScript exporter (stable, no extra deps) and dynamic H/W."""
    example = torch.zeros(1, 1, 4 * multiple, 4 * multiple)
    with tempfile.TemporaryDirectory() as tmpdir, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        path = Path(tmpdir) / "g.onnx"
        torch.onnx.export(
            graph, (example,), str(path), input_names=["lr"], output_names=["hr"], opset_version=opset,
            dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"}, "hr": {0: "batch", 2: "out_height", 3: "out_width"}},
            dynamo=False,
        )
        model = onnx.load(str(path))
    if fp16:
        model = _convert_fp16(model)
    return model


def _convert_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The whole graph in float16 (weights, activations, input and output), by ONNX Runtime's converter.

    ``onnxruntime.transformers.float16`` ships inside onnxruntime (the converter onnxconverter-common
    maintains too), so this is no extra dependency. It keeps Resize's ``scales`` float32 as the spec
    requires, but only when they are an initializer, so the exporter's ``Constant`` nodes become
    initializers first. Its output is bit-identical to the hand-written cast this replaced on the
    shipped widefield model (max |diff| 0 on a 256² input).
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    nodes = []
    for node in model.graph.node:
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.value_info[:]
    return convert_float_to_float16(model, keep_io_types=False)
