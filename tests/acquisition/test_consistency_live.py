"""Live consistency check (issue 14) on the real pymmcore-plus engine with the simulated camera.

The shipped widefield model (its card carries a fitted degradation model) super-resolves two
channels: DAPI at a normal exposure (widefield-like frames of the simulated slide) and FITC at
0.001 ms, i.e. nothing but the camera offset and Poisson noise: pure noise, which the check must
flag, while the widefield-like DAPI frames must pass. Scores are compared with :func:`score_plane` on the raw frames pymmcore-plus stored and the
SR planes read back from the store.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import useq
import zarr
from srscope.acquisition import ChannelModels, LiveSRHandler
from srscope.acquisition.simulated import SIMULATED_PIXEL_SIZE_UM
from srscope.acquisition.writer import PositionGeometry, SRStoreWriter
from srscope.runtime import Enhancer
from srscope.runtime.card import read_card
from srscope.runtime.consistency import score_plane

ROOT = Path(__file__).resolve().parents[2]
WIDEFIELD = ROOT / "models" / "widefield-10x0.4-to-20x0.75.onnx"
CHANNELS = ("DAPI", "FITC")


@pytest.fixture(scope="module")
def widefield() -> Enhancer:
    return Enhancer.from_file(WIDEFIELD, tile=None, intra_op_threads=1)


def test_live_summary_scores_every_frame_and_the_store_lists_flagged_ones(core, widefield, tmp_path):
    degradation = read_card(WIDEFIELD).degradation
    assert degradation is not None
    raw_path, sr_path = tmp_path / "run.raw.ome.zarr", tmp_path / "run.ome.zarr"
    handler = LiveSRHandler(ChannelModels.single(widefield), sr_path, pixel_size_um=SIMULATED_PIXEL_SIZE_UM,
                            raw_store=str(raw_path))
    sequence = useq.MDASequence(channels=[{"config": "DAPI", "exposure": 10.0}, {"config": "FITC", "exposure": 0.001}],
                                time_plan={"interval": 0, "loops": 2}, axis_order="tc")
    core.mda.run(sequence, output=[str(raw_path), handler])

    summary = handler.summary
    assert summary.frames_super_resolved == summary.frames_checked == 4
    raw = zarr.open_group(str(raw_path), mode="r")["0"][:]   # one position: t, c, y, x (no z)
    sr = zarr.open_group(str(sr_path), mode="r")["0/0"][:]
    by_frame = {(s["t"], s["channel"]): s for s in summary.frame_scores}
    assert sorted(by_frame) == [(t, c) for t in range(2) for c in CHANNELS]
    for (t, channel), stored in by_frame.items():
        c = CHANNELS.index(channel)
        expected = score_plane(raw[t, c], sr[t, c, 0], degradation)
        assert stored["position"] == 0 and stored["z"] == 0
        assert stored["rsp"] == pytest.approx(expected.rsp, rel=1e-5)
        assert stored["error_fraction"] == pytest.approx(expected.error_fraction, abs=1e-6)
        assert stored["flagged"] == expected.flagged and stored["reasons"] == list(expected.reasons)
    for t in range(2):  # the pure-noise frames are flagged, and for what noise does; the slide is not
        assert by_frame[(t, "FITC")]["flagged"] and "noise" in by_frame[(t, "FITC")]["reasons"]
        assert not by_frame[(t, "DAPI")]["flagged"]

    flagged = [s for s in summary.frame_scores if s["flagged"]]
    assert summary.frames_flagged == len(flagged) == 2
    expected_list = [{"position": 0, "t": s["t"], "c": CHANNELS.index(s["channel"]), "channel": s["channel"],
                      "z": 0, "reasons": s["reasons"]} for s in flagged]
    assert summary.flagged_frames == expected_list
    stored = zarr.open_group(str(sr_path), mode="r").attrs["srscope"]
    assert stored["consistency"] == {"frames_checked": 4, "frames_flagged": len(flagged), "flagged": expected_list}
    assert stored["summary"]["frames_flagged"] == len(flagged)
    assert any("flagged by the consistency check" in w for w in summary.warnings)
    text = summary.format()
    assert f"consistency check:      {len(flagged)} of 4 frames flagged" in text
    assert "flagged: position 0 t=0 FITC z=0 (" in text


def test_flagged_frames_reach_the_store_while_the_run_goes_on(tmp_path):
    writer = SRStoreWriter(tmp_path / "run.ome.zarr", provenance={}, channels=["DAPI", "FITC"])
    writer.open_position(0, PositionGeometry(input_shape=(8, 8), input_pixel_size_um=0.325, scale=2))
    writer.record_score(0, 0, "DAPI", 0, flagged=False)
    assert "consistency" not in zarr.open_group(str(tmp_path / "run.ome.zarr"), mode="r").attrs["srscope"]
    writer.record_score(0, 1, "FITC", 2, flagged=True, reasons=("noise", "rsp"))
    live = zarr.open_group(str(tmp_path / "run.ome.zarr"), mode="r").attrs["srscope"]  # before close
    assert live["status"] == "acquiring"
    assert live["consistency"] == {"frames_checked": 2, "frames_flagged": 1, "flagged": [
        {"position": 0, "t": 1, "c": 1, "channel": "FITC", "z": 2, "reasons": ["noise", "rsp"]}]}
    writer.record_score(0, 2, "DAPI", 0, flagged=False)  # counted; written at the next flush or at close
    writer.close("complete")
    final = zarr.open_group(str(tmp_path / "run.ome.zarr"), mode="r").attrs["srscope"]["consistency"]
    assert final["frames_checked"] == 3 and final["frames_flagged"] == 1


def test_models_without_a_degradation_model_leave_frames_unchecked(core, enhancer, tmp_path):
    assert enhancer.card.degradation is None
    handler = LiveSRHandler(ChannelModels.single(enhancer), tmp_path / "run.ome.zarr",
                            pixel_size_um=SIMULATED_PIXEL_SIZE_UM)
    core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 2}), output=[handler])
    summary = handler.summary
    assert summary.frames_super_resolved == 2 and summary.frames_checked == 0 and summary.frame_scores == []
    assert "consistency" not in zarr.open_group(str(tmp_path / "run.ome.zarr"), mode="r").attrs["srscope"]
    assert "consistency check" not in summary.format()
