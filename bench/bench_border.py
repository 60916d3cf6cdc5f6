"""How much mirrored context does the image's *outer edge* need? (issue 15: tiled ≥ 0.95× single shot)

The runtime pads every image by a mirrored border before the network sees it (``tiling.BORDER_MODE``).
Until now that border was the card's whole inter-tile ``halo`` (24 LR px for widefield v4.1, 125 for
confocal → STED), which costs 1.10× (widefield) and 1.56× (STED) the pixels of a 1024² frame. The halo
is what *tile seams* need (there the output must reproduce whole-image output, which has true
context); at the image's own edge there is no true context, only a mirror that keeps the network off
its zero padding. This bench measures, per border width, how far each shipped model's output moves
from the full-halo-border output, and what that does to PSNR against the simulator's ground truth:

* ``psnr_vs_full_db``: PSNR of the output at border ``b`` against the output at the card's halo
  (whole field; ``null`` = identical);
* ``delta_psnr_gt_db``: PSNR vs ground truth (``hr_clean``, least-squares affine fit as in
  :mod:`srscope.training.evaluation.metrics`) at ``b`` minus the same at the card's halo — the
  quantity the acceptance bound (|Δ| ≤ 0.02 dB) is on; whole field and the outer ring
  (``EDGE_LR_PX`` input pixels wide, where every change lives);
* ``reach_hr_px``: how far in from the edge the output changes by more than 1e-3 of its range.

Fields: the training simulator's ``simulate_pair`` at its nominal settings, registered (no
misregistration), seeds ``WIDEFIELD_SEED + j`` / ``STED_SEED + j`` (disjoint from training 0+,
validation 100 000+, test 200 000+, consistency 400 000–500 999, evaluation 500 000–799 999 and
robustness 800 000–899 999). One session per model, whole-image inference (one pass).

    python bench/bench_border.py [--fields-scale 1] [--only sted] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from srscope.runtime import Enhancer, create_session, read_card
from srscope.runtime.halo import psnr_db
from srscope.runtime.tiling import round_up

REPO = Path(__file__).resolve().parent.parent
WIDEFIELD_SEED = 920_000
STED_SEED = 930_000
TIRF_SEED = 940_000
CNN_SEED = 950_000
EDGE_LR_PX = 16


@dataclass(frozen=True)
class Case:
    """One model, the simulator modality and structures its fields come from, and what to sweep."""

    model: str
    modality: str
    structures: tuple[str, ...]
    seed0: int
    #: (LR field edge, number of fields): small fields weigh the edge most, 1024² is the speed frame.
    fields: tuple[tuple[int, int], ...]
    borders: tuple[int, ...]


CASES = (
    Case("models/widefield-10x0.4-to-20x0.75.onnx", "widefield", ("filaments", "nuclei", "vesicles", "er"),
         WIDEFIELD_SEED, ((256, 8), (1024, 4)), (0, 4, 8, 16)),
    # Scale 1, size multiple 16, halo 125: borders ≡ 125 (mod 16) keep the pooling grid where the
    # full-halo border puts it; 0/8/16/128 show what moving it costs (a global, not an edge, change).
    Case("models/confocal-to-sted.onnx", "confocal-sted", ("beads",), STED_SEED, ((512, 8),),
         (0, 8, 16, 13, 29, 45, 61, 77, 93, 109, 128)),
    Case("models/tirf-100x1.49-to-tirf-sim.onnx", "tirf-sim", ("filaments", "actin", "vesicles", "er"),
         TIRF_SEED, ((256, 4),), (0, 8, 16)),
    Case("models/ablation/widefield-10x0.4-to-20x0.75-cnn-only.onnx", "widefield",
         ("filaments", "nuclei", "vesicles", "er"), CNN_SEED, ((256, 4),), (0, 8)),
)
BOUND_DB = 0.02


def _ring(shape: tuple[int, int], width: int) -> np.ndarray:
    mask = np.ones(shape, dtype=bool)
    mask[width:-width, width:-width] = False
    return mask


def _psnr_gt(out: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR vs ground truth after the whole field's least-squares affine fit; over ``mask`` if given."""
    from srscope.training.evaluation.metrics import fit_affine_intensity

    fitted = fit_affine_intensity(out, gt).apply(out)
    err = (fitted - gt.astype(np.float64)) ** 2
    mse = float(err[mask].mean() if mask is not None else err.mean())
    return 10.0 * np.log10(float(gt.max() - gt.min()) ** 2 / mse)


def _reach(diff: np.ndarray, tol: float) -> int:
    """Largest distance (HR px) from the nearest edge at which ``|diff| > tol``; 0 if nowhere."""
    ys, xs = np.nonzero(np.abs(diff) > tol)
    if ys.size == 0:
        return 0
    h, w = diff.shape
    return int(np.max(np.minimum.reduce([ys, xs, h - 1 - ys, w - 1 - xs]))) + 1


def sweep(case: Case, fields_scale: float = 1.0) -> dict:
    """Every border of ``case`` on every field, against the card-halo border on the same session."""
    from srscope.training.data.simulate import simulate_pair

    model = REPO / case.model
    card = read_card(model)
    s, m, full = card.integer_scale, card.size_multiple, card.halo_px
    session, info = create_session(model, "cpu")
    enhancers = {b: Enhancer(session, card, info, tile=None, border=b) for b in (*case.borders, full)}
    by_size = {}
    seed = case.seed0
    for lr_side, count in case.fields:
        count = max(1, round(count * fields_scale))
        acc: dict[int, dict[str, list[float]]] = {b: {"psnr_vs_full": [], "d_gt": [], "d_gt_edge": [], "reach": []}
                                                  for b in case.borders}
        ring = _ring((lr_side * s, lr_side * s), EDGE_LR_PX * s)
        used = []
        for j in range(count):
            structure = case.structures[j % len(case.structures)]
            pair = simulate_pair(case.modality, structure, seed=seed, hr_shape=(lr_side * s, lr_side * s),
                                 misregister=False)
            used.append({"seed": seed, "structure": structure})
            seed += 1
            gt = pair.hr_clean
            reference = enhancers[full].enhance(pair.lr)
            ref_gt, ref_gt_edge = _psnr_gt(reference, gt), _psnr_gt(reference, gt, ring)
            tol = 1e-3 * float(np.ptp(reference))
            for b in case.borders:
                out = enhancers[b].enhance(pair.lr)
                acc[b]["psnr_vs_full"].append(psnr_db(reference, out))
                acc[b]["d_gt"].append(_psnr_gt(out, gt) - ref_gt)
                acc[b]["d_gt_edge"].append(_psnr_gt(out, gt, ring) - ref_gt_edge)
                acc[b]["reach"].append(_reach(out - reference, tol))
        rows = {}
        for b, a in acc.items():
            finite = [v for v in a["psnr_vs_full"] if np.isfinite(v)]
            rows[str(b)] = {
                # the pooling grid sits this many input px off the full-halo border's (0: same grid)
                "grid_shift_px": (b - full) % m,
                "computed_fraction_1024": round((round_up(1024 + 2 * b, m) / 1024) ** 2, 4),
                "psnr_vs_full_db_min": round(min(finite), 2) if finite else None,
                "delta_psnr_gt_db_mean": round(statistics.mean(a["d_gt"]), 4),
                "delta_psnr_gt_db_worst": round(min(a["d_gt"]), 4),
                "delta_psnr_gt_edge_db_mean": round(statistics.mean(a["d_gt_edge"]), 4),
                "delta_psnr_gt_edge_db_worst": round(min(a["d_gt_edge"]), 4),
                "reach_hr_px_max": max(a["reach"]),
            }
        # Within the bound: no field loses more than BOUND_DB against ground truth (gains are fine).
        ok = [b for b in case.borders if min(acc[b]["d_gt"]) >= -BOUND_DB]
        by_size[str(lr_side)] = {"fields": used, "by_border_px": rows,
                                 "smallest_border_within_bound": min(ok) if ok else None}
    return {"model": case.model, "card_halo_px": full, "size_multiple": m, "scale": s,
            "computed_fraction_1024_card_halo": round((round_up(1024 + 2 * full, m) / 1024) ** 2, 4),
            "edge_ring_lr_px": EDGE_LR_PX, "by_lr_field_px": by_size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields-scale", type=float, default=1.0, help="multiply every case's field count")
    parser.add_argument("--only", default=None, help="run only the cases whose model path contains this")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    result = {"bound_db": BOUND_DB, "models": []}
    for case in CASES:
        if (REPO / case.model).is_file() and (args.only is None or args.only in case.model):
            result["models"].append(sweep(case, args.fields_scale))
    args.out.mkdir(parents=True, exist_ok=True)
    name = "bench_border.json" if args.only is None else f"bench_border_{args.only}.json"
    (args.out / name).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
