"""Static int8 (QDQ) quantisation of a shipped fp32 generator, calibrated on its own training recipe.

Why int8 at all: lab PCs beside microscopes are often CPU-only, and ONNX Runtime's int8
convolutions (MLAS ``QLinearConv``, u8 activations × s8 weights, the AVX2/AVX-512 VNNI
kernels where the CPU has them) do 4× less memory traffic per activation than fp32.

Why it does not reach 2× on the shipped width-8 widefield model (measured side by side in
``bench/bench_runtime.py``, JSON ``int8``): its convolutions have 1–64 channels, most of the time
goes to 8→16 and 16→8 channel layers at the HR grid, where a GEMM with N = 8–16 output channels and
K = 9·C_in ≤ 144 leaves the VNNI kernel mostly idle; the int8 graph adds ops fp32 does not have
(``QLinearLeakyRelu`` is not fused into the convolution, ``QLinearAveragePool``, NCHW↔NHWC
``Transpose`` around the NHWC ``QLinearConv``), which eat most of what the faster convolutions save.
``QLinearConv`` itself runs ≈1.3–2× faster than fp32 ``Conv`` there; the whole graph ≈1.15×.

Nor does it pass the gate. Measured on the shipped widefield model (9 held-out fields): these
settings give 44.7 dB against fp32 and lose 0.36 dB PSNR / 0.0037 SSIM against ground truth;
s8 activations, per-tensor weights, QOperator, entropy or percentile calibration and fp32 first/
last convolutions all stay within 43.7–44.9 dB; keeping the whole HR-grid level in float reaches
50 dB but still loses 0.22 dB / 0.0018 SSIM. The 8-bit rounding of every activation accumulates
over 26 convolutions; no int8 file is shipped for it.

Calibration data: fields regenerated with the model card's own dataset recipe (the simulator, the
same domain randomisation, the *train* split's seeds 0, 1, …: never the held-out test seeds),
normalised by the card's intensity policy and mirror-padded exactly as the runtime's whole-image
plan feeds them. The quality gate then runs on held-out fields (the card's test seeds, nominal
microscope, as in the card's held-out evaluation): the int8 output must match the fp32 output to
:data:`MIN_PSNR_VS_FP32_DB` and lose at most :data:`MAX_PSNR_LOSS_DB` / :data:`MAX_SSIM_LOSS` of
the evaluation's PSNR/SSIM against ground truth; otherwise nothing is written and
:class:`QuantisationGateError` says why.

    python -m srscope.training.gan.quantise models/widefield-10x0.4-to-20x0.75.onnx \
        models/widefield-10x0.4-to-20x0.75-int8.onnx
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from srscope.runtime.card import ModelCard, embed_card, read_card, weights_checksum
from srscope.runtime.errors import UserError
from srscope.runtime.halo import psnr_db
from srscope.runtime.intensity import intensity_policy
from srscope.runtime.tiling import TilePlan

MIN_PSNR_VS_FP32_DB = 45.0
MAX_PSNR_LOSS_DB = 0.05
#: SSIM has no dB; 0.001 is the SSIM change that goes with ~0.05 dB PSNR on these fields.
MAX_SSIM_LOSS = 0.001
#: Calibration fields (train-split seeds 0..N-1) and their HR field of view: one per structure of
#: the nine-structure recipe; small fields, since activation ranges do not depend on field size.
CALIBRATION_FIELDS = 9
CALIBRATION_FOV = 512


class QuantisationGateError(UserError):
    """The int8 model lost more quality than the gate allows; it is not written."""


@dataclass(frozen=True)
class QuantSettings:
    """What ``onnxruntime.quantization.quantize_static`` is asked for (the shipped choice by default).

    QDQ with u8 activations and per-channel s8 weights: the combination ORT's x86 QLinearConv
    runs fastest (s8 activations take MLAS's slower s8s8 path; QOperator builds the same kernels
    with less fusion). ``exclude_ops`` leaves op types in float; ``exclude_first_last`` keeps the
    first and last convolutions fp32 (the 1-channel input and output ends).
    """

    fmt: str = "qdq"
    activations: str = "u8"
    weights: str = "s8"
    per_channel: bool = True
    calibration: str = "minmax"
    exclude_ops: tuple[str, ...] = ()
    exclude_first_last: bool = False
    #: node-name substrings whose nodes stay float (e.g. ``"down.0"``: the encoder's HR level)
    exclude_nodes: tuple[str, ...] = ()

    def label(self) -> str:
        parts = [self.fmt, f"{self.activations}{self.weights}", "pc" if self.per_channel else "pt", self.calibration]
        if self.exclude_ops:
            parts.append("no-" + "-".join(sorted(self.exclude_ops)).lower())
        if self.exclude_first_last:
            parts.append("fp32-ends")
        if self.exclude_nodes:
            parts.append("float-" + "-".join(self.exclude_nodes))
        return "_".join(parts)


def _randomisation(card: ModelCard, modality: str) -> Any:
    """The ranges the model's training fields were drawn from (its card records them), so calibration
    fields follow its recipe: the modality's defaults, or e.g. a dye-band model's narrower emission."""
    from srscope.training.data.randomise import defaults_for, randomisation_from_dict

    recorded = card.provenance.get("dataset_randomisation")
    default = defaults_for(modality)
    if recorded is None or json.loads(json.dumps(recorded)) == json.loads(json.dumps(default.to_dict())):
        return default
    try:
        return randomisation_from_dict(recorded)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{card.name}: unreadable domain-randomisation ranges in the card ({exc})") from exc


def _source(card: ModelCard) -> dict[str, Any]:
    source = card.provenance.get("dataset_source") or {}
    if source.get("simulator") != "srscope.training.data.simulate.simulate_pair":
        raise UserError(f"{card.name}: its card names no simulator recipe to regenerate calibration fields from")
    return source


def calibration_fields(card: ModelCard, n: int = CALIBRATION_FIELDS, fov: int = CALIBRATION_FOV) -> list[np.ndarray]:
    """LR camera counts of ``n`` fields from the card's recipe, train-split seeds ``0..n-1``."""
    from srscope.training.data.randomise import draw_field
    from srscope.training.data.simulate import simulate_pair

    from .simdataset import SPLIT_SEED_BASE, parse_structures, structure_of_field

    source = _source(card)
    modality = source["modality"]
    structures = parse_structures(source["structure"])
    fields = []
    for i in range(n):
        seed = SPLIT_SEED_BASE["train"] + i
        if source.get("randomised"):
            draw = draw_field(modality, np.random.default_rng([seed, 1]), _randomisation(card, modality))
            pair = simulate_pair(modality, structure_of_field(structures, i), seed=seed, hr_shape=(fov, fov),
                                 misregister=draw.misregister, **draw.overrides)
        else:
            pair = simulate_pair(modality, structure_of_field(structures, i), seed=seed, hr_shape=(fov, fov),
                                 misregister=False)
        fields.append(pair.lr)
    return fields


def runtime_feeds(card: ModelCard, fields: list[np.ndarray]) -> list[np.ndarray]:
    """``[1,1,H,W]`` float32 inputs exactly as the Enhancer's whole-image plan feeds ``fields``."""
    policy = intensity_policy(card, "auto")
    feeds = []
    for lr in fields:
        plan = TilePlan.for_image(lr.shape, tile=None, overlap=0, halo=card.halo_px, multiple=card.size_multiple,
                                  scale=card.integer_scale)
        feeds.append(np.ascontiguousarray(plan.pad(policy.input_mapping(lr).normalise(lr))[None, None],
                                          dtype=np.float32))
    return feeds


class _Reader:
    """``CalibrationDataReader`` over prepared feeds (ORT's protocol: ``get_next`` until ``None``)."""

    def __init__(self, name: str, feeds: list[np.ndarray]) -> None:
        self._it: Iterator[np.ndarray] = iter(feeds)
        self._name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self._name: x}

    def rewind(self) -> None:  # pragma: no cover - part of ORT's protocol, unused by quantize_static
        raise NotImplementedError


def quantise_model(fp32: str | Path, out: str | Path, feeds: list[np.ndarray],
                   settings: QuantSettings = QuantSettings()) -> Path:
    """Quantise ``fp32`` with ``feeds`` as calibration data into ``out``, with an int8 card (same fields
    as the fp32 card, precision ``int8``, its own weights checksum)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    model = onnx.load(str(fp32))
    name = model.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        pre_model = onnx.load(str(pre))
        convs = [n.name for n in pre_model.graph.node if n.op_type == "Conv"]
        ops = sorted({n.op_type for n in pre_model.graph.node} - set(settings.exclude_ops)
                     - {"Constant", "Shape", "Reshape", "Slice", "Cast", "ConstantOfShape", "Transpose"})
        quantize_static(
            str(pre), str(out), _Reader(name, feeds),
            quant_format=QuantFormat.QDQ if settings.fmt == "qdq" else QuantFormat.QOperator,
            activation_type=types[settings.activations], weight_type=types[settings.weights],
            per_channel=settings.per_channel, calibrate_method=methods[settings.calibration],
            op_types_to_quantize=ops,
            nodes_to_exclude=([convs[0], convs[-1]] if settings.exclude_first_last else [])
            + [n.name for n in pre_model.graph.node if any(k in n.name for k in settings.exclude_nodes)],
        )
    return with_int8_card(out, read_card(fp32))


def with_int8_card(path: str | Path, card: ModelCard, quantisation: dict[str, Any] | None = None) -> Path:
    """Give a quantised file (which still carries its fp32 card's metadata) its own int8 card, in place."""
    model = onnx.load(str(path))
    provenance = {**card.provenance, **({"quantisation": quantisation} if quantisation is not None else {})}
    int8_card = dataclasses.replace(card, precision="int8", weights_sha256=weights_checksum(model),
                                    provenance=provenance,
                                    description=(card.description + " int8 (QDQ) quantised for CPU inference.").strip())
    onnx.save(embed_card(model, int8_card), str(path))
    return Path(path)


def _cpu_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def output_psnr_vs_fp32(fp32: Path, int8: Path, feeds: list[np.ndarray]) -> float:
    """PSNR (dB) of the int8 graph's output against the fp32 graph's, over all feeds together."""
    a, b = _cpu_session(fp32), _cpu_session(int8)
    name = a.get_inputs()[0].name
    worst = float("inf")
    for x in feeds:
        ref = a.run(None, {name: x})[0].astype(np.float64)
        got = b.run(None, {name: x})[0].astype(np.float64)
        worst = min(worst, psnr_db(ref, got))
    return worst


@dataclass
class GateReport:
    passed: bool
    psnr_vs_fp32_db: float
    fp32: dict[str, float]
    int8: dict[str, float]
    heldout_seeds: list[int]
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def heldout_seeds(card: ModelCard) -> tuple[list[int], int]:
    """The card's test seeds and the evaluation field of view its ``.md`` card was scored on."""
    seeds = (card.provenance.get("dataset_source") or {}).get("seeds", {}).get("test")
    if not seeds:
        raise UserError(f"{card.name}: its card records no held-out test seeds for the quality gate")
    return list(range(int(seeds[0]), int(seeds[1]) + 1)), 256


def quality_gate(fp32: Path, int8: Path, card: ModelCard, heldout: int | None = None) -> GateReport:
    """Held-out comparison: int8 vs fp32 outputs, and both against ground truth (PSNR/SSIM)."""
    from srscope.training.data.simulate import simulate_pair
    from srscope.training.evaluation.modelcard import heldout_scores

    from .simdataset import parse_structures, structure_of_field

    source = _source(card)
    seeds, fov = heldout_seeds(card)
    seeds = seeds[:heldout] if heldout else seeds
    structures = parse_structures(source["structure"])
    fields = [simulate_pair(source["modality"], structure_of_field(structures, k), seed=s, hr_shape=(fov, fov),
                            misregister=False).lr for k, s in enumerate(seeds)]
    psnr = output_psnr_vs_fp32(fp32, int8, runtime_feeds(card, fields))
    scores = {}
    for key, path in (("fp32", fp32), ("int8", int8)):
        s = heldout_scores(path, source["modality"], source["structure"], seeds, fov)
        scores[key] = {"psnr": round(s["network_psnr_mean"], 4), "ssim": round(s["network_ssim_mean"], 5)}
    reasons = []
    if not psnr >= MIN_PSNR_VS_FP32_DB:
        reasons.append(f"int8 vs fp32 output PSNR {psnr:.2f} dB < {MIN_PSNR_VS_FP32_DB:g} dB")
    if scores["fp32"]["psnr"] - scores["int8"]["psnr"] > MAX_PSNR_LOSS_DB:
        reasons.append(f"held-out PSNR loss {scores['fp32']['psnr'] - scores['int8']['psnr']:.3f} dB "
                       f"> {MAX_PSNR_LOSS_DB:g} dB")
    if scores["fp32"]["ssim"] - scores["int8"]["ssim"] > MAX_SSIM_LOSS:
        reasons.append(f"held-out SSIM loss {scores['fp32']['ssim'] - scores['int8']['ssim']:.4f} > {MAX_SSIM_LOSS:g}")
    return GateReport(passed=not reasons, psnr_vs_fp32_db=round(psnr, 2), fp32=scores["fp32"], int8=scores["int8"],
                      heldout_seeds=seeds, reasons=reasons)


def export_int8(fp32: str | Path, out: str | Path, *, settings: QuantSettings = QuantSettings(),
                n_fields: int = CALIBRATION_FIELDS, fov: int = CALIBRATION_FOV,
                heldout: int | None = None) -> tuple[ModelCard, GateReport]:
    """Quantise a card-carrying fp32 model, gate it, and write ``out`` with its int8 card.

    Raises :class:`QuantisationGateError` (nothing written) when the gate fails. ``heldout`` limits
    the gate to the first held-out fields (tests); the default is all of the card's test seeds.
    """
    fp32, out = Path(fp32), Path(out)
    card = read_card(fp32)
    if card.precision != "fp32":
        raise UserError(f"{fp32.name}: int8 quantisation starts from an fp32 model, not {card.precision}")
    t0 = time.perf_counter()
    feeds = runtime_feeds(card, calibration_fields(card, n_fields, fov))
    with tempfile.TemporaryDirectory() as tmp:
        carded = quantise_model(fp32, Path(tmp) / "int8.onnx", feeds, settings)
        source = _source(card)
        record: dict[str, Any] = {
            "from": fp32.name, "from_weights_sha256": card.weights_sha256, "tool": "onnxruntime.quantization."
            f"quantize_static (onnxruntime {ort.__version__})", "settings": dataclasses.asdict(settings),
            "calibration": {"recipe": source.get("structure"), "split": "train", "seeds": [0, n_fields - 1],
                            "fov_hr_px": fov, "randomised": bool(source.get("randomised")),
                            "feeds": "card intensity policy, whole-image plan padding (as the runtime feeds)"}}
        with_int8_card(carded, card, record)  # the gate runs it through the Enhancer
        gate = quality_gate(fp32, carded, card, heldout)
        if not gate.passed:
            raise QuantisationGateError(f"{out.name} not written: {'; '.join(gate.reasons)}")
        record.update({"gate": gate.as_dict(), "wall_s": round(time.perf_counter() - t0, 1)})
        with_int8_card(carded, card, record)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_suffix(out.suffix + ".tmp")
        tmp_out.write_bytes(carded.read_bytes())
        tmp_out.replace(out)
    return read_card(out), gate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m srscope.training.gan.quantise", description=__doc__.splitlines()[0])
    p.add_argument("fp32", type=Path, help="card-carrying fp32 .onnx")
    p.add_argument("out", type=Path, help="int8 .onnx to write (only if the quality gate passes)")
    p.add_argument("--fields", type=int, default=CALIBRATION_FIELDS, help="calibration fields (train seeds 0..N-1)")
    p.add_argument("--fov", type=int, default=CALIBRATION_FOV, help="calibration field of view, HR px")
    p.add_argument("--heldout", type=int, default=None, help="gate on the first N held-out fields only")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel weight scales")
    p.add_argument("--activations", choices=("u8", "s8"), default="u8")
    p.add_argument("--fp32-ends", action="store_true", help="keep the first and last convolutions in fp32")
    a = p.parse_args(argv)
    settings = QuantSettings(per_channel=not a.per_tensor, activations=a.activations, exclude_first_last=a.fp32_ends)
    try:
        card, gate = export_int8(a.fp32, a.out, settings=settings, n_fields=a.fields, fov=a.fov,
                                 heldout=a.heldout)
    except UserError as exc:
        print(f"quantise: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(a.out), "precision": card.precision, "gate": gate.as_dict()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
