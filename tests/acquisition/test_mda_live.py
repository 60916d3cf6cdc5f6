"""A real pymmcore-plus MDA (UniMMCore, Python camera/stages) with live SR, read back independently."""

from __future__ import annotations

import json

import numpy as np
import useq
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v05.image import Image
from srscope.acquisition import ChannelModels, LiveSRHandler
from srscope.acquisition.simulated import SIMULATED_PIXEL_SIZE_UM

FRAME = 64  # camera ROI set by the `core` fixture

POSITIONS = [(10.0, 20.0, 0.0), (150.0, 60.0, 0.0), (-40.0, 5.0, 0.0)]


def _sequence() -> useq.MDASequence:
    return useq.MDASequence(stage_positions=POSITIONS, channels=["DAPI", "FITC", "TxRed"],
                            time_plan={"interval": 0.05, "loops": 2}, z_plan={"range": 1.0, "step": 1.0},
                            axis_order="tpcz")


def test_mda_writes_valid_sr_store_matching_raw(core, enhancer, tmp_path):
    raw_path, sr_path = tmp_path / "run.raw.ome.zarr", tmp_path / "run.ome.zarr"
    models = ChannelModels(by_channel={"DAPI": enhancer, "FITC": enhancer})  # TxRed has no model
    handler = LiveSRHandler(models, sr_path, pixel_size_um=SIMULATED_PIXEL_SIZE_UM, raw_store=str(raw_path))
    core.mda.run(_sequence(), output=[str(raw_path), handler])

    s = handler.summary
    n_frames = 3 * 2 * 3 * 2
    assert s.frames_in == n_frames and s.accounted == n_frames
    assert s.frames_super_resolved == 3 * 2 * 2 * 2 and s.frames_passed_through == 3 * 2 * 2
    assert s.frames_failed == s.frames_skipped == 0 and s.status == "complete"

    root = zarr.open_group(str(sr_path), mode="r")
    BioFormats2Raw.from_zarr(root)  # NGFF 0.5 collection layout validates
    assert root["OME"].attrs["ome"]["series"] == ["0", "1", "2"]
    meta = root.attrs["srscope"]
    assert meta["status"] == "complete"
    assert meta["provenance"]["models"]["by_channel"]["DAPI"]["weights_sha256"] == enhancer.card.weights_sha256
    assert json.loads(meta["provenance"]["models"]["by_channel"]["FITC"]["card"])["name"] == "test-x2"
    assert meta["summary"]["frames_super_resolved"] == s.frames_super_resolved

    raw_root = zarr.open_group(str(raw_path), mode="r")
    for p, (x, y, _z) in enumerate(POSITIONS):
        image = Image.from_zarr(root[str(p)])  # validates multiscales/axes/transforms
        ms = image.ome_attributes.multiscales[0]
        assert [a.name for a in ms.axes] == ["t", "c", "z", "y", "x"]
        scale, translation = ms.datasets[0].coordinateTransformations
        assert np.allclose(scale.scale[-2:], [SIMULATED_PIXEL_SIZE_UM / 2] * 2)
        assert np.isclose(scale.scale[0], 0.05) and np.isclose(scale.scale[2], 1.0)
        # Stage position = image centre, in the output pixel grid.
        p_out = SIMULATED_PIXEL_SIZE_UM / 2
        assert np.isclose(translation.translation[-1] + (2 * FRAME - 1) / 2 * p_out, x)
        assert np.isclose(translation.translation[-2] + (2 * FRAME - 1) / 2 * p_out, y)
        assert [c["label"] for c in root[str(p)].attrs["ome"]["omero"]["channels"]] == ["DAPI", "FITC"]

        sr = root[f"{p}/0"][:]
        raw = raw_root[f"{p}/0"][:]  # ome-writers raw: (t, c, z, y, x) uint16
        assert sr.shape == (2, 2, 2, 2 * FRAME, 2 * FRAME) and sr.dtype == np.float32
        assert raw.shape == (2, 3, 2, FRAME, FRAME) and raw.dtype == np.uint16
        assert not np.isnan(sr).any()
        # Every SR plane is the model applied to the very raw frame stored by pymmcore-plus.
        for t in range(2):
            for c in range(2):
                for z in range(2):
                    np.testing.assert_allclose(sr[t, c, z], enhancer.enhance(raw[t, c, z]), rtol=1e-5, atol=1e-3)


def test_ome_zarr_py_reads_sr_image(core, enhancer, tmp_path):
    sr_path = tmp_path / "run.ome.zarr"
    handler = LiveSRHandler(ChannelModels.single(enhancer), sr_path, pixel_size_um=SIMULATED_PIXEL_SIZE_UM)
    seq = useq.MDASequence(stage_positions=POSITIONS[:1], time_plan={"interval": 0, "loops": 3})
    core.mda.run(seq, output=[handler])
    nodes = list(Reader(parse_url(str(sr_path / "0")))())
    data = np.asarray(nodes[0].data[0])
    assert data.shape == (3, 1, 1, 2 * FRAME, 2 * FRAME)
    assert np.isfinite(data).all() and data.mean() > 0


def test_attach_serves_mda_runs_started_elsewhere(core, enhancer, tmp_path):
    """The GUI route (napari-micromanager, pymmcore-gui): the GUI starts the MDA on its core; the
    handler attached from its console super-resolves it, and stops when detached."""
    sr_path = tmp_path / "gui_run.ome.zarr"
    handler = LiveSRHandler(ChannelModels.single(enhancer), sr_path)
    detach = handler.attach(core)
    core.mda.run(useq.MDASequence(stage_positions=POSITIONS[1:2], time_plan={"interval": 0, "loops": 2}))
    detach()
    s = handler.summary
    assert s.status == "complete" and s.frames_super_resolved == 2 and s.warnings == []
    core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 2}))  # after detach: not ours
    assert handler.summary is s and s.frames_in == 2
    ms = zarr.open_group(str(sr_path), mode="r")["0"].attrs["ome"]["multiscales"][0]
    scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert np.allclose(scale[-2:], [SIMULATED_PIXEL_SIZE_UM / 2] * 2)  # from the calibrated config
