"""A collection of NGFF images under one root: NGFF 0.5's ``bioformats2raw.layout`` (version 3).

Live acquisition writes one :class:`~srscope.runtime.io.store.PlaneStore` per stage position;
this is the root that holds them (``0/``, ``1/``, ...), the same layout pymmcore-plus/ome-writers
uses for the raw store, so image ``k`` of the SR store is position ``k`` of the raw one::

    run.ome.zarr/          ome: {version, bioformats2raw.layout: 3}; srscope: run status and provenance
      OME/                 ome: {version, series: ["0", "1", ...]}
        METADATA.ome.xml   OME-XML: one Image per series (sizes, pixel size, channels, stage position)
      0/ 1/ ...            NGFF multiscale images, each placed by its own translation

Why the OME-XML file: the layout says a reader finds the images from ``OME/series`` *or* from
``OME/METADATA.ome.xml``; napari-ome-zarr and ome-zarr-py's ``find_multiscales`` read only the
XML, so a root without it opens in neither. The XML is rewritten (atomically) whenever an image is
added or grows, so it is right at every moment of a live run, including after a crash.
"""

from __future__ import annotations

import os
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from srscope.runtime.io.faults import fault_point
from srscope.runtime.io.store import (
    NGFF_VERSION,
    SRSCOPE_KEY,
    check_json,
    create_atomically,
)

OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
XML_PATH = ("OME", "METADATA.ome.xml")
_PIXEL_TYPES = {"int8": "int8", "int16": "int16", "int32": "int32", "uint8": "uint8", "uint16": "uint16",
                "uint32": "uint32", "float32": "float", "float64": "double"}


@dataclass(frozen=True)
class SeriesInfo:
    """What the OME-XML says about one image of the collection."""

    index: int
    name: str
    shape: tuple[int, int, int, int, int]  #: t, c, z, y, x
    dtype: str
    pixel_size_um: tuple[float, float]  #: y, x
    channel_names: Sequence[str]
    channel_colors: Sequence[str | None] = ()  #: "RRGGBB" per channel, or None
    z_step_um: float | None = None
    time_interval_s: float | None = None
    stage_um: tuple[float, float, float] | None = None  #: x, y, z of the image centre


def _ome_color(rgb: str | None) -> str | None:
    """OME-XML colours are RGBA packed in a *signed* 32-bit integer."""
    if not rgb or len(rgb) != 6:
        return None
    value = (int(rgb, 16) << 8) | 0xFF
    return str(value - (1 << 32) if value >= 1 << 31 else value)


def ome_xml(series: Sequence[SeriesInfo]) -> str:
    """The ``OME/METADATA.ome.xml`` document listing ``series`` (metadata only: pixels stay in zarr)."""
    ET.register_namespace("", OME_NS)
    root = ET.Element(f"{{{OME_NS}}}OME", {"Creator": "srscope"})
    for info in series:
        image = ET.SubElement(root, f"{{{OME_NS}}}Image", {"ID": f"Image:{info.index}", "Name": info.name})
        if info.stage_um is not None:
            x, y, z = info.stage_um
            ET.SubElement(image, f"{{{OME_NS}}}StageLabel", {
                "Name": info.name, "X": repr(float(x)), "XUnit": "µm", "Y": repr(float(y)), "YUnit": "µm",
                "Z": repr(float(z)), "ZUnit": "µm"})
        t, c, z_size, y_size, x_size = info.shape
        attrs = {"ID": f"Pixels:{info.index}", "DimensionOrder": "XYZCT",
                 "Type": _PIXEL_TYPES.get(str(np.dtype(info.dtype)), "float"),
                 "SizeX": str(x_size), "SizeY": str(y_size), "SizeZ": str(z_size), "SizeC": str(c),
                 "SizeT": str(t), "PhysicalSizeX": repr(float(info.pixel_size_um[1])), "PhysicalSizeXUnit": "µm",
                 "PhysicalSizeY": repr(float(info.pixel_size_um[0])), "PhysicalSizeYUnit": "µm"}
        if info.z_step_um:
            attrs.update(PhysicalSizeZ=repr(float(info.z_step_um)), PhysicalSizeZUnit="µm")
        if info.time_interval_s:
            attrs.update(TimeIncrement=repr(float(info.time_interval_s)), TimeIncrementUnit="s")
        pixels = ET.SubElement(image, f"{{{OME_NS}}}Pixels", attrs)
        colors = list(info.channel_colors) + [None] * (c - len(info.channel_colors))
        for k in range(c):
            channel = {"ID": f"Channel:{info.index}:{k}", "SamplesPerPixel": "1"}
            if k < len(info.channel_names):
                channel["Name"] = str(info.channel_names[k])
            color = _ome_color(colors[k])
            if color is not None:
                channel["Color"] = color
            ET.SubElement(pixels, f"{{{OME_NS}}}Channel", channel)
        ET.SubElement(pixels, f"{{{OME_NS}}}MetadataOnly")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class ImageCollection:
    """A ``bioformats2raw.layout`` root whose images are added and described while a run goes on."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.group = zarr.open_group(self.path, mode="r+")

    @classmethod
    def create(cls, path: str | Path, *, state: Mapping[str, Any], overwrite: bool = False) -> ImageCollection:
        """Make the empty root atomically (built beside, renamed in); ``state``: its ``srscope`` attribute."""
        def build(tmp: Path) -> None:
            root = zarr.open_group(tmp, mode="a", zarr_format=3)  # tmp is new, holding only its lock
            root.attrs.update({"ome": {"version": NGFF_VERSION, "bioformats2raw.layout": 3},
                               SRSCOPE_KEY: check_json(dict(state))})
            root.create_group("OME").attrs["ome"] = {"version": NGFF_VERSION, "series": []}
            (tmp / Path(*XML_PATH)).write_text(ome_xml([]), encoding="utf-8")
            fault_point("collection.create")

        create_atomically(Path(path), build, overwrite=overwrite)
        return cls(path)

    def image_path(self, index: int) -> Path:
        return self.path / str(index)

    def describe(self, series: Sequence[SeriesInfo]) -> None:
        """Record the collection's images: the OME-XML first, then ``OME/series``."""
        ordered = sorted(series, key=lambda s: s.index)
        fault_point("collection.xml")
        _replace_text(self.path / Path(*XML_PATH), ome_xml(ordered))
        self.group["OME"].attrs["ome"] = {"version": NGFF_VERSION, "series": [str(s.index) for s in ordered]}

    def update_state(self, state: Mapping[str, Any]) -> None:
        self.group.attrs[SRSCOPE_KEY] = check_json(dict(state))
