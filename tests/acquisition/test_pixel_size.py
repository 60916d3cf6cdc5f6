"""Pixel sizes are carried through (output = input ÷ scale) and judged by the runtime's one policy
(srscope.runtime.pixelsize: warn above 5 %, refuse above 20 % unless ignored)."""

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
from srscope.acquisition.cli import main


@pytest.mark.parametrize(("reported", "ignore", "expected_in", "warning", "error"), [
    (0.325, False, 0.325, None, None),
    (0.335, False, 0.335, None, None),              # 3 %: a rounding in the config, no note
    (None, False, 0.325, "pixel size unknown", None),  # no calibration: the model card's input pixel size
    (0.36, False, 0.36, "by 11%", None),            # off, still close enough: SR'd, flagged
    (0.65, False, None, None, "by 100%"),           # 5x objective on a 10x model: refused, NaN plane
    (0.65, True, 0.65, "by 100%", None),            # ... unless the user insists
])
def test_pixel_size_policy_live(enhancer, tmp_path, reported, ignore, expected_in, warning, error):
    writer = SRStoreWriter(tmp_path / "sr.ome.zarr", channels=["DAPI"], provenance={})
    pipe = LivePipeline(ChannelModels.single(enhancer), writer, ignore_pixel_size=ignore)
    frame = np.full((32, 32), 400, np.uint16)
    pipe.submit(LiveFrame(FrameKey(0, 0, "DAPI", 0), frame, t_in=time.perf_counter(), pixel_size_um=reported,
                          stage_um=(10.0, 20.0, 3.0)))
    s = pipe.finish()
    assert len(s.warnings) == (0 if warning is None else 1)
    if warning is not None:
        assert warning in s.warnings[0]
    if error is not None:
        assert s.frames_failed == 1 and s.frames_super_resolved == 0 and s.status == "complete_with_errors"
        assert len(s.errors) == 1 and error in s.errors[0] and "--ignore-pixel-size" in s.errors[0]
        assert "0" not in zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")  # no plane written
        return
    assert s.frames_super_resolved == 1 and s.errors == []
    ms = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")["0"].attrs["ome"]["multiscales"][0]
    scale, translation = ms["datasets"][0]["coordinateTransformations"]
    assert scale["scale"][-2:] == [expected_in / 2, expected_in / 2]
    assert translation["translation"][2] == 3.0


def test_sracquire_refuses_off_model_pixel_size_before_acquiring(model_path, tmp_path, capsys):
    (tmp_path / "s.json").write_text('{"time_plan": {"interval": 0, "loops": 2}}')
    out = tmp_path / "run.ome.zarr"
    rc = main(["simulated", str(tmp_path / "s.json"), "--model", str(model_path), "--out", str(out),
               "--roi", "0,0,32,32", "--pixel-size-um", "0.65", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("sracquire: error: camera pixel size 0.65 µm") and "\n" not in err
    assert not out.exists() and not (tmp_path / "run.raw.ome.zarr").exists()


def test_fill_judges_the_raw_pixel_size_like_the_live_run(enhancer, tmp_path):
    from srscope.acquisition.fill import FillError, _check_pixel_sizes

    raw = zarr.open_group(str(tmp_path / "raw.ome.zarr"), mode="w", zarr_format=3)
    raw.create_array("0", shape=(1, 8, 8), dtype="uint16")
    raw.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "t", "type": "time"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.65, 0.65]}]}]}]}
    models = ChannelModels.single(enhancer)
    with pytest.raises(FillError, match="raw pixel size 0.65 µm differs .* by 100%"):
        _check_pixel_sizes(tmp_path / "raw.ome.zarr", models, ignore=False)
    _check_pixel_sizes(tmp_path / "raw.ome.zarr", models, ignore=True)  # the user insists: no error
