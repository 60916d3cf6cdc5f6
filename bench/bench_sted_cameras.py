"""Confocal → STED bead FWHM across detector offsets and gains: does the model sharpen on *your* detector?

The v1.0 bead model sharpened beads from ~290 to ~120 nm on the simulator's detector (offset 2,
gain 1) and did nothing at offset 100 / gain 2 or offset 500 / gain 0.5: its fixed intensity mapping
had learned one detector. This bench images the same bead fields (same seeds, same photons) through
several detector settings and measures, on the STED image's isolated beads, the FWHM of the
confocal input, of every model's output and of the STED ground truth (2D Gaussian fits of 19×19
crops, :func:`srscope.training.evaluation.fwhm.measure_fwhm`).

    python bench/bench_sted_cameras.py [--model NAME=PATH ...] [--fields 3] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = {
    "v1.0 (fixed mapping)": REPO / "models" / "legacy" / "confocal-to-sted-beads-v1.0.onnx",
    "v2.0 (percentile)": REPO / "models" / "confocal-to-sted.onnx",
}
#: (offset counts, gain counts/photon) of the confocal detector; (2, 1) is the simulator's own.
CAMERAS = ((2.0, 1.0), (0.0, 1.0), (100.0, 2.0), (500.0, 0.5), (1000.0, 4.0))
SEED = 810_000


def _models(items: list[str]) -> dict[str, Path]:
    if not items:
        return {k: v for k, v in DEFAULT_MODELS.items() if v.is_file()}
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"bench_sted_cameras: --model {item!r} is not NAME=PATH")
        out[name] = Path(path)
    return out


def run(out_dir: Path, *, models: dict[str, Path] | None = None, fields: int = 3, hr_size: int = 512) -> dict:
    from dataclasses import replace

    from srscope.runtime import Enhancer, read_card
    from srscope.training.data.modalities import MODALITIES
    from srscope.training.data.simulate import simulate_pair
    from srscope.training.evaluation.fwhm import measure_fwhm
    from tqdm.auto import tqdm

    models = models if models is not None else {k: v for k, v in DEFAULT_MODELS.items() if v.is_file()}
    enhancers = {name: Enhancer.from_file(path, tile=None, intra_op_threads=1) for name, path in models.items()}
    nominal = MODALITIES["confocal-sted"].lr.detector
    rows = []
    for offset, gain in tqdm(CAMERAS, desc="detectors", leave=False):
        detector = replace(nominal, offset=offset, gain=gain, bit_depth=16)
        truths, kinds = [], {"confocal input": []} | {name: [] for name in enhancers}
        for k in range(fields):
            pair = simulate_pair("confocal-sted", "beads", seed=SEED + k, hr_shape=(hr_size, hr_size),
                                 misregister=False, lr__detector=detector)
            truths.append(pair.hr_clean.astype(np.float64))
            kinds["confocal input"].append(pair.lr.astype(np.float64))
            for name, enhancer in enhancers.items():
                kinds[name].append(enhancer.enhance(pair.lr).astype(np.float64))
        kinds["STED ground truth"] = truths
        fwhm = measure_fwhm(truths, kinds, pixel_size_nm=30.0)
        rows.append({"offset": offset, "gain": gain,
                     "fwhm_nm": {name: d.summary() for name, d in fwhm.items()}})
    result = {"what": "bead FWHM (median of isolated-bead 2D Gaussian fits) per confocal detector setting",
              "fields_per_setting": fields, "hr_size": hr_size, "seed": SEED,
              "models": {name: {"path": str(p), "name": read_card(p).name, "version": read_card(p).version,
                                "intensity": read_card(p).intensity.mode} for name, p in models.items()},
              "settings": rows}
    for name in enhancers:
        medians = [r["fwhm_nm"][name]["median_fwhm_nm"] for r in rows]
        sted = [r["fwhm_nm"]["STED ground truth"]["median_fwhm_nm"] for r in rows]
        result.setdefault("summary", {})[name] = {
            "worst_ratio_to_sted": float(max(m / s for m, s in zip(medians, sted))),
            "fwhm_range_nm": [float(min(medians)), float(max(medians))]}
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot(rows, list(enhancers), out_dir / "bench_sted_cameras.png")
    return result


def _plot(rows: list[dict], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"offset {r['offset']:g}\ngain {r['gain']:g}" for r in rows]
    kinds = ["confocal input", *names, "STED ground truth"]
    fig, ax = plt.subplots(figsize=(8, 3.6), constrained_layout=True)
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        values = [r["fwhm_nm"][kind]["median_fwhm_nm"] for r in rows]
        ax.bar(np.arange(len(rows)) + (i - (len(kinds) - 1) / 2) * width, values, width, label=kind)
    ax.set_xticks(np.arange(len(rows)), labels)
    ax.set_ylabel("bead FWHM (nm, median)")
    ax.set_title("confocal → STED: bead FWHM per detector offset / gain (same photons)")
    ax.legend(fontsize=8, ncols=2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--fields", type=int, default=3)
    p.add_argument("--hr-size", type=int, default=512)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    a = p.parse_args(argv)
    result = run(a.out, models=_models(a.model), fields=a.fields, hr_size=a.hr_size)
    (a.out / "bench_sted_cameras.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result.get("summary", {}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
