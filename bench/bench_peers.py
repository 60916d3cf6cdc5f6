"""srscope beside its peers, in one run, on one 1024² frame (to 2048²), on this machine: ratios.

Rows (all on the same image, the same cores, one after another in one process or its children):

* ``srscope_fp32``: the shipped widefield model through the Enhancer at its default (``tile="auto"``);
* ``srscope_tiled_512``: the same at the old fixed 512 tiles (9 overlapping, blended tiles);
* ``srscope_int8``: the int8 model, the shipped file if one passed the export gate, else the
  gate-failing candidate (``quantise.QuantSettings()``, calibrated on 3 training-recipe fields)
  labelled as such: speed only;
* ``bioimageio_core_whole`` / ``bioimageio_core_blocks_256``: ``bioimageio.core.predict`` with a
  prediction pipeline created once (model loading is not timed) on the srscope-bmz package of the
  same model (:func:`srscope.runtime.bmz.export_bmz`), whole image and 256² input blocks;
* ``careamics_tiled``: CAREamics 0.3.5 ``predict`` (256² tiles, 48 px overlap, batch 32) of a CARE
  U-Net of the paper's depth (4 levels, 32 first-layer filters) with practically random weights
  (one training step on fake data: speed only) on the same frame bilinearly resampled to the
  2048² HR grid, as CARE works; run in the peer venv (``bash bench/peers/setup_care_env.sh``),
  skipped with a reason when that venv is missing.

``ratio_vs_srscope_fp32`` is (row's seconds) / (srscope fp32 seconds): above 1 means slower than
srscope. srscope rows are medians of interleaved repeats; the peers' of their own repeats.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from srscope.runtime import Enhancer, read_card
from srscope.runtime.providers import usable_cores
from srscope.runtime.synthetic import structured_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_profile

REPO = Path(__file__).resolve().parent.parent
WIDEFIELD = REPO / "models" / "widefield-10x0.4-to-20x0.75.onnx"
CARE_PY = REPO / "bench" / "peers" / ".venv-care" / "bin" / "python"
REPEATS = 3
SIZE = 1024


def _median_s(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def srscope_rows(image: np.ndarray, work: Path) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    enhancers = {"srscope_fp32": Enhancer.from_file(WIDEFIELD, device="cpu"),
                 "srscope_tiled_512": Enhancer.from_file(WIDEFIELD, device="cpu", tile=512)}
    path, origin = speed_profile.int8_for_speed(WIDEFIELD, work)
    if path is not None:
        enhancers["srscope_int8"] = Enhancer.from_file(path, device="cpu", tile=512)
    else:
        rows["srscope_int8"] = {"skipped": origin}
    for e in enhancers.values():
        e.enhance(image)
    samples: dict[str, list[float]] = {k: [] for k in enhancers}
    for _ in range(REPEATS):
        for key, e in enhancers.items():
            t0 = time.perf_counter()
            e.enhance(image)
            samples[key].append(time.perf_counter() - t0)
    for key, e in enhancers.items():
        plan = e.plan(image.shape)
        rows[key] = {"seconds": round(statistics.median(samples[key]), 3), "tiles": plan.count,
                     "tile_shape": list(plan.tile_shape), "computed_fraction": round(plan.computed_fraction, 3)}
    if "srscope_int8" in enhancers:
        rows["srscope_int8"]["model"] = origin
    return rows


def bioimageio_rows(image: np.ndarray, work: Path) -> dict[str, Any]:
    try:
        from bioimageio.core import create_prediction_pipeline, predict
        from bioimageio.spec import load_description
        from srscope.runtime.bmz import export_bmz
    except ImportError as exc:
        return {"bioimageio_core": {"skipped": f"bioimageio.core not installed: {exc}"}}
    package = export_bmz(WIDEFIELD, work / "srscope-bmz.zip")
    descr = load_description(package, perform_io_checks=False)
    pipeline = create_prediction_pipeline(descr)
    x = image[None, None]
    rows = {}
    for key, blocks in (("bioimageio_core_whole", None), ("bioimageio_core_blocks_256", {"input": {"y": 256, "x": 256}})):
        kwargs = {} if blocks is None else {"input_block_shape": blocks}
        seconds = _median_s(lambda kw=kwargs: predict(model=pipeline, inputs=x, **kw), max(1, REPEATS - 1))
        rows[key] = {"seconds": round(seconds, 3), "package": "srscope-bmz (runtime/src/srscope/runtime/bmz.py)",
                     "blocks": blocks}
    return rows


def careamics_rows(image: np.ndarray, work: Path) -> dict[str, Any]:
    if not CARE_PY.is_file():
        return {"careamics_tiled": {"skipped": f"{CARE_PY} missing: run bash bench/peers/setup_care_env.sh"}}
    from scipy import ndimage

    peers = REPO / "bench" / "peers"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    threads = str(usable_cores())

    def call(*args: str) -> dict[str, Any]:
        done = subprocess.run([str(CARE_PY), *args], capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} {args[1] if len(args) > 1 else ''} failed: "
                               f"{done.stderr.strip().splitlines()[-1:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    t0 = time.perf_counter()
    call(str(peers / "fake_dataset.py"), str(work / "fake.zarr"), str(work / "fake_lr.npz"), str(work / "fake_hr.npz"),
         "--train", "8", "--val", "2", "--test", "1", "--patch", "64")
    call(str(peers / "care_peer.py"), "train", str(work / "fake.zarr"), str(work / "care"), "--minutes", "1",
         "--depth", "4", "--filters", "32", "--patch", "64", "--batch-size", "4", "--steps-per-epoch", "1",
         "--max-epochs", "1", "--threads", threads)
    setup_s = time.perf_counter() - t0
    card = read_card(WIDEFIELD)
    lr = (image.astype(np.float32) - np.percentile(image, 1)) / (np.percentile(image, 99.8) - np.percentile(image, 1))
    hr_grid = ndimage.zoom(lr, card.integer_scale, order=1).astype(np.float32)
    np.savez(work / "care_in.npz", **{f"frame{i}": hr_grid for i in range(REPEATS - 1)})
    report = call(str(peers / "care_peer.py"), "predict", str(work / "care"), str(work / "care_in.npz"),
                  str(work / "care_out.npz"), "--threads", threads, "--batch-size", "32", "--tile", "256")
    seconds = [v["seconds"] for v in report["images"].values()]
    first = next(iter(report["images"].values()))
    return {"careamics_tiled": {
        "seconds": round(statistics.median(seconds), 3), "per_frame_s": seconds, "input": list(hr_grid.shape),
        "tile": first["tile"], "overlap": first["overlap"], "batch_size": report.get("batch_size"),
        "depth": report.get("depth"), "filters": 32, "weights": "one training step on fake data (speed only)",
        "threads": int(threads), "model_load_s": report.get("model_load_s"), "setup_s": round(setup_s, 1),
        "versions": report.get("versions")}}


def run(out_dir: Path) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    image = structured_image((SIZE, SIZE), seed=0)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="srscope-peers-") as tmp:
        work = Path(tmp)
        rows.update(srscope_rows(image, work))
        for name, fn in (("bioimageio", bioimageio_rows), ("careamics", careamics_rows)):
            try:
                rows.update(fn(image, work))
            except Exception as exc:  # noqa: BLE001 - a peer that fails is reported beside the others
                rows[name] = {"skipped": f"{type(exc).__name__}: {str(exc)[:300]}"}
    base = rows["srscope_fp32"]["seconds"]
    for row in rows.values():
        if "seconds" in row:
            row["ratio_vs_srscope_fp32"] = round(row["seconds"] / base, 2)
    return {"image": [SIZE, SIZE], "output": [2 * SIZE, 2 * SIZE], "model": WIDEFIELD.name, "cores": usable_cores(),
            "repeats": REPEATS, "rows": rows,
            "note": "ratio_vs_srscope_fp32 = seconds / srscope fp32 seconds (>1: slower than srscope)"}


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "bench" / "results"
    result = run(out)
    (out / "bench_peers.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
