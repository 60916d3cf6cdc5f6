"""srscope runtime: run exported super-resolution models with ONNX Runtime (never torch).

Lab scripts use :class:`Enhancer`::

    from srscope.runtime import Enhancer
    sr = Enhancer.from_file("models/widefield-10x-to-20x.onnx").enhance(image)
"""

from srscope.runtime.card import AffineIntensity, ModelCard, ModelCardError, embed_card, read_card, weights_checksum

__all__ = ["AffineIntensity", "ModelCard", "ModelCardError", "embed_card", "read_card", "weights_checksum"]
