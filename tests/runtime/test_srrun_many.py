"""``srrun`` over many files: ``srrun MODEL INPUT... OUTDIR/`` and ``srrun MODEL --input-dir DIR OUTDIR``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from srrun_helpers import SRRUN, _stack, _write_input
from srscope.runtime.cli import main
from srscope.runtime.io import read_image
from srscope.runtime.multibatch import image_stem, is_directory_target, output_name

GOOD = ("a.ome.tif", "b.tif", "d.ome.zarr", "e.tif")  # sorted around the corrupt c_bad.tif
SHAPE = (3, 32, 32)


def _srrun(capsys, *argv) -> tuple[int, str]:
    """srrun in-process; argparse usage errors (SystemExit) come back as their exit code too."""
    try:
        code = main([str(a) for a in argv] + ["--quiet"])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(("srrun: error", "srrun: internal error"))]


def _truncated_tiff(path: Path) -> Path:
    whole = path.with_name("whole.tmp")
    tifffile.imwrite(whole, _stack((6, 64, 64)), imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "ZYX", "unit": "um"})
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    return path


def _folder(root: Path) -> Path:
    """Five inputs, TIFF and OME-Zarr, the third (in name order) a truncated TIFF."""
    folder = root / "raw"
    folder.mkdir()
    for seed, name in enumerate(GOOD):
        _write_input(folder / name, _stack(SHAPE, seed=seed), "zyx")
    _truncated_tiff(folder / "c_bad.tif")
    return folder


def _out(name: str) -> str:
    return f"{image_stem(Path(name))}_sr.ome.zarr"


def _log(path: Path) -> dict:
    return json.loads(path.read_text())


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def test_default_stops_at_the_corrupt_file_after_finishing_those_before(tmp_path: Path, model_x2: Path,
                                                                       capsys) -> None:
    folder, out, log = _folder(tmp_path), tmp_path / "out", tmp_path / "log.json"
    code, err = _srrun(capsys, model_x2, "--input-dir", folder, out, "--log-json", log)
    assert code == 2, err
    errors = _errors(err)
    assert len(errors) == 1 and "c_bad.tif" in errors[0] and "truncated" in errors[0], err
    assert "[3/5]" in errors[0] and "--keep-going" in err
    for name in GOOD[:2]:
        assert read_image(out / _out(name)).shape == (3, 64, 64)
    assert sorted(p.name for p in out.iterdir()) == [_out("a.ome.tif"), _out("b.tif")]  # d, e not started
    records = _log(log)["files"]
    assert [r["status"] for r in records] == ["computed", "computed", "failed", "not_started", "not_started"]
    assert not _log(log)["ok"] and _log(log)["totals"]["planes_computed"] == 6


def test_keep_going_finishes_the_others_and_a_rerun_computes_nothing(tmp_path: Path, model_x2: Path,
                                                                    capsys) -> None:
    folder, out, log = _folder(tmp_path), tmp_path / "out", tmp_path / "log.json"
    code, err = _srrun(capsys, model_x2, "--input-dir", folder, out, "--keep-going", "--log-json", log)
    assert code == 2, err
    errors = _errors(err)
    assert len(errors) == 1 and "c_bad.tif" in errors[0], err
    assert sum(line.startswith("srrun: [") for line in err.splitlines()) == 4  # one summary line per good file
    assert "4 computed, 0 already complete, 1 failed" in err

    batch = _log(log)
    records = {Path(r["input"]).name: r for r in batch["files"]}
    assert len(batch["files"]) == 5 and batch["ok"] is False
    assert records["c_bad.tif"]["status"] == "failed" and "truncated" in records["c_bad.tif"]["error"]
    assert batch["totals"] == pytest.approx({**batch["totals"], "files": 5, "computed": 4, "failed": 1,
                                             "already_complete": 0, "planes_computed": 12})
    for name in GOOD:
        record = records[name]
        assert record["status"] == "computed" and record["planes_computed"] == 3 and record["seconds"] >= 0
        assert record["output"] == str(out / _out(name))
        reference = tmp_path / "ref" / _out(name)
        reference.parent.mkdir(exist_ok=True)
        assert main([str(model_x2), str(folder / name), str(reference), "--quiet"]) == 0  # single-file srrun
        result = read_image(out / _out(name))
        assert result.shape == (3, 64, 64)
        assert result.pixel_size_um == pytest.approx((0.1625, 0.1625))
        np.testing.assert_array_equal(np.asarray(result.data), np.asarray(read_image(reference).data))
    capsys.readouterr()

    before = _mtimes(out)
    code, err = _srrun(capsys, model_x2, "--input-dir", folder, out, "--keep-going", "--log-json", log)
    assert code == 2, err
    assert len(_errors(err)) == 1
    assert err.count("already complete (3 plane(s))") == 4
    again = _log(log)
    assert [r["status"] for r in again["files"]] == ["already_complete"] * 2 + ["failed"] + ["already_complete"] * 2
    assert again["totals"]["planes_computed"] == 0
    assert _mtimes(out) == before  # nothing rewritten


def test_a_killed_batch_resumes_the_unfinished_file(tmp_path: Path, model_x2: Path, capsys) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    for seed, name in enumerate(("p.ome.zarr", "q.ome.zarr")):
        _write_input(folder / name, _stack((4, 32, 32), seed=seed), "tyx")
    out, gate = tmp_path / "out", tmp_path / "gate"
    env = {**os.environ, "SRRUN_TEST_PAUSE": f"2:{gate}"}  # pause after p's 2nd plane (see batch.PAUSE_ENV)
    proc = subprocess.Popen([str(SRRUN), str(model_x2), "--input-dir", str(folder), str(out), "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not gate.with_name("gate.paused").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()

    log = tmp_path / "log.json"
    code, err = _srrun(capsys, model_x2, "--input-dir", folder, out, "--log-json", log)
    assert code == 0, err
    p, q = _log(log)["files"]
    assert (p["status"], p["planes_skipped"], p["planes_computed"]) == ("computed", 2, 2)
    assert (q["status"], q["planes_skipped"], q["planes_computed"]) == ("computed", 0, 4)
    reference = tmp_path / "ref.ome.zarr"
    assert main([str(model_x2), str(folder / "p.ome.zarr"), str(reference), "--quiet"]) == 0
    np.testing.assert_array_equal(np.asarray(read_image(out / "p_sr.ome.zarr").data),
                                  np.asarray(read_image(reference).data))


def test_pattern_selects_a_subset_and_output_format_keeps_the_input_format(tmp_path: Path, model_x2: Path,
                                                                           capsys) -> None:
    folder = _folder(tmp_path)
    (folder / "notes.txt").write_text("not an image")
    _write_input(folder / ".hidden.tif", _stack((32, 32)), "yx")
    out = tmp_path / "out"
    code, err = _srrun(capsys, model_x2, "--input-dir", folder, "--pattern", "*.ome.*", out,
                       "--output-format", "same")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a_sr.ome.tif", "d_sr.ome.zarr"]
    assert read_image(out / "a_sr.ome.tif").shape == (3, 64, 64)

    code, err = _srrun(capsys, model_x2, "--input-dir", folder, "--pattern", "[be]*", tmp_path / "tiffs",
                       "--output-format", "tiff")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "tiffs").iterdir()) == ["b_sr.ome.tif", "e_sr.ome.tif"]

    code, err = _srrun(capsys, model_x2, "--input-dir", folder, "--pattern", "*.nd2", tmp_path / "none")
    assert code == 2 and "no entry matches '*.nd2'" in _errors(err)[0]
    assert not (tmp_path / "none").exists()


def test_explicit_inputs_into_an_outdir_and_a_rerun_into_the_input_folder(tmp_path: Path, model_x2: Path,
                                                                         capsys) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    inputs = [_write_input(folder / f"fov{i}.tif", _stack((2, 32, 32), seed=i), "zyx") for i in (1, 2)]
    code, err = _srrun(capsys, model_x2, *inputs, str(tmp_path / "new") + "/")  # created: ends with /
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["fov1_sr.ome.zarr", "fov2_sr.ome.zarr"]

    # outputs beside the inputs: a rerun must neither take them as inputs nor clash with them
    assert _srrun(capsys, model_x2, "--input-dir", folder, folder)[0] == 0
    code, err = _srrun(capsys, model_x2, "--input-dir", folder, folder, "--log-json", tmp_path / "log.json")
    assert code == 0, err
    assert "this batch's own outputs" in err
    assert [r["status"] for r in _log(tmp_path / "log.json")["files"]] == ["already_complete"] * 2


@pytest.mark.parametrize("case, message", [
    ("same_stem", "would both write"),
    ("twice", "given twice"),
    ("same_name_elsewhere", "would both write"),
])
def test_two_inputs_with_one_output_name_are_refused_up_front(tmp_path: Path, model_x2: Path, capsys,
                                                              case: str, message: str) -> None:
    a = _write_input(tmp_path / "a.tif", _stack((32, 32)), "yx")
    (tmp_path / "sub").mkdir()
    other = {"same_stem": lambda: _write_input(tmp_path / "a.ome.zarr", _stack((32, 32)), "yx"),
             "twice": lambda: a,
             "same_name_elsewhere": lambda: _write_input(tmp_path / "sub" / "a.tif", _stack((32, 32)), "yx")}[case]()
    out = tmp_path / "out"
    code, err = _srrun(capsys, model_x2, a, other, str(out) + "/", "--keep-going")
    assert code == 2
    errors = _errors(err)
    assert len(errors) == 1 == len(err.strip().splitlines()) and message in errors[0], err
    assert not out.exists()


@pytest.mark.parametrize("bad", ["nan", "one_d", "garbage", "missing"])
def test_keep_going_skips_each_kind_of_bad_file(tmp_path: Path, model_x2: Path, capsys, bad: str) -> None:
    good = _write_input(tmp_path / "good.ome.zarr", _stack((2, 32, 32)), "zyx")
    broken = tmp_path / "broken.tif"
    if bad == "nan":
        data = _stack((2, 32, 32)).astype(np.float32)
        data[1, 4, 4] = np.nan
        _write_input(broken, data, "zyx")
    elif bad == "one_d":
        tifffile.imwrite(broken, np.zeros(16, np.uint16))
    elif bad == "garbage":
        broken.write_bytes(b"II*\x00garbage")
    out = tmp_path / "out"
    code, err = _srrun(capsys, model_x2, broken, good, f"{out}/", "--keep-going", "--log-json", tmp_path / "log.json")
    assert code == 2, err
    assert len(_errors(err)) == 1 and "broken.tif" in _errors(err)[0], err
    assert read_image(out / "good_sr.ome.zarr").shape == (2, 64, 64)
    assert [r["status"] for r in _log(tmp_path / "log.json")["files"]] == ["failed", "computed"]


def test_the_last_argument_is_a_directory_only_when_unambiguous(tmp_path: Path, model_x2: Path, capsys,
                                                                monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("existing").mkdir()
    Path("store.zarr").mkdir()
    assert is_directory_target("existing") and is_directory_target("new/") and is_directory_target("existing/")
    assert not is_directory_target("new") and not is_directory_target("out.ome.tif")
    assert not is_directory_target("out.ome.zarr/") and not is_directory_target("store.zarr")  # stores
    assert output_name(Path("x/cells.OME.TIF"), "zarr") == "cells_sr.ome.zarr"
    assert output_name(Path("plate.zarr"), "same") == "plate_sr.ome.zarr"

    src = _write_input(tmp_path / "in.ome.tif", _stack((2, 32, 32)), "zyx")
    second = _write_input(tmp_path / "in2.tif", _stack((2, 32, 32)), "zyx")
    code, err = _srrun(capsys, model_x2, src, "single.ome.zarr/")  # shell completion's slash: still one store
    assert code == 0 and err.startswith("srrun: wrote single.ome.zarr"), err
    assert read_image("single.ome.zarr").shape == (2, 64, 64)
    code, err = _srrun(capsys, model_x2, src, "existing")  # one input into an existing directory
    assert code == 0 and "existing/in_sr.ome.zarr" in err, err
    for target, why in [("both.zarr", "one output image"), ("nowhere", "end it with /")]:
        code, err = _srrun(capsys, model_x2, src, second, target)
        assert code == 2 and why in _errors(err)[0] and len(err.strip().splitlines()) == 1, err
    code, err = _srrun(capsys, model_x2, src, "plain")
    assert code == 2 and "end it with / to write into a directory" in _errors(err)[0]
    code, err = _srrun(capsys, model_x2, src, "x.ome.zarr", "--keep-going")
    assert code == 2 and "for batches" in _errors(err)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "in.ome.tif", "in2.tif", "single.ome.zarr",
                                                          "store.zarr"]


def test_single_file_form_is_unchanged(tmp_path: Path, model_x2: Path, capsys) -> None:
    src = _write_input(tmp_path / "in.ome.zarr", _stack((2, 32, 32)), "zyx")
    out, log = tmp_path / "out.ome.tif", tmp_path / "log.json"
    code, err = _srrun(capsys, model_x2, src, out, "--log-json", log)
    assert code == 0
    assert re.fullmatch(rf"srrun: wrote {re.escape(str(out))} \(2 plane\(s\): 2 computed, 0 already done\) "
                        r"in \d+\.\d s", err.strip()), err
    assert set(_log(log)) == {"ok", "output", "planes_total", "planes_computed", "planes_skipped",
                              "clipped_pixels", "seconds", "warnings", "already_complete"}
    code, err = _srrun(capsys, src, tmp_path / "two.ome.zarr", "--model", model_x2)  # INPUT OUTPUT --model
    assert code == 0, err
    code, err = _srrun(capsys, model_x2, src, out)
    assert code == 0 and "already complete" in err


def test_a_later_bad_file_is_reported_only_when_its_turn_comes(tmp_path: Path, model_x2: Path, capsys) -> None:
    folder = _folder(tmp_path)
    _truncated_tiff(folder / "f_bad.tif")  # found bad while planning, but never reached
    code, err = _srrun(capsys, model_x2, "--input-dir", folder, tmp_path / "out", "--log-json", tmp_path / "log.json")
    assert code == 2 and len(_errors(err)) == 1 and "c_bad.tif" in _errors(err)[0], err
    statuses = [r["status"] for r in _log(tmp_path / "log.json")["files"]]
    assert statuses == ["computed", "computed", "failed"] + ["not_started"] * 3


def test_a_batch_shares_one_cluster_and_matches_the_local_run(tmp_path: Path, model_x2: Path, capsys) -> None:
    distributed = pytest.importorskip("distributed")
    folder = tmp_path / "raw"
    folder.mkdir()
    for seed, name in enumerate(("p.ome.zarr", "q.tif")):
        _write_input(folder / name, _stack((2, 32, 32), seed=seed), "zyx")
    assert _srrun(capsys, model_x2, "--input-dir", folder, tmp_path / "local")[0] == 0
    with distributed.LocalCluster(host="127.0.0.1", protocol="tcp", n_workers=1, threads_per_worker=1,
                                  processes=False, dashboard_address=None) as cluster:
        code, err = _srrun(capsys, model_x2, "--input-dir", folder, tmp_path / "cluster",
                           "--scheduler", cluster.scheduler_address)
    assert code == 0, err
    for name in ("p_sr.ome.zarr", "q_sr.ome.zarr"):
        np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "cluster" / name).data),
                                      np.asarray(read_image(tmp_path / "local" / name).data))
    code, err = _srrun(capsys, model_x2, "--input-dir", folder, tmp_path / "cluster", "--scheduler", "tcp://127.0.0.1:9")
    assert code == 0 and err.count("already complete (2 plane(s))") == 2  # finished files need no cluster
