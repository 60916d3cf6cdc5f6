"""The one plane-indexed NGFF store, on its own: atomic creation, planes with their pyramid, done
records, the job lock, growth along t, and metadata written last or first; read back by
ome-zarr-py's Reader and validated by ome-zarr-models (not by srscope's own reader)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.v05.image import Image as NgffImage05
from srscope.runtime.io import Image, ImageIOError, read_image
from srscope.runtime.io.faults import FAULT_ENV, InjectedFault, reset_faults
from srscope.runtime.io.record import RecordBusyError
from srscope.runtime.io.store import (
    ACQUIRING,
    COMPLETE,
    RUNNING,
    PlaneStore,
    StoreExistsError,
    store_status,
)


def _template(store: PlaneStore, **kw) -> Image:
    return Image(store.level0, "tcyx", (0.1, 0.1), **kw)


def _reader_transforms(path: Path) -> list[list[dict]]:
    node = next(iter(Reader(parse_url(str(path)))()))
    return node.metadata["coordinateTransformations"]


@pytest.mark.parametrize("step", ["create.level", "create.rename"])
def test_creation_failing_at_any_step_leaves_nothing_and_can_be_redone(tmp_path: Path, monkeypatch,
                                                                       step: str) -> None:
    path = tmp_path / "s.ome.zarr"
    monkeypatch.setenv(FAULT_ENV, f"{step}:{2 if step == 'create.level' else 1}:raise")
    reset_faults()
    with pytest.raises(InjectedFault):
        PlaneStore.create(path, shape=(1, 2, 128, 128), dtype="uint16", axes="tcyx")
    assert list(tmp_path.iterdir()) == []  # neither the store nor its hidden build
    monkeypatch.delenv(FAULT_ENV)
    store = PlaneStore.create(path, shape=(1, 2, 128, 128), dtype="uint16", axes="tcyx")
    assert [a.shape[-1] for a in store.levels] == [128, 64, 32]
    assert store.status == RUNNING
    with pytest.raises(StoreExistsError, match="already exists"):
        PlaneStore.create(path, shape=(1, 1, 32, 32), dtype="uint16", axes="tcyx")


def test_metadata_last_store_is_no_image_until_finalised(tmp_path: Path) -> None:
    path = tmp_path / "s.ome.zarr"
    store = PlaneStore.create(path, shape=(1, 2, 64, 64), dtype="float32", axes="tcyx", job={"id": 7})
    rng = np.random.default_rng(1)
    planes = rng.random((2, 64, 64), dtype=np.float32) * 1000
    store.write_plane((0, 0), planes[0])
    store.mark_done(0, {"range": [0, 1]})
    with pytest.raises(ImageIOError, match="incomplete"):
        read_image(path)
    with pytest.raises(ValueError):
        NgffImage05.from_zarr(zarr.open_group(path, mode="r"))
    with pytest.raises(ImageIOError, match="1 chunk"):
        store.finalize(_template(store))

    store.write_plane((0, 1), planes[1])
    store.mark_done(1, {"range": [2, 3]})
    assert set(store.done()) == {0, 1} and store.done()[1] == {"range": [2, 3]}
    store.finalize(_template(store, translation={"y": 5.0, "x": -3.0}, metadata={"who": "test"}))
    assert store_status(path) == COMPLETE and store.job == {"id": 7} and store.metadata == {"who": "test"}
    NgffImage05.from_zarr(zarr.open_group(path, mode="r"))
    transforms = _reader_transforms(path)
    assert transforms[0][0]["scale"] == pytest.approx([1.0, 1.0, 0.1, 0.1])
    assert transforms[0][1]["translation"] == pytest.approx([0.0, 0.0, 5.0, -3.0])
    # level 1's first pixel averages level-0 pixels 0 and 1: its centre lies half a pixel in
    assert transforms[1][1]["translation"] == pytest.approx([0.0, 0.0, 5.05, -2.95])
    level1 = zarr.open_group(path, mode="r")["1"][0, 1]
    np.testing.assert_allclose(level1, planes[1].reshape(32, 2, 32, 2).mean(axis=(1, 3)), rtol=1e-6)


def test_metadata_first_store_is_an_image_while_it_grows(tmp_path: Path) -> None:
    path = tmp_path / "live.ome.zarr"
    base = Image(np.zeros((1, 1, 64, 64), np.float32), "tcyx", (0.2, 0.2), time_interval_s=2.0,
                 channel_names=("DAPI",), translation={"x": 10.0})
    store = PlaneStore.create(path, shape=(1, 1, 64, 64), dtype="float32", axes="tcyx", status=ACQUIRING,
                              fill_value=float("nan"), template=base, name="position 0")
    NgffImage05.from_zarr(zarr.open_group(path, mode="r"))  # valid before any plane
    store.write_plane((0, 0), np.full((64, 64), 7.0, np.float32))
    store.resize((3, 1))
    assert [a.shape[0] for a in store.levels] == [3, 3]
    store.write_plane((2, 0), np.full((64, 64), 9.0, np.float32))
    back = read_image(path)  # a live store is readable mid-run: unwritten planes are NaN
    data = np.asarray(back.data)
    assert data.shape == (3, 1, 64, 64) and np.isnan(data[1]).all() and (data[2] == 9).all()
    assert back.translation == pytest.approx({"x": 10.0}) and back.time_interval_s == pytest.approx(2.0)
    store.finalize(Image(store.level0, "tcyx", (0.2, 0.2), time_interval_s=2.0, channel_names=("DAPI",),
                         channel_display=({"color": "0000FF"},), translation={"x": 10.0}),
                   name="position 0", status="aborted", require_all=False)
    group = zarr.open_group(path, mode="r")
    NgffImage05.from_zarr(group)
    channel = dict(group.attrs)["ome"]["omero"]["channels"][0]
    assert channel["color"] == "0000FF" and (channel["window"]["min"], channel["window"]["max"]) == (7.0, 9.0)
    assert store_status(path) == "aborted"


def test_job_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    store = PlaneStore.create(tmp_path / "s.zarr", shape=(32, 32), dtype="uint8", axes="yx")
    with store.lock(), pytest.raises(RecordBusyError), PlaneStore.open(store.path).lock():
        pass
    with store.lock():
        pass
