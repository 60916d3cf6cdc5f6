"""Which model goes with which channel: the one place front ends parse and check that mapping.

``srrun`` maps the channels of a file (``--model PATH`` for all, ``--model KEY=PATH`` by channel
index or name); ``sracquire`` maps Micro-Manager channel presets (``--channel-model NAME=PATH``).
Both parse ``KEY=PATH`` with :meth:`ModelSpec.parse` and raise the one
:class:`ChannelMappingError` (a :class:`~srscope.runtime.errors.UserError` with a one-line
message), so a front end catches a single type. Mappings are checked up front, before any work
starts: a DAPI model is not a FITC model, and a wrong pairing would run to the end and look fine.

:mod:`srscope.runtime.planes` re-exports these names for older imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from srscope.runtime.errors import UserError

__all__ = ["ChannelMappingError", "ModelSpec", "channel_models", "parse_named_models"]


class ChannelMappingError(UserError):
    """The ``--model`` mapping does not fit the image's channels."""


@dataclass(frozen=True)
class ModelSpec:
    """One ``--model`` argument: ``PATH`` (all channels) or ``KEY=PATH`` (channel index or name)."""

    key: str | None
    path: Path

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        key, sep, rest = text.partition("=")
        if sep and key and "/" not in key and "\\" not in key and not key.endswith(".onnx"):
            if not rest:
                raise ChannelMappingError(f"--model {text!r}: no model path after '='")
            return cls(key=key.strip(), path=Path(rest))
        return cls(key=None, path=Path(text))


def channel_models(specs: Sequence[ModelSpec], n_channels: int,
                   channel_names: Sequence[str] | None, *, passthrough_unmapped: bool) -> list[Path | None]:
    """Model path for each channel index; ``None`` marks a pass-through channel.

    One spec without a key applies to every channel. Keys are channel indices or channel names
    from the file. A channel left without a model is an error unless ``passthrough_unmapped``.
    """
    if not specs:
        raise ChannelMappingError("no model given")
    defaults = [s for s in specs if s.key is None]
    if len(defaults) > 1:
        raise ChannelMappingError("more than one model without a channel key; use CHANNEL=PATH")
    names = list(channel_names) if channel_names else []
    mapping: dict[int, Path] = {}
    for spec in specs:
        if spec.key is None:
            continue
        if spec.key.lstrip("-").isdigit():
            channel = int(spec.key)
            if not 0 <= channel < n_channels:
                raise ChannelMappingError(
                    f"--model {spec.key}=...: the image has {n_channels} channel(s) (indices 0-{n_channels - 1})")
        elif spec.key in names:
            channel = names.index(spec.key)
        else:
            known = ", ".join(names) if names else "none"
            raise ChannelMappingError(f"--model {spec.key}=...: no channel named {spec.key!r} (channels: {known})")
        if channel in mapping:
            raise ChannelMappingError(f"channel {channel} is given two models")
        mapping[channel] = spec.path
    result: list[Path | None] = []
    for channel in range(n_channels):
        if channel in mapping:
            result.append(mapping[channel])
        elif defaults:
            result.append(defaults[0].path)
        elif passthrough_unmapped:
            result.append(None)
        else:
            label = f"{channel} ({names[channel]})" if channel < len(names) else str(channel)
            raise ChannelMappingError(
                f"channel {label} has no model; map it with --model {channel}=PATH or pass --passthrough-unmapped")
    if all(p is None for p in result):
        raise ChannelMappingError("no channel is mapped to a model")
    return result



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
