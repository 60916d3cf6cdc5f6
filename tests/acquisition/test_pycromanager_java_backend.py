"""The Java-backend route (Micro-Manager 2.0 GUI + pycromanager), as far as it runs without Java.

With the GUI, ``Acquisition(..., image_process_fn=live(...))`` runs AcqEngJ inside Micro-Manager;
each image travels to Python over ZMQ, pycromanager's ``_run_image_processor`` calls the hook and
sends the returned image back for Micro-Manager's own storage. This test runs that very function
of pycromanager over real ZMQ sockets, with the Java side (``RemoteImageProcessor``) played by this
test in its wire format: pixels as a ``short-array`` binary frame, AcqEngJ's tags (``PixelSize_um``,
``XPosition_um_Intended``, ``Axes``), then the ``finished`` message. Micro-Manager itself (Java) is
not run: it cannot be installed offline.
"""

from __future__ import annotations

import json
import socket
import sys
import threading

import numpy as np
import pytest
import zarr
from srscope.acquisition import ChannelModels, live

zmq = pytest.importorskip("zmq")
java_backend = pytest.importorskip("pycromanager.acquisition.java_backend_acquisitions")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _java_image(image: np.ndarray, tags: dict, key: int) -> list[bytes]:
    """One image as Java's RemoteImageProcessor pushes it: JSON with a placeholder + (hash, bytes)."""
    message = {"pixels": {"type": "short-array", "value": f"@{key:x}"}, "metadata": tags}
    return [json.dumps(message).encode("iso-8859-1"), key.to_bytes(4, sys.byteorder), image.tobytes()]


def _acqengj_tags(t: int, channel: str, position: int, x: float, y: float) -> dict:
    return {"Axes": {"time": t, "channel": channel, "position": position}, "Height": 40, "Width": 48,
            "PixelType": "GRAY16", "PixelSize_um": 0.325, "XPosition_um_Intended": x,
            "YPosition_um_Intended": y, "ZPosition_um_Intended": 1.5, "Channel": channel, "Camera": "Camera"}


def test_hook_in_pycromanagers_java_backend_processor_loop(enhancer, tmp_path):
    context = zmq.Context.instance()
    java_push = context.socket(zmq.PUSH)  # Java binds its push port; Python's PullSocket connects
    push_port = java_push.bind_to_random_port("tcp://127.0.0.1")
    pull_port = _free_port()  # Python's PushSocket binds here; Java's pull socket connects
    acquisition = object.__new__(java_backend.JavaBackendAcquisition)  # only _call_image_process_fn is used
    errors: list[BaseException] = []
    acquisition.abort = errors.append
    rng = np.random.default_rng(0)
    stage = {0: (100.0, -20.0), 1: (400.0, 250.0)}
    sent = [(t, ch, p, rng.poisson(300, (40, 48)).astype(np.uint16)) for t in range(2) for p in (0, 1)
            for ch in ("DAPI", "BF")]

    with live(ChannelModels(by_channel={"DAPI": enhancer}), tmp_path / "sr.ome.zarr") as sr:
        connected = threading.Event()
        worker = threading.Thread(target=java_backend._run_image_processor,
                                  args=(acquisition, pull_port, push_port, connected, sr, None, False))
        worker.start()
        assert connected.wait(30)
        java_pull = context.socket(zmq.PULL)
        java_pull.connect(f"tcp://127.0.0.1:{pull_port}")
        for i, (t, ch, p, image) in enumerate(sent):
            java_push.send_multipart(_java_image(image, _acqengj_tags(t, ch, p, *stage[p]), 0x1000 + i))
        java_push.send_multipart([json.dumps({"special": "finished"}).encode()])
        returned = []
        for _ in sent:  # every raw image comes back to Micro-Manager for storage, unchanged
            parts = java_pull.recv_multipart()
            returned.append((json.loads(parts[0])["metadata"], np.frombuffer(parts[2], np.uint16)))
        assert json.loads(java_pull.recv_multipart()[0]) == {"special": "finished"}
        worker.join(30)
        java_pull.close()
    java_push.close()
    assert errors == []
    for (t, ch, p, image), (tags, pixels) in zip(sent, returned):
        assert tags["Axes"] == {"time": t, "channel": ch, "position": p}
        np.testing.assert_array_equal(pixels.reshape(image.shape), image)

    s = sr.summary
    assert s.frames_in == 8 and s.frames_super_resolved == 4 and s.frames_passed_through == 4
    assert s.status == "complete" and s.warnings == [] and s.errors == []
    root = zarr.open_group(str(tmp_path / "sr.ome.zarr"), mode="r")
    for p, (x, y) in stage.items():
        scale, translation = root[str(p)].attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
        assert np.allclose(scale["scale"][-2:], [0.1625, 0.1625])  # AcqEngJ's PixelSize_um ÷ 2
        # the image centre sits at the intended stage position (within one output pixel)
        assert abs(translation["translation"][-1] + 95 / 2 * 0.1625 - x) < 0.1625
        assert abs(translation["translation"][-2] + 79 / 2 * 0.1625 - y) < 0.1625
        for t, ch, pp, image in sent:
            if ch == "DAPI" and pp == p:
                np.testing.assert_allclose(root[f"{p}/0"][t, 0, 0], enhancer.enhance(image), rtol=1e-5, atol=1e-3)
