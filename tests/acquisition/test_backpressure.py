"""Backpressure policies on the pipeline itself (real model, real store), and the ``block``
policy's memory bound in pymmcore-plus's ``output=[raw, handler]`` form (relay thread)."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest
import useq
import zarr
from srscope.acquisition import (
    Backpressure,
    ChannelModels,
    FrameKey,
    LiveFrame,
    LivePipeline,
    LiveSRHandler,
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


def _relay_threads() -> list:
    return [t for t in threading.enumerate() if type(t).__name__ == "MDARelayThread"]


def _held_frames_during(core, handler, sequence, *, bounded: bool) -> int:
    """Run ``core.mda.run(seq, output=[handler])`` and return the most frames ever held between
    the camera and the SR worker: pymmcore-plus's relay deque plus srscope's queue, sampled on
    the acquisition thread at every frame (the relay's count is its own ``remaining()``)."""
    peak = [0]

    def probe(*_):
        relays = _relay_threads()
        queued = handler.pipeline.queued if handler.pipeline is not None else 0
        peak[0] = max(peak[0], sum(r.remaining() for r in relays) + queued)

    gate = handler.bounded(core) if bounded else contextlib.nullcontext()
    with gate:
        core.mda.events.frameReady.connect(probe)  # after the gate: it sees the state the gate let through
        try:
            core.mda.run(sequence, output=[handler])
        finally:
            core.mda.events.frameReady.disconnect(probe)
    return peak[0]


@pytest.mark.parametrize("bounded", [False, True])
def test_block_bounds_memory_in_the_output_form_only_with_the_gate(core, enhancer, slow, tmp_path, bounded):
    capacity, n = 4, 40
    handler = LiveSRHandler(ChannelModels.single(slow(enhancer, 0.04)), tmp_path / "sr.ome.zarr",
                            max_queued=capacity, batch_size=1)
    peak = _held_frames_during(core, handler, useq.MDASequence(time_plan={"interval": 0, "loops": n}),
                               bounded=bounded)
    print(f"bounded={bounded}: at most {peak} frames held (capacity {capacity})")
    s = handler.summary
    assert s.frames_super_resolved == n and s.frames_skipped == s.frames_failed == 0  # block: nothing lost
    assert not np.isnan(zarr.open_array(str(tmp_path / "sr.ome.zarr/0/0"), mode="r")[:]).any()
    if bounded:
        # queue + relay never hold more than the queue's capacity (+1 frame in the worker's hands)
        assert peak <= capacity + 1, peak
        assert s.blocked_s > 0 and not any("relay" in w for w in s.warnings)
    else:
        # pymmcore-plus's relay deque is unbounded: frames pile up there, and the run says so
        assert peak > 3 * capacity, peak
        assert sum("relay thread" in w for w in s.warnings) == 1
