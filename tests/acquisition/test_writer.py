"""The SR store on its own: input checks, readable mid-run, valid after an abort."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from ome_zarr_models.v05.image import Image
from srscope.acquisition import PositionGeometry, SRStoreError, SRStoreWriter

GEOM = PositionGeometry(input_shape=(16, 16), input_pixel_size_um=0.325, scale=2, stage_um=(5.0, 6.0, 1.0),
                        z_step_um=0.5, t_interval_s=2.0)


def test_readable_while_writing_and_valid_after_abort(tmp_path):
    path = tmp_path / "sr.ome.zarr"
    writer = SRStoreWriter(path, channels=["DAPI"], size_hints={"t": 4}, provenance={"models": "x"})
    writer.open_position(0, GEOM)
    plane = np.full((32, 32), 123.5, np.float32)
    writer.write(0, 0, "DAPI", 0, plane)

    # A second reader mid-run sees the final shape, the written plane and NaN for the rest.
    reader = zarr.open_group(str(path), mode="r")
    Image.from_zarr(reader["0"])
    data = reader["0/0"][:]
    assert data.shape == (4, 1, 1, 32, 32)
    assert np.array_equal(data[0, 0, 0], plane) and np.isnan(data[1:]).all()
    assert reader.attrs["srscope"]["status"] == "acquiring"

    writer.write(0, 5, "FITC", 1, plane)  # beyond the hints: the array grows, a channel is added
    writer.close("aborted")
    root = zarr.open_group(str(path), mode="r")
    assert root["0/0"].shape == (6, 2, 2, 32, 32)
    assert [c["label"] for c in root["0"].attrs["ome"]["omero"]["channels"]] == ["DAPI", "FITC"]
    assert root.attrs["srscope"]["status"] == "aborted"
    assert root.attrs["srscope"]["planes_written"] == {"0": 2}
    Image.from_zarr(root["0"])
    # the position image is the runtime's store: its own status, the stage geometry kept for the
    # fill-in command, contrast windows from the data (a 32-pixel image is too small for a pyramid)
    position = root["0"].attrs["srscope"]
    assert position["status"] == "aborted" and position["stage_um_at_first_frame"] == [5.0, 6.0, 1.0]
    assert "1" not in root["0"]
    window = root["0"].attrs["ome"]["omero"]["channels"][0]["window"]
    assert (window["min"], window["max"]) == (123.5, 123.5)


@pytest.mark.parametrize(("plane", "message"), [
    (np.zeros((32, 30), np.float32), "shape"),
    (np.zeros((32, 32), np.float64), "dtype"),
    (np.zeros((32, 32), np.uint16), "dtype"),
])
def test_rejects_wrong_shape_or_dtype(tmp_path, plane, message):
    writer = SRStoreWriter(tmp_path / "sr.ome.zarr", channels=["c"], provenance={})
    writer.open_position(0, GEOM)
    with pytest.raises(SRStoreError, match=message):
        writer.write(0, 0, "c", 0, plane)


def test_refuses_to_overwrite_without_permission(tmp_path):
    SRStoreWriter(tmp_path / "sr.ome.zarr", provenance={})
    with pytest.raises(SRStoreError, match="already exists"):
        SRStoreWriter(tmp_path / "sr.ome.zarr", provenance={})
