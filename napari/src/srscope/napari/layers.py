"""Where the output layer sits in the world, what it is called and what it records: no Qt.

Geometry rule. napari places data pixel ``i`` of a layer at world coordinate
``translate + i·scale`` (its *centre*). A model of integer scale ``s`` turns input pixel ``i`` into
output pixels ``[i·s, (i+1)·s)``, whose centre is output coordinate ``i·s + (s − 1)/2`` (the same
convention the runtime's resize and border mirror use, :mod:`srscope.runtime.tiling`). For the two
to coincide physically on y and x::

    scale_out     = scale_in / s
    translate_out = translate_in − (s − 1) / (2 s) · scale_in

(for ``s = 2`` a quarter of an input pixel up and left); leading axes (t, z, c) keep their scale
and translation. The output always derives from the *layer's* scale, never from the card's pixel
size: a layer left at napari's default scale 1 is in "pixel" units, and its output then gets scale
``1/s`` in the same pixel units, so it overlays the input exactly. Replacing the input's 1 by the
card's 0.325 µm would put the output at 0.1625 on a canvas where the input spans 1 per pixel —
a picture six times too small in the corner. The card's physical sizes are kept in
``metadata["srscope"]`` instead, and :func:`pixel_size_note` tells the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from srscope.napari.models import card_summary
from srscope.runtime.card import AffineIntensity, ModelCard

#: A layer whose physical pixel differs from the card's input pixel by more than this fraction
#: gets a warning: the model has learned one sampling and its optics.
PIXEL_SIZE_TOLERANCE = 0.05

#: A napari layer data tuple ``(data, kwargs, layer_type)``, what npe2 readers and widgets return.
LayerDataTuple = tuple[Any, dict[str, Any], str]


@dataclass(frozen=True)
class LayerSnapshot:
    """What the output layer takes from its input, frozen when Run is clicked: renaming, moving or
    deleting the input during a run then changes nothing about the result."""

    name: str
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    colormap: str = "gray"
    blending: str = "translucent"
    units: tuple[str, ...] | None = None
    axis_labels: tuple[str, ...] | None = None

    @classmethod
    def of(cls, layer: Any) -> LayerSnapshot:
        """Snapshot a napari image layer (anything with its ``name``/``scale``/``translate``…)."""
        units = getattr(layer, "units", None)
        labels = getattr(layer, "axis_labels", None)
        colormap = getattr(layer, "colormap", None)
        return cls(name=layer.name, scale=tuple(float(v) for v in layer.scale),
                   translate=tuple(float(v) for v in layer.translate),
                   colormap=getattr(colormap, "name", "gray"), blending=str(getattr(layer, "blending", "translucent")),
                   units=None if units is None else tuple(str(u) for u in units),
                   axis_labels=None if labels is None else tuple(labels))


def sr_geometry(scale: Any, translate: Any, factor: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Output ``(scale, translate)`` for an input layer's ``scale``/``translate`` at model scale
    ``factor``: y/x per the module's rule (pixel centres and the covered block share a centre),
    other axes unchanged."""
    scale_in = np.asarray(scale, dtype=float)
    translate_in = np.asarray(translate, dtype=float)
    if scale_in.shape != translate_in.shape or scale_in.ndim != 1 or scale_in.size < 2:
        raise ValueError(f"scale {scale_in} and translate {translate_in} must be 1D of one length >= 2")
    if factor < 1:
        raise ValueError(f"model scale must be a positive integer, not {factor}")
    scale_out, translate_out = scale_in.copy(), translate_in.copy()
    scale_out[-2:] = scale_in[-2:] / factor
    translate_out[-2:] = translate_in[-2:] - (factor - 1) / (2 * factor) * scale_in[-2:]
    return tuple(float(v) for v in scale_out), tuple(float(v) for v in translate_out)


def layer_pixel_size_um(layer: Any) -> float | None:
    """The layer's x pixel size in µm if its units say it is physical, else ``None`` (pixels,
    unset units, or units napari cannot convert to a length)."""
    try:
        unit = layer.units[-1]
        return float((layer.scale[-1] * unit).to("um").magnitude)
    except Exception:  # noqa: BLE001 - pint raises several types for "pixel" and unknown units
        return None


def pixel_size_note(layer: Any, card: ModelCard) -> str:
    """One line for the widget on whether the layer's sampling matches the model's.

    A physical pixel size far from the card's is the commonest silent failure of SR models (the
    network has learned one sampling), so it is said before the run. Most napari users set a scale
    but leave the unit at napari's default "pixel"; such a scale is read as µm for this check (and
    says so). A layer at napari's default scale 1 only gets a reminder of what its output means.
    """
    size, assumed = layer_pixel_size_um(layer), ""
    if size is None:
        if np.allclose(np.asarray(layer.scale, dtype=float)[-2:], 1.0):
            return (f"Layer at napari's default scale 1 (pixels): output scale 1/{card.integer_scale} in "
                    f"the same units. Model expects {card.input_pixel_size_um:g} µm pixels.")
        size, assumed = float(layer.scale[-1]), " (no unit set: read as µm)"
    if abs(size - card.input_pixel_size_um) > PIXEL_SIZE_TOLERANCE * card.input_pixel_size_um:
        return (f"Warning: layer pixel {size:g} µm{assumed}, model expects {card.input_pixel_size_um:g} µm; "
                "resample first or pick another model.")
    return f"Layer pixel {size:g} µm{assumed} matches the model ({card.input_pixel_size_um:g} µm)."


def output_name(layer_name: str, card: ModelCard) -> str:
    """``"<input> SR (<model name>)"``: findable next to its input in the layer list."""
    return f"{layer_name} SR ({card.name})"


def output_layer(layer: LayerSnapshot, data: np.ndarray, card: ModelCard, *, policy: str,
                 mappings: list[AffineIntensity], source: Path | None,
                 consistency: list[dict[str, Any]] | None = None) -> LayerDataTuple:
    """The output image layer as a data tuple: name, geometry, units and the provenance record.

    ``metadata["srscope"]`` holds :func:`~srscope.napari.models.card_summary` plus the intensity
    policy actually used, each plane's input affine (``[offset, scale]`` in counts, plane order) and
    the model file, so the numbers in the layer can be traced and reproduced; with ``consistency``
    (:func:`consistency_record`) each plane's consistency score too.
    """
    scale, translate = sr_geometry(layer.scale, layer.translate, card.integer_scale)
    record = card_summary(card) | {
        "intensity_policy": policy,
        "intensity_mappings": [[m.offset, m.scale] for m in mappings],
        "model_file": str(source) if source is not None else None,
        "input_layer": layer.name,
    }
    if consistency is not None:
        record["consistency"] = consistency
    kwargs: dict[str, Any] = {
        "name": output_name(layer.name, card),
        "scale": scale,
        "translate": translate,
        "metadata": {"srscope": record},
        "colormap": layer.colormap,
        "blending": layer.blending,
    }
    if layer.units is not None:
        kwargs["units"] = layer.units
    if layer.axis_labels is not None:
        kwargs["axis_labels"] = layer.axis_labels
    return data, kwargs, "image"


def error_layer_name(layer_name: str) -> str:
    """``"<input> consistency error"``: the error map's layer, next to the SR output."""
    return f"{layer_name} consistency error"


def consistency_record(result: Any) -> list[dict[str, Any]]:
    """Per plane (C order), the consistency score as the runtime summarises it (rsp, rse,
    error_fraction, flagged, reasons): what the SR layer's and the error layer's metadata hold."""
    return [score.as_dict() for score in result.scores]


def extra_layers(layer: LayerSnapshot, result: Any, card: ModelCard, output: LayerDataTuple) -> list[LayerDataTuple]:
    """Further layers a run adds beside the SR output: the consistency error map, when the card
    carries a degradation model (:attr:`EnhanceResult.error_map`); nothing otherwise.

    The map reuses the output's scale, translate, units and axis labels, so it overlays the SR
    image pixel for pixel. Its values are the local error relative to the input's P1–P99.8 range;
    the contrast runs from 0 to twice the card's ``error_threshold`` (the level only 1 % of
    in-domain pixels exceed), so mid-brightness is that threshold.
    """
    if getattr(result, "error_map", None) is None or card.degradation is None:
        return []
    threshold = float(card.degradation.error_threshold)
    kwargs: dict[str, Any] = {
        "name": error_layer_name(layer.name),
        "scale": output[1]["scale"],
        "translate": output[1]["translate"],
        "colormap": "magma",
        "blending": "additive",
        "contrast_limits": (0.0, 2.0 * threshold),
        "metadata": {"srscope": {"error_map_of": output[1]["name"], "error_threshold": threshold,
                                 "flagged_planes": list(result.flagged),
                                 "consistency": consistency_record(result)}},
    }
    for key in ("units", "axis_labels"):
        if key in output[1]:
            kwargs[key] = output[1][key]
    return [(result.error_map, kwargs, "image")]
