"""``srtrain card MODEL.onnx``: held-out evaluation of an exported model and its human-readable card.

Writes ``MODEL.md`` (the card users read beside the file) and ``MODEL.metrics.json`` (the scores
it quotes), so the numbers in a shipped card can always be regenerated from the file itself.

Runs the ``.onnx`` file exactly as users will (runtime :class:`Enhancer`, ONNX Runtime, tiled) on
fields of view simulated with seeds no training/validation patch came from, and scores it against
the HR ground truth next to bilinear interpolation (both after the evaluation package's affine
intensity fit, so neither wins by its intensity scale). For bead models it also measures PSF
FWHMs at the STED image's isolated spots in the input, the output and the STED image, as in the
paper's Figs. 4–5.

    srtrain card models/X.onnx --modality widefield --structure filaments \
        --seeds 200000 200001 --fov 256 --note "..."

``--structure`` may list several structures, comma-separated: seed ``k`` of ``--seeds`` then
shows the ``k``-th in turn, as the test split of a mixed simulator dataset does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def heldout_scores(model: Path, modality: str, structure: str, seeds: list[int], fov: int,
                   fwhm: bool = False) -> dict[str, Any]:
    from srscope.runtime.enhancer import Enhancer
    from srscope.training.data.simulate import simulate_pair
    from srscope.training.evaluation.baselines import bilinear_upsample
    from srscope.training.evaluation.fwhm import measure_fwhm
    from srscope.training.evaluation.metrics import score_image
    from srscope.training.gan.simdataset import parse_structures, structure_of_field

    structures = parse_structures(structure)
    enhancer = Enhancer.from_file(model, device="cpu")
    per_image: list[dict[str, Any]] = []
    truths, inputs, outputs = [], [], []
    pixel_nm = None
    for k, seed in enumerate(seeds):
        structure_k = structure_of_field(structures, k)
        pair = simulate_pair(modality, structure_k, seed=seed, hr_shape=(fov, fov), misregister=False)
        sr = enhancer.enhance(pair.lr)
        bil = bilinear_upsample(pair.lr.astype(np.float64), pair.scale)
        truth = pair.hr.astype(np.float64)
        per_image.append({"seed": seed, "structure": structure_k, "network": score_image(sr, truth).as_dict(),
                          "bilinear": score_image(bil, truth).as_dict()})
        truths.append(truth)
        inputs.append(bil)
        outputs.append(sr)
        pixel_nm = pair.hr_pixel_size_um * 1000
    summary: dict[str, Any] = {"seeds": seeds, "structures": list(structures), "fov_hr_px": fov,
                               "per_image": per_image}
    for method in ("network", "bilinear"):
        for metric in ("psnr", "ssim"):
            summary[f"{method}_{metric}_mean"] = float(np.mean([p[method][metric] for p in per_image]))
    if fwhm:
        dists = measure_fwhm(truths, {"input": inputs, "network": outputs, "ground truth": truths}, pixel_nm)
        summary["fwhm"] = {k: v.summary() for k, v in dists.items()}
    return summary


def _intensity_row(card: Any) -> str:
    if card.intensity.mode == "percentile":
        return (f"| intensity | per image: (counts − P{card.intensity.low:g}) / (P{card.intensity.high:g} − "
                f"P{card.intensity.low:g}), output mapped back through the same affine (camera-independent: "
                f"enhance(a·x + b) = a·enhance(x) + b); `fixed` policy: training median offset "
                f"{card.normalization.offset:g}, scale {card.normalization.scale:g} |")
    return (f"| intensity | input (counts − {card.normalization.offset:g}) / {card.normalization.scale:g}; "
            f"output × {card.denormalization.scale:g} + {card.denormalization.offset:g} (fixed: one camera) |")


def _span(value: Any, unit: str = "", scale: float = 1.0) -> str:
    if isinstance(value, dict) and "lo" in value:
        kind = " (log-uniform)" if value.get("log") else ""
        return f"{value['lo'] * scale:g}–{value['hi'] * scale:g}{unit}{kind}"
    return f"{value}"


def _randomisation_text(r: dict[str, Any]) -> str:
    """The dataset's randomisation ranges as one table cell."""
    return "; ".join([
        (f"camera offset {_span(r['offset_counts'], ' counts')}, gain {_span(r['gain'], ' counts/e⁻')}, "
        f"{'/'.join(r['camera_kinds'])}, read noise {_span(r['read_noise_e'], ' e⁻')}"),
        f"LR peak {_span(r['peak_photons'], ' photons')}, HR peak {_span(r['hr_peak_photons'], ' photons')}",
        f"background {_span(r['background_fraction'], '', 100)} % of peak, texture {_span(r['background_texture'])}",
        f"haze layer {_span(r['haze_depth_um'], ' µm')} deep, share {_span(r['haze_fraction'])}",
        (f"NA ±{r['na_jitter'] * 100:g} %, emission {_span(r['emission_nm'], ' nm')}, focus error "
        f"{_span(r['focus_error_um'], ' µm')}, spherical {_span(r['spherical_rms_waves'], ' waves RMS')}"),
        f"pixel size ±{r['pixel_size_jitter'] * 100:g} %, residual shift ≤ {r['residual_shift_px']:g} HR px",
        f"density ×{_span(r['density'])}",
    ])


def _fmt_fwhm(f: dict[str, Any]) -> str:
    return f"{f['median_fwhm_nm']:.0f} nm (peak {f['peak_fwhm_nm']:.0f} nm, {f['n_fitted']}/{f['n_spots']} spots)"


def card_markdown(model: Path, scores: dict[str, Any], *, note: str = "") -> str:
    from srscope.runtime.card import read_card

    card = read_card(model)
    prov = card.provenance
    tc = prov.get("training_config", {})
    w = prov.get("loss_weights") or {}
    lines = [
        f"# {card.name} (v{card.version}, {card.precision})",
        "",
        card.description or "",
        "",
        "| | |", "|---|---|",
        f"| file | `{model.name}` ({model.stat().st_size / 1e6:.1f} MB), weights sha256 `{card.weights_sha256[:16]}…` |",
        f"| input | {card.input_modality}, {card.input_pixel_size_um * 1000:.1f} nm pixels |",
        f"| output | {card.output_modality}, {card.output_pixel_size_um * 1000:.1f} nm pixels (×{card.integer_scale}) |",
        f"| emission | {card.emission_wavelength_nm:.0f} nm |" if card.emission_wavelength_nm else "| emission | – |",
        _intensity_row(card),
        f"| halo / size multiple | {card.halo_px} input px / {card.size_multiple} input px |",
        (f"| generator | U-Net of the Methods, base width {prov.get('generator_width')} "
        f"(paper: 32), channels doubling per level |"),
        f"| objective | {'GAN: −log D(G(x)) + λ·MSE − ν·log((1+SSIM)/2)' if prov.get('adversarial') else 'CNN-only ablation: λ·MSE − ν·log((1+SSIM)/2), no discriminator'}; "
        f"λ = {w.get('lam', float('nan')):.4g}, ν = {w.get('nu', float('nan')):.4g}"
        + (f" (auto: each term {w['share']:.0%} of L(G;D) at the "
           f"{'starting generator' if w.get('reference') == 'initial generator' else 'input'}'s agreement)"
           if w.get("share") else "") + " |",
        (f"| optimiser | Adam, lr G {tc.get('lr_g')}, lr D {tc.get('lr_d')}"
         + (f", {tc['lr_decay']} decay to 1 %" if tc.get("lr_decay", "none") != "none" else "")
         + f", batch {tc.get('batch_size')}, patch {tc.get('patch_size')}×{tc.get('patch_size')}"
         + (f"; shipped weights: moving average of G (decay {tc['ema_decay']:g})" if tc.get("ema_decay") else "")
         + " |"),
        (f"| training data | `{Path(str(prov.get('dataset'))).name}`: {', '.join(prov.get('dataset_structures') or [])}, "
         f"patches per split {prov.get('dataset_splits')}; {prov.get('dataset_registration')} |"),
        (f"| iterations | {prov.get('iterations_total', prov.get('iterations_run'))} run; selected iteration "
         f"{prov.get('selected_iteration')} (lowest validation loss, {tc.get('select_on')}) |"),
        (f"| training wall time | {prov.get('train_wall_s_total', prov.get('train_wall_s', 0)) / 60:.1f} min on "
         f"{prov.get('device')} (torch {prov.get('torch')}; this run only, see the notes for earlier ones) |"),
        f"| git commit | `{prov.get('git_commit')}` |",
    ]
    if prov.get("parent"):
        parent = Path(prov["parent"]["checkpoint"])
        parent_run = parent.parent.name if parent.suffix == ".pt" else parent.name  # best.pt or its run dir
        lines.append(f"| transfer learning | initialised from `{parent_run}` "
                     f"(iteration {prov['parent'].get('iteration')}), fine-tuned here |")
    parity_info = prov.get("onnx_parity") or {}
    if parity_info:
        lines.append(f"| ONNX parity | max abs(ORT − PyTorch) = {parity_info['max_abs_diff']:.2e} on "
                     f"{len(parity_info['tiles'])} held-out tiles (tolerance {parity_info['tolerance']:g}) |")
    source = prov.get("dataset_source") or {}
    if source:
        lines.append(f"| simulator seeds | {source.get('seeds')}, fields of view {source.get('fov_hr_px')} HR px |")
    if prov.get("dataset_randomisation"):
        lines.append(f"| domain randomisation | {_randomisation_text(prov['dataset_randomisation'])} |")
    lines += ["", "## Training command", "", "```", prov.get("command", "?"), "```", "",
              "## Held-out evaluation", "",
              (f"Fields of view simulated with seeds {scores['seeds']} "
               f"({', '.join(scores.get('structures') or [])} in turn; {scores['fov_hr_px']}² HR px; never in "
              "training or validation), run through the runtime Enhancer (ONNX Runtime, tiled). "
              "PSNR/SSIM against the HR ground truth after an affine intensity fit."), "",
              "| method | PSNR (dB) | SSIM |", "|---|---|---|",
              f"| bilinear | {scores['bilinear_psnr_mean']:.2f} | {scores['bilinear_ssim_mean']:.3f} |",
              f"| this model | {scores['network_psnr_mean']:.2f} | {scores['network_ssim_mean']:.3f} |"]
    if "fwhm" in scores:
        f = scores["fwhm"]
        lines += ["", "PSF FWHM at isolated beads of the ground truth (2D Gaussian fits, 19×19 crops):", "",
                  f"- input (confocal): {_fmt_fwhm(f['input'])}",
                  f"- network output: {_fmt_fwhm(f['network'])}",
                  f"- ground truth (STED): {_fmt_fwhm(f['ground truth'])}"]
    if note:
        lines += ["", "## Notes", "", note]
    if card.degradation is not None:
        lines += ["", *consistency_section(model, card)]
    return "\n".join(lines) + "\n"


def _second_moment_fwhm(kernel: np.ndarray) -> float:
    """FWHM (kernel pixels) of the Gaussian with the kernel's second moment along one axis."""
    u = np.arange(kernel.shape[0]) - (kernel.shape[0] - 1) / 2
    return float(2.3548 * np.sqrt((kernel.sum(axis=1) * u**2).sum() / kernel.sum()))


def consistency_section(model: Path, card: Any) -> list[str]:
    """The card's consistency-check section: what was fitted, from which fields, and the calibrated ranges."""
    d = card.degradation
    k = np.asarray(d.kernel, dtype=np.float64)
    px = card.output_pixel_size_um * 1000
    prov = d.provenance or {}
    recipe = str(prov.get("recipe", "")).removeprefix("simdataset ")
    rows = [f"| `{name}` | {lo:.4g} | {hi:.4g} |" for name, (lo, hi) in d.ranges.items()]
    fwhm = _second_moment_fwhm(k)
    return [
        "## Consistency check (per-plane score)", "",
        ("The card carries a degradation model (`degradation`, covered by `behaviour_sha256`), so the runtime "
         "scores every plane it enhances (`Enhancer.enhance_with_scores`, `srscope.runtime.consistency`): the "
         "output is re-degraded to the input grid with the fitted kernel, affinely matched to the input and "
         "compared (RSP, RSE, fraction of pixels above the local-error threshold, gain, RSE in noise units), "
         "alongside input-side checks (noise level, saturation, noise-normalised power in frequency bands). "
         "A plane outside any calibrated range is flagged."), "",
        (f"- **Kernel**: {k.shape[0]}×{k.shape[1]} HR pixels ({px:.1f} nm), ×{d.scale} decimation with input "
         f"pixel i centred at HR i·s + (s−1)/2; fitted on {prov.get('kernel_fitted_on', '?')}; second-moment "
         f"FWHM {fwhm:.2f} HR px ({fwhm * px:.0f} nm)."),
        (f"- **Calibration**: the model's own outputs for {prov.get('calibrated_on', '?')} "
         f"({prov.get('calibration_planes')} planes; seeds {prov.get('seeds')}); rerun with "
         f"`srtrain calibrate-consistency {model.name} --sim \"{recipe}\"` (only the validation split is "
         f"re-simulated; the weights are untouched). Local-error threshold ({prov.get('error_quantile', 99):g}th "
         f"percentile of the in-domain local relative error, σ = {d.error_sigma_px:g} input px): "
         f"**{d.error_threshold:.4g}** of the input's P1–P99.8 range; each range is the calibration [min, max] "
         f"widened by {prov.get('margin')} × its spread."), "",
        "| feature | in-domain low | in-domain high |", "|---|---|---|", *rows, "",
        ("bench/bench_consistency.py measures how well the flag separates in-domain from out-of-domain planes "
         "(docs/evaluation.md, \"Trust: per-plane consistency score\")."),
    ]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="exported .onnx model; MODEL.md and MODEL.metrics.json go beside it")
    p.add_argument("--modality", required=True, help="simulator modality of the held-out fields")
    p.add_argument("--structure", required=True, help="structure(s), comma-separated: seed k shows the k-th in turn")
    p.add_argument("--seeds", type=int, nargs="+", required=True,
                   help="simulator seeds no training or validation patch came from")
    p.add_argument("--fov", type=int, default=512, help="field of view in HR pixels (default 512)")
    p.add_argument("--fwhm", action="store_true", help="also measure PSF FWHMs at isolated beads")
    p.add_argument("--note", default="", help="text for the card's Notes section")


def run(a: argparse.Namespace) -> int:
    from srscope.runtime.card import ModelCardError

    try:
        scores = heldout_scores(a.model, a.modality, a.structure, a.seeds, a.fov, a.fwhm)
        text = card_markdown(a.model, scores, note=a.note)
    except (FileNotFoundError, ValueError, ModelCardError) as exc:
        print(f"srtrain card: {exc}", file=sys.stderr)
        return 2
    a.model.with_suffix(".metrics.json").write_text(json.dumps(scores, indent=2))
    a.model.with_suffix(".md").write_text(text)
    print(json.dumps({k: v for k, v in scores.items() if k != "per_image"}, indent=2))
    return 0
