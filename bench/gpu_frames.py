"""ms per 1024² frame on a GPU provider: fp32 and fp16, CUDA and TensorRT, whole and tiled.

Run by ``bench/gpu_check.sh`` (which installs onnxruntime-gpu first); ``--dry-run`` runs every
step on the CPU provider at tiny sizes, so the default test suite exercises this file end to end.

What it measures, per model (the shipped width-8 widefield generator and a paper-width, 32 base
channel random-weight U-Net from :func:`srscope.runtime.synthetic.build_unet_model`), precision and
provider:

* that the session really runs there: :func:`srscope.runtime.create_session` refuses a silent
  fall-back, and ORT's profiler must place every Conv on the provider (``conv_nodes_on_provider``);
* ``whole_bound_ms``: one 1024² frame, input and output resident on the device (IO binding,
  :class:`srscope.runtime.providers.BoundRunner`), no host copy in the timed call;
* ``whole_cuda_graph_ms``: the same with CUDA graphs captured and replayed (fixed shape);
* ``tiled_bound_ms``: the default tile plan's tiles all in one batched call (filling the GPU);
* ``enhancer_whole_ms`` / ``enhancer_tiled_ms``: the full :class:`~srscope.runtime.Enhancer` path
  (host frame in, host frame out, normalisation, blending), as users get it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from srscope.runtime import Enhancer, create_session, read_card
from srscope.runtime.card import embed_card, weights_checksum
from srscope.runtime.halo import psnr_db
from srscope.runtime.providers import BoundRunner, trt_engine_cache_dir
from srscope.runtime.synthetic import build_unet_model, structured_image

REPO = Path(__file__).resolve().parent.parent
WIDEFIELD = REPO / "models" / "widefield-10x0.4-to-20x0.75.onnx"
WIDEFIELD_FP16 = REPO / "models" / "widefield-10x0.4-to-20x0.75-fp16.onnx"


def median_ms(fn: Callable[[], Any], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2)


def fp16_copy(path: Path, out: Path) -> Path:
    """fp16 twin of a card-carrying fp32 file, through the project's one fp16 converter."""
    from srscope.training.gan.export import _convert_fp16

    model = onnx.load(str(path))
    card = read_card(model)
    converted = _convert_fp16(model)
    embed_card(converted, dataclasses.replace(card, precision="fp16", weights_sha256=weights_checksum(converted)))
    onnx.save(converted, str(out))
    return out


def conv_placement(path: Path, device: str, feed: np.ndarray) -> dict[str, int]:
    """How many Conv nodes ORT's profiler saw on each provider for one run."""
    import collections

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "p")
        opts.log_severity_level = 3
        session, _ = create_session(path, device)
        # A second, profiling session with the same provider chain as the checked one.
        profiled = ort.InferenceSession(str(path), opts, providers=session.get_providers(),
                                        provider_options=[session.get_provider_options()[p]
                                                          for p in session.get_providers()])
        profiled.run(None, {profiled.get_inputs()[0].name: feed})
        events = json.loads(Path(profiled.end_profiling()).read_text())
    counts: collections.Counter[str] = collections.Counter()
    for e in events:
        args = e.get("args", {})
        if e.get("cat") == "Node" and args.get("op_name") in ("Conv", "FusedConv", "NhwcConv"):
            counts[args.get("provider", "?")] += 1
    # TensorRT runs a compiled subgraph: its nodes show as one TRTKernel op on the TensorRT EP.
    for e in events:
        args = e.get("args", {})
        if e.get("cat") == "Node" and str(args.get("op_name", "")).startswith("TRTKernel"):
            counts["TensorrtExecutionProvider (compiled subgraph)"] += 1
    return dict(counts)


def measure(path: Path, device: str, size: int, tile: int, repeats: int) -> dict[str, Any]:
    card = read_card(path)
    image = structured_image((size, size), seed=0)
    session, info = create_session(path, device)
    out: dict[str, Any] = {"provider": info.provider, "providers": list(info.providers), "precision": card.precision}
    sync = _synchroniser(info.provider)
    whole = Enhancer(session, card, info, tile=None)
    tiled = Enhancer(session, card, info, tile=tile, batch_size=64)
    plan_w, plan_t = whole.plan(image.shape), tiled.plan(image.shape)
    normalised = whole.intensity.input_mapping(image).normalise(image)
    dtype = np.float16 if card.precision == "fp16" else np.float32
    whole_feed = plan_w.pad(normalised)[None, None].astype(dtype)
    tiles = np.stack([v for *_, v in plan_t.tiles(plan_t.pad(normalised))])[:, None].astype(dtype)
    out["conv_nodes_on_provider"] = conv_placement(path, device, whole_feed[:, :, :64, :64] if size > 64 else whole_feed)
    runner = BoundRunner(session, info)
    runner.write_input(whole_feed)
    runner.write_input(tiles)
    out["bound_on"] = runner.device
    out["whole_bound_ms"] = median_ms(lambda: runner.run_bound(whole_feed.shape), repeats, sync)
    out["tiled_bound_ms"] = median_ms(lambda: runner.run_bound(tiles.shape), repeats, sync)
    out["tiles"] = {"count": plan_t.count, "shape": list(plan_t.tile_shape), "batched_in_one_call": len(tiles),
                    "computed_fraction": round(plan_t.computed_fraction, 3)}
    if info.on_gpu:
        try:
            g_session, g_info = create_session(path, device, cuda_graph=True)
            graph_runner = BoundRunner(g_session, g_info, cuda_graph=True)
            graph_runner.write_input(whole_feed)
            out["whole_cuda_graph_ms"] = median_ms(lambda: graph_runner.run_bound(whole_feed.shape), repeats, sync)
        except Exception as exc:  # noqa: BLE001 - a measurement that may be unsupported is reported, not fatal
            out["whole_cuda_graph_ms"] = f"unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    else:
        out["whole_cuda_graph_ms"] = "unavailable: CPU provider (CUDA graphs need CUDA/TensorRT)"
    out["enhancer_whole_ms"] = median_ms(lambda: whole.enhance(image), repeats)
    out["enhancer_tiled_ms"] = median_ms(lambda: tiled.enhance(image), repeats)
    ref = whole.enhance(image).astype(np.float64)
    bound_out = runner.run(whole_feed)[0, 0].astype(np.float64)
    direct = session.run(None, {session.get_inputs()[0].name: whole_feed})[0][0, 0].astype(np.float64)
    out["bound_vs_session_run_max_abs"] = float(np.max(np.abs(bound_out - direct)))
    value = psnr_db(ref, tiled.enhance(image).astype(np.float64))
    out["tiled_vs_whole_psnr_db"] = None if value == float("inf") else round(value, 1)
    return out


def _synchroniser(provider: str) -> Callable[[], None]:
    """IO-bound GPU runs return after the kernels are queued on the stream ORT syncs itself on
    ``run_with_iobinding``; nothing extra to wait for (kept as a hook for explicit syncs)."""
    return lambda: None


def run(out_dir: Path, *, dry_run: bool) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    size, tile, repeats = (96, 72, 1) if dry_run else (1024, 512, 10)
    devices = ["cpu"] if dry_run else [d for d in ("cuda", "tensorrt")
                                       if {"cuda": "CUDAExecutionProvider",
                                           "tensorrt": "TensorrtExecutionProvider"}[d] in ort.get_available_providers()]
    if not devices:
        raise SystemExit(f"gpu_frames: no CUDA/TensorRT provider in this onnxruntime ({ort.get_available_providers()})")
    work = Path(tempfile.mkdtemp(prefix="srscope-gpu-"))
    width, levels = (4, 2) if dry_run else (32, 4)
    paper = build_unet_model(work / f"paper-width{width}.onnx", width=width, levels=levels, scale=2)
    models = {f"paper_width{width}_random": {"fp32": paper, "fp16": fp16_copy(paper, work / "paper-fp16.onnx")}}
    if WIDEFIELD.is_file():
        models["widefield_width8_shipped"] = {
            "fp32": WIDEFIELD,
            "fp16": WIDEFIELD_FP16 if WIDEFIELD_FP16.is_file() else fp16_copy(WIDEFIELD, work / "wf-fp16.onnx")}
    results: dict[str, Any] = {}
    for name, files in models.items():
        for precision, path in files.items():
            for device in devices:
                key = f"{name}/{precision}/{device}"
                print(f"[gpu_frames] {key} …", file=sys.stderr, flush=True)
                try:
                    results[key] = measure(path, device, size, tile, repeats)
                except Exception as exc:  # noqa: BLE001 - one failing combination must not hide the others
                    results[key] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    summary = {
        "dry_run": dry_run, "frame": [size, size], "tile": tile, "repeats": repeats,
        "onnxruntime": ort.__version__, "available_providers": ort.get_available_providers(),
        "trt_engine_cache": str(trt_engine_cache_dir()) if "tensorrt" in devices else None,
        "paper_target_ms_per_1024_frame": 400.0,
        "gpu_ms_per_1024_frame": results,
    }
    (out_dir / "bench_runtime_gpu.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--dry-run", action="store_true", help="CPU provider, tiny sizes (the test suite's mode)")
    args = parser.parse_args()
    print(json.dumps(run(args.out, dry_run=args.dry_run), indent=2))
