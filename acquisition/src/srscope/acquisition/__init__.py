"""srscope acquisition: live super-resolution hooks for Micro-Manager that write OME-Zarr.

* pymmcore-plus: ``core.mda.run(seq, output=["raw.ome.zarr", LiveSRHandler(models, "sr.ome.zarr")])``
* pycromanager: ``Acquisition(dir, name, image_process_fn=live("model.onnx", "sr.ome.zarr"))``
* lab automation: ``sracquire CONFIG SEQUENCE.json --model M --out run.ome.zarr``

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
