"""srrun memory and throughput: peak RSS must not grow with the number of planes in the dataset,
and two single-thread dask workers on one host must run about twice as fast as one.

Memory: each configuration runs the real ``srrun`` entry point in a fresh child process (a wrapper
reports that child's peak RSS), on datasets of the same plane size but 8x more planes. Bounded memory
means the 8x dataset peaks at about the same RSS as the small one while its output is 8x larger.

Dask scaling: the shipped widefield model on the same dataset through ``run_job`` on a local
cluster of 1 and of 2 single-thread worker processes (workers size ONNX Runtime to their
``nthreads``), and, for reference, 2 workers told ``threads=2`` each (what every worker did before:
all cores of the host each). Configurations alternate, repeats are medians; the load average is
recorded because other work on the host takes cores from the workers.

Overlapped I/O (issue 15): the local loop reading ahead and writing behind on threads vs
``overlap_io=False`` (one plane at a time), the shipped widefield model on OME-Zarr planes of 512²
into an OME-Zarr output, through ``run_job`` in this process. The two settings alternate, repeats
are medians; the per-stage seconds (read, enhance, write, summed over planes) say how much I/O
there was to hide: at best the overlapped wall time falls to the enhance time alone.
``python bench/bench_srrun.py --overlap-only`` runs that part alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from srscope.runtime.io import Image, write_image
from srscope.runtime.synthetic import build_test_model

PLANE = 256
PLANE_COUNTS = (16, 128)

#: dask scaling: planes of this edge through the shipped model, each configuration this many times
DASK_PLANE, DASK_PLANES, DASK_REPEATS = 512, 12, 3
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "widefield-10x0.4-to-20x0.75.onnx"
#: overlapped I/O: this many planes of this edge, each setting this many times
OVERLAP_PLANE, OVERLAP_PLANES, OVERLAP_REPEATS = 512, 8, 5

_WRAPPER = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(code, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _measure(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one srrun child process."""
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], capture_output=True, text=True, check=True)
    code, seconds, rss_kib = out.stdout.split()
    if int(code) != 0:
        raise RuntimeError(f"srrun failed: {out.stderr.strip().splitlines()[-1:]}")
    return float(seconds), int(rss_kib) / 1024


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{r['planes']} planes\n{r['output'].split('.')[-1]}" for r in rows]
    ax.bar(labels, [r["peak_rss_mib"] for r in rows], color="tab:blue", label="peak RSS")
    ax.plot(labels, [r["output_mib"] for r in rows], "o--", color="tab:red", label="output size")
    ax.set_ylabel("MiB")
    ax.set_title(f"srrun peak RSS vs dataset size ({PLANE}² planes, ×2 model)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(out_dir: Path) -> dict:
    work = out_dir / "srrun_work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model = build_test_model(work / "x2.onnx", scale=2)
    srrun = str(Path(sys.executable).with_name("srrun"))
    rows = []
    for n in PLANE_COUNTS:
        data = np.random.default_rng(n).integers(100, 3000, (n, PLANE, PLANE)).astype(np.uint16)
        for in_suffix, out_suffix in ((".ome.zarr", ".ome.zarr"), (".ome.tif", ".ome.tif")):
            src = write_image(work / f"in{n}{in_suffix}", Image(data, "tyx", (0.325, 0.325)), overwrite=True)
            out = work / f"out{n}{out_suffix}"
            seconds, rss = _measure([srrun, str(model), str(src), str(out), "--quiet", "--overwrite"])
            rows.append({"planes": n, "input": in_suffix, "output": out_suffix, "seconds": round(seconds, 2),
                         "seconds_per_plane": round(seconds / n, 4), "peak_rss_mib": round(rss, 1),
                         "output_mib": round(n * (2 * PLANE) ** 2 * 4 / 2**20, 1)})
            print(json.dumps(rows[-1]), flush=True)
    by = {(r["planes"], r["output"]): r["peak_rss_mib"] for r in rows}
    ratios = {out: round(by[(PLANE_COUNTS[1], out)] / by[(PLANE_COUNTS[0], out)], 3)
              for out in (".ome.zarr", ".ome.tif")}
    try:
        _plot(rows, out_dir / "bench_srrun_memory.png")
    except ImportError:
        pass
    dask = dask_scaling(work)
    overlap = overlap_io(work)
    shutil.rmtree(work, ignore_errors=True)
    return {"plane_px": PLANE, "rows": rows,
            "peak_rss_ratio_large_over_small": ratios,
            "dataset_ratio": PLANE_COUNTS[1] / PLANE_COUNTS[0],
            "note": "peak RSS of the whole srrun process (imports, ONNX Runtime, at most "
                    "pipeline.MAX_IN_FLIGHT planes in flight)",
            "dask_scaling": dask, "overlap_io": overlap}


def _cpu_seconds() -> float:
    """CPU time (user + system) of the calling process: run on every worker by ``client.run``."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def dask_scaling(work: Path) -> dict:
    """Wall time of one job on 1 vs 2 single-thread dask workers (and 2 oversubscribed ones), side by side."""
    try:
        import distributed
    except ImportError:
        return {"skipped": "dask.distributed not installed"}
    from srscope.runtime.batch import plan_job, run_job
    from srscope.runtime.planework import RunOptions
    from srscope.runtime.providers import usable_cores

    model = SHIPPED_MODEL if SHIPPED_MODEL.is_file() else build_test_model(work / "x2.onnx", scale=2)
    data = np.random.default_rng(7).integers(100, 3000, (DASK_PLANES, DASK_PLANE, DASK_PLANE)).astype(np.uint16)
    src = write_image(work / "dask_in.ome.zarr", Image(data, "tyx", (0.325, 0.325)), overwrite=True)
    configs = {"1 worker x 1 thread": (1, None), "2 workers x 1 thread": (2, None),
               "2 workers x threads=2 (old default here)": (2, 2)}
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    load_before = os.getloadavg()
    clusters = {}
    try:
        for name, (n_workers, _) in configs.items():
            clusters[name] = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                                      host="127.0.0.1", dashboard_address=None,
                                                      silence_logs=logging.ERROR)
        for repeat in range(DASK_REPEATS):
            for name, (_, threads) in configs.items():
                out = work / f"dask_out_{repeat}.ome.zarr"
                plan = plan_job(src, out, [str(model)], options=RunOptions(tile=512, threads=threads), overwrite=True)
                with distributed.Client(clusters[name], set_as_default=False) as client:
                    cpu0 = sum(client.run(_cpu_seconds).values())  # also: workers are up before the clock starts
                    t0 = time.perf_counter()
                    run_job(plan, client=client, progress=False)
                    seconds[name].append(time.perf_counter() - t0)
                    cpu[name].append(sum(client.run(_cpu_seconds).values()) - cpu0)
                shutil.rmtree(out, ignore_errors=True)
                print(json.dumps({"dask": name, "repeat": repeat, "seconds": round(seconds[name][-1], 2)}), flush=True)
    finally:
        for cluster in clusters.values():
            cluster.close()
    medians = {name: statistics.median(v) for name, v in seconds.items()}
    one, two = medians["1 worker x 1 thread"], medians["2 workers x 1 thread"]
    cores_used = {k: round(statistics.median(c / w for c, w in zip(cpu[k], seconds[k])), 2) for k in configs}
    free = cores_used["2 workers x 1 thread"] >= 1.6
    return {"model": model.name, "planes": DASK_PLANES, "plane_px": DASK_PLANE, "repeats": DASK_REPEATS,
            "usable_cores": usable_cores(), "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "seconds": {k: [round(x, 2) for x in v] for k, v in seconds.items()},
            "median_seconds": {k: round(v, 2) for k, v in medians.items()},
            # worker CPU seconds per wall second: how many cores the workers really got (2 = two free cores)
            "median_cores_used": cores_used,
            "two_cores_were_free": free,
            "note": ("the two workers got two cores: the ratio measures scaling" if free else
                     f"the host was busy: two single-thread workers got {cores_used['2 workers x 1 thread']} cores "
                     "in total, so the ratio measures contention, not scaling; rerun on an idle host"),
            "speedup_2_over_1_single_thread_workers": round(one / two, 3),
            "speedup_2_oversubscribed_over_1": round(one / medians["2 workers x threads=2 (old default here)"], 3),
            "goal": ">= 1.8 where the host has 2 free cores"}


def overlap_io(work: Path) -> dict:
    """Wall time of one local srrun job with overlapped I/O vs one plane at a time, side by side,
    for the shipped widefield model and for a small random-weight x2 network (its inference is a
    fraction of the shipped model's, as on an accelerator, so the I/O weighs far more)."""
    from srscope.runtime.providers import usable_cores

    models = {"shipped": SHIPPED_MODEL if SHIPPED_MODEL.is_file() else build_test_model(work / "x2.onnx", scale=2),
              "fast (random-weight x2 test network)": build_test_model(work / "fast_x2.onnx", scale=2)}
    data = np.random.default_rng(15).integers(100, 3000, (OVERLAP_PLANES, OVERLAP_PLANE, OVERLAP_PLANE))
    src = write_image(work / "overlap_in.ome.zarr", Image(data.astype(np.uint16), "tyx", (0.325, 0.325)),
                      overwrite=True)
    load_before = os.getloadavg()
    rows = {name: _overlap_pair(src, model, work / "overlap_out.ome.zarr") for name, model in models.items()}
    return {"planes": OVERLAP_PLANES, "plane_px": OVERLAP_PLANE, "repeats": OVERLAP_REPEATS,
            "usable_cores": usable_cores(), "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()], "models": rows,
            "note": "overlapped, the read and the write run beside ONNX Runtime, which uses every usable core: "
                    "on few (and busy) cores they compete with it for CPU rather than run on idle ones"}


def _overlap_pair(src: Path, model: Path, out: Path) -> dict:
    from srscope.runtime.batch import plan_job, run_job
    from srscope.runtime.pipeline import MAX_IN_FLIGHT
    from srscope.runtime.planework import RunOptions

    settings = {"overlap": True, "serial": False}
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    stages: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
    # one untimed run first: page cache, ONNX Runtime's first-session costs
    run_job(plan_job(src, out, [str(model)], overwrite=True), progress=False)
    for repeat in range(OVERLAP_REPEATS):
        for name, overlap in settings.items():
            plan = plan_job(src, out, [str(model)], options=RunOptions(overlap_io=overlap), overwrite=True)
            t0 = time.perf_counter()
            report = run_job(plan, progress=False)
            seconds[name].append(time.perf_counter() - t0)
            stages[name].append(report.stage_seconds)
            print(json.dumps({"model": model.name, "overlap_io": name, "repeat": repeat,
                              "seconds": round(seconds[name][-1], 2)}), flush=True)
    shutil.rmtree(out, ignore_errors=True)
    medians = {name: statistics.median(v) for name, v in seconds.items()}
    stage_medians = {name: {stage: round(statistics.median(r[stage] for r in runs), 3) for stage in runs[0]}
                     for name, runs in stages.items()}
    serial = stage_medians["serial"]
    return {"model": model.name, "max_planes_in_flight": MAX_IN_FLIGHT,
            "seconds": {k: [round(x, 2) for x in v] for k, v in seconds.items()},
            "median_seconds": {k: round(v, 3) for k, v in medians.items()},
            # summed over the planes of one run: where the time went, stage by stage
            "median_stage_seconds": stage_medians,
            "io_share_serial": round((serial["read"] + serial["write"]) / sum(serial.values()), 3),
            # the best overlap can do: the wall time falls to the serial run's enhance time
            "best_possible_speedup": round(medians["serial"] / serial["compute"], 3),
            "speedup_overlap_over_serial": round(medians["serial"] / medians["overlap"], 3)}


if __name__ == "__main__":
    parts = {"--dask-only": dask_scaling, "--overlap-only": overlap_io}
    if len(sys.argv) == 2 and sys.argv[1] in parts:  # one part alone: python bench/bench_srrun.py --overlap-only
        scratch = Path("bench/results/srrun_work")
        scratch.mkdir(parents=True, exist_ok=True)
        result = parts[sys.argv[1]](scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        if sys.argv[1] == "--overlap-only":
            Path("bench/results/bench_srrun_overlap_io.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    else:
        print(json.dumps(run(Path("bench/results")), indent=2))
