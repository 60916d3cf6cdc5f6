"""Which model super-resolves which channel.

A multi-channel acquisition usually needs one network per fluorophore (a DAPI-trained model
does not know FITC filaments). Frames whose channel maps to no model are not super-resolved:
their raw frame is kept by the microscope software as always, and the SR store simply has no
plane for them. Parsing ``NAME=MODEL`` and :class:`ChannelMappingError` come from
:mod:`srscope.runtime.channelmap`, shared with ``srrun``. All models of one run must share one integer scale factor, because the SR
store holds every channel of a position in one array on one output pixel grid.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from srscope.runtime.card import ModelCard
from srscope.runtime.channelmap import ChannelMappingError, parse_named_models


@runtime_checkable
class SupportsEnhance(Protocol):
    """What the live pipeline needs from a model: :class:`srscope.runtime.Enhancer` provides it."""

    card: ModelCard

    def enhance_many(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]: ...


def live_inference_threads() -> int:
    """CPU threads for inference during acquisition: all cores but one.

    ONNX Runtime takes every core by default; during a live run that starves the acquisition
    thread (and a software-heavy camera driver), which shows up as a lower camera frame rate.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 2
    return max(1, cores - 1)


def parse_channel_spec(items: Sequence[str]) -> dict[str, Path]:
    """Parse CLI ``NAME=MODEL.onnx`` items into a mapping (the runtime's one parser and error)."""
    return parse_named_models(items)


class ChannelModels:
    """Maps channel names (Micro-Manager channel preset names) to loaded models.

    ``default`` serves every channel not named in ``by_channel`` (and frames with no channel);
    with ``default=None`` those frames pass through without SR.
    """

    def __init__(self, by_channel: Mapping[str, SupportsEnhance] | None = None,
                 default: SupportsEnhance | None = None) -> None:
        self.by_channel: dict[str, SupportsEnhance] = dict(by_channel or {})
        self.default = default
        models = self.models()
        if not models:
            raise ChannelMappingError("no model given: pass a default model and/or per-channel models")
        scales = {m.card.integer_scale for m in models}
        if len(scales) != 1:
            raise ChannelMappingError(
                f"all models of one run must share one scale factor, got {sorted(scales)}")
        self.scale: int = scales.pop()
        self._views: dict[tuple[int, str | None], SupportsEnhance] = {}
        self._views_lock = threading.Lock()
        #: model file per loaded model (``id(model)``), when loaded by :meth:`from_files`: recorded in
        #: the provenance so ``sracquire fill`` can reload the very same models after a crash
        self.paths: dict[int, str] = {}
        #: the Enhancer options used by :meth:`from_files` (tile, device, intensity ...)
        self.options: dict[str, Any] = {}

    @classmethod
    def single(cls, model: SupportsEnhance) -> ChannelModels:
        return cls(default=model)

    @classmethod
    def from_files(cls, default: str | Path | None = None,
                   by_channel: Mapping[str, str | Path] | None = None,
                   **enhancer_options: Any) -> ChannelModels:
        """Load ONNX models with :meth:`srscope.runtime.Enhancer.from_file`, sharing sessions
        between channels that name the same file. ``intra_op_threads`` defaults to
        :func:`live_inference_threads` so inference leaves a core to the acquisition."""
        from srscope.runtime import Enhancer

        enhancer_options.setdefault("intra_op_threads", live_inference_threads())

        loaded: dict[Path, SupportsEnhance] = {}

        def load(path: str | Path) -> SupportsEnhance:
            key = Path(path).resolve()
            if key not in loaded:
                loaded[key] = Enhancer.from_file(key, **enhancer_options)
            return loaded[key]

        models = cls({name: load(p) for name, p in (by_channel or {}).items()},
                     default=load(default) if default is not None else None)
        models.paths = {id(m): str(path) for path, m in loaded.items()}
        models.options = dict(enhancer_options)
        return models

    def model_for(self, channel: str | None) -> SupportsEnhance | None:
        """The model for ``channel``. A ``series`` intensity policy latches one mapping per channel:
        channels sharing one loaded model get their own view of it (same session, own latch)."""
        model = self.by_channel[channel] if channel is not None and channel in self.by_channel else self.default
        policy = getattr(model, "intensity", None)
        if model is None or getattr(policy, "name", None) != "series" or getattr(policy, "mapping", 1) is not None:
            return model
        with self._views_lock:
            key = (id(model), channel)
            if key not in self._views:
                self._views[key] = model.with_intensity("series")
            return self._views[key]

    def intensity_mappings(self) -> dict[str, Any]:
        """Per channel, the intensity policy in use and the mapping a ``series`` view latched."""
        out: dict[str, Any] = {}
        with self._views_lock:
            views = dict(self._views)
        for (_, channel), view in views.items():
            mapping = view.intensity.mapping
            out[str(channel)] = {"policy": "series",
                                 "mapping": None if mapping is None else [mapping.offset, mapping.scale]}
        return out

    def models(self) -> list[SupportsEnhance]:
        """Distinct model objects, default first."""
        seen: list[SupportsEnhance] = []
        for m in ([self.default] if self.default is not None else []) + list(self.by_channel.values()):
            if all(m is not s for s in seen):
                seen.append(m)
        return seen

    def sr_channels(self, channels: Sequence[str]) -> list[str]:
        """The subset of ``channels`` (in acquisition order) that will be super-resolved."""
        return [c for c in channels if self.model_for(c) is not None]

    def provenance(self) -> dict[str, Any]:
        """Model identity for the OME-Zarr metadata: name, version, weights checksum, full card,
        and the inference settings the runtime actually used."""
        def describe(m: SupportsEnhance) -> dict[str, Any]:
            card = m.card
            return {
                "name": card.name,
                "version": card.version,
                "weights_sha256": card.weights_sha256,
                "card": card.to_json(),
                "card_sha256": hashlib.sha256(card.to_json().encode()).hexdigest(),
                "inference": {k: _jsonable(getattr(m, k, None))
                              for k in ("provider", "tile", "overlap", "batch_size", "device")
                              if getattr(m, k, None) is not None},
                "intensity": getattr(getattr(m, "intensity", None), "name", None),
                "path": self.paths.get(id(m)),
            }

        return {
            "scale_factor": self.scale,
            "options": {k: _option_json(v) for k, v in self.options.items()},
            "default": describe(self.default) if self.default is not None else None,
            "by_channel": {name: describe(m) for name, m in self.by_channel.items()},
        }


def _option_json(value: Any) -> Any:
    """An Enhancer option as JSON that the CLI can parse back (an explicit mapping as ``OFFSET:SCALE``)."""
    if hasattr(value, "offset") and hasattr(value, "scale") and not isinstance(value, (int, float)):
        return f"{value.offset}:{value.scale}"
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)
