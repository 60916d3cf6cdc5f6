"""Live SR throughput and latency on this machine, measured side by side:

* ``engine``: the model alone (``Enhancer.enhance_many`` on 512×512 frames, batches of 1 and 4):
  the ceiling any live pipeline can reach.
* ``pipeline``: the same frames submitted as fast as possible to :class:`LivePipeline`
  (block policy, bounded queue) with the SR OME-Zarr writer: sustained SR frames/s, mean/p95
  latency, and the ratio to the engine ceiling (the cost of queueing + writing).
* ``mda``: a real pymmcore-plus MDA (UniMMCore, simulated 512×512 camera at 20 ms exposure, its
  cheap noise model so that the simulator itself does not compete for the CPU)
  with the handler on the acquisition thread: hook callback median/p95, camera frames/s with
  and without the hook, SR frames/s and latency.

* ``int8``: ``engine`` and ``pipeline`` again with the int8 model beside the fp32 one (interleaved):
  the shipped ``<model>-int8.onnx`` when the export gate let one through, else the gate-failing
  candidate built here (speed only, labelled so).

Uses ``$SRSCOPE_BENCH_MODEL`` if set, else the shipped default model when ``models/`` has it,
else the runtime's test model (the result says which).
"""

from __future__ import annotations

import gc
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_profile

FRAME = 512
MAX_FRAMES = 16
TARGET_S_PER_CONFIG = 40.0  # heavy shipped models run fewer frames so `make bench` stays bounded


def _model_path(work: Path) -> tuple[Path, str]:
    import os

    from srscope.acquisition.demo import find_default_model

    if os.environ.get("SRSCOPE_BENCH_MODEL"):
        return Path(os.environ["SRSCOPE_BENCH_MODEL"]), "SRSCOPE_BENCH_MODEL"
    shipped = find_default_model()
    if shipped is not None:
        return shipped, "shipped"
    from srscope.runtime.synthetic import build_test_model

    return build_test_model(work / "test-model.onnx", name="runtime-test-model"), "runtime test model"


def _frames(n: int) -> list[np.ndarray]:
    from srscope.acquisition.simulated import SIMULATED_PIXEL_SIZE_UM, SimulatedSlide

    slide, rng = SimulatedSlide(seed=0), np.random.default_rng(0)
    return [(rng.poisson(slide.render(37.0 * i, 11.0 * i, (FRAME, FRAME), SIMULATED_PIXEL_SIZE_UM) + 5.0)
             + 100).astype(np.uint16) for i in range(n)]


def _engine(enhancer, frames: list[np.ndarray], group: int) -> dict:
    enhancer.enhance_many(frames[:group])  # warm-up
    per_frame: list[float] = []
    for start in range(0, len(frames), group):
        t0 = time.perf_counter()
        enhancer.enhance_many(frames[start:start + group])
        per_frame.append((time.perf_counter() - t0) / group)
    median = statistics.median(per_frame)
    return {"frames_per_s": 1.0 / median, "median_ms_per_frame": 1e3 * median, "calls": len(per_frame)}


def _pipeline(enhancer, frames: list[np.ndarray], work: Path, batch: int) -> dict:
    from srscope.acquisition import (
        ChannelModels,
        FrameKey,
        LiveFrame,
        LivePipeline,
        SRStoreWriter,
    )

    writer = SRStoreWriter(work / f"pipeline-b{batch}.ome.zarr", channels=["DAPI"],
                           size_hints={"t": len(frames)}, provenance={}, overwrite=True)
    pipe = LivePipeline(ChannelModels.single(enhancer), writer, max_queued=len(frames), batch_size=batch,
                        pixel_size_um=0.325)
    for t, frame in enumerate(frames):
        pipe.submit(LiveFrame(FrameKey(0, t, "DAPI", 0), frame.copy(), t_in=time.perf_counter()))
    s = pipe.finish()
    return {"sr_frames_per_s": s.sr_frames_per_s, "latency_mean_ms": s.latency_mean_ms,
            "latency_p95_ms": s.latency_p95_ms, "frames_super_resolved": s.frames_super_resolved,
            "inference_ms_per_frame": s.inference_ms_per_frame, "write_ms_per_frame": s.write_ms_per_frame}


class _SleepModel:
    """Same card as the real model, but only sleeps (no CPU): isolates the hook's own cost on
    the acquisition from the CPU that real inference takes away from it."""

    def __init__(self, card, seconds: float) -> None:
        self.card, self.seconds = card, seconds

    def enhance_many(self, frames):
        time.sleep(self.seconds * len(frames))
        s = self.card.integer_scale
        return [np.zeros((f.shape[0] * s, f.shape[1] * s), np.float32) for f in frames]


def _mda(model_path: Path, work: Path, n_frames: int, with_hook: bool, sleep_only: bool = False) -> dict:
    import useq
    from pymmcore_plus.experimental.unicore import UniMMCore
    from srscope.acquisition import ChannelModels, LiveSRHandler
    from srscope.acquisition.simulated import SIMULATED_CONFIG, SIMULATED_PIXEL_SIZE_UM

    logging.getLogger("pymmcore-plus").setLevel(logging.ERROR)
    core = UniMMCore()
    try:
        core.loadSystemConfiguration(str(SIMULATED_CONFIG))
        core.setExposure(20.0)
        core.setProperty("Camera", "noise_model", "fast")  # a camera that needs no CPU, like hardware
        seq = useq.MDASequence(stage_positions=[(0, 0, 0), (80, 30, 0)],
                               time_plan={"interval": 0, "loops": max(2, n_frames // 2)})
        arrivals: list[float] = []
        core.mda.events.frameReady.connect(lambda *a: arrivals.append(time.perf_counter()))
        handler = None
        t0 = time.perf_counter()
        if with_hook:
            models = ChannelModels.from_files(model_path, tile=512, batch_size=4)
            if sleep_only:
                models = ChannelModels.single(_SleepModel(models.default.card, 0.4))  # ~camera/10
            handler = LiveSRHandler(models, work / "mda.ome.zarr", overwrite=True, pixel_size_um=SIMULATED_PIXEL_SIZE_UM)
            with handler.connected(core):
                t0 = time.perf_counter()
                core.mda.run(seq)
        else:
            core.mda.run(seq)
        total = time.perf_counter() - t0
        out = {"frames": len(arrivals),
               "camera_frames_per_s": (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]),
               "run_wall_s": total}
        if handler is not None:
            s = handler.summary
            out.update(callback_median_ms=s.callback_median_ms, callback_p95_ms=s.callback_p95_ms,
                       callback_max_ms=s.callback_max_ms, sr_frames_per_s=s.sr_frames_per_s,
                       latency_mean_ms=s.latency_mean_ms, latency_p95_ms=s.latency_p95_ms,
                       frames_super_resolved=s.frames_super_resolved, frames_skipped=s.frames_skipped,
                       inference_ms_per_frame=s.inference_ms_per_frame, write_ms_per_frame=s.write_ms_per_frame)
        return out
    finally:
        core.unloadAllDevices()
        del core
        gc.collect()


def run(out_dir: Path) -> dict:
    from srscope.acquisition.channels import live_inference_threads
    from srscope.runtime import Enhancer

    with tempfile.TemporaryDirectory(prefix="bench-acq-") as tmp:
        work = Path(tmp)
        model_path, which = _model_path(work)
        threads = live_inference_threads()
        enhancer = Enhancer.from_file(model_path, tile=512, batch_size=4, intra_op_threads=threads)
        probe = _frames(1)
        enhancer.enhance_many(probe)  # warm-up
        t0 = time.perf_counter()
        enhancer.enhance_many(probe)
        seconds_per_frame = time.perf_counter() - t0
        n = int(min(MAX_FRAMES, max(4, TARGET_S_PER_CONFIG // max(seconds_per_frame, 1e-3))))
        n -= n % 4  # whole batches of 4
        frames = _frames(n)
        int8_path, int8_origin = speed_profile.int8_for_speed(model_path, work)
        int8 = None if int8_path is None else Enhancer.from_file(int8_path, tile=512, batch_size=4,
                                                                 intra_op_threads=threads)
        engine, pipeline, engine8, pipeline8 = {}, {}, {}, {}
        for b in (1, 4):  # interleaved so that load from other processes hits both alike
            engine[f"batch{b}"] = _engine(enhancer, frames, b)
            pipeline[f"batch{b}"] = _pipeline(enhancer, frames, work, b)
            if int8 is not None:
                engine8[f"batch{b}"] = _engine(int8, frames, b)
                pipeline8[f"batch{b}"] = _pipeline(int8, frames, work, b)
        mda_plain = _mda(model_path, work, n, with_hook=False)
        mda_live = _mda(model_path, work, n, with_hook=True)
        mda_sleep = _mda(model_path, work, n, with_hook=True, sleep_only=True)
    best_engine = max(e["frames_per_s"] for e in engine.values())
    best_pipeline = max(p["sr_frames_per_s"] or 0.0 for p in pipeline.values())
    return {
        "model": str(model_path.name), "model_kind": which, "provider": enhancer.provider,
        "inference_threads": threads,
        "frame": [FRAME, FRAME], "frames": n, "scale": enhancer.scale,
        "tile": enhancer.tile, "overlap": enhancer.overlap,
        "engine": engine, "pipeline": pipeline,
        "int8": {"model": int8_origin, "engine": engine8, "pipeline": pipeline8,
                 "engine_speedup_vs_fp32": {b: engine8[b]["frames_per_s"] / engine[b]["frames_per_s"]
                                            for b in engine8}},
        "pipeline_to_engine_ratio": best_pipeline / best_engine if best_engine else None,
        "mda_without_hook": mda_plain, "mda_with_live_sr": mda_live, "mda_with_sleep_only_model": mda_sleep,
        "camera_rate_ratio_with_hook": (mda_live["camera_frames_per_s"] / mda_plain["camera_frames_per_s"]),
        "camera_rate_ratio_with_hook_sleep_only_model": (mda_sleep["camera_frames_per_s"]
                                                         / mda_plain["camera_frames_per_s"]),
        "callback_median_ms": mda_live.get("callback_median_ms"),
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench/results")), indent=2))
