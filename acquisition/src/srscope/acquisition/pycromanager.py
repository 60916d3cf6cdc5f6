"""pycromanager hooks: an ``image_process_fn`` and an AcqEngPy image processor that pass every
raw frame through untouched (Micro-Manager keeps storing it) and send a copy to live SR.

Function form (both pycromanager backends)::

    from srscope.acquisition import live
    with live("model.onnx", "run_sr.ome.zarr") as sr:
        with Acquisition(directory, name, image_process_fn=sr) as acq:
            acq.acquire(events)
    print(sr.summary.format())

pycromanager never tells an ``image_process_fn`` that the acquisition ended, so the ``with``
block (or :meth:`LiveImageProcessFn.finish`) closes the SR store. The processor form,
:class:`SRImageProcessor`, sees the engine's end-of-acquisition marker and finishes by itself;
it is added to AcqEngPy's own acquisition before it starts::

    from pycromanager.acquisition.acq_eng_py.main.AcqEngPy_Acquisition import Acquisition
    acq = Acquisition(dataset)
    acq.add_image_processor(SRImageProcessor(live("model.onnx", "run_sr.ome.zarr")))
    acq.start()

pycromanager's axes are open-ended (``{"time": 0, "channel": "DAPI", "z": 0, "position": 0}``),
so the SR store grows as new time points, planes and channels arrive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np
from srscope.acquisition.channels import ChannelModels, SupportsEnhance
from srscope.acquisition.pipeline import Backpressure, FrameKey, LiveFrame, LivePipeline
from srscope.acquisition.summary import RunSummary
from srscope.acquisition.writer import SRStoreWriter


def _as_models(model: ChannelModels | SupportsEnhance | str | Path, **enhancer_options: Any) -> ChannelModels:
    if isinstance(model, ChannelModels):
        return model
    if isinstance(model, (str, Path)):
        return ChannelModels.from_files(model, **enhancer_options)
    return ChannelModels.single(model)


#: Image tags holding the camera pixel size, best first. ``PixelSize_um`` is what pycromanager's
#: acquisition engines write (AcqEngPy/AcqEngJ ``AcqEngMetadata.PIX_SIZE``); ``PixelSizeUm`` is
#: Micro-Manager's core/MMStudio image tag, kept as a fallback.
PIXEL_SIZE_TAGS = ("PixelSize_um", "PixelSizeUm")
#: Stage-position tags per axis, best first: the engine's ``<axis>Position_um_Intended`` (the
#: position the event asked for, written for every event that sets that axis), then the
#: measured ``<axis>Position_um`` and Micro-Manager's core tag ``<axis>PositionUm``.
STAGE_TAGS = {axis: (f"{axis}Position_um_Intended", f"{axis}Position_um", f"{axis}PositionUm")
              for axis in "XYZ"}


def _first_number(tags: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = tags.get(key)
        if value is None or value == "":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if np.isfinite(number):
            return number
    return None


def frame_from_tags(image: np.ndarray, tags: Mapping[str, Any], positions: dict[Any, int], t0: float) -> LiveFrame:
    """Build a :class:`LiveFrame` (a copy of ``image``) from pycromanager/Micro-Manager image tags.

    Reads the tags the engines really emit (:data:`PIXEL_SIZE_TAGS`, :data:`STAGE_TAGS`): a
    pixel size of 0 (an uncalibrated configuration) counts as unknown; a missing stage axis is 0.
    """
    axes = tags.get("Axes") or {}
    pos_label = axes.get("position", tags.get("PositionName", 0))
    position = positions.setdefault(pos_label, len(positions))
    channel = axes.get("channel", tags.get("Channel"))
    pixel = _first_number(tags, PIXEL_SIZE_TAGS)
    stage = tuple(_first_number(tags, STAGE_TAGS[axis]) or 0.0 for axis in "XYZ")
    name = tags.get("PositionName")
    if name is None and not isinstance(pos_label, int):
        name = pos_label
    return LiveFrame(
        key=FrameKey(position, int(axes.get("time", 0)), str(channel) if channel is not None else None,
                     int(axes.get("z", 0))),
        data=np.array(image, copy=True), t_in=t0,
        stage_um=(stage[0], stage[1], stage[2]),
        pixel_size_um=pixel if pixel is not None and pixel > 0 else None,
        position_name=str(name) if name is not None else None,
    )


class LiveImageProcessFn:
    """A pycromanager ``image_process_fn``: returns ``(image, metadata)`` unchanged at once."""

    def __init__(self, models: ChannelModels, out: str | Path, *, policy: Backpressure | str = "block",
                 max_queued: int = 64, batch_size: int = 4, pixel_size_um: float | None = None,
                 overwrite: bool = False, ignore_pixel_size: bool = False) -> None:
        writer = SRStoreWriter(out, overwrite=overwrite, channels=(),
                               provenance={"models": models.provenance(), "hook": "pycromanager image_process_fn",
                                           "backpressure": Backpressure(policy).value, "max_queued": max_queued,
                                           "worker_batch_size": batch_size})
        self.pipeline = LivePipeline(models, writer, policy=policy, max_queued=max_queued,
                                     batch_size=batch_size, pixel_size_um=pixel_size_um,
                                     ignore_pixel_size=ignore_pixel_size)
        self.summary: RunSummary | None = None
        self._positions: dict[Any, int] = {}
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray, metadata: dict) -> tuple[np.ndarray, dict]:
        t0 = time.perf_counter()
        try:
            frame = frame_from_tags(image, metadata, self._positions, t0)
        except Exception:  # noqa: BLE001 - an odd frame must not abort the acquisition
            return image, metadata
        self.pipeline.submit(frame)
        self.pipeline.record_callback(time.perf_counter() - t0)
        return image, metadata

    def finish(self) -> RunSummary:
        """Drain and close the SR store (idempotent)."""
        with self._lock:
            if self.summary is None:
                self.summary = self.pipeline.finish()
            return self.summary

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.finish()
        else:
            with self._lock:
                if self.summary is None:
                    self.summary = self.pipeline.abort(drain=True)


def live(model: ChannelModels | SupportsEnhance | str | Path, out: str | Path, *,
         policy: Backpressure | str = "block", max_queued: int = 64, batch_size: int = 4,
         pixel_size_um: float | None = None, overwrite: bool = False, ignore_pixel_size: bool = False,
         **enhancer_options: Any) -> LiveImageProcessFn:
    """``image_process_fn`` that super-resolves every frame into ``out`` (an OME-Zarr store).

    ``model`` is an ``.onnx`` path, a loaded :class:`srscope.runtime.Enhancer`, or a
    :class:`ChannelModels` mapping; ``enhancer_options`` (device, tile, ...) apply to paths.
    """
    return LiveImageProcessFn(_as_models(model, **enhancer_options), out, policy=policy,
                              max_queued=max_queued, batch_size=batch_size,
                              pixel_size_um=pixel_size_um, overwrite=overwrite,
                              ignore_pixel_size=ignore_pixel_size)


class SRImageProcessor:
    """AcqEngPy image processor (pycromanager 1.x Python backend ``add_image_processor``).

    Runs its own thread between the engine's input and output queues: every tagged image is
    forwarded untouched to the output queue (so storage continues) after a copy is queued for
    SR; the end marker (``pix is None and tags is None``) finishes the SR store and is forwarded.
    """

    def __init__(self, process_fn: LiveImageProcessFn) -> None:
        self.process_fn = process_fn
        self._thread: threading.Thread | None = None

    def set_acq_and_queues(self, acq: Any, input_queue: Any, output_queue: Any) -> None:
        self._acq = acq
        self._input, self._output = input_queue, output_queue
        self._thread = threading.Thread(target=self._loop, name="srscope-image-processor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            tagged = self._input.get()
            if tagged.pix is None and tagged.tags is None:
                self.process_fn.finish()
                self._output.put(tagged)
                return
            self.process_fn(tagged.pix, tagged.tags)
            self._output.put(tagged)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
