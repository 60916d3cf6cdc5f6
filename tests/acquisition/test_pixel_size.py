"""Pixel sizes are carried through: output = input ÷ scale, with warnings when unknown or off-model."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zarr
from srscope.acquisition import (
    ChannelModels,
    FrameKey,
    LiveFrame,
    LivePipeline,
    SRStoreWriter,
)


@pytest.mark.parametrize(("reported", "expected_in", "warning"), [
    (0.325, 0.325, None),
    (None, 0.325, "pixel size unknown"),  # no calibration: the model card's input pixel size
    (0.65, 0.65, "expects 0.325"),        # 5x objective on a 10x model: kept, but flagged
])
def test_output_pixel_size_follows_input(enhancer, tmp_path, reported, expected_in, warning):
    writer = SRStoreWriter(tmp_path / "sr.ome.zarr", channels=["DAPI"], provenance={})
    pipe = LivePipeline(ChannelModels.single(enhancer), writer)
    frame = np.full((32, 32), 400, np.uint16)
    pipe.submit(LiveFrame(FrameKey(0, 0, "DAPI", 0), frame, t_in=time.perf_counter(), pixel_size_um=reported,
                          stage_um=(10.0, 20.0, 3.0)))
    s = pipe.finish()
    assert s.frames_super_resolved == 1
    if warning is None:
        assert s.warnings == []
    else:
        assert len(s.warnings) == 1 and warning in s.warnings[0]
    ms = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")["0"].attrs["ome"]["multiscales"][0]
    scale, translation = ms["datasets"][0]["coordinateTransformations"]
    assert scale["scale"][-2:] == [expected_in / 2, expected_in / 2]
    assert translation["translation"][2] == 3.0
