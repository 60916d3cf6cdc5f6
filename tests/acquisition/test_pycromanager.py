"""pycromanager hooks, tested on their contract.

pycromanager 1.0.2 needs a Micro-Manager installation with device adapters even for its Python
backend, and none can be installed offline, so these tests drive the two hook forms the way the
engine does: the function is called with (image, tags); the processor gets the engine's input
and output queues and the (None, None) end marker.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass

import numpy as np
import pytest
import zarr
from ome_zarr_models.v05.image import Image
from srscope.acquisition import ChannelModels, SRImageProcessor, live
from srscope.acquisition.pycromanager import frame_from_tags


def _tags(t: int, channel: str, position: int) -> dict:
    """Tags as pycromanager's engines write them (AcqEngMetadata: PixelSize_um, *Position_um_Intended)."""
    return {"Axes": {"time": t, "channel": channel, "position": position}, "PixelSize_um": 0.325,
            "XPosition_um_Intended": 100.0 * position, "YPosition_um_Intended": -30.0,
            "ZPosition_um_Intended": 2.0}


def test_image_process_fn_passes_raw_through_and_writes_sr(enhancer, tmp_path):
    rng = np.random.default_rng(0)
    sent = []
    with live(ChannelModels(by_channel={"GFP": enhancer}), tmp_path / "sr.ome.zarr") as fn:
        for t in range(2):
            for position in range(2):
                for channel in ("GFP", "BF"):
                    image = rng.poisson(400, (48, 48)).astype(np.uint16)
                    tags = _tags(t, channel, position)
                    out_image, out_tags = fn(image, tags)
                    assert out_image is image and out_tags is tags  # untouched, same objects
                    sent.append((t, channel, position, image.copy()))
    s = fn.summary
    assert s.frames_in == 8 and s.frames_super_resolved == 4 and s.frames_passed_through == 4

    root = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")
    for position in range(2):
        Image.from_zarr(root[str(position)])
        scale, translation = root[str(position)].attrs["ome"]["multiscales"][0]["datasets"][0][
            "coordinateTransformations"]
        assert scale["scale"][-2:] == [0.1625, 0.1625]  # the tag's 0.325 µm ÷ 2, not the card's guess
        centre = (96 - 1) / 2 * 0.1625
        assert translation["translation"][2:] == [2.0, pytest.approx(-30.0 - centre), pytest.approx(100.0 * position - centre)]
        sr = root[f"{position}/0"][:]
        assert sr.shape == (2, 1, 1, 96, 96)
        for t, channel, p, image in sent:
            if channel == "GFP" and p == position:
                np.testing.assert_allclose(sr[t, 0, 0], enhancer.enhance(image), rtol=1e-5, atol=1e-3)


@dataclass
class _Tagged:  # the engine's TaggedImage: .pix and .tags
    pix: np.ndarray | None
    tags: dict | None


def test_image_processor_forwards_everything_and_finishes_on_end_marker(enhancer, tmp_path):
    inbox, outbox = queue.Queue(), queue.Queue()
    proc = SRImageProcessor(live(enhancer, tmp_path / "sr.ome.zarr"))
    proc.set_acq_and_queues(None, inbox, outbox)
    images = [_Tagged(np.full((32, 32), 200 + i, np.uint16), _tags(i, "GFP", 0)) for i in range(3)]
    for tagged in images:
        inbox.put(tagged)
    inbox.put(_Tagged(None, None))
    proc.join(timeout=60)
    forwarded = [outbox.get_nowait() for _ in range(4)]
    assert forwarded[:3] == images and forwarded[3].pix is None
    assert proc.process_fn.summary.frames_super_resolved == 3
    root = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")
    assert root.attrs["srscope"]["status"] == "complete"
    assert not np.isnan(root["0/0"][:]).any()


def test_tags_best_first_with_micro_manager_fallbacks():
    image = np.zeros((4, 4), np.uint16)
    engine = frame_from_tags(image, {"Axes": {"time": 1, "position": "A1"}, "PixelSize_um": 0.2,
                                     "PixelSizeUm": 9.0, "XPosition_um_Intended": 5.0, "XPosition_um": 6.0,
                                     "YPosition_um": 7.0, "ZPositionUm": "8.5", "PositionName": "A1"}, {}, 0.0)
    assert engine.pixel_size_um == 0.2 and engine.stage_um == (5.0, 7.0, 8.5)
    assert engine.position_name == "A1" and engine.key.t == 1
    core_tags = frame_from_tags(image, {"PixelSizeUm": "0.325", "XPositionUm": 1.5, "YPositionUm": -2.0}, {}, 0.0)
    assert core_tags.pixel_size_um == 0.325 and core_tags.stage_um == (1.5, -2.0, 0.0)
    uncalibrated = frame_from_tags(image, {"PixelSize_um": 0.0}, {}, 0.0)
    assert uncalibrated.pixel_size_um is None and uncalibrated.stage_um == (0.0, 0.0, 0.0)
