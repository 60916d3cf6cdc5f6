"""An "as fast as possible" sequence (interval 0) still gives a raw store napari can open.

ome-writers takes the raw store's time scale from the sequence's interval, so interval 0 used to
write time scale 0, which napari refuses ("scale values of 0"). ``sracquire`` now passes a
positive scale (1, no unit: the runtime's rule for an unknown step, which the SR store follows).
"""

from __future__ import annotations

import pytest
import useq
import zarr
from napari.components import ViewerModel
from napari_ome_zarr._reader import napari_get_reader
from srscope.acquisition.cli import main
from srscope.acquisition.session import raw_dimension_overrides


def _level0_time(group: zarr.Group) -> tuple[float, str | None]:
    ms = group.attrs["ome"]["multiscales"][0]
    assert ms["axes"][0]["name"] == "t"
    return ms["datasets"][0]["coordinateTransformations"][0]["scale"][0], ms["axes"][0].get("unit")


def test_only_a_zero_interval_is_overridden() -> None:
    assert raw_dimension_overrides(useq.MDASequence(time_plan={"interval": 0, "loops": 3})) == {
        "t": {"scale": 1.0, "unit": None}}
    assert raw_dimension_overrides(useq.MDASequence(time_plan={"interval": 0.5, "loops": 3})) is None
    assert raw_dimension_overrides(useq.MDASequence(channels=["DAPI"])) is None


@pytest.mark.parametrize("interval, expected", [(0, (1.0, None)), (0.5, (0.5, "second"))])
def test_raw_and_sr_stores_open_in_napari(model_path, tmp_path, capsys, interval, expected) -> None:
    seq = useq.MDASequence(channels=["DAPI"], time_plan={"interval": interval, "loops": 2})
    (tmp_path / "seq.json").write_text(seq.model_dump_json(exclude_unset=True))
    out = tmp_path / "run.ome.zarr"
    assert main(["simulated", str(tmp_path / "seq.json"), "--model", str(model_path), "--out", str(out),
                 "--roi", "0,0,32,32", "--exposure-ms", "1", "--tile", "64", "--quiet"]) == 0
    capsys.readouterr()
    raw_path = tmp_path / "run.raw.ome.zarr"
    raw = zarr.open_group(str(raw_path), mode="r")  # one position: ome-writers writes a single image
    assert _level0_time(raw) == expected
    assert raw["0"].shape[0] == 2  # both time points are there
    sr_time, _ = _level0_time(zarr.open_group(str(out / "0"), mode="r"))
    assert sr_time == expected[0]  # raw and SR time axes line up
    assert raw.attrs["ome_writers"]["frame_metadata"][1]["delta_t"] > 0  # the frames' real times are kept

    for path in (raw_path, out):
        layers = napari_get_reader(str(path))(str(path))
        assert layers
        for data, meta, _kind in layers:
            viewer = ViewerModel()
            added = viewer.add_image(data, **meta)  # napari raises on a zero scale
            assert added[0].scale[0] == expected[0]
