"""The live SR store's root path, the one sracquire prints, opened by independent readers.

Each reader must find every position, with its pixel size and with the position placed at its
stage coordinates (NGFF translation: the stage is the image centre), and see the pyramid:
napari-ome-zarr (the napari route), ome-zarr-py (``find_multiscales`` on the root, which follows
``OME/METADATA.ome.xml``, then its ``Reader``), ome-zarr-models (the bioformats2raw model of the
root and each image validated) and ome-types for the OME-XML itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ome_types
import pytest
import zarr
from napari_ome_zarr._reader import napari_get_reader
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr.utils import find_multiscales
from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v05.image import Image as NgffImage05
from srscope.acquisition import PositionGeometry, SRStoreWriter

CAMERA = 64
PIXEL = 0.65
SCALE = 2
STAGES = [(10.0, 20.0, 0.0), (150.0, 60.0, 1.5), (-40.0, 5.0, 0.0)]


def _origin(stage: tuple[float, float, float]) -> tuple[float, float]:
    """Expected (y, x) of the SR image's first pixel centre: the stage sits at the image centre."""
    half = (SCALE * CAMERA - 1) / 2 * PIXEL / SCALE
    return stage[1] - half, stage[0] - half


@pytest.fixture(scope="module")
def live_store(tmp_path_factory) -> Path:
    """A finished live store: three positions, two channels, t grown past the size hint."""
    path = tmp_path_factory.mktemp("live") / "run.ome.zarr"
    writer = SRStoreWriter(path, channels=["DAPI", "FITC"], size_hints={"t": 1}, provenance={"models": "x"})
    rng = np.random.default_rng(3)
    for p, stage in enumerate(STAGES):
        writer.open_position(p, PositionGeometry((CAMERA, CAMERA), PIXEL, SCALE, stage, t_interval_s=2.0))
        for t in range(2):
            for channel in ("DAPI", "FITC"):
                writer.write(p, t, channel, 0, (rng.random((128, 128)) * 1000 + 100 * p).astype(np.float32))
    writer.close("complete")
    return path


def test_ome_zarr_models_validates_the_root_and_every_image(live_store: Path) -> None:
    root = zarr.open_group(live_store, mode="r")
    collection = BioFormats2Raw.from_zarr(root)
    assert collection.image_paths == ["0", "1", "2"]
    for p in range(len(STAGES)):
        ms = collection.images[str(p)].ome_attributes.multiscales[0]
        NgffImage05.from_zarr(root[str(p)])
        assert len(ms.datasets) == 3  # 128 -> 64 -> 32: a pyramid
        scale, translation = ms.datasets[0].coordinateTransformations
        assert scale.scale[-2:] == pytest.approx([PIXEL / SCALE] * 2)
        assert translation.translation[-2:] == pytest.approx(_origin(STAGES[p]))


def test_ome_zarr_py_finds_every_position_from_the_root(live_store: Path) -> None:
    found = find_multiscales(live_store)
    assert [Path(entry[0]).name for entry in found] == ["0", "1", "2"]
    for p, (image_path, *_rest) in enumerate(found):
        node = next(iter(Reader(parse_url(str(image_path)))()))
        assert [d.shape for d in node.data] == [(2, 2, 1, 128, 128), (2, 2, 1, 64, 64), (2, 2, 1, 32, 32)]
        level0 = node.metadata["coordinateTransformations"][0]
        assert level0[0]["scale"] == pytest.approx([2.0, 1.0, 1.0, PIXEL / SCALE, PIXEL / SCALE])
        assert level0[1]["translation"] == pytest.approx([0.0, 0.0, STAGES[p][2], *_origin(STAGES[p])])
        assert node.metadata["channel_names"] == ["DAPI", "FITC"]


def test_napari_ome_zarr_places_each_position_at_its_stage_coordinates(live_store: Path) -> None:
    reader = napari_get_reader(str(live_store))
    assert reader is not None
    layers = reader(str(live_store))
    assert len(layers) == len(STAGES)
    for (data, meta, kind), stage in zip(layers, STAGES):
        assert kind == "image" and len(data) == 3 and meta["channel_axis"] == 1
        assert meta["scale"] == pytest.approx((2.0, 1.0, PIXEL / SCALE, PIXEL / SCALE))
        assert meta["translate"] == pytest.approx((0.0, stage[2], *_origin(stage)))
        assert list(meta["name"]) == ["DAPI", "FITC"]


def test_ome_xml_lists_every_position_with_pixel_size_and_stage(live_store: Path) -> None:
    ome = ome_types.from_xml(str(live_store / "OME" / "METADATA.ome.xml"))
    assert [im.id for im in ome.images] == ["Image:0", "Image:1", "Image:2"]
    for image, stage in zip(ome.images, STAGES):
        assert image.pixels.physical_size_x == pytest.approx(PIXEL / SCALE)
        assert (image.pixels.size_t, image.pixels.size_c, image.pixels.size_x) == (2, 2, 128)
        assert (image.stage_label.x, image.stage_label.y, image.stage_label.z) == pytest.approx(stage)
        assert [c.name for c in image.pixels.channels] == ["DAPI", "FITC"]
