"""``make demo``: run the shipped default model on a freshly simulated sample.

Simulates a widefield 10x/0.4NA image of filaments (with its 20x/0.75NA ground truth), super-
resolves it with the runtime :class:`~srscope.runtime.enhancer.Enhancer` (ONNX Runtime, no torch),
and writes

* ``demo.png`` — input, bilinear, network output and ground truth side by side with scale bars;
* ``demo_sr.ome.zarr`` — the network output in camera counts with its pixel size;
* ``summary.json`` — PSNR/SSIM of network and bilinear against the ground truth.

    python -m srscope.training.demo --out out/demo [--model models/....onnx] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_MODEL = REPO_ROOT / "models" / "widefield-10x0.4-to-20x0.75.onnx"
MODALITY_OF_CARD = {"widefield 10x/0.4NA": "widefield", "confocal": "confocal-sted", "tirf": "tirf-sim"}


def _modality(card) -> str:
    if card.input_modality in MODALITY_OF_CARD:
        return MODALITY_OF_CARD[card.input_modality]
    raise ValueError(f"demo does not know how to simulate input modality {card.input_modality!r}")


def _structure(card) -> str:
    structures = card.provenance.get("dataset_structures") or ["filaments"]
    return structures[0]


def _scale_bar(ax, pixel_size_um: float, width_px: int, length_um: float) -> None:
    px = length_um / pixel_size_um
    x0, y0 = width_px * 0.05, width_px * 0.93
    ax.plot([x0, x0 + px], [y0, y0], color="white", lw=3)
    ax.text(x0 + px / 2, y0 - width_px * 0.03, f"{length_um:g} µm", color="white", ha="center", fontsize=8)


def side_by_side(path: Path, panels: list[tuple[str, np.ndarray, float]]) -> Path:
    """One row of panels ``(title, image, pixel_size_um)``, each shown at the same field of view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.6), layout="constrained")
    field_um = panels[0][1].shape[1] * panels[0][2]
    bar_um = float(10 ** np.floor(np.log10(field_um / 4)))
    for ax, (title, img, px) in zip(axes, panels):
        lo, hi = np.percentile(img, (0.5, 99.8))
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        _scale_bar(ax, px, img.shape[1], bar_um)
        ax.set_title(f"{title}\n{img.shape[1]}×{img.shape[0]} px, {px * 1000:.1f} nm/px", fontsize=9)
        ax.axis("off")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_demo(out: Path, model: Path = DEFAULT_MODEL, *, seed: int = 900_001, size: int = 256,
             device: str = "auto") -> dict:
    from srscope.runtime.enhancer import Enhancer
    from srscope.runtime.io import write_image
    from srscope.runtime.io.image import Image
    from srscope.training.data.simulate import simulate_pair
    from srscope.training.evaluation.baselines import bilinear_upsample
    from srscope.training.evaluation.metrics import score_image

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    enhancer = Enhancer.from_file(model, device=device)
    card = enhancer.card
    pair = simulate_pair(_modality(card), _structure(card), seed=seed, hr_shape=(size, size), misregister=False)
    if abs(pair.lr_pixel_size_um - card.input_pixel_size_um) > 1e-9:
        raise ValueError(f"simulated input pixel {pair.lr_pixel_size_um} µm ≠ model input {card.input_pixel_size_um} µm")
    t1 = time.perf_counter()
    sr = enhancer.enhance(pair.lr)
    t2 = time.perf_counter()
    bilinear = bilinear_upsample(pair.lr.astype(np.float64), card.integer_scale)
    truth = pair.hr.astype(np.float64)
    scores = {"network": score_image(sr, truth).as_dict(), "bilinear": score_image(bilinear, truth).as_dict()}

    figure = side_by_side(out / "demo.png", [
        (f"input: {card.input_modality}", pair.lr, pair.lr_pixel_size_um),
        (f"bilinear ×{card.integer_scale}", bilinear, pair.hr_pixel_size_um),
        (f"network ({card.name})", sr, pair.hr_pixel_size_um),
        (f"ground truth: {card.output_modality}", truth, pair.hr_pixel_size_um),
    ])
    zarr_path = write_image(out / "demo_sr.ome.zarr", Image(
        sr.astype(np.float32), "yx", pixel_size_um=(pair.hr_pixel_size_um, pair.hr_pixel_size_um),
        metadata={"model": card.name, "model_version": card.version, "source": "simulated",
                  "modality": card.output_modality, "seed": seed}), overwrite=True)
    summary = {
        "model": str(model), "card": card.name, "provider": enhancer.provider,
        "input_shape": list(pair.lr.shape), "output_shape": list(sr.shape),
        "input_pixel_size_um": pair.lr_pixel_size_um, "output_pixel_size_um": pair.hr_pixel_size_um,
        "scores_vs_ground_truth": scores, "simulate_s": round(t1 - t0, 2), "enhance_s": round(t2 - t1, 2),
        "figure": str(figure), "ome_zarr": str(zarr_path),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m srscope.training.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--seed", type=int, default=900_001, help="simulator seed of the sample (not in any training set)")
    p.add_argument("--size", type=int, default=256, help="ground-truth side in pixels")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    if not a.model.is_file():
        print(f"demo: model not found: {a.model}", file=sys.stderr)
        return 2
    try:
        s = run_demo(a.out, a.model, seed=a.seed, size=a.size, device=a.device)
    except ValueError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    net, bil = s["scores_vs_ground_truth"]["network"], s["scores_vs_ground_truth"]["bilinear"]
    print(f"{s['card']} on {s['provider']}: {s['input_shape'][0]}² → {s['output_shape'][0]}² px "
          f"in {s['enhance_s']:.2f} s")
    print(f"vs ground truth   PSNR {net['psnr']:.2f} dB (bilinear {bil['psnr']:.2f})   "
          f"SSIM {net['ssim']:.3f} (bilinear {bil['ssim']:.3f})")
    print(f"wrote {s['figure']} and {s['ome_zarr']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
