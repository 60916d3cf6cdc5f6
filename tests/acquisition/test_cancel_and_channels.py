"""A canceled MDA leaves complete, valid stores; channel → model mapping rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import srscope.runtime.planes
import useq
import zarr
from ome_zarr_models.v05.image import Image
from srscope.acquisition import ChannelMappingError, ChannelModels, LiveSRHandler
from srscope.acquisition.channels import parse_channel_spec
from srscope.acquisition.simulated import SIMULATED_PIXEL_SIZE_UM
from srscope.runtime import Enhancer
from srscope.runtime.synthetic import build_test_model


def test_canceled_acquisition_super_resolves_every_acquired_frame(core, enhancer, slow, tmp_path):
    handler = LiveSRHandler(ChannelModels.single(slow(enhancer, 0.05)), tmp_path / "sr.ome.zarr",
                            pixel_size_um=SIMULATED_PIXEL_SIZE_UM)
    seen = []

    def cancel_after_five(*_):
        seen.append(1)
        if len(seen) == 5:
            core.mda.cancel()

    core.mda.events.frameReady.connect(cancel_after_five)
    with handler.connected(core):
        core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 50}))
    s = handler.summary
    assert 5 <= s.frames_in < 50 and s.frames_super_resolved == s.frames_in == len(seen)
    assert s.status == "canceled"
    root = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")
    Image.from_zarr(root["0"])
    assert root.attrs["srscope"]["status"] == "canceled"
    sr = root["0/0"][:]
    assert not np.isnan(sr[: s.frames_in]).any() and np.isnan(sr[s.frames_in:]).all()


def test_channel_models_share_sessions_and_reject_mixed_scales(model_path, tmp_path):
    other = build_test_model(tmp_path / "other.onnx", scale=2, name="other-x2", seed=3)
    models = ChannelModels.from_files(model_path, {"DAPI": model_path, "FITC": other}, tile=None)
    assert models.model_for("DAPI") is models.default  # same file → one session
    assert models.model_for("FITC").card.name == "other-x2"
    assert models.model_for("Cy5") is models.default
    assert models.sr_channels(["DAPI", "FITC", "Cy5"]) == ["DAPI", "FITC", "Cy5"]
    prov = models.provenance()
    assert prov["by_channel"]["FITC"]["weights_sha256"] != prov["default"]["weights_sha256"]
    assert prov["default"]["inference"]["provider"] == "CPUExecutionProvider"

    only_fitc = ChannelModels(by_channel={"FITC": models.model_for("FITC")})
    assert only_fitc.model_for("DAPI") is None and only_fitc.sr_channels(["DAPI", "FITC"]) == ["FITC"]

    x3 = Enhancer.from_file(build_test_model(tmp_path / "x3.onnx", scale=3, name="x3"), tile=None)
    with pytest.raises(ChannelMappingError, match="one scale factor"):
        ChannelModels(by_channel={"DAPI": models.default, "FITC": x3})
    with pytest.raises(ChannelMappingError, match="no model"):
        ChannelModels()
    assert parse_channel_spec(["DAPI=a.onnx"]) == {"DAPI": Path("a.onnx")}
    with pytest.raises(ChannelMappingError, match="twice"):
        parse_channel_spec(["DAPI=a.onnx", "DAPI=b.onnx"])
    for bad in ("DAPI", "DAPI=", "=a.onnx", "dir/x=a.onnx"):
        with pytest.raises(ChannelMappingError, match="NAME=MODEL.onnx"):
            parse_channel_spec([bad])
    # one error type for srrun and sracquire: the runtime's
    assert ChannelMappingError is srscope.runtime.planes.ChannelMappingError
