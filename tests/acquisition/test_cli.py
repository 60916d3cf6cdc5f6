"""``sracquire`` end to end on the simulated microscope config (loaded through UniMMCore's
real config-file path), plus its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import useq
import zarr
from ome_zarr_models.v05.image import Image
from srscope.acquisition.cli import main
from srscope.acquisition.simulated import SIMULATED_PIXEL_SIZE_UM


def test_sracquire_runs_sequence_file_with_per_channel_models(model_path, tmp_path, capsys):
    seq = useq.MDASequence(stage_positions=[(0, 0, 0), (30, 30, 0)], channels=["DAPI", "FITC"],
                           time_plan={"interval": 0, "loops": 2})
    seq_file = tmp_path / "seq.json"
    seq_file.write_text(seq.model_dump_json(exclude_unset=True))
    out = tmp_path / "run.ome.zarr"
    rc = main(["simulated", str(seq_file), "--channel-model", f"FITC={model_path}", "--out", str(out),
               "--roi", "0,0,48,48", "--exposure-ms", "1", "--tile", "64", "--quiet",
               "--summary-json", str(tmp_path / "summary.json")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "frames super-resolved:  4" in printed and "frames passed through:  4" in printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_in"] == 8 and summary["latency_p95_ms"] > 0

    raw = zarr.open_group(str(tmp_path / "run.raw.ome.zarr"), mode="r")
    root = zarr.open_group(str(out), mode="r")
    assert root.attrs["srscope"]["raw_store"] == str(tmp_path / "run.raw.ome.zarr")
    for p in ("0", "1"):
        Image.from_zarr(root[p])
        assert raw[f"{p}/0"].shape == (2, 2, 48, 48)  # (t, c, y, x): ome-writers drops absent axes
        # the simulated config is calibrated: the raw store carries a real pixel size (napari rejects 0)
        raw_scale = raw[p].attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
        assert raw_scale[-2:] == [SIMULATED_PIXEL_SIZE_UM, SIMULATED_PIXEL_SIZE_UM]
        sr = root[f"{p}/0"][:]
        assert sr.shape == (2, 1, 1, 96, 96) and not np.isnan(sr).any()


def test_sracquire_errors_are_one_line(model_path, tmp_path, capsys):
    assert main(["simulated", str(tmp_path / "missing.json"), "--model", str(model_path),
                 "--out", str(tmp_path / "o.ome.zarr")]) == 2
    assert capsys.readouterr().err.strip() == f"sracquire: error: sequence file not found: {tmp_path / 'missing.json'}"
    (tmp_path / "s.json").write_text("{}")
    assert main(["simulated", str(tmp_path / "s.json"), "--model", str(tmp_path / "nope.onnx"),
                 "--out", str(tmp_path / "o.ome.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sracquire: error:") and "nope.onnx" in err and "\n" not in err
    assert main(["simulated", str(tmp_path / "s.json"), "--channel-model", "DAPI",
                 "--out", str(tmp_path / "o.ome.zarr")]) == 2
    assert "NAME=MODEL.onnx" in capsys.readouterr().err


def test_sracquire_version_and_batch_options(model_path, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("sracquire (srscope-acquisition) ")
    help_text = _help(capsys)
    assert "--frame-batch N" in help_text and "--tile-batch N" in help_text and "[--batch-size" not in help_text
    # the deprecated spelling still works, and says what it meant
    (tmp_path / "s.json").write_text('{"time_plan": {"interval": 0, "loops": 2}}')
    rc = main(["simulated", str(tmp_path / "s.json"), "--model", str(model_path), "--out",
               str(tmp_path / "o.ome.zarr"), "--roi", "0,0,32,32", "--tile", "64", "--batch-size", "2", "--quiet"])
    assert rc == 0 and "--batch-size is deprecated" in capsys.readouterr().err
    meta = zarr.open_group(str(tmp_path / "o.ome.zarr"), mode="r").attrs["srscope"]["provenance"]
    assert meta["worker_batch_size"] == 2 and meta["models"]["default"]["inference"]["batch_size"] == 2


def _help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["--help"])
    return capsys.readouterr().out
