"""Registration accuracy and speed on simulated pairs with known misregistration.

Reports, over widefield pairs of several structures, the RMS residual (HR px) against the ground
truth after each stage (none / global NCC / pyramidal elastic) — median and 95th percentile,
over all cropped pixels and over structured pixels — plus confocal → STED drift correction, and
the wall time of registering one 2048 × 2048 pair. Writes a PNG of the distributions.

Quick look: ``SRSCOPE_BENCH_REG_PAIRS=4 .venv/bin/python bench/run_bench.py --only bench_registration``
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from srscope.training.data.accuracy import stage_errors
from srscope.training.data.register import register_pair
from srscope.training.data.simulate import simulate_pair

STRUCTURES = ("filaments", "mitochondria", "actin", "nuclei")
STAGES = ("none", "global", "elastic")


def _stats(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "max": float(a.max()), "n": int(a.size)}


def run(out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_pairs = int(os.environ.get("SRSCOPE_BENCH_REG_PAIRS", "12"))
    size = int(os.environ.get("SRSCOPE_BENCH_REG_SIZE", "512"))
    rows = []
    for i in range(n_pairs):
        pair = simulate_pair("widefield", STRUCTURES[i % len(STRUCTURES)], seed=1000 + i, hr_shape=(size, size))
        rows.append(stage_errors(pair))
        print(f"  widefield {rows[-1]['structure']:<13} seed {pair.seed}: "
              + ", ".join(f"{s} {rows[-1][f'rms_{s}_px']:.3f}/{rows[-1][f'rms_{s}_structured_px']:.3f}" for s in STAGES)
              + f" px (all/structured), {rows[-1]['seconds']:.1f} s", flush=True)
    drift = []
    for i in range(max(n_pairs // 3, 2)):
        pair = simulate_pair("confocal-sted", ("beads", "nuclei")[i % 2], seed=2000 + i, hr_shape=(size, size))
        drift.append(stage_errors(pair, elastic=False))
    result: dict = {
        "widefield_pairs": n_pairs, "hr_size": size,
        "widefield": {f"{s}{suffix}": _stats([r[f"rms_{s}{suffix}_px"] for r in rows])
                      for s in STAGES for suffix in ("", "_structured")},
        "widefield_seconds_per_pair": _stats([r["seconds"] for r in rows]),
        "confocal_sted_drift_only": {f"{s}": _stats([r[f"rms_{s}_px"] for r in drift]) for s in ("none", "global")},
        "per_pair": rows,
    }
    # one 2048 × 2048 pair, timed alone (simulation excluded)
    big = simulate_pair("widefield", "mitochondria", seed=3000, hr_shape=(2048, 2048))
    t0 = time.perf_counter()
    reg = register_pair(big.lr, big.hr, big.lr_pixel_size_um, big.hr_pixel_size_um)
    result["seconds_2048"] = time.perf_counter() - t0
    result["iterations_2048"] = reg.elastic.iterations if reg.elastic else 0
    result["cpu_count"] = os.cpu_count()
    result["load_average_1min"] = os.getloadavg()[0]
    result["plot"] = str(_plot(rows, out_dir / "registration_accuracy.png"))
    return result


def _plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, suffix, title in ((axes[0], "", "all pixels (10 px crop)"), (axes[1], "_structured", "structured pixels")):
        data = [[r[f"rms_{s}{suffix}_px"] for r in rows] for s in STAGES]
        ax.boxplot(data, tick_labels=list(STAGES))
        for k, d in enumerate(data):
            ax.scatter(np.full(len(d), k + 1) + np.random.default_rng(k).uniform(-0.1, 0.1, len(d)), d, s=10, alpha=0.6)
        ax.axhline(0.2, color="r", ls="--", lw=0.8, label="0.2 px target")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_ylabel("RMS residual vs ground truth (HR px)")
        ax.legend()
    fig.suptitle(f"widefield 10x→20x registration, {len(rows)} simulated pairs")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
