"""srscope runtime: run exported super-resolution models with ONNX Runtime (never torch).

Lab scripts use :class:`Enhancer`; input is a 2D array of camera counts (any real dtype), output
is float32 in the same physical intensity units at the model's output pixel size::

    import tifffile
    from srscope.runtime import Enhancer

    sr = Enhancer.from_file("models/widefield-10x-to-20x.onnx", device="auto")
    print(sr.provider, sr.card.output_pixel_size_um)       # e.g. CPUExecutionProvider 0.1625
    hr = sr.enhance(tifffile.imread("frame.tif"))          # (2H, 2W) float32
    for hr in sr.enhance_stream(frames):                   # lazily, frame by frame
        ...

Every model file carries a :class:`ModelCard`; a file without one, or whose weights do not match
the card's checksum, raises :class:`ModelCardError`. ``device="cuda"`` or ``"tensorrt"`` that this
machine cannot honour raises :class:`DeviceUnavailableError` rather than quietly using the CPU.
"""

from srscope.runtime.card import (
    AffineIntensity,
    ModelCard,
    ModelCardError,
    embed_card,
    read_card,
    weights_checksum,
)
from srscope.runtime.enhancer import Enhancer, default_overlap
from srscope.runtime.imagecheck import InvalidImageError
from srscope.runtime.providers import (
    DeviceUnavailableError,
    ProviderFallbackWarning,
    available_devices,
    create_session,
)
from srscope.runtime.tiling import TilePlan, TilingError

__all__ = [
    "AffineIntensity",
    "DeviceUnavailableError",
    "Enhancer",
    "InvalidImageError",
    "ModelCard",
    "ModelCardError",
    "ProviderFallbackWarning",
    "TilePlan",
    "TilingError",
    "available_devices",
    "create_session",
    "default_overlap",
    "embed_card",
    "read_card",
    "weights_checksum",
]
