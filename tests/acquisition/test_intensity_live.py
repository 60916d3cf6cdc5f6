"""Live acquisition with the camera-independent intensity policies, on the real pymmcore-plus engine.

``series`` latches one mapping per channel on that channel's first frame (channels sharing one
model file get their own latch), reports it in the run summary, and keeps frames comparable.
"""

from __future__ import annotations

import numpy as np
import useq
import zarr
from srscope.acquisition import ChannelModels, LiveSRHandler
from srscope.acquisition.cli import main as sracquire
from srscope.acquisition.simulated import SIMULATED_PIXEL_SIZE_UM
from srscope.runtime import Enhancer
from srscope.runtime.card import IntensityRule
from srscope.runtime.intensity import percentile_affine
from srscope.runtime.synthetic import build_test_model


def test_series_intensity_latches_per_channel_in_a_live_run(core, tmp_path):
    model = build_test_model(tmp_path / "pct.onnx", intensity=IntensityRule("percentile", 1.0, 99.8))
    models = ChannelModels.from_files(model, tile=None, intensity="series", intra_op_threads=1)
    frames: dict[str, list[np.ndarray]] = {}

    def keep(image, event, *_):
        frames.setdefault(event.channel.config, []).append(np.array(image))

    core.mda.events.frameReady.connect(keep)
    handler = LiveSRHandler(models, tmp_path / "sr.ome.zarr", pixel_size_um=SIMULATED_PIXEL_SIZE_UM)
    with handler.connected(core):
        core.mda.run(useq.MDASequence(channels=["DAPI", "FITC"], time_plan={"interval": 0, "loops": 3}))
    summary = handler.summary
    assert summary.frames_super_resolved == 6
    latched = {channel: entry["mapping"] for channel, entry in summary.intensity.items()}
    assert set(latched) == {"DAPI", "FITC"}
    for channel, mapping in latched.items():
        first = percentile_affine(frames[channel][0], 1.0, 99.8)
        assert mapping == [first.offset, first.scale], channel
    # every frame of a channel went through its channel's first-frame mapping
    sr = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")["0/0"][:]   # t, c, z, y, x
    reference = Enhancer.from_file(model, tile=None, intra_op_threads=1,
                                   intensity=percentile_affine(frames["FITC"][0], 1.0, 99.8))
    np.testing.assert_allclose(sr[2, 1, 0], reference.enhance(frames["FITC"][2]), rtol=1e-5, atol=1e-3)
    meta = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r").attrs["srscope"]
    assert "DAPI" in str(meta)


def test_sracquire_refuses_plane_intensity_for_a_fixed_model(tmp_path, model_path, capsys):
    seq = tmp_path / "seq.json"
    seq.write_text(useq.MDASequence(time_plan={"interval": 0, "loops": 1}).model_dump_json())
    code = sracquire(["simulated", str(seq), "--model", str(model_path), "--out", str(tmp_path / "o.ome.zarr"),
                      "--intensity", "plane", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "fixed intensity mapping" in err[0]
