"""Runtime benchmark: raw ONNX Runtime single-shot vs srscope's tiled Enhancer on the same image.

What it answers, side by side on one model and one image (medians over interleaved repeats):

* ``raw_single_shot``: one ``session.run`` on the whole normalised image (padded only to the size
  multiple) — the ceiling any wrapper can reach;
* ``enhancer_whole``: ``Enhancer(tile=None)`` — adds mirror padding by the halo at the borders,
  (de)normalisation and cropping;
* ``enhancer_tiled[tile]``: the overlapping, blended tiles at several tile sizes (the default 512
  among them), with the plan's ``computed_fraction`` (network pixels per image pixel), so a ratio
  below 1 can be attributed to halo geometry versus wrapper overhead;
* peak RSS of a fresh process running each mode once (ORT's arena is outside tracemalloc);
* the model's GFLOP per input megapixel (Conv MACs from shape inference) and the fraction of this
  machine's measured float32 matmul peak that each mode reaches;
* a difference-map PNG of tiled minus whole-image output (seams would show as lines).

Models: ``main`` is the first ``models/*.onnx`` with a valid card, else a paper-shaped
random-weight U-Net (``build_unet_model``, width 16 = half the paper's so a 2-core machine finishes
in minutes), on the largest image costing <= 100 GFLOP per pass. Its exact halo (the full
theoretical receptive field, ~70 input px) dominates tiled cost at such sizes, so a halo sweep shows
the speed/PSNR trade-off. ``light`` is a cheap small-halo model on a 1024² frame: it isolates the
wrapper's own overhead (the issue's "tiled >= 0.9x single-shot" target). All modes of a model share
one ORT session, so they differ only in what the Enhancer does around it.
Run alone with ``python bench/bench_runtime.py [--model m.onnx] [--out bench/results]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from srscope.runtime import (
    Enhancer,
    ModelCardError,
    available_devices,
    create_session,
    default_overlap,
    read_card,
)
from srscope.runtime.graph_cost import conv_gflop_per_megapixel
from srscope.runtime.halo import psnr_db
from srscope.runtime.providers import usable_cores
from srscope.runtime.synthetic import (
    build_test_model,
    build_unet_model,
    structured_image,
)

REPO = Path(__file__).resolve().parent.parent
REPEATS = 3
GFLOP_BUDGET = 100.0  # per raw pass: ~2 s on a 2-core laptop, so the benchmark stays near 2-3 minutes
SIZES = (1024, 768, 512, 384, 256)
MIN_SIZE = 256
TILES = (512, 1024)
HALO_SWEEP = (32, 16)
DEFAULT_TILE = 512

_MEMORY_PROBE = """
import sys, numpy as np
from srscope.runtime import Enhancer
from srscope.runtime.synthetic import structured_image
path, mode, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
tile = None if mode in ("whole", "raw") else int(mode)
e = Enhancer.from_file(path, device="cpu", tile=tile)
image = structured_image((size, size), seed=0)
def kib(field):  # VmHWM is per address space; ru_maxrss would inherit the parent's peak via fork
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field))
before = kib("VmHWM:")
if mode == "raw":
    m = e.card.size_multiple
    x = e.card.normalization.normalise(image)
    x = np.pad(x, ((0, -size % m), (0, -size % m)), mode="reflect")
    e.run_normalised(x[None, None])
else:
    e.enhance(image)
after = kib("VmHWM:")
print(before, after)
"""


def pick_model(out_dir: Path, explicit: Path | None) -> tuple[Path, str]:
    if explicit is not None:
        read_card(explicit)
        return explicit, f"given: {explicit}"
    for candidate in sorted((REPO / "models").glob("*.onnx")):
        try:
            read_card(candidate)
        except ModelCardError:
            continue
        return candidate, f"shipped: {candidate.relative_to(REPO)}"
    path = build_unet_model(out_dir / "bench-unet-w16.onnx", width=16, levels=4, scale=2)
    return path, "built: srscope.runtime.synthetic.build_unet_model(width=16, levels=4, scale=2) (no shipped model)"


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """float32 GEMM throughput of numpy's BLAS: a practical compute ceiling for this machine."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / min(times) / 1e9


def raw_runner(enhancer: Enhancer, image: np.ndarray):
    """Raw ORT: normalise and pad to the size multiple once, outside the timed call."""
    m = enhancer.card.size_multiple
    x = enhancer.card.normalization.normalise(image)
    x = np.pad(x, ((0, -x.shape[0] % m), (0, -x.shape[1] % m)), mode="reflect")[None, None]
    feed = {enhancer.session.get_inputs()[0].name: x.astype(np.float32 if enhancer.card.precision == "fp32"
                                                            else np.float16)}
    return lambda: enhancer.session.run(None, feed)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def choose_size(gflop_per_mp: float) -> int:
    """Largest benchmark size whose single pass costs at most GFLOP_BUDGET (never below 256).

    Chosen from the model's arithmetic, not from a timing probe, so the image (and therefore the
    tile plan) is the same on every run however busy the machine is.
    """
    for size in SIZES:
        if size >= MIN_SIZE and gflop_per_mp * size * size / 1e6 <= GFLOP_BUDGET:
            return size
    return MIN_SIZE


def peak_rss_mb(path: Path, mode: str, size: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(path), mode, str(size)],
                          capture_output=True, text=True, check=True)
    before, after = (int(v) / 1024 for v in done.stdout.split()[-2:])
    return {"peak_rss_mb": round(after, 1), "inference_extra_mb": round(after - before, 1)}


def psnr(image: np.ndarray, reference: np.ndarray) -> float | None:
    """PSNR in dB over the reference's value range (the issue's tiled-vs-whole criterion).

    ``None`` (JSON null) means bit-identical; strict JSON has no Infinity.
    """
    value = psnr_db(reference, image)
    return None if value == float("inf") else round(value, 1)


def save_difference_map(path: Path, whole: np.ndarray, variants: list[tuple[str, np.ndarray]], title: str) -> None:
    """Whole-image output beside ``variant − whole`` maps; seams would show as straight lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(variants), figsize=(5 * (1 + len(variants)), 5.2))
    axes[0].imshow(whole, cmap="gray")
    axes[0].set_title("whole-image output")
    value_range = float(np.ptp(whole) or 1.0)
    for ax, (label, image) in zip(axes[1:], variants):
        diff = image - whole
        worst = float(np.abs(diff).max())
        lim = worst or 1.0
        im = ax.imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim)
        detail = (f"max |Δ| {worst:.2g} counts ({worst / value_range:.1e} of range)" if worst
                  else "bit-identical")
        ax.set_title(f"{label} − whole\n{detail}", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, format="%.1e")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(path: Path, size: int, *, tiles: tuple[int, ...], halos: tuple[int, ...], peak: float,
            memory: bool) -> tuple[dict, dict[str, Enhancer], np.ndarray]:
    """Time every mode on one ``size``² image, interleaved; returns (results, enhancers, image)."""
    card = read_card(path)
    gflop_per_mp = conv_gflop_per_megapixel(path, probe=16 * card.size_multiple)
    image = structured_image((size, size), seed=0)
    mp = size * size / 1e6
    # One session shared by every mode, so they differ only in what the Enhancer does around it.
    session, info = create_session(path, "auto")
    enhancers = {"enhancer_whole": Enhancer(session, card, info, tile=None)}
    overlap = default_overlap(card)
    # Tiles no larger than the image (else it is the whole-image mode) and larger than the overlap.
    enhancers.update({f"enhancer_tiled_{t}": Enhancer(session, card, info, tile=t)
                      for t in tiles if overlap + card.size_multiple <= t < size + 2 * card.halo_px})
    # The card halo is the theoretical receptive field; smaller halos trade exactness for speed.
    enhancers.update({f"enhancer_tile{DEFAULT_TILE}_halo_{h}": Enhancer(session, card, info, tile=DEFAULT_TILE,
                                                                         halo=h)
                      for h in halos if h < card.halo_px})
    modes = {"raw_single_shot": raw_runner(enhancers["enhancer_whole"], image)}
    modes.update({key: (lambda e=e: e.enhance(image)) for key, e in enhancers.items()})
    for fn in modes.values():  # warm-up: arena growth, kernel selection
        fn()
    samples: dict[str, list[float]] = {k: [] for k in modes}
    for _ in range(REPEATS):  # interleaved so load changes on a shared machine hit every mode alike
        for key, fn in modes.items():
            samples[key].append(timed(fn))

    raw_median = statistics.median(samples["raw_single_shot"])
    reference = enhancers["enhancer_whole"].enhance(image).astype(np.float64)
    results: dict[str, dict] = {}
    for key, values in samples.items():
        median = statistics.median(values)
        entry = {"median_s": round(median, 4), "min_s": round(min(values), 4),
                 "mp_per_s": round(mp / median, 4), "ratio_vs_raw": round(raw_median / median, 3),
                 "fraction_of_matmul_peak": round(gflop_per_mp * mp / median / peak, 3)}
        if key != "raw_single_shot":
            enhancer = enhancers[key]
            plan = enhancer.plan(image.shape)
            entry.update({"tiles": plan.count, "tile_shape": list(plan.tile_shape),
                          "computed_fraction": round(plan.computed_fraction, 3),
                          # Throughput per pixel the network actually computed, relative to raw:
                          # ~1.0 means the shortfall is halo geometry, not wrapper overhead.
                          "ratio_per_computed_pixel": round(raw_median / median * plan.computed_fraction, 3),
                          "halo_px": enhancer.halo,
                          "psnr_vs_whole_card_halo_db": psnr(enhancer.enhance(image), reference)})
        if memory and "_halo_" not in key:
            mode = {"raw_single_shot": "raw", "enhancer_whole": "whole"}.get(key) or key.rsplit("_", 1)[1]
            entry.update(peak_rss_mb(path, mode, size))
        results[key] = entry
    summary = {"model": {"name": card.name, "halo_px": card.halo_px, "size_multiple": card.size_multiple,
                         "scale": card.integer_scale, "precision": card.precision},
               "image": [size, size], "gflop_per_input_megapixel": round(gflop_per_mp, 2), "modes": results}
    return summary, enhancers, image


def run(out_dir: Path, model: Path | None = None) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    path, origin = pick_model(out_dir, model)
    peak = matmul_peak_gflops()
    size = choose_size(conv_gflop_per_megapixel(path, probe=16 * read_card(path).size_multiple))
    main, enhancers, image = measure(path, size, tiles=TILES, halos=HALO_SWEEP, peak=peak, memory=True)
    main["model"]["origin"] = origin
    main["image_note"] = f"largest of {list(SIZES)} costing <= {GFLOP_BUDGET:g} GFLOP per pass (min {MIN_SIZE})"

    # The same machinery on a cheap model with a small halo and a 1024² frame: separates the
    # wrapper's own cost from the halo geometry that dominates a paper-size U-Net.
    light_path = build_test_model(out_dir / "bench-light.onnx", channels=16)
    light, _, _ = measure(light_path, 1024, tiles=(DEFAULT_TILE,), halos=(), peak=peak, memory=False)
    light["model"]["origin"] = "built: srscope.runtime.synthetic.build_test_model(channels=16)"

    default_key = f"enhancer_tiled_{DEFAULT_TILE}"
    seam_key = default_key if default_key in enhancers else "enhancer_whole"
    reference = enhancers["enhancer_whole"].enhance(image).astype(np.float64)
    tiled_out = enhancers[seam_key].enhance(image)
    seam_psnr = psnr(tiled_out, reference)
    variants = [(f"tile {enhancers[seam_key].tile}, card halo {enhancers[seam_key].halo}", tiled_out)]
    smallest = f"enhancer_tile{DEFAULT_TILE}_halo_{min(HALO_SWEEP)}"
    if smallest in enhancers:
        variants.append((f"tile {DEFAULT_TILE}, halo {min(HALO_SWEEP)}", enhancers[smallest].enhance(image)))
    png = out_dir / "bench_runtime_difference_map.png"
    save_difference_map(png, reference, variants,
                        f"{main['model']['name']}: {enhancers[seam_key].plan(image.shape).count} tiles at "
                        f"tile {enhancers[seam_key].tile}; PSNR vs whole {seam_psnr or 'identical'} dB")

    whole = enhancers["enhancer_whole"]
    gpu = gpu_frame_ms(path) if any(d in available_devices() for d in ("cuda", "tensorrt")) else None
    return {
        "provider": whole.provider,
        "intra_op_threads": whole.info.intra_op_threads,
        "cores": usable_cores(),
        "repeats": REPEATS,
        "matmul_peak_gflops": round(peak, 1),
        "default_tile": DEFAULT_TILE,
        "target_cpu_ratio": 0.9,
        "tiled_vs_single_shot_ratio_default": main["modes"].get(default_key, main["modes"]["enhancer_whole"])[
            "ratio_vs_raw"],
        "light_model_tiled_vs_single_shot_ratio": light["modes"][default_key]["ratio_vs_raw"],
        "tiled_vs_whole_psnr_db": seam_psnr,
        "difference_map_png": str(png),
        "gpu_ms_per_1024_frame": gpu,
        "main": main,
        "light": light,
    }


def gpu_frame_ms(path: Path) -> dict:
    """ms per 1024² frame on the GPU provider (only when one is present)."""
    image = structured_image((1024, 1024), seed=0)
    out: dict[str, float] = {}
    for tile in (None, 512):
        e = Enhancer.from_file(path, device="auto", tile=tile, batch_size=8)
        e.enhance(image)
        times = [timed(lambda e=e: e.enhance(image)) for _ in range(REPEATS)]
        out[f"tile_{tile or 'whole'}_ms"] = round(1000 * statistics.median(times), 1)
        out["provider"] = e.provider
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    result = run(args.out, args.model)
    (args.out / "bench_runtime.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
