"""``srrun`` end to end: real ONNX models, real files read back with independent readers."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.v05.image import Image as NgffImage05
from srrun_helpers import SRRUN, _run, _stack, _write_input
from srscope.runtime import Enhancer
from srscope.runtime.io import ImageIOError, read_image
from srscope.runtime.synthetic import build_test_model


def test_cli_multi_axis_tiff_to_ome_zarr(tmp_path: Path, model_x2: Path) -> None:
    data = _stack((2, 2, 3, 40, 48))  # t c z y x
    src = _write_input(tmp_path / "in.ome.tif", data, "tczyx", channel_names=("dapi", "fitc"),
                       z_step_um=0.5, time_interval_s=10.0)
    out = tmp_path / "out.ome.zarr"
    proc = subprocess.run([str(SRRUN), str(model_x2), str(src), str(out), "--log-json", str(tmp_path / "log.json")],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "12 computed" in proc.stderr
    log = json.loads((tmp_path / "log.json").read_text())
    assert log["planes_computed"] == 12 and log["planes_skipped"] == 0

    group = zarr.open_group(out, mode="r")
    NgffImage05.from_zarr(group)  # independent NGFF validation
    nodes = list(Reader(parse_url(str(out)))())
    assert len(nodes[0].data) >= 2  # a pyramid
    scale0 = nodes[0].metadata["coordinateTransformations"][0][0]["scale"]
    assert scale0 == pytest.approx([10.0, 1.0, 0.5, 0.1625, 0.1625])

    level0 = group["0"][...]
    assert level0.shape == (2, 2, 3, 80, 96) and level0.dtype == np.float32
    level1 = group["1"][...]  # written plane by plane alongside level 0
    np.testing.assert_allclose(level1, level0.reshape(2, 2, 3, 40, 2, 48, 2).mean(axis=(4, 6)), rtol=1e-6)
    enhancer = Enhancer.from_file(model_x2)
    for index in [(0, 0, 0), (1, 1, 2), (0, 1, 1)]:
        np.testing.assert_allclose(level0[index], enhancer.enhance(data[index]), rtol=1e-5, atol=1e-3)
    back = read_image(out)
    assert back.channel_names == ("dapi", "fitc") and back.time_interval_s == pytest.approx(10.0)
    assert back.metadata["srrun"]["models"]["0"]["weights_sha256"] == enhancer.card.weights_sha256


def test_zarr_input_to_ome_tiff_with_scaled_pixel_size(tmp_path: Path, model_x2: Path, capsys) -> None:
    data = _stack((3, 32, 36))
    src = _write_input(tmp_path / "in.ome.zarr", data, "zyx", z_step_um=2.0)
    out = tmp_path / "out.ome.tif"
    code, err = _run(capsys, model_x2, src, out)
    assert code == 0, err
    with tifffile.TiffFile(out) as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert float(pixels["PhysicalSizeX"]) == pytest.approx(0.1625)
        assert float(pixels["PhysicalSizeZ"]) == pytest.approx(2.0)
        result = tif.series[0].asarray()
    assert result.shape == (3, 64, 72)
    np.testing.assert_allclose(result[1], Enhancer.from_file(model_x2).enhance(data[1]), rtol=1e-5, atol=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.zarr", "out.ome.tif"]  # no work store left


def test_per_channel_models_and_passthrough(tmp_path: Path, model_x2: Path, capsys) -> None:
    other = build_test_model(tmp_path / "other.onnx", scale=2, seed=7, name="other")
    data = _stack((3, 32, 32))
    src = _write_input(tmp_path / "in.ome.zarr", data, "cyx", channel_names=("dapi", "fitc", "bf"))
    out = tmp_path / "out.zarr"
    code, err = _run(capsys, src, out, "--model", f"dapi={model_x2}", "--model", f"1={other}",
                     "--passthrough-unmapped")
    assert code == 0, err
    result = zarr.open_group(out, mode="r")["0"][...]
    np.testing.assert_allclose(result[0], Enhancer.from_file(model_x2).enhance(data[0]), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(result[1], Enhancer.from_file(other).enhance(data[1]), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(result[2], np.kron(data[2], np.ones((2, 2))).astype(np.float32))


def test_uint16_output_overflow_is_an_error_unless_clipped(tmp_path: Path, capsys) -> None:
    loud = build_test_model(tmp_path / "loud.onnx", scale=2, denormalization=(0.0, 200000.0))
    src = _write_input(tmp_path / "in.ome.zarr", _stack((2, 32, 32)), "zyx")
    out = tmp_path / "out.zarr"
    code, err = _run(capsys, loud, src, out, "--dtype", "uint16")
    assert code == 2 and "outside the uint16 range" in err and "--clip" in err
    assert not out.exists()  # failed on the first plane: nothing left behind

    code, err = _run(capsys, loud, src, out, "--dtype", "uint16", "--clip", "--log-json", tmp_path / "log.json")
    assert code == 0, err
    clipped = json.loads((tmp_path / "log.json").read_text())["clipped_pixels"]
    assert clipped > 0 and "clipped" in err
    values = np.asarray(read_image(out).data)
    assert values.dtype == np.uint16
    reference = Enhancer.from_file(loud).enhance(_stack((2, 32, 32))[0])
    assert np.all(values[0][reference > 65535] == 65535)  # saturated, never wrapped
    assert np.count_nonzero((reference < -0.5) | (reference > 65535.5)) <= clipped


def test_nan_in_a_later_plane_leaves_an_output_no_reader_accepts(tmp_path: Path, model_x2: Path, capsys) -> None:
    data = _stack((3, 32, 32)).astype(np.float32)
    data[2, 5, 5] = np.nan
    src = _write_input(tmp_path / "in.tif", data, "zyx")
    out = tmp_path / "out.zarr"
    code, err = _run(capsys, model_x2, src, out)
    assert code == 2
    assert err.strip() == "srrun: error: input plane z=2 contains 1 NaN/Inf pixel(s)"
    with pytest.raises(ImageIOError, match="incomplete"):
        read_image(out)
    with pytest.raises(ValueError):
        NgffImage05.from_zarr(zarr.open_group(out, mode="r"))


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"II*\x00garbage")
    return path


def _one_d(tmp_path: Path) -> Path:
    path = tmp_path / "line.tif"
    tifffile.imwrite(path, np.zeros(16, np.uint16))
    return path


@pytest.mark.parametrize("case, pattern", [
    ("missing", "no such file"),
    ("garbage", "not a readable TIFF"),
    ("one_d", "no y/x plane"),
    ("channel_index", "has 1 channel"),
    ("scales", "different scale factors"),
    ("pixel_size", "differs from model"),
    ("not_onnx", "not a readable ONNX model"),
    ("exists", "already exists; pass --overwrite"),
    ("bad_suffix", "unknown image format"),
    ("usage", "expected MODEL INPUT OUTPUT"),
    ("tile", "smaller than model"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path: Path, model_x2: Path, capsys, case: str, pattern: str) -> None:
    good = _write_input(tmp_path / "in.ome.zarr", _stack((2, 32, 32)), "zyx")
    out = tmp_path / "out.ome.zarr"
    argv: list = [model_x2, good, out]
    if case == "missing":
        argv = [model_x2, tmp_path / "nope.tif", out]
    elif case == "garbage":
        argv = [model_x2, _garbage(tmp_path), out]
    elif case == "one_d":
        argv = [model_x2, _one_d(tmp_path), out]
    elif case == "channel_index":
        argv = [good, out, "--model", f"3={model_x2}"]
    elif case == "scales":
        x4 = build_test_model(tmp_path / "x4.onnx", scale=4)
        two = _write_input(tmp_path / "two.zarr", _stack((2, 32, 32)), "cyx")
        argv = [two, out, "--model", f"0={model_x2}", "--model", f"1={x4}"]
    elif case == "pixel_size":
        argv = [model_x2, _write_input(tmp_path / "coarse.zarr", _stack((32, 32)), "yx", px=0.65), out]
    elif case == "not_onnx":
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"not a model")
        argv = [bad, good, out]
    elif case == "exists":
        out.mkdir()
        (out / "zarr.json").write_text("{}")
    elif case == "bad_suffix":
        argv = [model_x2, good, tmp_path / "out.png"]
    elif case == "usage":
        argv = [good, out]
    elif case == "tile":
        argv = [model_x2, good, out, "--tile", "2"]
    before = sorted(p.name for p in tmp_path.iterdir())
    code = None
    try:
        code, err = _run(capsys, *argv)
    except SystemExit as exc:  # argparse errors exit from inside main
        code, err = exc.code, capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("srrun: error: ") and pattern in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


def test_overwrite_and_pixel_size_override(tmp_path: Path, model_x2: Path, capsys) -> None:
    src = _write_input(tmp_path / "coarse.zarr", _stack((32, 32)), "yx", px=0.5)
    out = tmp_path / "out.ome.tif"
    out.write_bytes(b"old")
    code, err = _run(capsys, model_x2, src, out, "--ignore-pixel-size", "--overwrite")
    assert code == 0, err
    assert "warning: input pixel size" in err
    assert read_image(out).pixel_size_um == pytest.approx((0.25, 0.25))  # the file's, scaled by the model


def test_uncalibrated_input_assumes_the_model_pixel_size(tmp_path: Path, model_x2: Path, capsys) -> None:
    tifffile.imwrite(tmp_path / "plain.tif", _stack((32, 32)))
    code, err = _run(capsys, model_x2, tmp_path / "plain.tif", tmp_path / "out.zarr")
    assert code == 0 and "no pixel size" in err
    assert read_image(tmp_path / "out.zarr").pixel_size_um == pytest.approx((0.1625, 0.1625))


def test_imagej_hyperstack_order_tzcyx_maps_planes_to_the_right_channel(tmp_path: Path, model_x2: Path,
                                                                        capsys) -> None:
    data = _stack((2, 3, 2, 24, 24))  # ImageJ's own order: t z c y x
    src = tmp_path / "hyper.tif"
    tifffile.imwrite(src, data, imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "TZCYX", "unit": "um", "spacing": 0.8})
    assert read_image(src).axes == "tzcyx"
    out = tmp_path / "out.ome.zarr"
    code, err = _run(capsys, src, out, "--model", f"1={model_x2}", "--passthrough-unmapped")
    assert code == 0, err
    result = read_image(out)
    assert result.axes == "tczyx" and result.z_step_um == pytest.approx(0.8)
    values = np.asarray(result.data)
    enhancer = Enhancer.from_file(model_x2)
    np.testing.assert_allclose(values[1, 1, 2], enhancer.enhance(data[1, 2, 1]), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(values[0, 0, 1], np.kron(data[0, 1, 0], np.ones((2, 2))))


def test_model_output_overflowing_float32_is_refused(tmp_path: Path, capsys) -> None:
    huge = build_test_model(tmp_path / "huge.onnx", scale=2, denormalization=(0.0, 3e38))
    src = _write_input(tmp_path / "in.ome.zarr", _stack((2, 32, 32)), "zyx")
    code, err = _run(capsys, huge, src, tmp_path / "out.zarr")
    assert code == 2 and "the model produced" in err and "NaN/Inf" in err
    assert not (tmp_path / "out.zarr").exists()


def test_default_tile_is_auto_and_matches_whole_plane_inference(tmp_path: Path, model_x2: Path, capsys) -> None:
    data = _stack((2, 64, 80))  # z y x
    src = _write_input(tmp_path / "in.ome.tif", data, "zyx")
    code, err = _run(capsys, model_x2, src, tmp_path / "auto.ome.zarr")
    assert code == 0, err
    code, err = _run(capsys, model_x2, src, tmp_path / "whole.ome.zarr", "--tile", "0")
    assert code == 0, err
    auto, whole = (zarr.open_group(tmp_path / n, mode="r") for n in ("auto.ome.zarr", "whole.ome.zarr"))
    np.testing.assert_allclose(auto["0"][...], whole["0"][...], rtol=0, atol=1e-4)
    assert read_image(tmp_path / "auto.ome.zarr").metadata["srrun"]["tile"] == "auto"
    with pytest.raises(SystemExit) as bad:
        _run(capsys, model_x2, src, tmp_path / "bad.ome.zarr", "--tile", "big")
    assert bad.value.code == 2 and "--tile must be 'auto'" in capsys.readouterr().err
