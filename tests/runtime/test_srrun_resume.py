"""A real ``srrun`` process is SIGKILLed half-way; rerunning finishes without recomputing done planes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from srscope.runtime.cli import main
from srscope.runtime.io import Image, ImageIOError, read_image, write_image
from srscope.runtime.progressrecord import RECORD_DIR

SRRUN = Path(sys.executable).with_name("srrun")
N_PLANES = 24


def _srrun(*args, log: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SRRUN), *map(str, args), "--quiet", "--log-json", str(log)],
                          check=False, capture_output=True, text=True, timeout=300)


def _kill_after(args: list, record: Path, at_least: int) -> int:
    """Start srrun, SIGKILL it once ``at_least`` planes are recorded; returns planes recorded."""
    proc = subprocess.Popen([str(SRRUN), *map(str, args), "--quiet"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if record.is_dir() and len(list(record.glob("plane-*.json"))) >= at_least:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, f"srrun ended on its own before the kill: {proc.stderr.read()}"
    return len(list(record.glob("plane-*.json")))


@pytest.mark.parametrize("suffix", [".ome.zarr", pytest.param(".ome.tif", marks=pytest.mark.slow)])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path, model_x2: Path, suffix: str) -> None:
    data = np.random.default_rng(5).integers(100, 3000, (N_PLANES, 48, 48)).astype(np.uint16)
    src = write_image(tmp_path / "in.ome.zarr", Image(data, "tyx", (0.325, 0.325), time_interval_s=1.0))

    reference = tmp_path / f"reference{suffix}"
    assert main([str(model_x2), str(src), str(reference), "--quiet"]) == 0  # uninterrupted, in-process

    out = tmp_path / f"out{suffix}"
    store = out if suffix == ".ome.zarr" else tmp_path / f".{out.name}.srrun-partial.zarr"
    done = _kill_after([model_x2, src, out], store / RECORD_DIR, at_least=3)
    assert 3 <= done < N_PLANES

    # the killed output is not mistaken for a finished one
    if suffix == ".ome.zarr":
        with pytest.raises(ImageIOError, match="incomplete"):
            read_image(out)
    else:
        assert not out.exists()
    chunk_files = sorted((store / "0" / "c").rglob("*"))
    finished_mtimes = {p: p.stat().st_mtime_ns for p in chunk_files if p.is_file()}

    rerun = _srrun(model_x2, src, out, log=tmp_path / "rerun.json")
    assert rerun.returncode == 0, rerun.stderr
    log = json.loads((tmp_path / "rerun.json").read_text())
    assert log["planes_skipped"] == done
    assert log["planes_computed"] == N_PLANES - done

    result, expected = read_image(out), read_image(reference)
    np.testing.assert_array_equal(np.asarray(result.data), np.asarray(expected.data))
    assert result.pixel_size_um == expected.pixel_size_um
    if suffix == ".ome.zarr":
        assert not (out / RECORD_DIR).exists()
        untouched = [p for p, t in finished_mtimes.items() if p.exists() and p.stat().st_mtime_ns == t]
        assert len(untouched) >= done  # the recorded planes' chunks were not rewritten
    else:
        assert not store.exists()


def test_rerun_with_a_different_model_refuses_to_mix_results(tmp_path: Path, model_x2: Path) -> None:
    from srscope.runtime.synthetic import build_test_model

    data = np.random.default_rng(6).integers(100, 3000, (N_PLANES, 48, 48)).astype(np.uint16)
    src = write_image(tmp_path / "in.ome.zarr", Image(data, "tyx", (0.325, 0.325)))
    out = tmp_path / "out.ome.zarr"
    _kill_after([model_x2, src, out], out / RECORD_DIR, at_least=2)

    other = build_test_model(tmp_path / "other.onnx", scale=2, seed=9)
    proc = _srrun(other, src, out, log=tmp_path / "log.json")
    assert proc.returncode == 2
    assert "different input/models/options" in proc.stderr and "--overwrite" in proc.stderr
    assert main([str(other), str(src), str(out), "--overwrite", "--quiet", "--log-json", str(tmp_path / "log.json")]) == 0
    assert json.loads((tmp_path / "log.json").read_text())["planes_computed"] == N_PLANES


def test_tiff_job_killed_during_conversion_only_redoes_the_conversion(tmp_path: Path, model_x2: Path) -> None:
    data = np.random.default_rng(8).integers(100, 3000, (4, 32, 32)).astype(np.uint16)
    src = write_image(tmp_path / "in.ome.zarr", Image(data, "zyx", (0.325, 0.325)))
    # The state a kill during the TIFF conversion leaves: a finished work store plus a temporary TIFF.
    work = tmp_path / ".out.ome.tif.srrun-partial.zarr"
    assert main([str(model_x2), str(src), str(work), "--quiet"]) == 0
    expected = np.asarray(read_image(work).data)
    debris = tmp_path / ".out.ome.tif.0badc0de.partial"
    debris.write_bytes(b"half a tiff")

    log = tmp_path / "log.json"
    assert main([str(model_x2), str(src), str(tmp_path / "out.ome.tif"), "--quiet", "--log-json", str(log)]) == 0
    assert json.loads(log.read_text())["planes_computed"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.zarr", "log.json", "out.ome.tif"]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.ome.tif"), expected)


def test_two_live_runs_on_one_output_refuse_to_mix(tmp_path: Path, model_x2: Path, capsys) -> None:
    from srscope.runtime.batch import plan_job
    from srscope.runtime.io import OmeZarrWriter
    from srscope.runtime.progressrecord import ProgressRecord

    data = np.random.default_rng(9).integers(100, 3000, (3, 32, 32)).astype(np.uint16)
    src = write_image(tmp_path / "in.ome.zarr", Image(data, "zyx", (0.325, 0.325)))
    out = tmp_path / "out.ome.zarr"
    plan = plan_job(src, out, [str(model_x2)])
    OmeZarrWriter.create(out, shape=plan.output_shape, dtype="float32", axes=plan.axes, job=plan.identity)
    argv = [str(model_x2), str(src), str(out), "--quiet"]
    with ProgressRecord(out).lock():  # stands in for a live srrun driving this output
        assert main(argv) == 2
    assert "another srrun is writing it" in capsys.readouterr().err
    assert main(argv) == 0  # the lock is gone (as when the other run is killed): it resumes
