"""(OME-)TIFF reading/writing, checked against tifffile as the independent reader/writer."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from srscope.runtime.io import Image, ImageIOError, read_image, write_image


def test_ome_tiff_roundtrip_and_independent_reader(tmp_path: Path) -> None:
    data = (np.arange(2 * 3 * 40 * 50) * 37 % 65536).astype(np.uint16).reshape(2, 3, 40, 50)
    image = Image(data, "ctyx", (0.1625, 0.1625), channel_names=("a", "b"), time_interval_s=5.0,
                  metadata={"srrun": {"model": "m"}})
    out = write_image(tmp_path / "o.ome.tif", image)

    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome
        assert tif.series[0].axes == "TCYX"
        np.testing.assert_array_equal(tif.series[0].asarray(), data.transpose(1, 0, 2, 3))
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert float(pixels["PhysicalSizeX"]) == pytest.approx(0.1625)
        assert pixels["PhysicalSizeXUnit"] == "µm"

    back = read_image(out)
    assert back.axes == "tcyx" and back.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(back.data), data.transpose(1, 0, 2, 3))
    assert back.pixel_size_um == pytest.approx((0.1625, 0.1625))
    assert back.channel_names == ("a", "b")
    assert back.time_interval_s == pytest.approx(5.0)
    assert back.metadata == {"srrun": {"model": "m"}}


@pytest.mark.parametrize("unit, factor", [("um", 1.0), ("micron", 1.0), ("nm", 1e-3)])
def test_imagej_calibration(tmp_path: Path, unit: str, factor: float) -> None:
    path = tmp_path / "ij.tif"
    data = np.zeros((3, 32, 32), np.uint16)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "ZYX", "unit": unit, "spacing": 2.0})
    image = read_image(path)
    assert image.axes == "zyx"
    assert image.pixel_size_um == pytest.approx((0.325 * factor, 0.325 * factor))
    assert image.z_step_um == pytest.approx(2.0 * factor)


def test_uncalibrated_tiff_is_flagged(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((16, 16), np.float32))
    image = read_image(tmp_path / "plain.tif")
    assert image.axes == "yx"
    assert image.metadata.get("pixel_size_unknown") is True


def test_rgb_samples_become_channels(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    image = read_image(tmp_path / "rgb.tif")
    assert image.axes == "cyx"
    np.testing.assert_array_equal(np.asarray(image.data), rgb.transpose(2, 0, 1))


def test_bad_files_give_one_line_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "bad.tif"
    garbage.write_bytes(b"this is not a tiff at all")
    for path, pattern in [(tmp_path / "missing.tif", "no such file"),
                          (garbage, "not a readable TIFF"),
                          (tmp_path / "x.png", "unknown image format")]:
        with pytest.raises(ImageIOError, match=pattern) as info:
            read_image(path)
        assert "\n" not in str(info.value)


def test_image_validates_axes_and_pixel_size() -> None:
    with pytest.raises(ImageIOError, match="end in 'yx'"):
        Image(np.zeros((4, 4, 3)), "yxc", (1.0, 1.0))
    with pytest.raises(ImageIOError, match="dimensions"):
        Image(np.zeros((2, 4, 4)), "yx", (1.0, 1.0))
    with pytest.raises(ImageIOError, match="pixel size"):
        Image(np.zeros((4, 4)), "yx", (0.0, 1.0))


def test_tiff_write_leaves_no_partial_file_on_failure(tmp_path: Path) -> None:
    import dask.array as da

    def boom(block):
        raise RuntimeError("disk on fire")

    data = da.zeros((4, 32, 32), dtype=np.float32, chunks=(1, 32, 32)).map_blocks(boom, dtype=np.float32)
    with pytest.raises(RuntimeError):
        write_image(tmp_path / "o.tif", Image(data, "zyx", (1.0, 1.0)))
    assert list(tmp_path.iterdir()) == []


def test_large_tiffs_are_read_lazily_small_ones_eagerly(tmp_path: Path, monkeypatch) -> None:
    from srscope.runtime.io import tiff

    data = (np.arange(4 * 24 * 20) % 977).astype(np.uint16).reshape(4, 24, 20)
    tifffile.imwrite(tmp_path / "s.tif", data, imagej=True, metadata={"axes": "ZYX"})
    small = read_image(tmp_path / "s.tif")
    assert isinstance(small.data, np.ndarray)
    monkeypatch.setattr(tiff, "EAGER_LIMIT_BYTES", 0)
    big = read_image(tmp_path / "s.tif")
    assert isinstance(big.data, zarr.Array)  # pages are read on demand
    np.testing.assert_array_equal(big.data[2], data[2])


def test_overwrite_refuses_to_delete_a_directory_that_is_not_zarr(tmp_path: Path) -> None:
    victim = tmp_path / "notes.zarr"
    victim.mkdir()
    (victim / "thesis.txt").write_text("precious")
    with pytest.raises(ImageIOError, match="not a zarr store"):
        write_image(victim, Image(np.zeros((8, 8), np.float32), "yx", (1.0, 1.0)), overwrite=True)
    assert (victim / "thesis.txt").exists()
