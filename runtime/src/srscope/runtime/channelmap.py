"""Which model goes with which channel: the one place front ends parse and check that mapping.

``srrun`` maps the channels of a file (``--model PATH`` for all, ``--model KEY=PATH`` by channel
index or name); ``sracquire`` maps Micro-Manager channel presets (``--channel-model NAME=PATH``).
Both parse ``KEY=PATH`` with :meth:`ModelSpec.parse` and raise the one
:class:`ChannelMappingError` (a :class:`~srscope.runtime.errors.UserError`-style ``ValueError``
with a one-line message), so a front end catches a single type.

The file-side rules (:func:`channel_models`) still live in :mod:`srscope.runtime.planes`, next to
the plane iteration that uses them, and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from srscope.runtime.planes import ChannelMappingError, ModelSpec, channel_models

__all__ = ["ChannelMappingError", "ModelSpec", "channel_models", "parse_named_models"]


def parse_named_models(items: Sequence[str], *, option: str = "--channel-model") -> dict[str, Path]:
    """``NAME=MODEL.onnx`` items (channel preset names) → mapping; one-line errors for bad items.

    Every item must name its channel (a live run has no channel list to default against), and a
    channel may be named once.
    """
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        spec = ModelSpec.parse(item) if sep and name and path else None
        if spec is None or spec.key is None:
            raise ChannelMappingError(f"{option} {item!r} is not of the form NAME=MODEL.onnx")
        if spec.key in out:
            raise ChannelMappingError(f"channel {spec.key!r} is mapped twice")
        out[spec.key] = spec.path
    return out
