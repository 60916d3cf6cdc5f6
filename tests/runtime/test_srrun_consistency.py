"""``srrun`` reports the per-plane consistency score (issue 14): in the output's metadata, in one
warning line naming the flagged planes, and in ``--log-json``, for every way a job can run.

The shipped widefield model (its card carries a fitted degradation model) runs through real ONNX
Runtime sessions; every stored score is checked against :meth:`Enhancer.score` computed here on
the same plane. Planes 0 and 2 are in-domain widefield fields from the simulator with the card's
domain randomisation (seeds 620000+, used by no calibration, tuning or benchmark), which must stay
unflagged; plane 1 is pure Poisson noise, the clearest out-of-domain input, which must be flagged;
plane 3 is a synthetic pattern without optics (the test asserts only that its score is reported).
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
from srscope.runtime.synthetic import structured_image

ROOT = Path(__file__).resolve().parents[2]
WIDEFIELD = ROOT / "models" / "widefield-10x0.4-to-20x0.75.onnx"
NOISE_PLANE = 1
N_PLANES = 4


IN_DOMAIN = (0, 2)


def _field(structure: str, seed: int) -> np.ndarray:
    """One 64² domain-randomised widefield field as the card's training set drew them (counts)."""
    randomise = pytest.importorskip("srscope.training.data.randomise")
    simulate = pytest.importorskip("srscope.training.data.simulate")
    draw = randomise.draw_field("widefield", np.random.default_rng([seed, 1]), randomise.defaults_for("widefield"))
    pair = simulate.simulate_pair("widefield", structure, seed=seed, hr_shape=(128, 128),
                                  misregister=draw.misregister, **draw.overrides)
    return np.asarray(pair.lr, dtype=np.uint16)


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    """Four 64² planes: in-domain fields, pure Poisson noise (plane 1), a synthetic pattern."""
    return np.stack([_field("filaments", 620_000),
                     np.random.default_rng(9).poisson(400, (64, 64)).astype(np.uint16),
                     _field("nuclei", 620_001),
                     structured_image((64, 64), seed=3)])


@pytest.fixture(scope="module")
def expected(stack: np.ndarray) -> list:
    """Each plane's score, computed here with the public API on the model's own output."""
    enhancer = Enhancer.from_file(WIDEFIELD, device="cpu", intra_op_threads=2)
    return [enhancer.score(plane, enhancer.enhance(plane)) for plane in stack]


def _check(record: dict, expected: list, axis: str = "z") -> None:
    assert read_card(WIDEFIELD).degradation is not None
    assert record["planes_total"] == record["planes_checked"] == N_PLANES
    flagged = [k for k, score in enumerate(expected) if score.flagged]
    assert NOISE_PLANE in flagged and not set(IN_DOMAIN) & set(flagged)
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
    clean = list(IN_DOMAIN)
    inputs = [_write_input(tmp_path / "noisy.ome.zarr", stack, "zyx"),
              _write_input(tmp_path / "clean.ome.zarr", stack[clean], "zyx")]
    outdir, log = tmp_path / "results", tmp_path / "batch.json"
    code, err = _run(capsys, WIDEFIELD, *inputs, f"{outdir}/", "--log-json", log)
    assert code == 0, err
    n_flagged = sum(score.flagged for score in expected)
    assert f"noisy.ome.zarr -> {outdir / 'noisy_sr.ome.zarr'}: {N_PLANES} plane(s): {N_PLANES} computed, " \
           f"0 already done, {n_flagged} of {N_PLANES} flagged by the consistency check, in " in err
    assert f"srrun: warning: {inputs[0]}: {n_flagged} of {N_PLANES} plane(s) flagged" in err
    assert f"{len(clean)} plane(s): {len(clean)} computed, 0 already done, 0 of {len(clean)} flagged by the " \
           "consistency check, in " in err
    assert f"{inputs[1]}: 0 of" not in err  # no warning line for a file with nothing flagged
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


def _readers_geometry(path: Path) -> list:
    """The coordinate transformations of every level, as ome-zarr-py's Reader sees them."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(str(path)))())
    return nodes[0].metadata["coordinateTransformations"]


def test_error_map_is_a_second_image_on_the_sr_grid(tmp_path: Path, stack, capsys) -> None:
    from ome_zarr_models.v05.image import Image as NgffImage05
    from srscope.runtime.consistency import error_map

    data = stack.reshape(2, 2, 64, 64)  # c z y x: channel 0 by the model, channel 1 passed through
    src = _write_input(tmp_path / "in.ome.zarr", data, "czyx", channel_names=("dapi", "bf"), z_step_um=0.5,
                       translation={"y": 12.0, "x": -4.0})
    out = tmp_path / "out.ome.zarr"
    code, err = _run(capsys, src, out, "--model", f"dapi={WIDEFIELD}", "--passthrough-unmapped", "--error-map")
    assert code == 0, err
    root = zarr.open_group(out, mode="r")
    NgffImage05.from_zarr(root)  # the SR image still validates with the map inside it
    NgffImage05.from_zarr(root["error_map"])
    assert root.attrs["srscope"]["metadata"]["error_map"]["path"] == "error_map"
    sr_geometry = _readers_geometry(out)
    assert _readers_geometry(out / "error_map") == sr_geometry  # same scale and translation, every level
    assert sr_geometry[0][0]["scale"] == pytest.approx([1.0, 0.5, 0.1625, 0.1625])
    assert sr_geometry[0][1]["translation"] == pytest.approx([0.0, 0.0, 12.0 - 0.08125, -4.0 - 0.08125])

    degradation = read_card(WIDEFIELD).degradation
    sr, emap = root["0"][...], root["error_map/0"][...]
    assert emap.shape == sr.shape and emap.dtype == np.float32
    for z in range(2):  # the map of each plane is consistency.error_map of its input and stored output
        np.testing.assert_allclose(emap[0, z], error_map(data[0, z], sr[0, z], degradation), rtol=1e-5, atol=1e-7)
    assert np.isnan(emap[1]).all()  # the passed-through channel is not checked
    np.testing.assert_allclose(root["error_map/1"][0, 0], emap[0, 0].reshape(64, 2, 64, 2).mean(axis=(1, 3)),
                               rtol=1e-5)
    labels = [c["label"] for c in root["error_map"].attrs["ome"]["omero"]["channels"]]
    assert labels == ["dapi error", "bf error"]

    napari_ome_zarr = pytest.importorskip("napari_ome_zarr")
    layers = {str(p): napari_ome_zarr.napari_get_reader(str(p))(str(p)) for p in (out, out / "error_map")}
    sr_layer, map_layer = layers[str(out)][0][1], layers[str(out / "error_map")][0][1]
    assert map_layer["scale"] == sr_layer["scale"] and map_layer["translate"] == sr_layer["translate"]


def test_error_map_of_a_killed_run_resumes(tmp_path: Path, stack, capsys) -> None:
    from srscope.runtime.consistency import error_map

    src = _write_input(tmp_path / "in.ome.zarr", stack, "zyx")
    out = tmp_path / "out.ome.zarr"
    env = {**os.environ, FAULT_ENV: "record.mark:3"}
    killed = subprocess.run([str(SRRUN), str(WIDEFIELD), str(src), str(out), "--quiet", "--error-map"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == 137, killed.stderr
    with pytest.raises(Exception, match="incomplete"):  # neither image reads as finished
        read_image(out)
    assert zarr.open_group(out / "error_map", mode="r").attrs["srscope"]["status"] == "running"
    code, err = _run(capsys, WIDEFIELD, src, out, "--error-map")
    assert code == 0 and "2 computed, 2 already done" in err, err
    root = zarr.open_group(out, mode="r")
    assert root["error_map"].attrs["srscope"]["status"] == "complete"
    degradation = read_card(WIDEFIELD).degradation
    for k in range(N_PLANES):
        np.testing.assert_allclose(root["error_map/0"][k], error_map(stack[k], root["0"][k], degradation),
                                   rtol=1e-5, atol=1e-7)
    # the same job without --error-map is another job: its output is not taken for this one's
    code, err = _run(capsys, WIDEFIELD, src, out)
    assert code == 2 and "already exists" in err


def test_error_map_needs_a_zarr_output_and_a_degradation_model(tmp_path: Path, model_x2: Path, stack,
                                                               capsys) -> None:
    src = _write_input(tmp_path / "in.ome.zarr", stack, "zyx")
    code, err = _run(capsys, WIDEFIELD, src, tmp_path / "out.ome.tif", "--error-map")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "OME-Zarr" in err
    code, err = _run(capsys, model_x2, src, tmp_path / "out.ome.zarr", "--error-map")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "degradation model" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.zarr"]
