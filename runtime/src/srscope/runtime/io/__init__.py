"""Microscopy image files in and out: OME-TIFF and OME-Zarr (NGFF), with pixel sizes carried through.

``read_image`` opens lazily (zarr), so callers can walk a dataset larger than memory plane by plane;
``write_image`` picks the format from the suffix and never leaves a finished-looking partial file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from srscope.runtime.io.image import CANONICAL_AXES, Image, ImageIOError
from srscope.runtime.io.omezarr import (
    OmeZarrWriter,
    read_omezarr,
    store_status,
    write_omezarr,
)
from srscope.runtime.io.store import PlaneStore, looks_like_zarr
from srscope.runtime.io.tiff import read_tiff, write_tiff

TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr",)


def image_format(path: str | Path) -> str:
    """``"tiff"`` or ``"zarr"`` from the file name (``.ome.tif``, ``.tiff``, ``.ome.zarr``, ...)."""
    suffix = Path(path).suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in ZARR_SUFFIXES:
        return "zarr"
    raise ImageIOError(f"{path}: unknown image format {suffix or '(no suffix)'!r}; use .ome.tif/.tif/.tiff or .ome.zarr/.zarr")


def read_image(path: str | Path) -> Image:
    """Open a TIFF/OME-TIFF or OME-Zarr image (level 0 of a multiscale) with its calibration.

    OME-Zarr and TIFFs over 32 MiB come back as lazy zarr arrays (index a plane to read it);
    smaller TIFFs as numpy. A file without any pixel size gets ``(1.0, 1.0)`` and
    ``metadata["pixel_size_unknown"] = True`` so callers can refuse or substitute a known value.
    An unfinished ``srrun`` store raises :class:`ImageIOError` rather than reading as an image.
    """
    path = Path(path)
    kind = image_format(path)
    if not path.exists():
        raise ImageIOError(f"{path}: no such file or directory")
    return read_tiff(path) if kind == "tiff" else read_omezarr(path)


def write_image(path: str | Path, image: Image, *, overwrite: bool = False) -> Path:
    """Write ``image`` as OME-TIFF or OME-Zarr (NGFF 0.5 with a pyramid), chosen by suffix.

    Refuses to replace an existing path unless ``overwrite``; axes are stored in ``tczyx`` order.
    """
    path = Path(path)
    kind = image_format(path)
    if path.exists():
        if not overwrite:
            raise ImageIOError(f"{path}: already exists (pass overwrite=True to replace it)")
        if path.is_dir():
            if not looks_like_zarr(path):
                raise ImageIOError(f"{path}: is a directory but not a zarr store; refusing to replace it")
            shutil.rmtree(path)
    if not path.parent.is_dir():
        raise ImageIOError(f"{path.parent}: output directory does not exist")
    return write_tiff(path, image) if kind == "tiff" else write_omezarr(path, image, overwrite=overwrite)


__all__ = [
    "CANONICAL_AXES", "Image", "ImageIOError", "OmeZarrWriter", "PlaneStore", "image_format", "read_image",
    "store_status", "write_image",
]
