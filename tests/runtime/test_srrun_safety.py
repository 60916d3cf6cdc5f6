"""``srrun`` must never destroy data it was not asked to replace, and must say clearly what went wrong.

Each test here is the regression test of one defect: nested input/output, ``--overwrite`` deleting the
old output before the new one exists, concurrent jobs on one output, non-atomic store creation,
debris after a finished job, OS errors and unusable inputs reported as tracebacks, unchecked card
fields, lost NGFF geometry and display settings, and ``--threads``.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import tifffile
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.v05.image import Image as NgffImage05
from srrun_helpers import SRRUN, _run, _stack, _write_input
from srscope.runtime import Enhancer
from srscope.runtime.card import CARD_KEY, ModelCard, ModelCardError, read_card
from srscope.runtime.cli import main
from srscope.runtime.io import Image, ImageIOError, read_image, write_image
from srscope.runtime.io.pyramid import level_shapes
from srscope.runtime.synthetic import build_test_model


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("srrun: error: "), err
    return lines[0]


def _tree(root: Path) -> dict[str, int]:
    """Every file below ``root`` with its mtime: what "nothing was touched" compares."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def _hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# 1 ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["input_inside_output", "output_inside_input"])
def test_nested_input_and_output_are_refused_before_anything_is_touched(tmp_path: Path, model_x2: Path,
                                                                        capsys, layout: str) -> None:
    outer = tmp_path / "outer.zarr"
    if layout == "input_inside_output":  # srrun M outer.zarr/img.ome.zarr outer.zarr --overwrite
        zarr.open_group(outer, mode="w", zarr_format=3)
        src = _write_input(outer / "img.ome.zarr", _stack((2, 32, 32)), "zyx")
        out = outer
    else:
        src = _write_input(outer, _stack((2, 32, 32)), "zyx")
        out = outer / "sr.ome.zarr"
    before = _tree(tmp_path)
    code, err = _run(capsys, model_x2, src, out, "--overwrite")
    assert code == 2
    assert "inside" in _one_error_line(err)
    assert _tree(tmp_path) == before


# 2 ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".ome.zarr", ".ome.tif"])
@pytest.mark.parametrize("failure", ["nan_plane", "unreachable_scheduler"])
def test_failed_overwrite_leaves_the_old_output_intact(tmp_path: Path, model_x2: Path, capsys,
                                                       suffix: str, failure: str) -> None:
    data = _stack((3, 32, 32)).astype(np.float32)
    good = _write_input(tmp_path / "good.ome.zarr", data, "zyx")
    out = tmp_path / f"out{suffix}"
    assert main([str(model_x2), str(good), str(out), "--quiet"]) == 0
    capsys.readouterr()
    old = np.asarray(read_image(out).data).copy()

    if failure == "nan_plane":
        data[2, 3, 3] = np.nan
        argv = [model_x2, _write_input(tmp_path / "bad.ome.zarr", data, "zyx"), out, "--overwrite"]
    else:
        argv = [model_x2, good, out, "--overwrite", "--scheduler", "tcp://127.0.0.1:9"]
    code, err = _run(capsys, *argv)
    assert code == 2, err
    _one_error_line(err)
    np.testing.assert_array_equal(np.asarray(read_image(out).data), old)

    # and a successful overwrite replaces it, leaving nothing beside it
    code, err = _run(capsys, model_x2, good, out, "--overwrite", "--dtype", "uint16", "--clip")
    assert code == 0, err
    assert np.asarray(read_image(out).data).dtype == np.uint16
    assert _hidden(tmp_path) == []


# 3 ------------------------------------------------------------------------------------------------
# Test seam: SRRUN_TEST_PAUSE="N:GATE" makes an srrun process pause after its N-th computed plane,
# touch GATE.paused, and wait for GATE to exist (see srscope.runtime.batch._pause_for_tests).

def _start(args: list, gate: Path | None = None, after: int = 2) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("SRRUN_TEST_PAUSE", None)
    if gate is not None:
        env["SRRUN_TEST_PAUSE"] = f"{after}:{gate}"
    return subprocess.Popen([str(SRRUN), *map(str, args), "--quiet"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_paused(proc: subprocess.Popen, gate: Path) -> None:
    deadline = time.monotonic() + 120
    while not gate.with_name(gate.name + ".paused").exists():
        if proc.poll() is not None:
            pytest.fail(f"srrun ended (rc {proc.returncode}) before pausing: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("srrun never paused")
        time.sleep(0.02)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _assert_consistent(out: Path, model: Path, data: np.ndarray) -> None:
    """Metadata names ``model`` and every plane is that model's output: no mixing of two jobs."""
    image = read_image(out)
    assert image.metadata["srrun"]["models"]["0"]["weights_sha256"] == read_card(model).weights_sha256
    values = np.asarray(image.data)
    enhancer = Enhancer.from_file(model)
    for i in range(len(data)):
        np.testing.assert_allclose(values[i], enhancer.enhance(data[i]), rtol=1e-5, atol=1e-3)


def test_overwrite_never_touches_an_output_another_srrun_is_writing(tmp_path: Path, model_x2: Path) -> None:
    data = _stack((6, 32, 32), seed=11)
    src = _write_input(tmp_path / "in.ome.zarr", data, "tyx")
    gan, cnn = model_x2, build_test_model(tmp_path / "cnn.onnx", scale=2, seed=7, name="cnn")
    out = tmp_path / "o.ome.zarr"

    # the brief's case: GAN writing in place, CNN --overwrite started meanwhile
    gate_a = tmp_path / "gate-a"
    a = _start([gan, src, out], gate_a)
    _wait_paused(a, gate_a)
    code, err = _finish(_start([cnn, src, out, "--overwrite"]))
    assert code == 2 and "another srrun is writing it" in err, err
    gate_a.touch()
    code, err = _finish(a)
    assert code == 0, err
    _assert_consistent(out, gan, data)

    # the late case: CNN --overwrite builds beside, a GAN job starts in place meanwhile (output gone)
    shutil.rmtree(out)
    gate_b, gate_a2 = tmp_path / "gate-b", tmp_path / "gate-a2"
    b = _start([cnn, src, out, "--overwrite"], gate_b)
    _wait_paused(b, gate_b)
    a2 = _start([gan, src, out], gate_a2)
    _wait_paused(a2, gate_a2)
    gate_b.touch()
    code, err = _finish(b)
    assert code == 2 and "another srrun is writing it" in err, err  # the loser does not claim success
    gate_a2.touch()
    code, err = _finish(a2)
    assert code == 0, err
    _assert_consistent(out, gan, data)

    # rerunning the loser puts its finished result in place without recomputing it
    log = tmp_path / "log.json"
    assert main([str(cnn), str(src), str(out), "--overwrite", "--quiet", "--log-json", str(log)]) == 0
    assert json.loads(log.read_text())["planes_computed"] == 0
    _assert_consistent(out, cnn, data)
    assert _hidden(tmp_path) == []


# 4 ------------------------------------------------------------------------------------------------

def test_store_creation_interrupted_half_way_is_redone_on_rerun(tmp_path: Path, model_x2: Path, capsys,
                                                                monkeypatch) -> None:
    src = _write_input(tmp_path / "in.ome.zarr", _stack((2, 128, 128)), "zyx")
    out = tmp_path / "out.ome.zarr"
    n_levels = len(level_shapes((2, 256, 256)))
    assert n_levels == 4

    real = zarr.Group.create_array
    made: list[str] = []

    def dies_at_the_third_level(self, name, *args, **kwargs):
        made.append(name)
        if len(made) == 3:
            raise KeyboardInterrupt  # stands in for a kill while the pyramid levels are being made
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(zarr.Group, "create_array", dies_at_the_third_level)
    code, _ = _run(capsys, model_x2, src, out)
    assert code == 130
    monkeypatch.undo()
    # what a real kill would leave: a half-made store beside the output
    stale = tmp_path / ".out.ome.zarr.0badc0de.srrun-create.zarr"
    zarr.open_group(stale, mode="w", zarr_format=3).create_array("0", shape=(4, 4), dtype="f4")
    an_hour_ago = time.time() - 3600  # creating takes milliseconds: an old one's creator is dead
    os.utime(stale, (an_hour_ago, an_hour_ago))

    code, err = _run(capsys, model_x2, src, out)
    assert code == 0, err
    group = zarr.open_group(out, mode="r")
    assert len(dict(group.attrs)["ome"]["multiscales"][0]["datasets"]) == n_levels
    assert all(str(i) in group for i in range(n_levels))
    assert _hidden(tmp_path) == []


# 5 ------------------------------------------------------------------------------------------------

def test_rerunning_a_finished_zarr_job_says_so_and_succeeds(tmp_path: Path, model_x2: Path, capsys) -> None:
    src = _write_input(tmp_path / "in.ome.zarr", _stack((3, 32, 32)), "zyx")
    out = tmp_path / "out.ome.zarr"
    assert main([str(model_x2), str(src), str(out), "--quiet"]) == 0
    capsys.readouterr()
    before = _tree(out)
    code, err = _run(capsys, model_x2, src, out, "--log-json", tmp_path / "log.json")
    assert code == 0, err
    assert "already complete" in err
    assert json.loads((tmp_path / "log.json").read_text())["planes_computed"] == 0
    assert _tree(out) == before
    # a different job on the same output still needs --overwrite
    code, err = _run(capsys, model_x2, src, out, "--dtype", "uint16", "--clip")
    assert code == 2 and "pass --overwrite" in _one_error_line(err)


def test_tiff_job_killed_after_the_rename_is_complete_on_rerun(tmp_path: Path, model_x2: Path, capsys) -> None:
    src = _write_input(tmp_path / "in.ome.zarr", _stack((3, 32, 32)), "zyx")
    out = tmp_path / "out.ome.tif"
    assert main([str(model_x2), str(src), str(out), "--quiet"]) == 0
    # The state a kill just after the TIFF's rename leaves: its finished work store is still there.
    work = tmp_path / ".out.ome.tif.srrun-partial.zarr"
    assert main([str(model_x2), str(src), str(work), "--quiet"]) == 0
    capsys.readouterr()
    mtime = out.stat().st_mtime_ns
    code, err = _run(capsys, model_x2, src, out)
    assert code == 0, err
    assert "already complete" in err
    assert out.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.zarr", "out.ome.tif"]


# 6 ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code_", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_disk_full_or_read_only_output_is_a_one_line_user_error(tmp_path: Path, model_x2: Path, capsys,
                                                                monkeypatch, code_: int) -> None:
    from srscope.runtime.io import OmeZarrWriter

    src = _write_input(tmp_path / "in.ome.zarr", _stack((3, 32, 32)), "zyx")
    out = tmp_path / "out.ome.zarr"

    def fails(self, *args, **kwargs):
        raise OSError(code_, os.strerror(code_), str(out / "0" / "c" / "1"))

    monkeypatch.setattr(OmeZarrWriter, "write_plane", fails)
    code, err = _run(capsys, model_x2, src, out)
    assert code == 2
    assert os.strerror(code_) in _one_error_line(err)


def test_disk_full_while_writing_the_tiff_is_a_one_line_user_error(tmp_path: Path, model_x2: Path, capsys,
                                                                   monkeypatch) -> None:
    src = _write_input(tmp_path / "in.ome.zarr", _stack((3, 32, 32)), "zyx")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tifffile, "imwrite", full)
    code, err = _run(capsys, model_x2, src, tmp_path / "out.ome.tif")
    assert code == 2
    assert "No space left on device" in _one_error_line(err)
    assert not (tmp_path / "out.ome.tif").exists()


def test_read_only_output_directory_is_refused_up_front(tmp_path: Path, model_x2: Path, capsys,
                                                        monkeypatch) -> None:
    src = _write_input(tmp_path / "in.ome.zarr", _stack((2, 32, 32)), "zyx")
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p).resolve() == locked.resolve()
                        and mode & os.W_OK else real(p, mode, **kw))  # root ignores chmod, so pretend
    code, err = _run(capsys, model_x2, src, locked / "out.ome.zarr")
    assert code == 2 and "not writable" in _one_error_line(err)
    assert list(locked.iterdir()) == []


def test_truncated_tiff_is_one_line_without_tifffile_log_noise(tmp_path: Path, model_x2: Path) -> None:
    data = _stack((6, 64, 64))
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, data, imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "ZYX", "unit": "um"})
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    proc = subprocess.run([str(SRRUN), str(model_x2), str(cut), str(tmp_path / "out.ome.zarr"), "--quiet"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "truncated" in _one_error_line(proc.stderr)
    assert not (tmp_path / "out.ome.zarr").exists()


@pytest.mark.parametrize("where", ["directory", "missing_parent"])
def test_unwritable_log_json_is_refused_before_the_work(tmp_path: Path, model_x2: Path, capsys,
                                                        where: str) -> None:
    src = _write_input(tmp_path / "in.ome.zarr", _stack((2, 32, 32)), "zyx")
    log = tmp_path / "logs"
    if where == "directory":
        log.mkdir()
    else:
        log = log / "run.json"
    code, err = _run(capsys, model_x2, src, tmp_path / "out.ome.zarr", "--log-json", log)
    assert code == 2 and "--log-json" in _one_error_line(err)
    assert not (tmp_path / "out.ome.zarr").exists()


def test_log_json_failing_after_the_work_only_warns(tmp_path: Path, model_x2: Path, capsys,
                                                    monkeypatch) -> None:
    from srscope.runtime import cli

    src = _write_input(tmp_path / "in.ome.zarr", _stack((2, 32, 32)), "zyx")
    logs = tmp_path / "logs"
    logs.mkdir()
    real = cli.run_job

    def run_then_lose_the_log_directory(*args, **kwargs):
        report = real(*args, **kwargs)
        shutil.rmtree(logs)
        return report

    monkeypatch.setattr(cli, "run_job", run_then_lose_the_log_directory)
    code, err = _run(capsys, model_x2, src, tmp_path / "out.ome.zarr", "--log-json", logs / "run.json")
    assert code == 0, err
    assert "srrun: warning: could not write --log-json" in err
    assert read_image(tmp_path / "out.ome.zarr").shape == (2, 64, 64)


# 7 ------------------------------------------------------------------------------------------------

def test_rgb_tiff_is_refused_naming_the_samples_axis(tmp_path: Path, model_x2: Path, capsys) -> None:
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, _stack((32, 32, 3), dtype=np.uint8), photometric="rgb")
    code, err = _run(capsys, model_x2, rgb, tmp_path / "out.ome.zarr")
    assert code == 2
    line = _one_error_line(err)
    assert "samples axis S" in line and "split" in line
    assert not (tmp_path / "out.ome.zarr").exists()


def test_plain_4d_tiff_without_axes_is_refused(tmp_path: Path, model_x2: Path, capsys) -> None:
    plain = tmp_path / "plain4d.tif"
    tifffile.imwrite(plain, _stack((2, 5, 32, 32)))
    code, err = _run(capsys, model_x2, plain, tmp_path / "out.ome.zarr")
    assert code == 2
    assert "axes" in _one_error_line(err)
    # the same data with axes metadata is fine
    labelled = tmp_path / "labelled.tif"
    tifffile.imwrite(labelled, _stack((2, 5, 32, 32)), metadata={"axes": "TZYX"})
    code, err = _run(capsys, model_x2, labelled, tmp_path / "out.ome.zarr")
    assert code == 0, err


def _edit_card(src: Path, dst: Path, edit) -> Path:
    model = onnx.load(str(src))
    entry = next(p for p in model.metadata_props if p.key == CARD_KEY)
    raw = json.loads(entry.value)
    edit(raw)
    entry.value = json.dumps(raw)
    onnx.save(model, str(dst))
    return dst


def test_edited_card_intensity_mapping_is_caught(tmp_path: Path, model_x2: Path, capsys) -> None:
    assert read_card(model_x2).behaviour_sha256  # embed_card writes it
    tampered = _edit_card(model_x2, tmp_path / "x10.onnx",
                          lambda raw: raw["denormalization"].update(scale=raw["denormalization"]["scale"] * 10))
    with pytest.raises(ModelCardError, match="behaviour checksum"):
        read_card(tampered)
    src = _write_input(tmp_path / "in.ome.zarr", _stack((2, 32, 32)), "zyx")
    code, err = _run(capsys, tampered, src, tmp_path / "out.ome.zarr")
    assert code == 2 and "checksum" in _one_error_line(err)
    # fields that do not change the output may be edited
    renamed = _edit_card(model_x2, tmp_path / "renamed.onnx", lambda raw: raw.update(description="edited"))
    assert read_card(renamed).description == "edited"


def test_card_without_behaviour_checksum_still_loads(tmp_path: Path, model_x2: Path) -> None:
    old = _edit_card(model_x2, tmp_path / "old.onnx", lambda raw: raw.pop("behaviour_sha256"))
    card = read_card(old)
    assert card.behaviour_sha256 is None
    fresh = dataclasses.replace(card, description="built in code")  # constructors need no checksum
    assert isinstance(fresh, ModelCard) and fresh.schema_version == 2


# 8 ------------------------------------------------------------------------------------------------

def _ngff_level0(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Level 0 as numpy plus its scale and translation, read by ome-zarr-py (not srscope)."""
    node = next(iter(Reader(parse_url(str(path)))()))
    transforms = node.metadata["coordinateTransformations"][0]
    scale = next(t["scale"] for t in transforms if t["type"] == "scale")
    translation = next((t["translation"] for t in transforms if t["type"] == "translation"), [0.0] * len(scale))
    return np.asarray(node.data[0]), np.asarray(scale), np.asarray(translation), node.metadata


def _centroid_um(plane: np.ndarray, scale: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre in physical units: pixel index i sits at scale * i + translation."""
    weights = plane.astype(np.float64) - BACKGROUND
    yy, xx = np.mgrid[: plane.shape[0], : plane.shape[1]]
    index = np.array([(weights * yy).sum(), (weights * xx).sum()]) / weights.sum()
    return scale[-2:] * index + translation[-2:]


BACKGROUND = 100.0


def _bilinear_model(path: Path, scale: int = 2) -> Path:
    """A card-carrying model that is exactly ONNX's half-pixel bilinear resize.

    It keeps an object's centroid where it was (each input pixel's weight spreads symmetrically
    over the output pixels around its centre), as a trained generator should; the random-weight
    test generator does not, so it cannot show a geometry error of a few nanometres.
    """
    from onnx import TensorProto, helper, numpy_helper
    from srscope.runtime.card import AffineIntensity, embed_card, weights_checksum

    scales = numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales")
    resize = helper.make_node("Resize", ["lr", "", "scales"], ["hr"], mode="linear",
                              coordinate_transformation_mode="half_pixel")
    graph = helper.make_graph([resize], "bilinear",
                              [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 1, "H", "W"])],
                              [helper.make_tensor_value_info("hr", TensorProto.FLOAT, ["N", 1, "sH", "sW"])],
                              initializer=[scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    card = ModelCard(name="bilinear", version="0", input_modality="a", output_modality="b",
                     input_pixel_size_um=0.325, output_pixel_size_um=0.325 / scale,
                     normalization=AffineIntensity(0.0, 1.0), denormalization=AffineIntensity(0.0, 1.0),
                     halo_px=2, size_multiple=1, weights_sha256=weights_checksum(model))
    onnx.save(embed_card(model, card), str(path))
    return path


def test_physical_geometry_and_display_settings_are_carried_through(tmp_path: Path, capsys) -> None:
    yy, xx = np.mgrid[:48, :48]
    bead = BACKGROUND + 3000 * np.exp(-((yy - 20.3) ** 2 + (xx - 27.6) ** 2) / (2 * 1.8**2))
    data = np.stack([bead, bead[::-1]]).astype(np.float32)  # two channels
    src = _write_input(tmp_path / "in.ome.zarr", data, "cyx", channel_names=("dapi", "fitc"))
    group = zarr.open_group(src, mode="r+")  # what another NGFF writer put there: an origin and colours
    ome = dict(group.attrs)["ome"]
    for dataset in ome["multiscales"][0]["datasets"]:
        dataset["coordinateTransformations"] = [
            t for t in dataset["coordinateTransformations"] if t["type"] == "scale"
        ] + [{"type": "translation", "translation": [0.0, 120.5, -37.25]}]
    ome["omero"] = {"channels": [
        {"label": "dapi", "color": "0000FF", "active": True, "window": {"min": 0, "max": 65535, "start": 150, "end": 2600}},
        {"label": "fitc", "color": "00FF00", "active": False, "window": {"min": 0, "max": 65535, "start": 90, "end": 1800}},
    ], "rdefs": {"model": "color"}}
    group.attrs["ome"] = ome

    out = tmp_path / "out.ome.zarr"
    model = _bilinear_model(tmp_path / "bilinear.onnx")
    code, err = _run(capsys, src, out, "--model", f"0={model}", "--passthrough-unmapped")
    assert code == 0, err
    NgffImage05.from_zarr(zarr.open_group(out, mode="r"))

    lr, lr_scale, lr_shift, _ = _ngff_level0(src)
    hr, hr_scale, hr_shift, _ = _ngff_level0(out)
    assert lr_shift[-2:] == pytest.approx([120.5, -37.25])
    for channel in (0, 1):  # 0: the model, 1: pixel replication
        before = _centroid_um(lr[channel], lr_scale, lr_shift)
        after = _centroid_um(hr[channel], hr_scale, hr_shift)
        assert np.abs(after - before).max() < 0.005, (channel, before, after)

    channels = dict(zarr.open_group(out, mode="r").attrs)["ome"]["omero"]["channels"]
    assert [c["color"] for c in channels] == ["0000FF", "00FF00"]
    assert [c["label"] for c in channels] == ["dapi", "fitc"]
    assert [c["active"] for c in channels] == [True, False]
    assert [(c["window"]["start"], c["window"]["end"]) for c in channels] == [(150, 2600), (90, 1800)]
    level0 = zarr.open_group(out, mode="r")["0"][...]
    for c, channel in zip(level0, channels):  # the data range of level 0, not of the smallest level
        assert (channel["window"]["min"], channel["window"]["max"]) == pytest.approx((c.min(), c.max()))


def test_contrast_window_comes_from_level_0(tmp_path: Path) -> None:
    data = np.full((256, 256), 10.0, np.float32)
    data[100, 100] = 5000.0  # one bright pixel: averaged away in the smaller levels
    out = write_image(tmp_path / "o.ome.zarr", Image(data, "yx", (0.1, 0.1)))
    window = dict(zarr.open_group(out, mode="r").attrs)["ome"]["omero"]["channels"][0]["window"]
    assert (window["min"], window["max"]) == (10.0, 5000.0)


def test_image_translation_round_trips(tmp_path: Path) -> None:
    image = Image(np.zeros((2, 64, 64), np.float32), "zyx", (0.2, 0.2), z_step_um=1.0,
                  translation={"z": 4.0, "y": -1.5, "x": 2.25})
    back = read_image(write_image(tmp_path / "t.ome.zarr", image))
    assert back.translation == pytest.approx({"z": 4.0, "y": -1.5, "x": 2.25})


# 9 ------------------------------------------------------------------------------------------------

def test_threads_option_reaches_onnx_runtime(tmp_path: Path, model_x2: Path, capsys, monkeypatch) -> None:
    from srscope.runtime import planework

    seen: list[int | None] = []
    real = planework.Enhancer.from_file

    def spy(path, **kwargs):
        seen.append(kwargs.get("intra_op_threads"))
        enhancer = real(path, **kwargs)
        seen.append(enhancer.session.get_session_options().intra_op_num_threads)
        return enhancer

    monkeypatch.setattr(planework.Enhancer, "from_file", spy)
    src = _write_input(tmp_path / "in.ome.zarr", _stack((2, 32, 32)), "zyx")
    code, err = _run(capsys, model_x2, src, tmp_path / "out.ome.zarr", "--threads", "1")
    assert code == 0, err
    assert seen == [1, 1]
    code, err = _run(capsys, model_x2, src, tmp_path / "other.ome.zarr", "--threads", "0")
    assert code == 2 and "--threads" in _one_error_line(err)


# smaller ------------------------------------------------------------------------------------------

def test_version_and_help_examples(capsys) -> None:
    from srscope.runtime import cli

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and "srrun" in capsys.readouterr().out
    help_text = cli.build_parser().format_help()
    repo = Path(__file__).resolve().parents[2]
    for word in help_text.split():
        if word.startswith("models/") and word.endswith(".onnx"):
            assert (repo / word).is_file(), word


def test_reading_an_unfinished_store_is_still_refused(tmp_path: Path, model_x2: Path) -> None:
    """The NGFF-metadata-last rule holds for stores built beside the output too."""
    data = _stack((3, 32, 32)).astype(np.float32)
    data[2, 0, 0] = np.nan
    src = _write_input(tmp_path / "in.ome.zarr", data, "zyx")
    out = tmp_path / "out.ome.zarr"
    assert main([str(model_x2), str(src), str(out), "--quiet", "--overwrite"]) == 2
    for store in [out, *tmp_path.glob(".out.ome.zarr.*")]:
        if store.exists():
            with pytest.raises(ImageIOError, match="incomplete"):
                read_image(store)
