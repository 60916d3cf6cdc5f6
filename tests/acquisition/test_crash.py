"""Killing the process mid-run (SIGKILL: no cleanup at all) leaves a valid, readable SR store
holding every plane written before the kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import zarr
from ome_zarr_models.v05.image import Image

CHILD = r"""
import sys, time, useq
from pymmcore_plus.experimental.unicore import UniMMCore
from srscope.acquisition import ChannelModels, LiveSRHandler
from srscope.acquisition.simulated import SIMULATED_CONFIG
from srscope.runtime import Enhancer

class Slow:
    def __init__(self, inner):
        self.inner, self.card = inner, inner.card
    def enhance_many(self, frames):
        time.sleep(0.2 * len(frames))
        return self.inner.enhance_many(frames)

model = Slow(Enhancer.from_file(sys.argv[1], tile=None, intra_op_threads=1))
core = UniMMCore()
core.loadSystemConfiguration(str(SIMULATED_CONFIG))
core.setROI(0, 0, 32, 32)
handler = LiveSRHandler(ChannelModels.single(model), sys.argv[2], batch_size=1, pixel_size_um=0.325)
with handler.connected(core):
    core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 200}))
"""


def test_sigkill_mid_run_leaves_valid_store(model_path, tmp_path):
    store = tmp_path / "sr.ome.zarr"
    chunks = store / "0" / "0" / "c"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(model_path), str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if chunks.exists() and sum(1 for p in chunks.rglob("*") if p.is_file()) >= 3:
                break
            assert proc.poll() is None, "child ended before the kill"
            time.sleep(0.05)
        else:
            raise AssertionError("no SR planes appeared within 90 s")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)

    root = zarr.open_group(str(store), mode="r")
    assert root.attrs["srscope"]["status"] == "acquiring"  # honest: the run never finished
    Image.from_zarr(root["0"])
    sr = root["0/0"][:]
    written = ~np.isnan(sr).all(axis=(1, 2, 3, 4))
    n = int(written.sum())
    assert n >= 3
    assert written[:n].all() and not written[n:].any()  # a contiguous prefix: in-order, nothing torn
    assert np.isfinite(sr[:n]).all() and (sr[:n] > 0).all()
