"""srrun memory and throughput: peak RSS must not grow with the number of planes in the dataset.

Each configuration runs the real ``srrun`` entry point in a fresh child process (a wrapper reports
that child's peak RSS), on datasets of the same plane size but 8x more planes. Bounded memory means
the 8x dataset peaks at about the same RSS as the small one while its output is 8x larger.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from srscope.runtime.io import Image, write_image
from srscope.runtime.testing import build_test_model

PLANE = 256
PLANE_COUNTS = (16, 128)

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
    shutil.rmtree(work, ignore_errors=True)
    return {"plane_px": PLANE, "rows": rows,
            "peak_rss_ratio_large_over_small": ratios,
            "dataset_ratio": PLANE_COUNTS[1] / PLANE_COUNTS[0],
            "note": "peak RSS of the whole srrun process (imports, ONNX Runtime, one plane in flight)"}


if __name__ == "__main__":
    print(json.dumps(run(Path("bench/results")), indent=2))
