"""Runtime benchmark: raw ONNX Runtime single-shot vs srscope's tiled Enhancer on the same image.

What it answers, side by side on one model and one image (medians over interleaved repeats):

* ``raw_single_shot``: one ``session.run`` on the whole normalised image (padded only to the size
  multiple) — the ceiling any wrapper can reach;
* ``enhancer_whole``: ``Enhancer(tile=None)`` — adds the mirrored image-edge border
  (:func:`srscope.runtime.enhancer.default_border`), (de)normalisation and cropping;
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
``speed_1024`` (the speed issue's figures, on the shipped width-8 widefield model and a 1024² frame):
raw single shot vs the Enhancer whole-image, at the default ``tile="auto"``, at the old fixed
512 tiles and at ``auto`` with the old full-halo image border, per image pixel (``RATIO_REPEATS``
interleaved rounds, wall and process-CPU medians); the wrapper's own cost stage by stage
(``wrapper_stages_auto``); ORT's per-op-type profile of the single shot and of the tiles with the
convolutions' fraction of the matmul peak; session settings (optimisation level / NCHWc, threads,
batching); int8 candidates (``bench/speed_profile.py``) and the bf16 status.
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
from srscope.runtime.tiling import TilePlan

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_profile

REPO = Path(__file__).resolve().parent.parent
WIDEFIELD = REPO / "models" / "widefield-10x0.4-to-20x0.75.onnx"
TARGET_TILED_RATIO = 0.95
REPEATS = 3
GFLOP_BUDGET = 100.0  # per raw pass: ~2 s on a 2-core laptop, so the benchmark stays near 2-3 minutes
SIZES = (1024, 768, 512, 384, 256)
MIN_SIZE = 256
TILES = (512, 1024)
HALO_SWEEP = (32, 16)
DEFAULT_TILE = 512
#: speed_1024's interleaved repeats of the ratio modes: a 2-core shared host moves single runs by ±5 %.
RATIO_REPEATS = 7

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
    feed = {enhancer.session.get_inputs()[0].name: x.astype(np.float16 if enhancer.card.precision == "fp16"
                                                            else np.float32)}
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
        "speed_1024": speed_1024(peak) if WIDEFIELD.is_file() else {"skipped": f"{WIDEFIELD.name} missing"},
    }


def speed_1024(peak: float, repeats: int = REPEATS) -> dict:
    """The speed issue's CPU figures on the shipped widefield model and one 1024² frame (see module doc)."""
    card = read_card(WIDEFIELD)
    image = structured_image((1024, 1024), seed=0)
    session, info = create_session(WIDEFIELD, "cpu")
    enhancers = {"enhancer_whole": Enhancer(session, card, info, tile=None),
                 "enhancer_auto": Enhancer(session, card, info, source=WIDEFIELD),
                 "enhancer_tile512": Enhancer(session, card, info, tile=512),
                 # the border before issue 15 part 2: the card's whole halo mirrored at the image edge
                 "enhancer_auto_card_halo_border": Enhancer(session, card, info, source=WIDEFIELD,
                                                            border=card.halo_px)}
    fns = {"raw_single_shot": raw_runner(enhancers["enhancer_whole"], image)}
    fns.update({k: (lambda e=e: e.enhance(image)) for k, e in enhancers.items()})
    # The matmul peak is measured inside the same interleaved loop: on a shared machine a peak taken
    # minutes earlier sees other load than the runs it is divided into.
    n = 2048
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    fns["matmul_2048"] = lambda: a @ b
    times, cpu_times = interleaved_wall_and_cpu(fns, RATIO_REPEATS)
    cpu_times.pop("matmul_2048")
    peak_at_start, peak = peak, 2 * n ** 3 / times.pop("matmul_2048") / 1e9
    gpm = conv_gflop_per_megapixel(WIDEFIELD, probe=16 * card.size_multiple)
    whole_t = times["enhancer_whole"]
    reference = enhancers["enhancer_whole"].enhance(image).astype(np.float64)
    modes: dict[str, dict] = {"raw_single_shot": {"median_s": round(times["raw_single_shot"], 3),
                                                  "cpu_median_s": round(cpu_times["raw_single_shot"], 3),
                                                  "computed_fraction": 1.0}}
    for key, e in enhancers.items():
        plan = e.plan(image.shape)
        modes[key] = {"median_s": round(times[key], 3), "cpu_median_s": round(cpu_times[key], 3),
                      "tiles": plan.count, "tile_shape": list(plan.tile_shape), "border_px": e.border,
                      "halo_px": e.halo, "computed_fraction": round(plan.computed_fraction, 3),
                      "throughput_vs_enhancer_whole": round(whole_t / times[key], 3),
                      "throughput_vs_raw": round(times["raw_single_shot"] / times[key], 3),
                      # process CPU seconds (all threads): steadier than wall time on a shared host
                      "cpu_throughput_vs_raw": round(cpu_times["raw_single_shot"] / cpu_times[key], 3),
                      # the wrapper alone: raw throughput per pixel the network actually computed
                      "throughput_vs_raw_per_computed_pixel": round(
                          times["raw_single_shot"] / times[key] * plan.computed_fraction, 3),
                      "fraction_of_matmul_peak": round(gpm * plan.computed_fraction * 1.048576 / times[key] / peak, 3),
                      "psnr_vs_whole_db": psnr(e.enhance(image), reference)}
    modes["raw_single_shot"]["fraction_of_matmul_peak"] = round(gpm * 1.048576 / times["raw_single_shot"] / peak, 3)
    # What the network computes in each case, fed exactly as the Enhancer feeds it.
    whole_plan = enhancers["enhancer_whole"].plan(image.shape)
    normalised = enhancers["enhancer_whole"].intensity.input_mapping(image).normalise(image)
    whole_feed = np.ascontiguousarray(whole_plan.pad(normalised)[None, None], dtype=np.float32)
    tile_plan = enhancers["enhancer_tile512"].plan(image.shape)
    tiles = [v for *_, v in tile_plan.tiles(tile_plan.pad(normalised))]
    tile_feed = np.ascontiguousarray(np.stack(tiles[:4])[:, None], dtype=np.float32)
    px = lambda feed: feed.shape[0] * feed.shape[2] * feed.shape[3] / 1e6
    profiles = {"single_shot_1024": speed_profile.profile_by_op(WIDEFIELD, whole_feed, peak_gflops=peak,
                                                                 conv_gflop=gpm * px(whole_feed)),
                "tiles_4x384_old_default": speed_profile.profile_by_op(WIDEFIELD, tile_feed, peak_gflops=peak,
                                                                       conv_gflop=gpm * px(tile_feed))}
    variants = speed_profile.session_variants(WIDEFIELD, 512, tile_feed=tile_feed, peak_gflops=peak, repeats=repeats)

    def tile_job(path: Path):
        e = Enhancer.from_file(path, device="cpu", tile=512)
        return lambda: e.enhance(image)

    try:
        int8 = speed_profile.int8_candidates(WIDEFIELD, tile_job=tile_job, fp32_job=fns["enhancer_tile512"],
                                             repeats=repeats, peak_gflops=peak, tile_feed=tile_feed)
    except ImportError as exc:  # the training package (simulator, quantiser) is not installed
        int8 = {"skipped": str(exc)}
    shipped = WIDEFIELD.with_name(WIDEFIELD.stem + "-int8.onnx")
    int8["shipped"] = (str(shipped.relative_to(REPO)) if shipped.is_file() else
                       "no: the export gate (python -m srscope.training.gan.quantise models/"
                       f"{WIDEFIELD.name} models/{shipped.name}) refuses every variant that is faster than fp32 "
                       "(see min_psnr_vs_fp32_heldout_db < 45 and the held-out loss it prints)")
    auto = modes["enhancer_auto"]
    stages = wrapper_stages(enhancers["enhancer_auto"], image)
    return {
        "model": card.name, "image": [1024, 1024], "cores": usable_cores(), "repeats": repeats,
        "matmul_peak_gflops": round(peak, 1), "matmul_peak_gflops_at_start": round(peak_at_start, 1),
        "gflop_per_input_megapixel": round(gpm, 2),
        "default_tile": "auto", "auto_tile_for_1024": enhancers["enhancer_auto"].tile_for(image.shape),
        "auto_pixels_per_call": enhancers["enhancer_auto"].pixels_per_call,
        "auto_tile_2048_plan": _plan_summary(enhancers["enhancer_auto"], (2048, 2048)),
        "target_tiled_vs_single_shot": TARGET_TILED_RATIO,
        "ratio_repeats": RATIO_REPEATS,
        # per image pixel, the default against the raw single shot (no border, no wrapper), and the
        # old fixed 512 tiles, from the same interleaved loop
        "tiled_default_vs_single_shot": auto["throughput_vs_raw"],
        "tiled_512_vs_single_shot": modes["enhancer_tile512"]["throughput_vs_raw"],
        "tiled_default_vs_single_shot_cpu_time": auto["cpu_throughput_vs_raw"],
        "tiled_512_vs_single_shot_cpu_time": modes["enhancer_tile512"]["cpu_throughput_vs_raw"],
        "border_px_default": enhancers["enhancer_auto"].border,
        "border_note": ("the image-edge mirror is srscope.runtime.enhancer.default_border (8 px here, was the "
                        "card's 24 px halo: enhancer_auto_card_halo_border); tiles still discard the full halo "
                        "at seams. Quality measured by bench/bench_border.py"),
        "wrapper_stages_auto": stages,
        "fp32_fraction_of_matmul_peak_default": auto["fraction_of_matmul_peak"],
        "modes": modes, "profile": profiles, "session_variants": variants, "int8": int8,
        "bf16": speed_profile.bf16_status(),
        "roofline_note": (
            "The convolutions' own GFLOP/s over the matmul peak is the ceiling on 'fraction of peak': "
            "this width-8 U-Net runs most of its FLOPs at the ×2 HR grid with 1→16, 8→16 and 16→8 channel "
            "3×3 convolutions; ORT's NCHWc kernels pad channels to 16-wide AVX-512 blocks (half the lanes idle "
            "for 8-channel tensors) and the output tile per pixel is tiny, so the loads/stores per FLOP are "
            "GEMM-unlike; ReorderInput/Output around Concat/Pad/Upsample add pure memory traffic."),
    }


def interleaved_wall_and_cpu(fns: dict, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and process-CPU seconds per call of each function, round-robin after one warm-up.

    CPU time (all of this process's threads) is reported beside wall time because on a shared
    machine other people's load stretches wall time unevenly; the ratio of the two medians shows
    how much of a gap is the host rather than the code.
    """
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return ({k: statistics.median(v) for k, v in wall.items()}, {k: statistics.median(v) for k, v in cpu.items()})


def wrapper_stages(enhancer: Enhancer, image: np.ndarray, repeats: int = 15) -> dict:
    """Milliseconds per stage of ``enhancer.enhance(image)`` for a one-tile plan (whole-image/auto).

    Each stage is the code ``enhance`` runs (median of ``repeats``, the session run of 5), so
    ``wrapper_ms`` (the sum of all but the run) is the Enhancer's own cost per frame. The input
    steps the in-buffer path replaced are timed beside it (``before_normalise_pad_stack_ms``:
    normalise, pad and stack as three frame-sized copies).
    """
    from srscope.runtime.imagecheck import checked_image

    plan = enhancer.plan(image.shape)
    if plan.count != 1:
        return {"skipped": f"{plan.count} tiles: the stage split is for one-tile plans"}
    mapping = enhancer.intensity.input_mapping(image)
    out_map = enhancer.intensity.output_mapping(mapping)
    runner, _ = enhancer._thread_buffers()
    slot = np.empty(plan.padded_shape, dtype=enhancer._input_dtype)
    batch = slot[None, None]
    enhancer._normalise_padded_into(slot, plan, mapping, image)
    out = runner.run(batch)[0, 0]
    stack = np.empty((1, *plan.padded_shape), dtype=enhancer._input_dtype)

    def crop_denormalise() -> None:
        blender = plan.blender()
        blender.add(0, 0, out)
        enhancer._denormalise_in_place(blender.result(), out_map)

    def before_normalise_pad_stack() -> None:
        np.stack([plan.pad(mapping.normalise(image))], out=stack, casting="same_kind")

    def ms(fn, n: int = repeats) -> float:
        fn()
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        return round(1000 * statistics.median(samples), 2)

    # The in-buffer input path and the three copies it replaced, interleaved (sub-ms differences).
    pair = interleaved_wall_and_cpu({"now": lambda: enhancer._normalise_padded_into(slot, plan, mapping, image),
                                     "before": before_normalise_pad_stack}, 4 * repeats)[0]
    stages = {"check_image": ms(lambda: checked_image(image)),
              "percentiles": ms(lambda: enhancer.intensity.input_mapping(image)),
              "normalise_pad_into_batch": round(1000 * pair["now"], 2),
              "bound_input_copy": ms(lambda: runner.write_input(batch)),
              "crop_denormalise": ms(crop_denormalise)}
    run_ms = ms(lambda: runner.run(batch), 5)
    total_ms = ms(lambda: enhancer.enhance(image), 5)
    wrapper = round(sum(stages.values()), 2)
    return {"image": list(image.shape), "padded": list(plan.padded_shape), "stages_ms": stages,
            "session_run_ms": run_ms, "enhance_total_ms": total_ms, "wrapper_ms": wrapper,
            "wrapper_share_of_run": round(wrapper / run_ms, 4),
            "before_normalise_pad_stack_ms": round(1000 * pair["before"], 2),
            "note": ("bound_input_copy is BoundRunner.write_input's copy of the batch into the IO-bound input; "
                     "percentiles are the per-plane intensity policy's numpy.percentile")}


def _plan_summary(enhancer: Enhancer, shape: tuple[int, int]) -> dict:
    plan: TilePlan = enhancer.plan(shape)
    return {"tile": enhancer.tile_for(shape), "tiles": plan.count, "tile_shape": list(plan.tile_shape),
            "computed_fraction": round(plan.computed_fraction, 3)}


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
