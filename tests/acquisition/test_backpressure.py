"""Backpressure policies on the pipeline itself (real model, real store)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zarr
from srscope.acquisition import (
    Backpressure,
    ChannelModels,
    FrameKey,
    LiveFrame,
    LivePipeline,
    SRStoreWriter,
)


def _frames(n: int, rng: np.random.Generator) -> list[LiveFrame]:
    return [LiveFrame(FrameKey(0, t, "DAPI", 0), rng.poisson(300, (32, 32)).astype(np.uint16),
                      t_in=time.perf_counter(), pixel_size_um=0.325) for t in range(n)]


def _pipeline(path, model, policy, capacity):
    writer = SRStoreWriter(path, channels=["DAPI"], size_hints={"t": 12}, provenance={})
    return LivePipeline(ChannelModels.single(model), writer, policy=policy, max_queued=capacity, batch_size=1)


def test_block_policy_waits_but_loses_nothing(enhancer, slow, tmp_path):
    pipe = _pipeline(tmp_path / "sr.ome.zarr", slow(enhancer, 0.03), Backpressure.BLOCK, 2)
    for frame in _frames(12, np.random.default_rng(0)):
        frame.t_in = time.perf_counter()
        pipe.submit(frame)
    s = pipe.finish()
    assert s.frames_super_resolved == 12 and s.frames_skipped == 0
    assert s.blocked_s > 0  # the tiny queue made the producer wait: that is the policy
    assert not np.isnan(zarr.open_array(str(tmp_path / "sr.ome.zarr/0/0"), mode="r")[:]).any()


def test_drop_oldest_counts_and_records_every_skipped_frame(enhancer, slow, tmp_path):
    pipe = _pipeline(tmp_path / "sr.ome.zarr", slow(enhancer, 0.05), "drop-oldest", 2)
    t0 = time.perf_counter()
    for frame in _frames(12, np.random.default_rng(1)):
        frame.t_in = time.perf_counter()
        pipe.submit(frame)
    submit_time = time.perf_counter() - t0
    s = pipe.finish()
    assert submit_time < 0.5  # never waited for the 50 ms/frame model
    assert s.frames_skipped > 0 and s.blocked_s == 0
    assert s.frames_super_resolved + s.frames_skipped == s.frames_in == 12
    skipped_t = sorted(k["t"] for k in s.skipped_frames)
    assert len(skipped_t) == s.frames_skipped

    root = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")
    meta = root.attrs["srscope"]
    assert meta["summary"]["frames_skipped"] == s.frames_skipped
    assert sorted(k["t"] for k in meta["summary"]["skipped_frames"]) == skipped_t
    planes = root["0/0"][:]
    missing = [t for t in range(12) if np.isnan(planes[t, 0, 0]).all()]
    assert missing == skipped_t  # exactly the skipped frames are absent, nothing else


def test_bad_policy_name_is_a_clear_error(enhancer, tmp_path):
    with pytest.raises(ValueError, match="drop-newest"):
        _pipeline(tmp_path / "sr.ome.zarr", enhancer, "drop-newest", 2)
