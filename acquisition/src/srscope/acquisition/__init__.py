"""srscope acquisition: live super-resolution hooks for Micro-Manager that write OME-Zarr.

* pymmcore-plus: ``sr = LiveSRHandler(models, "sr.ome.zarr")``, then
  ``with sr.bounded(core): core.mda.run(seq, output=["raw.ome.zarr", sr])`` — ``bounded`` is what
  keeps memory bounded under ``block`` backpressure in this form (pymmcore-plus relays ``output``
  handlers' frames through an unbounded queue); ``with sr.connected(core): core.mda.run(seq)``
  runs the handler on the acquisition thread instead
* pycromanager: ``Acquisition(dir, name, image_process_fn=live("model.onnx", "sr.ome.zarr"))``
* lab automation: ``sracquire CONFIG SEQUENCE.json --model M --out run.ome.zarr``; after a killed
  run, ``sracquire fill run.ome.zarr`` super-resolves the planes it never wrote

Depends on :mod:`srscope.runtime` only; never imports training code.
"""

from srscope.acquisition.channels import (
    ChannelMappingError,
    ChannelModels,
    SupportsEnhance,
)
from srscope.acquisition.pipeline import Backpressure, FrameKey, LiveFrame, LivePipeline
from srscope.acquisition.pycromanager import LiveImageProcessFn, SRImageProcessor, live
from srscope.acquisition.pymmcore import LiveSRHandler
from srscope.acquisition.summary import RunSummary
from srscope.acquisition.writer import PositionGeometry, SRStoreError, SRStoreWriter

__all__ = [
    "Backpressure",
    "ChannelMappingError",
    "ChannelModels",
    "FrameKey",
    "LiveFrame",
    "LiveImageProcessFn",
    "LivePipeline",
    "LiveSRHandler",
    "PositionGeometry",
    "RunSummary",
    "SRImageProcessor",
    "SRStoreError",
    "SRStoreWriter",
    "SupportsEnhance",
    "live",
]
