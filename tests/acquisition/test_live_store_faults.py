"""Kill the live SR writer at every hit of every store step; the store must stay honest and readable.

A forked child writes a small live run (two positions, a channel that appears mid-run, t growing
past its size hint, then ``close("complete")``) with ``SRSCOPE_FAULT_AT=<step>:<n>``, and dies
with ``os._exit(137)`` there. After each kill:

* the root path is absent (killed while the root was being built; the next writer sweeps the
  half-built sibling) or it is a valid bioformats2raw collection whose status is not ``complete``;
* every image validates as NGFF, and every plane of every pyramid level is either untouched (NaN)
  or exactly what was written: no torn or mixed planes; the OME-XML and ``OME/series`` list
  every image that holds a plane (an image is listed just after it is created, so a kill in
  between leaves one empty image unlisted);
* a new run can be started at the same path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr.utils import find_multiscales
from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v05.image import Image as NgffImage05
from srscope.acquisition import PositionGeometry, SRStoreWriter
from srscope.runtime.io.faults import (
    FAULT_ENV,
    ForkedRunTimeout,
    hit_counts,
    reset_faults,
    run_forked,
)
from srscope.runtime.io.pyramid import plane_levels

CHANNELS = ("DAPI", "FITC")


def _plane(p: int, t: int, c: int) -> np.ndarray:
    return np.random.default_rng(100 * p + 10 * t + c).random((64, 64), dtype=np.float32) * 1000


def _live_run(path: Path) -> None:
    writer = SRStoreWriter(path, channels=CHANNELS[:1], size_hints={"t": 1}, provenance={"test": True})
    for p in range(2):
        writer.open_position(p, PositionGeometry((32, 32), 0.65, 2, (100.0 * p, 5.0, 0.0), t_interval_s=1.0))
    for t in range(2):
        for p in range(2):
            for c, channel in enumerate(CHANNELS):
                writer.write(p, t, channel, 0, _plane(p, t, c))
    writer.close("complete")


def _forked(path: Path, fault: str) -> int:
    def live() -> int:
        _live_run(path)
        return 0

    try:
        return run_forked(live, fault, timeout_s=60, poll_s=0.002)
    except ForkedRunTimeout as exc:
        pytest.fail(f"live writer {exc}")


def _check_honest_and_readable(path: Path, fault: str) -> None:
    if not path.exists():
        return
    root = zarr.open_group(path, mode="r")
    assert root.attrs["srscope"]["status"] != "complete", fault
    collection = BioFormats2Raw.from_zarr(root)
    listed = [Path(entry[0]).name for entry in find_multiscales(path)]
    assert listed == list(root["OME"].attrs["ome"]["series"]), fault
    # an image is listed only once it exists; killed in between, it exists unlisted, and empty
    assert set(listed) <= set(collection.image_paths), fault
    for key in collection.image_paths:
        NgffImage05.from_zarr(root[key])
        if key not in listed:
            assert np.isnan(root[key]["0"][...]).all(), fault
            continue
        levels = [root[key][str(i)][...] for i in range(2)]
        t_size, c_size = levels[0].shape[:2]
        for t in range(t_size):
            for c in range(c_size):
                stored = [level[t, c, 0] for level in levels]
                if np.isnan(stored[0]).all():
                    continue  # never written: level 0 is written last, so nothing else may be missing
                expected = plane_levels(_plane(int(key), t, c), 2)
                for level, (got, want) in enumerate(zip(stored, expected)):
                    np.testing.assert_array_equal(got, want, err_msg=f"{fault}: {key} t{t} c{c} level {level}")


def test_live_store_killed_at_every_step_stays_valid_and_honest(tmp_path: Path, monkeypatch) -> None:
    reference = tmp_path / "reference.ome.zarr"
    monkeypatch.setenv(FAULT_ENV, "*")
    reset_faults()
    _live_run(reference)
    hits = hit_counts()
    monkeypatch.delenv(FAULT_ENV)
    assert set(hits) == {"collection.create", "collection.xml", "create.level", "create.rename",
                         "write.level", "finalize.metadata"}
    for step, n in sorted(hits.items()):
        for hit in range(1, n + 1):
            case = tmp_path / f"{step}-{hit}"
            case.mkdir()
            path = case / "run.ome.zarr"
            fault = f"{step}:{hit}"
            assert _forked(path, fault) == 137, fault
            _check_honest_and_readable(path, fault)
            # the path can be used again: a new run replaces a crashed one, a half-built root is swept
            SRStoreWriter(path, provenance={}, overwrite=True).close("aborted")
            assert sorted(p.name for p in case.iterdir()) == ["run.ome.zarr"], fault
