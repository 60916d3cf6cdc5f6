"""Plane iteration, channel→model mapping and the output dtype guard used by srrun."""

from pathlib import Path

import numpy as np
import pytest
import srscope.runtime.planes
from srscope.runtime.channelmap import ChannelMappingError, ModelSpec, channel_models
from srscope.runtime.errors import UserError
from srscope.runtime.planes import count_planes, iter_planes
from srscope.runtime.planework import BatchError, passthrough, to_output_dtype


def test_planes_follow_c_order_and_report_their_channel() -> None:
    data = np.arange(2 * 3 * 4 * 5 * 6).reshape(2, 3, 4, 5, 6)  # t c z y x
    planes = list(iter_planes(data.shape, "tczyx"))
    assert len(planes) == count_planes(data.shape) == 24
    assert [p.number for p in planes] == list(range(24))
    stacked = np.stack([data[p.index] for p in planes]).reshape(data.shape)
    np.testing.assert_array_equal(stacked, data)
    assert planes[5].index == (0, 1, 1) and planes[5].channel == 1
    assert planes[5].describe() == "t=0 c=1 z=1"
    only = list(iter_planes((8, 8), "yx"))
    assert len(only) == 1 and only[0].index == () and only[0].describe() == "the image"


def test_channel_axis_anywhere_sets_the_channel() -> None:
    planes = list(iter_planes((3, 2, 4, 4), "zcyx"))
    assert [p.channel for p in planes] == [0, 1, 0, 1, 0, 1]


def test_model_spec_parsing() -> None:
    assert ModelSpec.parse("models/a.onnx") == ModelSpec(None, Path("models/a.onnx"))
    assert ModelSpec.parse("1=models/a.onnx") == ModelSpec("1", Path("models/a.onnx"))
    assert ModelSpec.parse("DAPI=a.onnx") == ModelSpec("DAPI", Path("a.onnx"))
    assert ModelSpec.parse("dir/x=y.onnx").key is None  # a path that happens to contain '='


def test_channel_mapping_by_index_name_default_and_passthrough() -> None:
    a, b = ModelSpec.parse("a.onnx"), ModelSpec.parse("fitc=b.onnx")
    assert channel_models([a], 3, None, passthrough_unmapped=False) == [Path("a.onnx")] * 3
    assert channel_models([a, b], 2, ("dapi", "fitc"), passthrough_unmapped=False) == [Path("a.onnx"), Path("b.onnx")]
    assert channel_models([ModelSpec.parse("1=b.onnx")], 3, None, passthrough_unmapped=True) == [None, Path("b.onnx"), None]


@pytest.mark.parametrize("specs, pattern", [
    (["5=a.onnx"], "has 2 channel"),
    (["tritc=a.onnx"], "no channel named 'tritc'"),
    (["0=a.onnx"], "channel 1 .fitc. has no model"),
    (["0=a.onnx", "dapi=b.onnx"], "two models"),
    (["a.onnx", "b.onnx"], "more than one model without a channel key"),
])
def test_channel_mapping_errors(specs: list[str], pattern: str) -> None:
    with pytest.raises(ChannelMappingError, match=pattern):
        channel_models([ModelSpec.parse(s) for s in specs], 2, ("dapi", "fitc"), passthrough_unmapped=False)


def test_one_channel_mapping_module() -> None:
    """planes re-exports channelmap's objects (no second copy), and a bad mapping is a UserError
    (one line, exit 2 in every CLI)."""
    assert srscope.runtime.planes.ChannelMappingError is ChannelMappingError
    assert srscope.runtime.planes.ModelSpec is ModelSpec and srscope.runtime.planes.channel_models is channel_models
    with pytest.raises(UserError, match="no model path after '='"):
        ModelSpec.parse("dapi=")


def test_uint16_output_never_wraps() -> None:
    values = np.array([[-3.0, 0.4], [65535.4, 70000.0]], np.float32)
    with pytest.raises(BatchError, match="2 output pixel.s. outside the uint16 range"):
        to_output_dtype(values, "uint16", clip=False, where="plane t=0")
    clipped, n = to_output_dtype(values, "uint16", clip=True, where="plane t=0")
    assert n == 2
    np.testing.assert_array_equal(clipped, np.array([[0, 0], [65535, 65535]], np.uint16))
    same, n = to_output_dtype(values, "float32", clip=False, where="x")
    assert n == 0 and same.dtype == np.float32


def test_passthrough_replicates_pixels_exactly() -> None:
    plane = np.array([[1, 2], [3, 4]], np.uint16)
    out = passthrough(plane, 2)
    assert out.dtype == np.float32 and out.shape == (4, 4)
    np.testing.assert_array_equal(out[::2, ::2], plane)
    np.testing.assert_array_equal(out[1::2, 1::2], plane)
