"""The 2D (y, x) planes of an N-D OME image, and which model each plane's channel goes through.

srscope models are 2D: a T/C/Z stack is super-resolved plane by plane. Channels usually need
different models (a DAPI model is not a FITC model), so the mapping from channel to model is
explicit and checked up front, before any work starts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


class ChannelMappingError(ValueError):
    """The ``--model`` mapping does not fit the image's channels."""


@dataclass(frozen=True)
class Plane:
    """One 2D plane: ``number`` counts planes in C order; ``index`` selects it from the array."""

    number: int
    index: tuple[int, ...]
    channel: int
    axes: str

    def describe(self) -> str:
        """Human position, e.g. ``"t=3 c=1 z=0"`` (``"the image"`` for a single 2D plane)."""
        parts = [f"{a}={i}" for a, i in zip(self.axes[:-2], self.index)]
        return " ".join(parts) if parts else "the image"


def count_planes(shape: Sequence[int]) -> int:
    n = 1
    for size in shape[:-2]:
        n *= int(size)
    return n


def iter_planes(shape: Sequence[int], axes: str) -> Iterator[Plane]:
    """Every (y, x) plane of an array with ``axes`` (ending in ``yx``), in C order."""
    if not axes.endswith("yx") or len(axes) != len(shape):
        raise ValueError(f"axes {axes!r} do not fit shape {tuple(shape)}")
    leading = [int(s) for s in shape[:-2]]
    c_pos = axes.index("c") if "c" in axes else None
    for number, index in enumerate(itertools.product(*(range(n) for n in leading))):
        yield Plane(number=number, index=index, channel=index[c_pos] if c_pos is not None else 0, axes=axes)


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
