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
import zarr
from ome_zarr_models.v05.image import Image
from srscope.acquisition import ChannelModels, SRImageProcessor, live


def _tags(t: int, channel: str, position: int) -> dict:
    return {"Axes": {"time": t, "channel": channel, "position": position}, "PixelSizeUm": 0.325,
            "XPositionUm": 100.0 * position, "YPositionUm": 0.0, "ZPositionUm": 2.0}


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
