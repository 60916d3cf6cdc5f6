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
            assert proc.poll() is None, f"child ended (exit {proc.returncode}) before the kill"
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


SESSION_CHILD = r"""
import sys, time, useq
from srscope.acquisition import ChannelModels
from srscope.acquisition.session import run_session

class Slow:  # the real model, slower than the camera, so SR work is still queued at the kill
    def __init__(self, inner):
        self.inner, self.card = inner, inner.card
    def enhance_many(self, frames):
        time.sleep(0.15 * len(frames))
        return self.inner.enhance_many(frames)

loaded = ChannelModels.from_files(sys.argv[1], tile=None, intra_op_threads=1)
slow = Slow(loaded.default)
models = ChannelModels(by_channel={"DAPI": slow, "FITC": slow})  # TxRed: raw only
models.paths, models.options = {id(slow): sys.argv[1]}, loaded.options  # as from_files records them
seq = useq.MDASequence(stage_positions=[(0, 0, 0), (80, 40, 0)], channels=["DAPI", "FITC", "TxRed"],
                       time_plan={"interval": 0, "loops": 8}, axis_order="tpc")
run_session("simulated", seq, models, sys.argv[2], batch_size=1, progress=False, camera_roi=(0, 0, 32, 32),
            exposure_ms=1.0)
"""


def _sigkill_when(proc: subprocess.Popen, ready, what: str) -> None:
    try:
        deadline = time.monotonic() + 90
        while not ready():
            assert proc.poll() is None, f"child ended (exit {proc.returncode}) before the kill"
            assert time.monotonic() < deadline, f"{what} within 90 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)


def test_fill_after_sigkill_completes_the_run(model_path, enhancer, tmp_path, capsys):
    """A real SIGKILL of a live sracquire-style session; ``sracquire fill`` finishes its SR store."""
    from srscope.acquisition.cli import main
    from srscope.runtime.synthetic import build_test_model

    assert main(["fill", str(tmp_path / "nothing")]) == 2
    assert "is not an srscope SR store" in capsys.readouterr().err

    store, raw_store = tmp_path / "run.ome.zarr", tmp_path / "run.raw.ome.zarr"
    proc = subprocess.Popen([sys.executable, "-c", SESSION_CHILD, str(model_path), str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def some_sr_planes() -> bool:
        return sum(1 for p in store.glob("*/0/c/**/*") if p.is_file()) >= 4

    _sigkill_when(proc, some_sr_planes, "no SR planes appeared")
    before = zarr.open_group(str(store), mode="r")
    assert before.attrs["srscope"]["status"] == "acquiring"
    kept = {p: before[f"{p}/0"][:] for p in before.group_keys() if p.isdigit()}
    geometry = {p: before[p].attrs["ome"]["multiscales"] for p in kept}
    assert sum(int(np.isfinite(a).all(axis=(3, 4)).sum()) for a in kept.values()) >= 4

    # a model with other weights under the recorded name must not fill anything
    other = build_test_model(tmp_path / "other.onnx", scale=2, name="test-x2", seed=7)
    assert main(["fill", str(store), "--channel-model", f"DAPI={other}", "--channel-model", f"FITC={other}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "weights checksum differs" in err and "\n" not in err
    assert zarr.open_group(str(store), mode="r").attrs["srscope"]["status"] == "acquiring"  # untouched

    assert main(["fill", str(tmp_path), "--quiet"]) == 0  # the run directory: its one SR store is found
    printed = capsys.readouterr().out
    root = zarr.open_group(str(store), mode="r")
    meta = root.attrs["srscope"]
    raw = zarr.open_group(str(raw_store), mode="r")
    never = [(p, t, c) for p in (0, 1) for t in range(8) for c in range(3) if not raw[f"{p}/0"][t, c].any()]
    assert meta["status"] == ("complete" if not never else "canceled")
    assert meta["fill"]["status_before"] == "acquiring" and meta["fill"]["planes_filled"] > 0
    assert meta["fill"]["raw_planes_never_acquired"] == len(never) and f"filled {meta['fill']['planes_filled']}" in printed
    assert not list(tmp_path.glob(".run.ome.zarr.fill-*"))  # built beside, swapped in, nothing left over
    assert BioFormats2Raw_ok(root)
    for p in (0, 1):
        Image.from_zarr(root[str(p)])
        assert [c["label"] for c in root[str(p)].attrs["ome"]["omero"]["channels"]] == ["DAPI", "FITC"]
        sr = root[f"{p}/0"][:]
        assert sr.shape == (8, 2, 1, 64, 64)
        for t in range(8):
            for c in range(2):  # DAPI, FITC; TxRed (raw channel 2) has no SR plane
                if (p, t, c) in never:
                    assert np.isnan(sr[t, c, 0]).all()
                    continue
                expected = enhancer.enhance(raw[f"{p}/0"][t, c])
                np.testing.assert_allclose(sr[t, c, 0], expected, rtol=1e-5, atol=1e-3)
        if str(p) in kept:  # planes written before the kill are carried over bit for bit, geometry too
            assert root[str(p)].attrs["ome"]["multiscales"] == geometry[str(p)]
            done = np.isfinite(kept[str(p)]).all(axis=(3, 4))
            np.testing.assert_array_equal(sr[done], kept[str(p)][done])

    # the run is finished now: a second fill has nothing to do
    assert main(["fill", str(store), "--quiet"]) == 0
    assert "nothing to fill" in capsys.readouterr().out


def BioFormats2Raw_ok(root) -> bool:
    from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw

    BioFormats2Raw.from_zarr(root)
    return True
