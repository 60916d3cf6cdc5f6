"""Consistency-score benchmark (issue 14): does the per-plane flag separate good planes from bad, and what does it cost?

**(a) Separation.** The shipped widefield (v4.1) and confocal→STED (v2.0) models score planes
through the runtime (``Enhancer`` + :func:`srscope.runtime.consistency.score_plane`, the cards'
calibrated degradation models). Every plane is 128² input pixels.

* **In-domain** (negatives): fresh fields drawn exactly like the models' training sets (512² HR
  px, the domain randomisation of the recipe in each card: camera, photons, background, NA ±5 %,
  emission (v4.1: the green band 500–570 nm), focus error ±2 µm, ...; widefield: the nine
  training structures in turn; STED: beads), four corner crops of 128² input pixels per field,
  each enhanced and scored as its own plane. The perturbed widefield cases below start from the
  same draws.
* **Out-of-domain** (positives), each case scored by the model named:
  - ``sted_model_on_widefield``: widefield fields run through the confocal→STED model;
  - ``defocus_beyond_training``: widefield fields whose LR is defocused by 4 µm (sign random),
    i.e. 2 µm beyond the ±2 µm focus error the model was trained with, card nominal;
  - ``saturated``: widefield fields clipped at their 97th percentile (3 % of pixels at the cap);
  - ``pure_noise``: Poisson noise (mean 10–1,000 photons, camera offset 0–1,000), widefield model;
  - ``finer_than_lr_band``: discs filled with line gratings of period 0.42–0.5 µm, beyond the LR
    band limit (≥ 0.53 µm at NA 0.42) but within the HR one, so the LR shows featureless discs and
    whatever fine structure the output has is invented; widefield model;
  - ``wrong_model_for_channel``: a confocal (STED-channel, 30 nm pixels) bead field run through the
    widefield model;
  - ``wrong_channel_far_red`` (from run 5): widefield fields of a far-red dye (emission
    660–720 nm, same camera and objective) through the green-band model: a PSF 1.3× wider.
  Informational, not counted in ``overall``: ``defocus_2um`` (|Δz| = 2 µm, the edge of the trained
  range: in-domain by construction, so a good score should mostly *not* flag it).

The ROC's ranking score is :attr:`PlaneScore.score` (the largest excursion outside the calibrated
ranges, in range widths); the flag is ``score > 0``. Per case the AUC is against the in-domain
planes of the model that ran it; ``overall`` pools every counted case against all in-domain planes.
False flags are the in-domain planes flagged.

Seeds, disjoint by construction: calibration = the models' validation splits (100000–100017
widefield, 105000–105005 STED, fitted by ``srtrain calibrate-consistency``); tuning of the range
margin = 300000+ (in-domain only, 72 widefield and 48 STED fields: the margin is twice the smallest
of 0, 0.1, 0.25, 0.5, 1 that flagged none of them); tests = 610000+; this benchmark = 400000+
(widefield in-domain), 450000+ (STED in-domain), 499000 (the overhead frame) and 500000+
(out-of-domain, 1000 per case). No benchmark plane was used to choose a feature, a margin or a
threshold (the features were designed on a few out-of-domain examples at tuning seeds 310000+ and
test seeds 610000+).

**(b) Overhead.** One 1024² widefield frame: ``Enhancer.enhance`` at the default tile (512) vs
``score_plane`` on its output, interleaved repeats, medians, and their ratio (target ≤ 5 %).

Run alone with ``python bench/bench_consistency.py [--quick] [--out bench/results]``; it writes
``consistency.json`` (every plane's score included) and ``consistency_roc.png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from scipy.stats import rankdata
from srscope.runtime import Enhancer
from srscope.runtime.consistency import score_plane
from srscope.runtime.providers import usable_cores

REPO = Path(__file__).resolve().parent.parent
WIDEFIELD = REPO / "models" / "widefield-10x0.4-to-20x0.75.onnx"
STED = REPO / "models" / "confocal-to-sted.onnx"
WF_STRUCTURES = ("filaments", "actin", "ccps", "nuclei", "vesicles", "er", "cells", "membranes", "dense_filaments")
IN_DOMAIN_SEED, OOD_SEED = 400_000, 500_000
LR_SIZE = 128
TRAINING_FOV = 512
REPEATS = 3
OVERHEAD_SIZE = 1024
#: The six cases of the first runs; ``wrong_channel_far_red`` (added in run 5) is counted beside them,
#: and ``overall_first_six`` keeps the earlier runs' pool for comparison.
FIRST_SIX = ("sted_model_on_widefield", "defocus_beyond_training", "saturated", "pure_noise",
             "finer_than_lr_band", "wrong_model_for_channel")
COUNTED = (*FIRST_SIX, "wrong_channel_far_red")
#: Emission of the far-red case (µm): a Cy5-like dye on the green-band widefield model, same optics.
FAR_RED_UM = (0.66, 0.72)


#: Per modality, the domain randomisation of the model under test, from its card's recipe
#: (:func:`use_recipes`); the modality's defaults until then. The v4.1 widefield model was trained on
#: a green dye band (500–570 nm), so its in-domain planes must come from that band, not 450–700 nm.
RANDOMISATION: dict[str, Any] = {}


def use_recipes(*enhancers: Enhancer) -> dict[str, str]:
    """Draw each model's in-domain fields (and the fields the perturbed cases start from) like its
    training set: the recipe recorded in its card's degradation provenance."""
    from srscope.training.gan.degradation_fit import SimRecipe

    used = {}
    for enhancer in enhancers:
        recipe_text = (enhancer.card.degradation.provenance or {}).get("recipe") if enhancer.card.degradation else None
        if recipe_text:
            recipe = SimRecipe.parse(recipe_text)
            if recipe.randomisation is not None:
                RANDOMISATION[recipe.modality] = recipe.randomisation
            used[enhancer.card.name] = recipe_text
    return used


def _field(modality: str, structure: str, seed: int, fov: int, **extra):
    from srscope.training.data.randomise import defaults_for, draw_field
    from srscope.training.data.simulate import simulate_pair

    draw = draw_field(modality, np.random.default_rng([seed, 1]), RANDOMISATION.get(modality) or defaults_for(modality))
    return simulate_pair(modality, structure, seed=seed, hr_shape=(fov, fov), misregister=draw.misregister,
                         **{**draw.overrides, **extra})


def fine_gratings(shape, px_um, rng, density=1.0):
    """Discs (radius 2–5 µm) filled with line gratings of period 0.42–0.5 µm at random angles."""
    from srscope.training.data.structures import Specimen

    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32) * np.float32(px_um)
    image = np.zeros(shape, dtype=np.float32)
    area = shape[0] * shape[1] * px_um ** 2
    for _ in range(max(2, int(area * density / 60))):
        cy, cx = rng.uniform(0, shape[0] * px_um), rng.uniform(0, shape[1] * px_um)
        radius, period, angle = rng.uniform(2, 5), rng.uniform(0.42, 0.5), rng.uniform(0, np.pi)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2
        phase = 2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period
        image += disc * (0.5 + 0.5 * np.cos(phase)).astype(np.float32)
    return Specimen(image)


def _in_domain_planes(modality: str, structures: tuple[str, ...], seed0: int, n: int) -> list[np.ndarray]:
    """``n`` in-domain planes: 128² crops (four per field) of fields simulated at the training sets'
    size (512² HR px), so that photon budgets and bead counts per field are drawn as in training."""
    planes: list[np.ndarray] = []
    i = 0
    while len(planes) < n:
        lr = _field(modality, structures[i % len(structures)], seed0 + i, TRAINING_FOV).lr
        corners = [(0, 0), (0, lr.shape[1] - LR_SIZE), (lr.shape[0] - LR_SIZE, 0),
                   (lr.shape[0] - LR_SIZE, lr.shape[1] - LR_SIZE)]
        planes.extend(lr[r:r + LR_SIZE, c:c + LR_SIZE] for r, c in corners)
        i += 1
    return planes[:n]


def _widefield_lr(seed: int, index: int, **extra) -> np.ndarray:
    return _field("widefield", WF_STRUCTURES[index % len(WF_STRUCTURES)], seed, 2 * LR_SIZE, **extra).lr


def _case_planes(case: str, index: int) -> np.ndarray:
    seed = OOD_SEED + 1000 * (COUNTED + ("defocus_2um",)).index(case) + index
    rng = np.random.default_rng([seed, 7])
    if case in ("sted_model_on_widefield", "saturated"):
        lr = _widefield_lr(seed, index)
        return lr if case == "sted_model_on_widefield" else np.minimum(lr, np.percentile(lr, 97)).astype(lr.dtype)
    if case in ("defocus_beyond_training", "defocus_2um"):
        dz = (4.0 if case == "defocus_beyond_training" else 2.0) * rng.choice([-1.0, 1.0])
        return _widefield_lr(seed, index, lr__defocus_um=dz)
    if case == "pure_noise":
        mean, offset = np.exp(rng.uniform(np.log(10), np.log(1000))), rng.uniform(0, 1000)
        return (rng.poisson(mean, (LR_SIZE, LR_SIZE)) + offset).astype(np.uint16)
    if case == "finer_than_lr_band":
        from srscope.training.data import simulate

        with mock.patch.dict(simulate.GENERATORS, {"fine_gratings": fine_gratings}):
            return _field("widefield", "fine_gratings", seed, 2 * LR_SIZE).lr
    if case == "wrong_model_for_channel":
        return _field("confocal-sted", "beads", seed, LR_SIZE).lr
    if case == "wrong_channel_far_red":
        emission = rng.uniform(*FAR_RED_UM)
        return _widefield_lr(seed, index, lr__emission_wavelength_um=emission, hr__emission_wavelength_um=emission)
    raise ValueError(case)


def auc(positives: list[float], negatives: list[float]) -> float | None:
    """Area under the ROC: P(a positive outranks a negative), ties counted half (Mann–Whitney U)."""
    if not positives or not negatives:
        return None
    ranks = rankdata(np.concatenate([positives, negatives]))
    u = ranks[:len(positives)].sum() - len(positives) * (len(positives) + 1) / 2
    return float(u / (len(positives) * len(negatives)))


def _scored(enhancer: Enhancer, lr: np.ndarray) -> dict[str, Any]:
    s = enhancer.score(lr, enhancer.enhance(lr))
    return {"score": s.score, "flagged": s.flagged, "reasons": list(s.reasons), "rsp": s.rsp, "rse": s.rse,
            "error_fraction": s.error_fraction}


def _summary(planes: list[dict[str, Any]], negatives: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    reasons: dict[str, int] = {}
    for p in planes:
        for r in p["reasons"]:
            reasons[r] = reasons.get(r, 0) + 1
    out = {"planes": len(planes), "flagged": sum(p["flagged"] for p in planes),
           "flag_rate": sum(p["flagged"] for p in planes) / max(len(planes), 1),
           "median_score": statistics.median(p["score"] for p in planes) if planes else None,
           "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
           "scores": [round(float(p["score"]), 5) for p in planes]}
    if negatives is not None:
        out["auc"] = auc([p["score"] for p in planes], [n["score"] for n in negatives])
    return out


def separation(widefield: Enhancer, sted: Enhancer, n_in: int, n_ood: int, progress: Callable[[str], None],
               ) -> dict[str, Any]:
    in_wf = [_scored(widefield, plane) for plane in _in_domain_planes("widefield", WF_STRUCTURES, IN_DOMAIN_SEED, n_in)]
    progress("widefield in-domain")
    in_sted = [_scored(sted, plane) for plane in
               _in_domain_planes("confocal-sted", ("beads",), IN_DOMAIN_SEED + 50_000, max(n_in // 3, 4))]
    progress("sted in-domain")
    cases: dict[str, Any] = {}
    pooled: list[dict[str, Any]] = []
    for case in COUNTED + ("defocus_2um",):
        enhancer, negatives = (sted, in_sted) if case == "sted_model_on_widefield" else (widefield, in_wf)
        planes = [_scored(enhancer, _case_planes(case, i)) for i in range(n_ood)]
        cases[case] = {"model": enhancer.card.name, **_summary(planes, negatives), "counted": case in COUNTED,
                       "planes_scored": planes}
        if case in COUNTED:
            pooled.extend(planes)
        progress(case)
    negatives = in_wf + in_sted
    first_six = [p for case in FIRST_SIX for p in cases[case]["planes_scored"]]
    for case in cases.values():
        del case["planes_scored"]
    return {
        "in_domain": {"widefield": _summary(in_wf), "confocal-to-sted": _summary(in_sted),
                      "false_flag_rate": sum(p["flagged"] for p in negatives) / len(negatives)},
        "cases": cases,
        "overall": {"auc": auc([p["score"] for p in pooled], [n["score"] for n in negatives]),
                    "detection_rate": sum(p["flagged"] for p in pooled) / len(pooled),
                    "false_flag_rate": sum(p["flagged"] for p in negatives) / len(negatives),
                    "positives": len(pooled), "negatives": len(negatives)},
        "overall_first_six": {"auc": auc([p["score"] for p in first_six], [n["score"] for n in negatives]),
                              "detection_rate": sum(p["flagged"] for p in first_six) / len(first_six)},
    }


def save_roc(path: Path, separation_result: dict[str, Any]) -> Path:
    """ROC curves of every case against its model's in-domain planes, and the pooled one (PNG):
    where the flag threshold (score 0) sits on each curve is marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    in_domain = separation_result["in_domain"]
    negatives_of = {"confocal-to-sted": in_domain["confocal-to-sted"]["scores"],
                    "widefield-10x0.4-to-20x0.75": in_domain["widefield"]["scores"]}
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for case, result in separation_result["cases"].items():
        negatives = np.asarray(negatives_of.get(result["model"], in_domain["widefield"]["scores"]))
        positives = np.asarray(result["scores"])
        thresholds = np.unique(np.concatenate([positives, negatives, [np.inf]]))[::-1]
        tpr = [(positives >= t).mean() for t in thresholds]
        fpr = [(negatives >= t).mean() for t in thresholds]
        line, = ax.plot(fpr, tpr, lw=1.5, ls="-" if result["counted"] else ":",
                        label=f"{case} (AUC {result['auc']:.2f})")
        ax.plot([(negatives > 0).mean()], [(positives > 0).mean()], "o", color=line.get_color(), ms=5)
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
    overall = separation_result["overall"]
    ax.set(xlabel="false-flag rate (in-domain planes)", ylabel="detection rate (out-of-domain planes)",
           title=f"consistency flag: overall AUC {overall['auc']:.3f}, false flags {overall['false_flag_rate']:.1%}\n"
                 "dots: the shipped threshold (score > 0); dotted: not counted")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def overhead(widefield: Enhancer, repeats: int) -> dict[str, Any]:
    frame = np.tile(_widefield_lr(IN_DOMAIN_SEED + 99_000, 0), (OVERHEAD_SIZE // LR_SIZE,) * 2)
    model = widefield.card.degradation
    out = widefield.enhance(frame)  # warm-up
    score_plane(frame, out, model)
    infer, score = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        out = widefield.enhance(frame)
        infer.append(time.perf_counter() - t)
        t = time.perf_counter()
        score_plane(frame, out, model)
        score.append(time.perf_counter() - t)
    mi, ms = statistics.median(infer), statistics.median(score)
    return {"input_px": [OVERHEAD_SIZE, OVERHEAD_SIZE], "tile": widefield.tile, "repeats": repeats,
            "inference_s_median": mi, "score_s_median": ms, "ratio": ms / mi, "target_ratio": 0.05,
            "inference_s": infer, "score_s": score}


def run(out_dir: Path, *, quick: bool = False, threads: int | None = None, progress: bool = False,
        widefield_model: Path = WIDEFIELD, sted_model: Path = STED) -> dict:
    threads = threads or usable_cores()
    widefield = Enhancer.from_file(widefield_model, device="cpu", intra_op_threads=threads)
    sted = Enhancer.from_file(sted_model, device="cpu", intra_op_threads=threads)
    if widefield.card.degradation is None or sted.card.degradation is None:
        return {"skipped": "the shipped cards carry no degradation model (srtrain calibrate-consistency)"}
    recipes = use_recipes(widefield, sted)
    n_in, n_ood = (27, 6) if quick else (180, 30)
    started = time.perf_counter()

    def note(what: str) -> None:
        if progress:
            print(f"[consistency] {what} done at {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    result = {
        "config": {"quick": quick, "lr_px": LR_SIZE, "in_domain_widefield": n_in, "per_case": n_ood,
                   "threads": threads, "seeds": {"calibration": "validation splits 100000+ / 105000+ and held-out blocks 120000+ / 125000+",
                                                 "margin_tuning": "300000+", "tests": "610000+",
                                                 "benchmark_in_domain": IN_DOMAIN_SEED,
                                                 "benchmark_out_of_domain": OOD_SEED},
                   "models": {"widefield": Path(widefield_model).name, "sted": Path(sted_model).name},
                   "in_domain_recipes": recipes},
        "separation": separation(widefield, sted, n_in, n_ood, note),
        "targets": {"auc_overall": 0.95, "false_flag_rate": 0.01},
    }
    result["overhead"] = overhead(widefield, REPEATS)
    note("overhead")
    result["wall_s"] = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "consistency.json").write_text(json.dumps(result, indent=2))
    save_roc(out_dir / "consistency_roc.png", result["separation"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="27 in-domain planes and 6 per case (default 180 / 30)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    parser.add_argument("--widefield", type=Path, default=WIDEFIELD, help="widefield model (default: shipped v4.0)")
    parser.add_argument("--sted", type=Path, default=STED, help="confocal→STED model (default: shipped v2.0)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    result = run(args.out, quick=args.quick, threads=args.threads, progress=True, widefield_model=args.widefield,
                 sted_model=args.sted)
    sep = result.get("separation")
    if sep:
        for case, r in sep["cases"].items():
            print(f"{case:26s} AUC {r['auc']:.3f}  flagged {r['flagged']}/{r['planes']}")
        o = sep["overall"]
        print(f"overall AUC {o['auc']:.3f}, detection {o['detection_rate']:.1%}, false flags {o['false_flag_rate']:.1%}; "
              f"overhead {result['overhead']['ratio']:.1%} of inference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
