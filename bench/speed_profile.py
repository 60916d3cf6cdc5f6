"""Where the CPU time of a 1024² frame goes, and what fp32 session settings, int8 and bf16 change.

Used by ``bench/bench_runtime.py`` (its ``speed_1024`` section); importable alone for a quick look:
``python bench/speed_profile.py [MODEL.onnx]``. Every comparison runs in one process, interleaved,
medians of ``repeats``; ratios are what to read (the absolute seconds move with the machine's load).

* ``profile_by_op``: ONNX Runtime's own profiler (``SessionOptions.enable_profiling``), summed per
  op type over one steady-state run, plus the convolutions' achieved GFLOP/s and that over the
  matmul peak (the roofline question: are these convolutions compute-bound at all?).
* ``session_variants``: graph optimisation level (ALL adds the NCHWc layout transformer), intra-op
  threads, and tiles batched into one call versus one call each.
* ``int8_candidates``: static QDQ variants from :mod:`srscope.training.gan.quantise`, calibrated
  on the card's training recipe, scored against fp32 on held-out fields and timed on the same
  tiled job; the export gate decides shipping, this only measures.
* ``bf16_status``: whether ONNX Runtime's CPU provider has a bf16 convolution here at all (probed by
  building one), with the CPU flags that a bf16 path would need.
"""

from __future__ import annotations

import collections
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from srscope.runtime.graph_cost import conv_gflop_per_megapixel
from srscope.runtime.providers import usable_cores

LEVELS = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}



def int8_for_speed(model_path: Path, work: Path) -> tuple[Path | None, str]:
    """The int8 file to time beside ``model_path``: the shipped ``<stem>-int8.onnx`` if there is one,
    else a speed-only candidate quantised into ``work`` (it fails the export gate, so it never ships),
    with a label saying which; ``(None, reason)`` where neither can be had."""
    shipped = model_path.with_name(model_path.stem + "-int8.onnx")
    if shipped.is_file():
        return shipped, f"shipped: {shipped.name}"
    try:
        from srscope.runtime import read_card
        from srscope.training.gan import quantise
    except ImportError as exc:
        return None, f"skipped: {exc}"
    card = read_card(model_path)
    if card.precision != "fp32" or not card.provenance.get("dataset_source"):
        return None, "skipped: no fp32 model with a simulator recipe to calibrate an int8 candidate on"
    feeds = quantise.runtime_feeds(card, quantise.calibration_fields(card, n=3))
    path = quantise.quantise_model(model_path, work / "int8-candidate.onnx", feeds)
    return path, "candidate: fails the export gate (not shipped), timed for speed only"

def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_features() -> dict[str, Any]:
    """The ISA extensions the int8/bf16 paths depend on, as this machine reports them."""
    flags = cpu_flags()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")
    return {"machine": platform.machine(), "processor": platform.processor() or None,
            **{f: f in flags for f in wanted}}


def session(path: str | Path | bytes, *, level: str = "all", threads: int | None = None,
            profile_prefix: str | None = None, extra: dict[str, str] | None = None) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads or usable_cores()
    o.inter_op_num_threads = 1
    o.graph_optimization_level = LEVELS[level]
    o.log_severity_level = 3
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for k, v in (extra or {}).items():
        o.add_session_config_entry(k, v)
    if profile_prefix:
        o.enable_profiling = True
        o.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), o, providers=["CPUExecutionProvider"])


def interleaved(fns: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, measured round-robin after one warm-up each."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def profile_by_op(path: Path, feed: np.ndarray, *, peak_gflops: float, conv_gflop: float | None,
                  runs: int = 2) -> dict[str, Any]:
    """Per op type (ms and share) of the last of ``runs`` profiled runs on ``feed``.

    ``conv_gflop``: the convolutions' arithmetic for this feed (GFLOP); with it the convolutions'
    own GFLOP/s and fraction of the matmul peak are reported beside the whole run's.
    """
    with tempfile.TemporaryDirectory() as tmp:
        s = session(path, profile_prefix=str(Path(tmp) / "ort"))
        name = s.get_inputs()[0].name
        for _ in range(runs):
            s.run(None, {name: feed})
        events = json.loads(Path(s.end_profiling()).read_text())
    run = [e for e in events if e.get("name") == "model_run"][-1]
    by_op: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if (e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
                and run["ts"] <= e["ts"] <= run["ts"] + run["dur"]):
            by_op[e["args"]["op_name"]] += e["dur"] / 1e3
    total = sum(by_op.values())
    conv_ms = sum(v for k, v in by_op.items() if k in ("Conv", "QLinearConv", "FusedConv", "NhwcFusedConv"))
    out: dict[str, Any] = {
        "feed": list(feed.shape), "run_ms": round(run["dur"] / 1e3, 1),
        "by_op_type_ms": {k: round(v, 1) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
        "by_op_type_share": {k: round(v / total, 3) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
    }
    if conv_gflop is not None and conv_ms:
        out.update({"conv_gflop": round(conv_gflop, 2),
                    "conv_only_gflops": round(conv_gflop / (conv_ms / 1e3), 1),
                    "conv_only_fraction_of_matmul_peak": round(conv_gflop / (conv_ms / 1e3) / peak_gflops, 3),
                    "whole_run_fraction_of_matmul_peak": round(conv_gflop / (run["dur"] / 1e6) / peak_gflops, 3)})
    return out


def session_variants(path: Path, size: int, *, tile_feed: np.ndarray, peak_gflops: float,
                     repeats: int) -> dict[str, Any]:
    """fp32 session settings on one ``size``² whole image, and batching on ``tile_feed`` tiles."""
    gflop = conv_gflop_per_megapixel(path, probe=128) * size * size / 1e6
    x = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
    cores = usable_cores()
    configs = {f"level_{k}": session(path, level=k) for k in LEVELS}
    if cores > 1:
        configs["threads_1"] = session(path, threads=1)
    fns = {k: (lambda s=s: s.run(None, {s.get_inputs()[0].name: x})) for k, s in configs.items()}
    base = configs["level_all"]
    name = base.get_inputs()[0].name
    fns["tiles_batched"] = lambda: base.run(None, {name: tile_feed})
    fns["tiles_one_per_call"] = lambda: [base.run(None, {name: tile_feed[i:i + 1]}) for i in range(len(tile_feed))]
    times = interleaved(fns, repeats)
    ref = times["level_all"]
    out: dict[str, Any] = {"image": [size, size], "threads_default": cores, "tile_feed": list(tile_feed.shape)}
    for k, t in times.items():
        entry: dict[str, Any] = {"median_s": round(t, 4)}
        if not k.startswith("tiles"):
            entry.update({"speedup_vs_level_all": round(ref / t, 3),
                          "fraction_of_matmul_peak": round(gflop / t / peak_gflops, 3)})
        out[k] = entry
    out["batched_vs_one_per_call"] = round(times["tiles_one_per_call"] / times["tiles_batched"], 3)
    out["note"] = ("level 'all' adds ORT's NCHWc layout transformer (blocked channels for the AVX-512 conv "
                   "kernels, with ReorderInput/Output around ops that stay NCHW); 'extended' and 'basic' "
                   "run plain NCHW convolutions.")
    return out


def bf16_status() -> dict[str, Any]:
    """Is there a bf16 convolution on ORT's CPU provider here? Probed, not assumed."""
    from onnx import TensorProto, helper

    feats = cpu_features()
    x = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [1, 8, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.BFLOAT16, None)
    w = helper.make_tensor("w", TensorProto.BFLOAT16, [8, 8, 3, 3], np.zeros(8 * 8 * 9, np.uint16).tobytes(), raw=True)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "bf16", [x], [y], [w])
    # opset 22 is the first whose Conv admits bfloat16 at all (the spec), so the probe asks ORT, not onnx
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)], ir_version=10)
    try:
        session(model.SerializeToString(), level="basic")
        probe = "a bf16 Conv session was created"
        available = True
    except (ort.capi.onnxruntime_pybind11_state.Fail, ort.capi.onnxruntime_pybind11_state.NotImplemented,
            ort.capi.onnxruntime_pybind11_state.InvalidGraph) as exc:  # no kernel registered for bf16
        probe = f"{type(exc).__name__}: {str(exc).splitlines()[0][:240]}"
        available = False
    reason = ("ONNX Runtime's CPU provider has no bfloat16 Conv kernel (probe above); its only bf16 switch, "
              "session option 'mlas.enable_gemm_fastmath_arm64_bfloat16', is for arm64 GEMMs (Neoverse "
              "BF16/MMLA) and does nothing on x86; MLAS uses AMX only for int8 GEMMs. AVX512_BF16 on "
              "this CPU therefore has no ORT path to run the generator's convolutions in bf16.")
    return {"available": available, "status": "available" if available else f"unavailable: {reason}",
            "probe": probe, "onnxruntime": ort.__version__, "cpu": feats}


def int8_candidates(path: Path, *, tile_job: Any, fp32_job: Any, repeats: int, peak_gflops: float,
                    tile_feed: np.ndarray) -> dict[str, Any]:
    """Quantise variants, score them against fp32 on held-out fields, time them on the tiled job.

    ``tile_job(model_path)`` returns a zero-argument callable running the same tiled job through an
    Enhancer on ``model_path``; ``fp32_job`` is that callable for the fp32 model.
    """
    from srscope.runtime import read_card
    from srscope.training.data.simulate import simulate_pair
    from srscope.training.gan import quantise as q
    from srscope.training.gan.simdataset import parse_structures, structure_of_field

    card = read_card(path)
    t0 = time.perf_counter()
    calibration = q.runtime_feeds(card, q.calibration_fields(card))
    source = card.provenance["dataset_source"]
    seeds, fov = q.heldout_seeds(card)
    structures = parse_structures(source["structure"])
    heldout = q.runtime_feeds(card, [simulate_pair(source["modality"], structure_of_field(structures, k), seed=s,
                                                   hr_shape=(fov, fov), misregister=False).lr
                                     for k, s in enumerate(seeds)])
    variants = {
        "shipped_settings": q.QuantSettings(),
        "s8_activations": q.QuantSettings(activations="s8"),
        "per_tensor": q.QuantSettings(per_channel=False),
        "qoperator": q.QuantSettings(fmt="qoperator"),
        "fp32_first_last_conv": q.QuantSettings(exclude_first_last=True),
        "hr_level_float": q.QuantSettings(exclude_nodes=("down.0/", "up.3/", "hr")),
    }
    out: dict[str, Any] = {"calibration": {"fields": len(calibration), "split": "train", "seeds": [0, len(calibration) - 1]},
                           "heldout_seeds": seeds, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for key, settings in variants.items():
            p = q.quantise_model(path, Path(tmp) / f"{key}.onnx", calibration, settings)
            paths[key] = p
            out["variants"][key] = {"settings": settings.label(),
                                    "min_psnr_vs_fp32_heldout_db": round(q.output_psnr_vs_fp32(path, p, heldout), 2)}
        out["prepare_s"] = round(time.perf_counter() - t0, 1)
        # The same tiled job through the Enhancer on every variant, interleaved with fp32.
        jobs = {"fp32": fp32_job, **{k: tile_job(p) for k, p in paths.items()}}
        times = interleaved(jobs, repeats)
        for key in variants:
            out["variants"][key]["speedup_vs_fp32_tiled_job"] = round(times["fp32"] / times[key], 3)
        out["fp32_tiled_job_s"] = round(times["fp32"], 3)
        conv_gflop = conv_gflop_per_megapixel(path, probe=128) * tile_feed.shape[0] * tile_feed.shape[2] * \
            tile_feed.shape[3] / 1e6
        out["profile_fp32_tiles"] = profile_by_op(path, tile_feed, peak_gflops=peak_gflops, conv_gflop=conv_gflop)
        out["profile_int8_tiles"] = profile_by_op(paths["shipped_settings"], tile_feed, peak_gflops=peak_gflops,
                                                  conv_gflop=conv_gflop)
        optimised = Path(tmp) / "opt.onnx"
        o = ort.SessionOptions()
        o.optimized_model_filepath = str(optimised)
        o.log_severity_level = 3
        ort.InferenceSession(str(paths["shipped_settings"]), o, providers=["CPUExecutionProvider"])
        out["int8_kernels_after_fusion"] = dict(collections.Counter(n.op_type for n in onnx.load(str(optimised)).graph.node))
    feats = cpu_features()
    out["kernel"] = (
        "QDQ Conv is fused into QLinearConv (u8 activations x s8 per-channel weights); ONNX Runtime's MLAS "
        "dispatches its int8 GEMM/conv kernels by CPU feature at start-up: AMX (amx_int8) > AVX-512 VNNI > "
        "AVX-VNNI > AVX2 (no VNNI). Here: "
        + ("AMX" if feats["amx_int8"] else "AVX-512 VNNI" if feats["avx512_vnni"] else
           "AVX-VNNI" if feats["avx_vnni"] else "AVX2 u8s8 (no VNNI)" if feats["avx2"] else "portable C++")
        + ". ORT's profiler names the op, not the MLAS kernel: the kernel is the dispatch table's choice for "
          "these flags.")
    return out


if __name__ == "__main__":
    model = Path(sys.argv[1] if len(sys.argv) > 1 else "models/widefield-10x0.4-to-20x0.75.onnx")
    feed = np.random.default_rng(0).random((1, 1, 1024, 1024), dtype=np.float32)
    print(json.dumps({"bf16": bf16_status(),
                      "profile": profile_by_op(model, feed, peak_gflops=1.0, conv_gflop=None)}, indent=2))
