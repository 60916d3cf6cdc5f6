"""``srrun`` reports the per-plane consistency score (issue 14): in the output's metadata, in one
warning line naming the flagged planes, and in ``--log-json``, for every way a job can run.

The shipped widefield model (its card carries a fitted degradation model) runs through real ONNX
Runtime sessions; every stored score is checked against :meth:`Enhancer.score` computed here on
the same plane, so the tests hold whatever the card's calibration. One plane is pure Poisson
noise, the clearest out-of-domain input: it must be flagged.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr
from srrun_helpers import SRRUN, _run, _write_input
from srscope.runtime import Enhancer
from srscope.runtime.card import read_card
from srscope.runtime.io import read_image
from srscope.runtime.io.faults import FAULT_ENV
from srscope.runtime.testing import structured_image

ROOT = Path(__file__).resolve().parents[2]
WIDEFIELD = ROOT / "models" / "widefield-10x0.4-to-20x0.75.onnx"
NOISE_PLANE = 1
N_PLANES = 4


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    """Four 64² planes: structured images, with pure Poisson noise as plane 1."""
    planes = [structured_image((64, 64), seed=s) for s in range(N_PLANES)]
    planes[NOISE_PLANE] = np.random.default_rng(9).poisson(400, (64, 64)).astype(np.uint16)
    return np.stack(planes)


@pytest.fixture(scope="module")
def expected(stack: np.ndarray) -> list:
    """Each plane's score, computed here with the public API on the model's own output."""
    enhancer = Enhancer.from_file(WIDEFIELD, device="cpu", intra_op_threads=2)
    return [enhancer.score(plane, enhancer.enhance(plane)) for plane in stack]


def _check(record: dict, expected: list, axis: str = "z") -> None:
    assert read_card(WIDEFIELD).degradation is not None
    assert record["planes_total"] == record["planes_checked"] == N_PLANES
    flagged = [k for k, score in enumerate(expected) if score.flagged]
    assert NOISE_PLANE in flagged
    assert record["flagged"] == flagged and record["planes_flagged"] == len(flagged)
    for k, (stored, score) in enumerate(zip(record["planes"], expected)):
        assert stored["plane"] == k and stored["index"] == {axis: k}
        assert stored["rsp"] == pytest.approx(score.rsp, rel=1e-4, abs=1e-5)
        assert stored["rse"] == pytest.approx(score.rse, rel=1e-4, abs=1e-6)
        assert stored["error_fraction"] == pytest.approx(score.error_fraction, abs=1e-5)
        assert stored["flagged"] == score.flagged and stored["reasons"] == list(score.reasons)


def _warning(err: str, expected: list) -> str:
    lines = [line for line in err.splitlines() if "consistency check" in line]
    assert len(lines) == 1, err
    line = lines[0]
    flagged = [k for k, score in enumerate(expected) if score.flagged]
    assert line.startswith(f"srrun: warning: {len(flagged)} of {N_PLANES} plane(s) flagged by the consistency check")
    for k in flagged:
        assert f"z={k} ({', '.join(expected[k].reasons)})" in line
    for k in set(range(N_PLANES)) - set(flagged):
        assert f"z={k} " not in line
    return line


def test_zarr_output_records_scores_warns_and_logs(tmp_path: Path, stack, expected, capsys) -> None:
    src = _write_input(tmp_path / "in.ome.tif", stack, "zyx")  # a TIFF input
    out, log = tmp_path / "out.ome.zarr", tmp_path / "log.json"
    code, err = _run(capsys, WIDEFIELD, src, out, "--log-json", log)
    assert code == 0, err
    line = _warning(err, expected)
    stored = zarr.open_group(out, mode="r").attrs["srscope"]["metadata"]["consistency"]
    _check(stored, expected)
    report = json.loads(log.read_text())
    assert report["consistency"] == stored and line.removeprefix("srrun: warning: ") in report["warnings"]

    # a rerun of the finished job computes nothing and says the same from the stored record
    code, err = _run(capsys, WIDEFIELD, src, out)
    assert code == 0 and "already complete" in err
    assert _warning(err, expected) == line


def test_tiff_output_carries_the_scores(tmp_path: Path, stack, expected, capsys) -> None:
    src = _write_input(tmp_path / "in.ome.zarr", stack, "zyx")  # a zarr input
    out = tmp_path / "out.ome.tif"
    code, err = _run(capsys, WIDEFIELD, src, out)
    assert code == 0, err
    _warning(err, expected)
    _check(read_image(out).metadata["consistency"], expected)


def test_resumed_run_reports_planes_scored_by_the_killed_run(tmp_path: Path, stack, expected, capsys) -> None:
    src = _write_input(tmp_path / "in.ome.zarr", stack, "zyx")
    out = tmp_path / "out.ome.zarr"
    env = {**os.environ, FAULT_ENV: "record.mark:3"}  # killed before the third plane is marked done
    killed = subprocess.run([str(SRRUN), str(WIDEFIELD), str(src), str(out), "--quiet"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == 137, killed.stderr
    code, err = _run(capsys, WIDEFIELD, src, out, "--log-json", tmp_path / "log.json")
    assert code == 0, err
    assert "2 computed, 2 already done" in err
    _warning(err, expected)
    _check(zarr.open_group(out, mode="r").attrs["srscope"]["metadata"]["consistency"], expected)


def test_dask_run_reports_the_workers_scores(tmp_path: Path, stack, expected, capsys) -> None:
    distributed = pytest.importorskip("distributed")
    src = _write_input(tmp_path / "in.ome.zarr", stack, "zyx")
    out = tmp_path / "out.ome.zarr"
    with distributed.LocalCluster(host="127.0.0.1", protocol="tcp", n_workers=2, threads_per_worker=1,
                                  processes=False, dashboard_address=None) as cluster:
        code, err = _run(capsys, WIDEFIELD, src, out, "--scheduler", cluster.scheduler_address)
    assert code == 0, err
    _warning(err, expected)
    _check(zarr.open_group(out, mode="r").attrs["srscope"]["metadata"]["consistency"], expected)


def test_batch_lines_count_flagged_planes_per_file(tmp_path: Path, stack, expected, capsys) -> None:
    clean = [k for k, score in enumerate(expected) if not score.flagged]
    inputs = [_write_input(tmp_path / "noisy.ome.zarr", stack, "zyx")]
    if clean:  # a file of in-domain planes only, when the card's calibration leaves some unflagged
        inputs.append(_write_input(tmp_path / "clean.ome.zarr", stack[clean], "zyx"))
    outdir, log = tmp_path / "results", tmp_path / "batch.json"
    code, err = _run(capsys, WIDEFIELD, *inputs, f"{outdir}/", "--log-json", log)
    assert code == 0, err
    n_flagged = sum(score.flagged for score in expected)
    assert f"noisy.ome.zarr -> {outdir / 'noisy_sr.ome.zarr'}: {N_PLANES} plane(s): {N_PLANES} computed, " \
           f"0 already done, {n_flagged} of {N_PLANES} flagged by the consistency check, in " in err
    assert f"srrun: warning: {inputs[0]}: {n_flagged} of {N_PLANES} plane(s) flagged" in err
    if clean:
        assert f"0 of {len(clean)} flagged by the consistency check" in err
    files = json.loads(log.read_text())["files"]
    _check(files[0]["consistency"], expected)
    assert json.loads(log.read_text())["totals"]["planes_flagged"] == n_flagged

    code, err = _run(capsys, WIDEFIELD, *inputs, f"{outdir}/")  # rerun: the lines say it again
    assert code == 0 and f"already complete ({N_PLANES} plane(s), {n_flagged} of {N_PLANES} flagged" in err


def test_models_without_a_degradation_model_record_no_scores(tmp_path: Path, model_x2: Path, stack, capsys) -> None:
    assert read_card(model_x2).degradation is None
    src = _write_input(tmp_path / "in.ome.zarr", stack, "zyx")
    out = tmp_path / "out.ome.zarr"
    code, err = _run(capsys, model_x2, src, out, "--log-json", tmp_path / "log.json")
    assert code == 0 and "consistency" not in err
    assert "consistency" not in zarr.open_group(out, mode="r").attrs["srscope"]["metadata"]
    assert "consistency" not in json.loads((tmp_path / "log.json").read_text())
