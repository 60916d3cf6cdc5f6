"""Inference slower than the camera: nothing is lost and the acquisition is not slowed."""

from __future__ import annotations

import time

import numpy as np
import useq
import zarr
from srscope.acquisition import ChannelModels, LiveSRHandler
from srscope.acquisition.simulated import SIMULATED_PIXEL_SIZE_UM

DELAY_S = 0.1  # per frame: ~50x slower than the 2 ms simulated camera


def test_slow_model_loses_nothing_and_callback_returns_at_once(core, enhancer, slow, tmp_path):
    model = slow(enhancer, DELAY_S)
    handler = LiveSRHandler(ChannelModels.single(model), tmp_path / "sr.ome.zarr", batch_size=1,
                            max_queued=64, pixel_size_um=SIMULATED_PIXEL_SIZE_UM)
    seq = useq.MDASequence(stage_positions=[(0, 0, 0), (50, 50, 0)], channels=["DAPI", "FITC"],
                           time_plan={"interval": 0, "loops": 6})
    n = 2 * 2 * 6
    arrivals: list[float] = []
    core.mda.events.frameReady.connect(lambda *a: arrivals.append(time.perf_counter()))
    # Connected directly: the handler runs on the acquisition thread itself.
    with handler.connected(core):
        core.mda.run(seq)

    s = handler.summary
    assert s.frames_in == n and s.frames_super_resolved == n and s.frames_skipped == s.frames_failed == 0
    assert s.callback_median_ms is not None and s.callback_median_ms < 1.0
    assert s.blocked_s == 0.0
    # The camera delivered all frames in far less time than SR needed: acquisition never waited.
    acquisition_span = arrivals[-1] - arrivals[0]
    assert acquisition_span < 0.5 * n * DELAY_S, (acquisition_span, n * DELAY_S)
    assert s.latency_p95_ms > 1000 * DELAY_S * n / 3  # frames really queued up behind the slow model

    sr = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")
    for p in ("0", "1"):
        assert not np.isnan(sr[f"{p}/0"][:]).any()
    assert sr.attrs["srscope"]["summary"]["frames_super_resolved"] == n
