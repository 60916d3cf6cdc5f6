"""pycromanager's own Python-backend acquisition engine (AcqEngPy), driven offline.

pycromanager's Python backend talks to a snake_case pymmcore core that normally needs a
Micro-Manager installation. Here the same engine drives a real UniMMCore with srscope's
pure-Python microscope, through a name adapter (``snap_image`` → ``snapImage``) plus
pycromanager's own tagged-image helpers, so ``Acquisition(..., image_process_fn=live(...))``
runs for real: events → hardware → camera → image_process_fn → pycromanager storage.
"""

from __future__ import annotations

import gc
import logging
import types
from collections.abc import Iterator

import numpy as np
import pytest
import zarr
from ome_zarr_models.v05.image import Image
from pymmcore_plus.experimental.unicore import UniMMCore
from srscope.acquisition import ChannelModels, live
from srscope.acquisition.simulated import SIMULATED_CONFIG, SIMULATED_PIXEL_SIZE_UM

launcher = pytest.importorskip("mmpycorex.launcher")
pycromanager = pytest.importorskip("pycromanager")
from pycromanager.acquisition.acq_eng_py.internal.engine import Engine


class SnakeCaseCore:
    """Exposes a UniMMCore under pymmcore's snake_case names, as pycromanager expects."""

    def __init__(self, core: UniMMCore) -> None:
        self._core = core
        self._names = {n.lower(): n for n in dir(core) if not n.startswith("_")}

    def __getattr__(self, name: str):
        key = name.replace("_", "").lower()
        if key in self._names:
            return getattr(self._core, self._names[key])
        raise AttributeError(name)


@pytest.fixture()
def pycro_engine() -> Iterator[UniMMCore]:
    logging.getLogger("pymmcore-plus").setLevel(logging.ERROR)
    core = UniMMCore()
    core.loadSystemConfiguration(str(SIMULATED_CONFIG))
    core.setROI(0, 0, 32, 32)
    core.setExposure(1.0)
    snake = SnakeCaseCore(core)
    snake.get_tagged_image = types.MethodType(launcher.get_tagged_image, snake)
    snake.pop_next_tagged_image = types.MethodType(launcher.pop_next_tagged_image, snake)
    snake.TaggedImage = launcher.TaggedImage
    launcher._PYMMCORES.append(snake)  # makes pycromanager pick its Python backend
    Engine(snake)
    try:
        yield core
    finally:
        Engine.get_instance().shutdown()
        del Engine.singleton  # pycromanager keeps one engine per process; the next test needs a fresh one
        launcher._PYMMCORES.remove(snake)
        core.unloadAllDevices()
        del core, snake
        gc.collect()


def test_pycromanager_python_backend_acquisition_with_live_sr(pycro_engine, enhancer, tmp_path):
    from pycromanager import Acquisition, multi_d_acquisition_events

    events = multi_d_acquisition_events(num_time_points=2, xy_positions=[[0.0, 0.0], [60.0, 30.0]],
                                        channel_group="Channel", channels=["DAPI", "FITC"])
    raw_dir = tmp_path / "raw"
    # No pixel-size override: it must come from the engine's own tags (the config is calibrated).
    with live(ChannelModels(by_channel={"DAPI": enhancer}), tmp_path / "sr.ome.zarr") as sr:
        with Acquisition(directory=str(raw_dir), name="run", image_process_fn=sr, show_display=False) as acq:
            acq.acquire(events)
        dataset = acq.get_dataset()
    s = sr.summary
    assert s.frames_in == 8 and s.frames_super_resolved == 4 and s.frames_passed_through == 4
    assert s.frames_failed == 0 and s.status == "complete" and s.warnings == []

    # Raw frames reached pycromanager's own (NDTiff) storage untouched.
    raw = {}
    for axes in dataset.get_image_coordinates_list():
        raw[(axes["position"], axes["time"], axes["channel"])] = np.asarray(dataset.read_image(**axes))
        tags = dataset.read_metadata(**axes)
        # the tag names the engine really writes, which the hook reads (no fallback needed)
        assert tags["PixelSize_um"] == SIMULATED_PIXEL_SIZE_UM and "PixelSizeUm" not in tags
        assert "XPosition_um_Intended" in tags and "XPositionUm" not in tags
    dataset.close()
    assert len(raw) == 8

    root = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")
    for p, (x, y) in enumerate([(0.0, 0.0), (60.0, 30.0)]):
        Image.from_zarr(root[str(p)])
        scale, translation = root[str(p)].attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
        out_px = SIMULATED_PIXEL_SIZE_UM / 2
        assert np.allclose(scale["scale"][-2:], [out_px, out_px])
        # every position at its own stage coordinates (image centre = stage position), not at (0, 0)
        assert np.allclose(translation["translation"][-2:], [y - 63 / 2 * out_px, x - 63 / 2 * out_px])
        sr_planes = root[f"{p}/0"][:]
        assert sr_planes.shape == (2, 1, 1, 64, 64)
        for t in (0, 1):
            np.testing.assert_allclose(sr_planes[t, 0, 0], enhancer.enhance(raw[(p, t, "DAPI")]),
                                       rtol=1e-5, atol=1e-3)


def test_acqengpy_image_processor_form_on_the_engine(pycro_engine, enhancer, tmp_path):
    from ndstorage.ndram_dataset import NDRAMDataset
    from pycromanager.acquisition.acq_eng_py.main.AcqEngPy_Acquisition import (
        Acquisition as EngineAcquisition,
    )
    from pycromanager.acquisition.acq_eng_py.main.acquisition_event import (
        AcquisitionEvent,
    )
    from srscope.acquisition import SRImageProcessor

    dataset = NDRAMDataset()
    acq = EngineAcquisition(dataset)
    processor = SRImageProcessor(live(enhancer, tmp_path / "sr.ome.zarr", pixel_size_um=SIMULATED_PIXEL_SIZE_UM))
    acq.add_image_processor(processor)
    acq.start()
    events = [AcquisitionEvent.from_json({"axes": {"time": t}}, acq) for t in range(4)]
    acq.submit_event_iterator(iter(events))
    acq.finish()
    acq.block_until_events_finished()
    processor.join(timeout=60)

    s = processor.process_fn.summary
    assert s is not None and s.frames_in == 4 and s.frames_super_resolved == 4
    assert len(dataset.get_image_coordinates_list()) == 4  # every raw frame forwarded to storage
    root = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")
    assert root.attrs["srscope"]["status"] == "complete"
    raw = np.asarray(dataset.read_image(time=3))
    np.testing.assert_allclose(root["0/0"][3, 0, 0], enhancer.enhance(raw), rtol=1e-5, atol=1e-3)
