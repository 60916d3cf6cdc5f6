"""OME-Zarr reading/writing checked with independent readers (zarr, ome-zarr-py, ome-zarr-models)."""

from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.v05.image import Image as NgffImage05
from srscope.runtime.io import (
    Image,
    ImageIOError,
    OmeZarrWriter,
    read_image,
    write_image,
)


def _ramp(shape, dtype="uint16"):
    return (np.arange(np.prod(shape)) % 4099).reshape(shape).astype(dtype)


def test_roundtrip_keeps_pixels_dtype_and_calibration(tmp_path: Path) -> None:
    data = _ramp((2, 3, 4, 96, 80))
    image = Image(data, "tczyx", (0.1625, 0.17), channel_names=("dapi", "fitc", "tritc"),
                  z_step_um=0.5, time_interval_s=30.0, metadata={"model": {"name": "x"}})
    out = write_image(tmp_path / "a.ome.zarr", image)

    back = read_image(out)
    assert back.axes == "tczyx"
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(back.data), data)
    assert back.pixel_size_um == pytest.approx((0.1625, 0.17))
    assert back.z_step_um == pytest.approx(0.5)
    assert back.time_interval_s == pytest.approx(30.0)
    assert back.channel_names == ("dapi", "fitc", "tritc")
    assert back.metadata == {"model": {"name": "x"}}

    # independent: raw zarr sees the same level 0, validator accepts the group
    raw = zarr.open_group(out, mode="r")
    np.testing.assert_array_equal(raw["0"][...], data)
    NgffImage05.from_zarr(raw)


def test_pyramid_levels_are_2x2_means_with_doubled_scale(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.random((2, 128, 100), dtype=np.float32) * 1000
    out = write_image(tmp_path / "p.zarr", Image(data, "cyx", (0.2, 0.25)))

    nodes = list(Reader(parse_url(str(out)))())
    levels = [np.asarray(d) for d in nodes[0].data]
    assert [lv.shape for lv in levels] == [(2, 128, 100), (2, 64, 50)]
    expected = data.reshape(2, 64, 2, 50, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(levels[1], expected, rtol=1e-6)
    transforms = nodes[0].metadata["coordinateTransformations"]
    assert transforms[0][0]["scale"] == pytest.approx([1.0, 0.2, 0.25])
    assert transforms[1][0]["scale"] == pytest.approx([1.0, 0.4, 0.5])
    # level-1 pixel (0, 0) averages level-0 pixels 0 and 1: its centre is half a level-0 pixel in
    assert transforms[1][1]["translation"] == pytest.approx([0.0, 0.1, 0.125])


def test_integer_pyramid_rounds_without_wrapping(tmp_path: Path) -> None:
    data = np.full((64, 64), 65535, dtype=np.uint16)
    data[::2, ::2] = 65534
    out = write_image(tmp_path / "u.zarr", Image(data, "yx", (1.0, 1.0)))
    level1 = zarr.open_group(out, mode="r")["1"][...]
    assert level1.dtype == np.uint16
    assert np.all(level1 == 65535)  # mean 65534.75 rounds up, never wraps to 0


def test_non_canonical_axes_are_stored_in_ngff_order(tmp_path: Path) -> None:
    data = _ramp((3, 2, 40, 48))  # z, c, y, x
    out = write_image(tmp_path / "zc.zarr", Image(data, "zcyx", (0.3, 0.3), z_step_um=1.0))
    back = read_image(out)
    assert back.axes == "czyx"
    np.testing.assert_array_equal(np.asarray(back.data), data.transpose(1, 0, 2, 3))
    NgffImage05.from_zarr(zarr.open_group(out, mode="r"))


def test_reads_ngff_04_written_by_ome_zarr_py(tmp_path: Path) -> None:
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image as ome_write

    data = _ramp((2, 64, 64))
    path = tmp_path / "v04.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    ome_write(data, group, fmt=FormatV04(), axes="cyx", scale_factors=(2,),
              scale={"y": 0.108, "x": 0.108}, axes_units={"y": "micrometer", "x": "micrometer"})
    back = read_image(path)
    assert back.axes == "cyx"
    assert back.pixel_size_um == pytest.approx((0.108, 0.108))
    np.testing.assert_array_equal(np.asarray(back.data), data)


def test_unfinished_store_is_rejected_by_every_reader(tmp_path: Path) -> None:
    path = tmp_path / "partial.ome.zarr"
    writer = OmeZarrWriter.create(path, shape=(3, 32, 32), dtype="float32", axes="cyx")
    writer.level0[0] = np.ones((32, 32), np.float32)
    assert writer.missing_chunks() == 2

    with pytest.raises(ImageIOError, match="incomplete"):
        read_image(path)
    with pytest.raises(ValueError):
        NgffImage05.from_zarr(zarr.open_group(path, mode="r"))
    template = Image(writer.level0, "cyx", (1.0, 1.0))
    with pytest.raises(ImageIOError, match="never written"):
        writer.finalize(template)

    writer.level0[1:] = np.zeros((2, 32, 32), np.float32)  # all-zero planes still count as written
    writer.finalize(template)
    assert read_image(path).shape == (3, 32, 32)


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    image = Image(np.zeros((32, 32), np.float32), "yx", (1.0, 1.0))
    path = write_image(tmp_path / "x.zarr", image)
    with pytest.raises(ImageIOError, match="already exists"):
        write_image(path, image)
    write_image(path, Image(np.ones((40, 40), np.float32), "yx", (1.0, 1.0)), overwrite=True)
    assert read_image(path).shape == (40, 40)


def test_store_without_ngff_metadata_is_a_clear_error(tmp_path: Path) -> None:
    zarr.open_group(tmp_path / "plain.zarr", mode="w").create_array("a", shape=(4, 4), dtype="u1")
    with pytest.raises(ImageIOError, match="no NGFF multiscales"):
        read_image(tmp_path / "plain.zarr")
