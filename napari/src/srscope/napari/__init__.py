"""srscope in napari: super-resolve an image layer with a shipped (or any) srscope ``.onnx`` model.

The dock widget (``Plugins → Super-resolution (srscope)``, :class:`srscope.napari._widget.EnhanceWidget`)
picks a model and shows its card, an intensity policy and an image layer, runs every 2D plane in a
worker thread with a tile progress bar and Cancel, and adds ``"<input> SR (<model>)"`` with the
geometry of :mod:`srscope.napari.layers`; when the card carries a degradation model also
``"<input> consistency error"`` (the local error map on the same grid) and the consistency
check's verdict in the status line. The pieces below are Qt-free, so scripts can reuse them::

    from srscope.runtime import Enhancer
    from srscope.napari import run_to_end, sr_geometry

    result = run_to_end(Enhancer.from_file("models/widefield-10x0.4-to-20x0.75.onnx"), stack)
    scale, translate = sr_geometry((1.0, 0.325, 0.325), (0.0, 10.0, 20.0), factor=2)

Like the runtime, this package never imports torch or ``srscope.training``.
"""

from srscope.napari.engine import (
    EnhanceResult,
    Progress,
    enhance_planes,
    run_to_end,
    tiles_total,
)
from srscope.napari.layers import (
    LayerSnapshot,
    consistency_record,
    error_layer_name,
    extra_layers,
    output_layer,
    output_name,
    pixel_size_note,
    sr_geometry,
)
from srscope.napari.models import (
    ModelEntry,
    card_summary,
    card_text,
    default_model_dirs,
    discover_models,
)

__all__ = [
    "EnhanceResult",
    "LayerSnapshot",
    "ModelEntry",
    "Progress",
    "card_summary",
    "card_text",
    "consistency_record",
    "default_model_dirs",
    "discover_models",
    "enhance_planes",
    "error_layer_name",
    "extra_layers",
    "output_layer",
    "output_name",
    "pixel_size_note",
    "run_to_end",
    "sr_geometry",
    "tiles_total",
]
