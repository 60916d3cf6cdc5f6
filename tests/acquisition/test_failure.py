"""A model that fails mid-run: acquisition and raw data continue, the SR store stays valid."""

from __future__ import annotations

import logging

import numpy as np
import useq
import zarr
from ome_zarr_models.v05.image import Image
from srscope.acquisition import ChannelModels, LiveSRHandler
from srscope.acquisition.simulated import SIMULATED_PIXEL_SIZE_UM


def test_model_failure_mid_run_keeps_raw_and_valid_sr(core, enhancer, failing, tmp_path, caplog):
    model = failing(enhancer, fail_on=4)
    raw_path, sr_path = tmp_path / "raw.ome.zarr", tmp_path / "sr.ome.zarr"
    handler = LiveSRHandler(ChannelModels.single(model), sr_path, batch_size=1,
                            pixel_size_um=SIMULATED_PIXEL_SIZE_UM)
    seq = useq.MDASequence(time_plan={"interval": 0, "loops": 10})
    with caplog.at_level(logging.ERROR, logger="srscope.acquisition"):
        core.mda.run(seq, output=[str(raw_path), handler])

    s = handler.summary
    assert s.frames_in == 10 and s.frames_super_resolved == 3 and s.frames_failed == 7
    assert s.status == "complete_with_errors" and len(s.errors) == 1
    assert "illegal memory access" in s.errors[0] and "test-x2" in s.errors[0]
    assert sum("illegal memory access" in r.getMessage() for r in caplog.records) == 1  # logged once
    assert model.calls == 4  # the broken model is not hammered for every later frame

    # One position: ome-writers writes a single NGFF image at the root, its array at "0".
    raw_frames = np.asarray(zarr.open_group(str(raw_path), mode="r")["0"][:])
    assert raw_frames.shape[0] == 10 and (raw_frames.reshape(10, -1).max(axis=1) > 0).all()

    root = zarr.open_group(str(sr_path), mode="r")
    Image.from_zarr(root["0"])
    sr = root["0/0"][:]
    assert not np.isnan(sr[:3]).any() and np.isnan(sr[3:]).all()
    assert root.attrs["srscope"]["status"] == "complete_with_errors"
    assert root.attrs["srscope"]["summary"]["errors"] == s.errors


def test_unusable_sr_store_disables_sr_but_not_the_acquisition(core, enhancer, tmp_path):
    sr_path = tmp_path / "sr.ome.zarr"
    sr_path.mkdir()  # already exists, and overwrite was not asked for
    handler = LiveSRHandler(ChannelModels.single(enhancer), sr_path, pixel_size_um=SIMULATED_PIXEL_SIZE_UM)
    core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 3}),
                 output=[str(tmp_path / "raw.ome.zarr"), handler])
    assert handler.summary.status == "failed" and "already exists" in handler.summary.errors[0]
    assert zarr.open_group(str(tmp_path / "raw.ome.zarr"), mode="r")["0"].shape[0] == 3
