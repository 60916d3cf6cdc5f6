"""Write an evaluation as a readable Markdown page with PNG figures, plus ``summary.json`` for scripts.

``summary.json["table"]`` is the page's main table as ``method → metric → value`` (means over the
test set; spreads under ``"spread"``). Non-finite numbers (e.g. PSNR of an exact copy) are written
as ``null`` so any JSON reader can load the file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from srscope.training.evaluation import figures
from srscope.training.evaluation.metrics import (
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    aggregate,
)
from srscope.training.evaluation.runner import INPUT, TRUTH, EvaluationResult

SUMMARY_SCHEMA = 1


def _finite(value: Any) -> Any:
    """Recursively replace NaN/±Inf by None and numpy scalars by Python numbers."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _median(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def analysis_rows(result: EvaluationResult) -> dict[str, dict[str, float]]:
    """Per image kind: SQUIRREL RSE/RSP, decorrelation resolution, spectral support (medians)."""
    rows: dict[str, dict[str, float]] = {}
    for kind in [INPUT, *result.methods, TRUTH]:
        sq = result.squirrel.get(kind, [])
        rows[kind] = {
            "squirrel_rse": _median([s["rse"] for s in sq]),
            "squirrel_rse_relative": _median([s["rse_relative"] for s in sq]),
            "squirrel_rsp": _median([s["rsp"] for s in sq]),
            "decorrelation_resolution_nm": _median(result.resolution_um[kind]) * 1000.0,
            "spectral_support_per_um": _median(result.support_per_um[kind]),
        }
    return rows


def build_summary(result: EvaluationResult, config: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable summary: table, spreads, analyses, FWHM, LR choice, per-image scores."""
    spread = aggregate(result.scores)
    analysis = analysis_rows(result)
    table: dict[str, dict[str, float]] = {}
    for method in result.methods:
        row = {metric: spread[method][metric].mean for metric in METRIC_NAMES}
        row["seconds_per_megapixel"] = result.seconds_per_megapixel(method)
        row.update(analysis[method])
        table[method] = row
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "table": table,
        "spread": {m: {k: s.as_dict() for k, s in metrics.items()} for m, metrics in spread.items()},
        "analysis": analysis,
        "fwhm": {k: d.summary() for k, d in result.fwhm.items()} if result.fwhm else None,
        "lr_search": None,
        "test_set": {**config, "n_images": len(result.image_names), "images": result.image_names,
                     "scale": result.scale, "lr_pixel_size_um": result.lr_pixel_size_um,
                     "hr_pixel_size_um": result.hr_pixel_size_um},
        "per_image": [{"name": name, **{m: s.as_dict() for m, s in scores.items()}}
                      for name, scores in zip(result.image_names, result.scores)],
    }
    if result.lr_choice is not None:
        c = result.lr_choice
        summary["lr_search"] = {"iterations": c.iterations, "damping": c.damping, "metric": c.metric,
                                "validation_score": c.score,
                                "grid": [{"iterations": i, "damping": d, "score": s} for i, d, s in c.grid]}
    return _finite(summary)


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _best(values: dict[str, float], higher: bool) -> str | None:
    finite = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
    if not finite:
        return None
    return (max if higher else min)(finite, key=finite.get)


def _markdown(result: EvaluationResult, summary: dict[str, Any], figure_files: dict[str, str],
              config: dict[str, Any]) -> str:
    spread = summary["spread"]
    lines = ["# srscope evaluation report", ""]
    ts = summary["test_set"]
    lines += [
        f"- Model: `{config.get('model', '?')}`" + (f", ablation: `{config['ablation']}`" if config.get("ablation") else ""),
        *[f"- `{method}`: {card['name']} v{card['version']} ({card['input_modality']} → "
          f"{card['output_modality']}, {card['precision']})" for method, card in (config.get("models") or {}).items()],
        f"- Test set: {ts['n_images']} image(s), {ts.get('source', '')}",
        (f"- Grid: input {ts['lr_pixel_size_um'] * 1000:.1f} nm → output {ts['hr_pixel_size_um'] * 1000:.1f} nm "
        f"pixels (×{ts['scale']})"),
        ("- Ground truth is aligned with the input (simulated pairs drawn with `misregister=False`; real pairs "
        "must be registered beforehand), so scores measure the methods, not a registration error."),
        ("- Every output is mapped onto the ground truth by a least-squares gain + offset before scoring, so "
        "intensity normalisation does not decide the ranking."),
        "",
        "## Metrics vs ground truth (mean ± std over images; best in bold)",
        "",
        "| method | PSNR (dB) | SSIM | NRMSE | run time (s/MP) |",
        "|---|---|---|---|---|",
    ]
    best = {m: _best({k: spread[k][m]["mean"] for k in result.methods}, HIGHER_IS_BETTER[m]) for m in METRIC_NAMES}
    for method in result.methods:
        cells = []
        for metric, digits in (("psnr", 2), ("ssim", 4), ("nrmse", 4)):
            s = spread[method][metric]
            text = f"{_fmt(s['mean'], digits)} ± {_fmt(s['std'], digits)}"
            cells.append(f"**{text}**" if best[metric] == method else text)
        cells.append(_fmt(summary["table"][method]["seconds_per_megapixel"], 3))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", ("Run time is wall time per output megapixel on this machine (median over images); LR and "
              "NNLS include the bilinear up-sampling, networks include tiling."), ""]
    if "metrics" in figure_files:
        lines += [f"![per-image metrics]({figure_files['metrics']})", ""]

    lines += ["## Resolution and artifact analysis (medians over images)", "",
              ("| image | decorrelation resolution (nm) | spectral support (cycles/µm) | SQUIRREL RSE | "
              "RSE / input range | RSP |"), "|---|---|---|---|---|---|"]
    for kind, row in summary["analysis"].items():
        lines.append(f"| {kind} | {_fmt(row['decorrelation_resolution_nm'], 0)} | "
                     f"{_fmt(row['spectral_support_per_um'], 2)} | {_fmt(row['squirrel_rse'], 3)} | "
                     f"{_fmt(row['squirrel_rse_relative'], 4)} | {_fmt(row['squirrel_rsp'], 4)} |")
    lines += ["", ("Decorrelation analysis (Descloux et al. 2019) estimates resolution from each image alone. "
              "Spectral support is the highest frequency whose radially averaged power, relative to the "
              "image's own low-frequency power, stays above 10× the input's relative noise floor (one level "
              "for all images, so interpolation cannot fake support). SQUIRREL (Culley et al. 2018) blurs each output back to the input's "
              "resolution with an optimised Gaussian and an affine intensity fit: RSE is the residual RMS error "
              "in input counts, RSP the Pearson correlation. The ground truth's own RSE/RSP is the floor set by "
              "input noise and the Gaussian blur model. Read the three together: decorrelation and support "
              "also reward high-frequency noise and ringing (a noisy ground truth can reach Nyquist), which "
              "SQUIRREL then shows as a higher RSE."), ""]
    for key, caption in (("crops", "Side-by-side crops (shared intensity scale after the affine fit)"),
                         ("differences", "Difference maps output − ground truth"),
                         ("squirrel", "SQUIRREL error maps"),
                         ("spectra", "Spatial-frequency spectra")):
        if key in figure_files:
            lines += [f"### {caption}", "", f"![{caption}]({figure_files[key]})", ""]

    if summary["fwhm"]:
        lines += ["## PSF FWHM at isolated ground-truth spots (19 × 19 crops, 2D Gaussian fits)", "",
                  "| image | spots fitted | main-peak FWHM (nm) | peak σ (nm) | median FWHM (nm) |",
                  "|---|---|---|---|---|"]
        for kind, row in summary["fwhm"].items():
            lines.append(f"| {kind} | {row['n_fitted']} / {row['n_spots']} | {_fmt(row['peak_fwhm_nm'], 1)} | "
                         f"{_fmt(row['peak_sigma_nm'], 1)} | {_fmt(row['median_fwhm_nm'], 1)} |")
        n_spots = summary["fwhm"][TRUTH]["n_spots"]
        note = "" if n_spots > 400 else f" (only {n_spots} spots: the paper used > 400; evaluate more images)"
        lines += ["", (f"Spots: isolated bright peaks of the ground truth, measured at the same places in every "
                  f"image{note}."), ""]
        if "fwhm" in figure_files:
            lines += [f"![FWHM histograms]({figure_files['fwhm']})", ""]

    if summary["lr_search"]:
        lr = summary["lr_search"]
        if lr["metric"] == "paper":
            text = (f"No search (`--no-lr-search`): the paper's **{lr['iterations']} iterations, damping "
                    f"{lr['damping']:.1%}**.")
        else:
            text = (f"Chosen on a held-out validation pair (not in the test set) by {lr['metric'].upper()}: "
                    f"**{lr['iterations']} iterations, damping {lr['damping']:.1%}** "
                    f"(validation {lr['metric'].upper()} {_fmt(lr['validation_score'], 4)}). The paper chose "
                    "10 iterations / 0.1 % by eye.")
        psf = config.get("deconvolution_psf")
        if psf:
            text += (f" Both deconvolutions use {psf}, on the bilinear-×{result.scale} grid after subtracting the "
                     "background; for simulated data these are the optics that made the input (in focus), an "
                     "advantage deconvolution would not have on real data (the paper used a theoretical Born & Wolf "
                     "PSF).")
        lines += ["## Lucy–Richardson parameter search", "", text, ""]
        if "lr_search" in figure_files:
            lines += [f"![LR search]({figure_files['lr_search']})", ""]
    lines += ["Machine-readable: `summary.json` (`table`: method → metric → value).", ""]
    return "\n".join(lines)


def write_report(result: EvaluationResult, out_dir: Path, config: dict[str, Any]) -> Path:
    """Write figures, ``report.md`` and ``summary.json`` into ``out_dir``; returns the report path.

    ``summary.json`` is written first, so a crash while plotting still leaves the numbers.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = build_summary(result, config)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    makers = {"metrics": figures.metrics_figure, "crops": figures.crops_figure,
              "differences": figures.differences_figure, "squirrel": figures.squirrel_figure,
              "spectra": figures.spectra_figure}
    if result.fwhm:
        makers["fwhm"] = figures.fwhm_figure
    if result.lr_choice is not None and result.lr_choice.grid:
        makers["lr_search"] = figures.lr_search_figure
    figure_files = {}
    for key, make in makers.items():
        figure_files[key] = make(result, out_dir / f"{key}.png").name
    summary["figures"] = sorted(figure_files.values())
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    report = out_dir / "report.md"
    report.write_text(_markdown(result, summary, figure_files, config))
    return report
