"""Kill ``srrun`` at every step of creating, writing and finalising its store, then resume.

Each case forks the test process (so no interpreter start-up per case) and runs ``srrun`` in the
child with ``SRSCOPE_FAULT_AT=<step>:<n>`` (see :mod:`srscope.runtime.io.faults`): at the n-th
time the child reaches that step it ends with ``os._exit(137)``, as abruptly as a SIGKILL there,
with no cleanup. Then, every time:

* nothing unfinished looks finished: the output is absent, refused as incomplete by srscope and
  not an NGFF image to ome-zarr-models, or (``--overwrite``) still the old output, unchanged;
* rerunning the same command succeeds, and its output equals the uninterrupted run's bit for bit
  (no plane lost or torn), with no hidden debris left beside it.

The default cases cover every step; the ``slow`` variant kills at every hit of every step and
kills the resume once more before resuming again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models.v05.image import Image as NgffImage05
from srrun_helpers import _stack, _write_input
from srscope.runtime.cli import main
from srscope.runtime.io import ImageIOError, read_image
from srscope.runtime.io.faults import (
    FAULT_ENV,
    STEPS,
    ForkedRunTimeout,
    hit_counts,
    reset_faults,
    run_forked,
)

KINDS = ("zarr", "tiff", "overwrite")


def _srrun_forked(argv: list[str], fault: str | None) -> int:
    """Run ``srrun argv`` in a forked child with the fault set; its exit code (137: killed at the fault)."""
    try:
        return run_forked(lambda: main(argv), fault, timeout_s=120)
    except ForkedRunTimeout as exc:
        pytest.fail(f"srrun {exc}")


def _hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def job(tmp_path_factory, model_x2: Path) -> dict:
    """An input, the uninterrupted result for each output kind, and an older output to replace."""
    root = tmp_path_factory.mktemp("faults")
    src = _write_input(root / "in.ome.zarr", _stack((3, 32, 32), seed=4), "zyx")
    results = {}
    for suffix in (".ome.zarr", ".ome.tif"):
        ref = root / f"reference{suffix}"
        assert main([str(model_x2), str(src), str(ref), "--quiet"]) == 0
        results[suffix] = np.asarray(read_image(ref).data)
    old = root / "old.ome.zarr"  # a different job's finished output (another dtype)
    assert main([str(model_x2), str(src), str(old), "--quiet", "--dtype", "uint16", "--clip"]) == 0
    return {"src": src, "model": model_x2, "results": results, "old": old}


def _setup(job: dict, tmp_path: Path, kind: str) -> tuple[list[str], Path, np.ndarray, np.ndarray | None]:
    suffix = ".ome.tif" if kind == "tiff" else ".ome.zarr"
    out = tmp_path / f"out{suffix}"
    argv = [str(job["model"]), str(job["src"]), str(out), "--quiet"]
    old = None
    if kind == "overwrite":
        shutil.copytree(job["old"], out)
        old = np.asarray(read_image(out).data).copy()
        argv.append("--overwrite")
    return argv, out, job["results"][suffix], old


def _nothing_unfinished_looks_finished(out: Path, kind: str, old: np.ndarray | None) -> None:
    if kind == "overwrite":  # the old output is untouched until the new one is finished
        np.testing.assert_array_equal(np.asarray(read_image(out).data), old)
    elif kind == "tiff":
        assert not out.exists()  # the TIFF only ever appears by its final rename
    elif out.exists():
        with pytest.raises(ImageIOError, match="incomplete"):
            read_image(out)
        with pytest.raises(ValueError):
            NgffImage05.from_zarr(zarr.open_group(out, mode="r"))


def _resumes_to_the_uninterrupted_result(argv: list[str], out: Path, expected: np.ndarray) -> None:
    assert main(argv) == 0
    result = np.asarray(read_image(out).data)
    assert result.dtype == expected.dtype
    np.testing.assert_array_equal(result, expected)
    assert _hidden(out.parent) == []
    if out.suffix == ".zarr":
        NgffImage05.from_zarr(zarr.open_group(out, mode="r"))


def _hits(job: dict, tmp_path: Path, kind: str, monkeypatch) -> dict[str, int]:
    """How often an uninterrupted run passes each step (``SRSCOPE_FAULT_AT=*`` only counts)."""
    (tmp_path / "count").mkdir()
    argv, _, _, _ = _setup(job, tmp_path / "count", kind)
    monkeypatch.setenv(FAULT_ENV, "*")
    reset_faults()
    assert main(argv) == 0
    monkeypatch.delenv(FAULT_ENV)
    return hit_counts()


FAST_CASES = [
    ("zarr", "create.level:1"), ("zarr", "create.level:2"), ("zarr", "create.rename:1"),
    ("zarr", "write.level:1"), ("zarr", "write.level:2"), ("zarr", "write.level:5"),
    ("zarr", "record.mark:1"), ("zarr", "record.mark:3"), ("zarr", "finalize.metadata:1"),
    ("tiff", "write.level:2"), ("tiff", "finalize.metadata:1"), ("tiff", "publish:1"),
    ("overwrite", "create.rename:1"), ("overwrite", "record.mark:2"), ("overwrite", "finalize.metadata:1"),
    ("overwrite", "publish:1"),
]


@pytest.mark.parametrize(("kind", "fault"), FAST_CASES)
def test_killed_at_a_store_step_resumes_bit_exact(job: dict, tmp_path: Path, kind: str, fault: str) -> None:
    argv, out, expected, old = _setup(job, tmp_path, kind)
    assert _srrun_forked(argv, fault) == 137  # it really died at that step
    _nothing_unfinished_looks_finished(out, kind, old)
    _resumes_to_the_uninterrupted_result(argv, out, expected)


@pytest.mark.parametrize("fault", ["create.level:1", "write.level:2", "record.mark:2", "finalize.metadata:1"])
def test_a_raised_fault_fails_cleanly_and_resumes(job: dict, tmp_path: Path, monkeypatch, fault: str) -> None:
    """An exception (not a kill) at a step: error handling runs, and still nothing is lost."""
    argv, out, expected, old = _setup(job, tmp_path, "zarr")
    monkeypatch.setenv(FAULT_ENV, f"{fault}:raise")
    reset_faults()
    assert main(argv) != 0
    monkeypatch.delenv(FAULT_ENV)
    _nothing_unfinished_looks_finished(out, "zarr", old)
    _resumes_to_the_uninterrupted_result(argv, out, expected)


def test_every_step_is_covered_by_the_fast_cases() -> None:
    srrun_steps = {s for s in STEPS if not s.startswith("collection.")}
    assert {fault.split(":")[0] for _, fault in FAST_CASES} == srrun_steps


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_killed_at_every_hit_of_every_step_and_again_while_resuming(job: dict, tmp_path: Path, kind: str,
                                                                     monkeypatch) -> None:
    hits = _hits(job, tmp_path, kind, monkeypatch)
    assert set(hits) >= {"write.level", "record.mark", "finalize.metadata"}
    for step, n in sorted(hits.items()):
        for hit in range(1, n + 1):
            case = tmp_path / f"{step}-{hit}"
            case.mkdir()
            argv, out, expected, old = _setup(job, case, kind)
            assert _srrun_forked(argv, f"{step}:{hit}") == 137
            _nothing_unfinished_looks_finished(out, kind, old)
            # the resume is killed too, at its first pass of the same step (if it gets there)
            code = _srrun_forked(argv, f"{step}:1")
            assert code in (0, 137), code
            if code == 137:
                _nothing_unfinished_looks_finished(out, kind, old)
            _resumes_to_the_uninterrupted_result(argv, out, expected)
